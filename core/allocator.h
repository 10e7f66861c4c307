// core/allocator.h — caching allocators: memory is taken from the system once and reused.
//
// A training loop allocates the same sizes every step (activations, gradients, temporaries), so a
// per-device cache of freed blocks turns nearly every allocation after the first step into a
// lookup: no malloc/free (and no cudaMalloc/cudaFree) in the steady state. How blocks map onto
// system allocations is a policy that each subclass chooses (CachingAllocator::Packing), because
// the two devices want opposite things:
//
// Packing::kSegments (CUDA). cudaMalloc is slow and synchronises the device, and shapes that vary
// from step to step (padded batches of different lengths) must not make the cache grow without
// bound, so blocks are carved out of larger segments and glued back together when freed, in the
// spirit of PyTorch's CUDACachingAllocator (c10/cuda/CUDACachingAllocator.cpp):
//
//   - Every request is rounded up to a multiple of 512 bytes (bin_size).
//   - Requests of at most 1 MiB come from the small pool, whose segments are 2 MiB; larger ones
//     from the large pool, whose segments are 20 MiB for requests under 10 MiB and the request
//     rounded up to a multiple of 2 MiB otherwise (segment_size). Keeping small blocks apart stops
//     them from pinning the big segments that large tensors need.
//   - Free blocks sit in a set ordered by size: a request takes the smallest block that fits (best
//     fit) and splits off the rest when the rest is worth keeping (any remainder in the small pool,
//     more than 1 MiB in the large pool; a smaller tail stays with the block).
//   - A freed block merges with its free neighbours in the same segment, so a segment whose
//     blocks are all free is again one block of the segment's size.
//
// Packing::kOwnBlocks (CPU). Every block is a system allocation of its own, never shared by two
// live tensors: AddressSanitizer (CI runs the CPU suite under it) then sees each tensor as its own
// heap block and reports an overrun into a neighbour, which a shared segment would hide; and
// malloc already packs small blocks well, so segments would only add slack. Requests are rounded
// up to bins of 2^k * {1, 1.25, 1.5, 1.75} (at most 25 % waste), then to a multiple of 64 bytes
// (bin_size); a freed block is cached and serves only a later request of the same bin, so a small
// tensor never pins a large block.
//
// Under both, a system allocation goes back only when it is wholly free and the cache is trimmed:
// by empty_cache(), or when the system refuses a new one (then the allocation is retried once, and
// fails with OutOfMemoryError naming the size, the device and the byte counts).
//
// CPU blocks are 64-byte aligned (one cache line, the widest AVX-512 load): each is its own
// aligned_alloc. Segment blocks start at a multiple of 512 bytes into an aligned segment.
//
// Streams. On CUDA a freed block may be reused at once by work on the device's own stream: that
// work runs after everything queued before the free, in order. Work on another stream (NCCL's)
// is not ordered with it, so a block such work uses is marked with record_stream(ptr, stream)
// (PyTorch's Tensor.record_stream). When a marked block is freed, an event is recorded on each of
// its streams and the block waits in a pending list, still counted in use, until every event has
// completed; allocate() and empty_cache() hand back the blocks whose events are done, and an
// allocation that finds no memory waits for the pending events before it gives up. The event
// hooks are virtual (record_event, event_done, wait_event, release_event): the CPU has no streams
// and keeps the defaults, which make record_stream free.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/check.h"  // OutOfMemoryError, thrown by allocate
#include "core/device.h"

namespace minidl {

struct AllocatorStats {
    // Segments (kSegments) or blocks (kOwnBlocks) taken from the system (malloc / cudaMalloc)...
    uint64_t system_allocs = 0;
    uint64_t system_frees = 0;  // ...and given back (empty_cache, out-of-memory retry)
    uint64_t cache_hits = 0;    // allocations served from cached free blocks
    size_t bytes_in_use = 0;    // allocations not yet returned, each counted as bin_size(nbytes)
    size_t bytes_reserved = 0;  // bytes held from the system: the system allocations' sizes
    size_t peak_bytes_in_use = 0;
    // Bytes in free blocks, ready for reuse. bytes_reserved - bytes_in_use - bytes_cached is the
    // small tails (< 1 MiB) left with large blocks that were not worth splitting off (kSegments;
    // always 0 under kOwnBlocks).
    size_t bytes_cached = 0;
};

class Allocator {
  public:
    virtual ~Allocator() = default;
    // A block of at least nbytes (nbytes > 0). Never returns nullptr: throws on exhaustion.
    virtual void* allocate(size_t nbytes) = 0;
    // Returns a block from allocate(nbytes) with the same nbytes.
    virtual void deallocate(void* ptr, size_t nbytes) = 0;
    virtual AllocatorStats stats() const = 0;
    // The bytes an allocation of nbytes is counted as in stats().bytes_in_use.
    virtual size_t bin_size(size_t nbytes) const = 0;
    // Gives every wholly free cached segment (or block) back to the system.
    virtual void empty_cache() = 0;
    // Marks the block at ptr (as allocate returned it) as used by work on `stream`, another
    // stream than the device's own (CUDA: a cudaStream_t): the block is reused only after that
    // work, see the top of this file. A no-op where there are no streams.
    virtual void record_stream(void* ptr, void* stream) {
        (void)ptr;
        (void)stream;
    }
};

// The cache shared by the CPU and CUDA allocators; subclasses choose the packing and say how memory
// is taken from and given back to the system. One mutex guards the state; system_free is never
// called with it held, so a subclass may block there (cudaFree waits for the device) without
// stalling others.
class CachingAllocator : public Allocator {
  public:
    // How blocks map onto system allocations (see the top of this file).
    enum class Packing {
        kSegments,  // many blocks per segment, split and merged: CUDA
        kOwnBlocks  // one system allocation per block, reused for the same bin only: CPU
    };

    void* allocate(size_t nbytes) override;
    void deallocate(void* ptr, size_t nbytes) override;
    AllocatorStats stats() const override;
    void empty_cache() override;
    void record_stream(void* ptr, void* stream) override;
    // Freed blocks still waiting for work on other streams (record_stream).
    size_t pending_frees() const;

    // What the allocator calls itself in errors ("cpu", "cuda:0").
    const std::string& label() const { return label_; }
    Packing packing() const { return packing_; }

    // The bytes an allocation of nbytes occupies and is counted as: bin_size(nbytes, packing()).
    size_t bin_size(size_t nbytes) const override { return bin_size(nbytes, packing_); }
    // kSegments: nbytes rounded up to 512. kOwnBlocks: the 25 % bin, a multiple of 64.
    static size_t bin_size(size_t nbytes, Packing packing);
    // The size of the system allocation made when no cached block fits bin_size(nbytes, packing):
    // a segment (kSegments), or the block itself (kOwnBlocks).
    static size_t segment_size(size_t nbytes, Packing packing);

  protected:
    CachingAllocator(std::string label, Packing packing);
    ~CachingAllocator() override;
    // A segment of nbytes, or nullptr when the system is out of memory (any other failure throws).
    virtual void* system_allocate(size_t nbytes) = 0;
    virtual void system_free(void* ptr) = 0;
    // Events on other streams. record_event records one on `stream` and returns it, or nullptr
    // when there is nothing to wait for; it must not throw (deallocate runs in destructors): on a
    // failure it waits for the stream itself and returns nullptr. event_done polls without
    // blocking; wait_event blocks until the event has completed (called without the lock);
    // release_event destroys it. The defaults: no streams.
    virtual void* record_event(void* stream) noexcept {
        (void)stream;
        return nullptr;
    }
    virtual bool event_done(void* event) noexcept {
        (void)event;
        return true;
    }
    virtual void wait_event(void* event) noexcept { (void)event; }
    virtual void release_event(void* event) noexcept { (void)event; }

  private:
    // A piece of a segment; the pieces of one segment form a list in address order. Under
    // kOwnBlocks every block is a whole system allocation, with no neighbours.
    struct Block {
        char* ptr;
        size_t size;
        bool small;  // which pool the segment belongs to
        bool allocated = false;
        size_t counted = 0;  // bin_size of the allocation while allocated
        Block* prev = nullptr;
        Block* next = nullptr;
        std::vector<void*> streams = {};  // other streams that use it (record_stream)
    };
    // A freed block and the events it waits for before it rejoins the cache.
    struct PendingFree {
        Block* block;
        std::vector<void*> events;
    };
    struct BySize {
        bool operator()(const Block* a, const Block* b) const {
            return a->size != b->size ? a->size < b->size : a->ptr < b->ptr;
        }
    };
    using Pool = std::set<Block*, BySize>;

    Pool& pool(bool small) { return small ? small_free_ : large_free_; }
    // Hands out the best-fitting cached block for a request of size bytes, or nullptr. Lock held.
    void* take_cached(size_t size);
    // Carves the request out of free block b (in its pool), splitting when worth it. Lock held.
    void* hand_out(Block* b, size_t size);
    // Removes every wholly free segment from the cache and returns their bases. Lock held.
    std::vector<void*> detach_free_segments();
    // system_free on each base, lock NOT held; the first failure is rethrown after trying all.
    void release(const std::vector<void*>& bases);
    // Returns block b to its pool, merged with its free neighbours. Lock held.
    void free_block(Block* b);
    // Frees the pending blocks whose events have all completed. Lock held.
    void process_pending();
    // Waits for every pending event (lock NOT held while waiting), then frees those blocks.
    void drain_pending(std::unique_lock<std::mutex>& lock);
    std::string out_of_memory_message(size_t nbytes, size_t size, size_t segment,
                                      size_t released) const;

    std::string label_;
    Packing packing_;
    mutable std::mutex mutex_;
    Pool small_free_, large_free_;
    std::unordered_map<void*, Block*> allocated_;
    std::vector<PendingFree> pending_;
    AllocatorStats stats_;
};

// The process-wide CPU allocator (64-byte aligned).
Allocator& cpu_allocator();

// The allocator of a device: cpu_allocator() or the CUDA caching allocator of device.index.
Allocator& allocator_for(Device device);

}  // namespace minidl
