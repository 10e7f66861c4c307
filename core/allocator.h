// core/allocator.h — caching allocators: memory is taken from the system once and reused.
//
// A training loop allocates the same sizes every step (activations, gradients, temporaries), so a
// per-device cache of freed blocks, binned by size, turns nearly every allocation after the first
// step into a free-list pop: no malloc/free (and no cudaMalloc/cudaFree) in the steady state.
//
// Sizes are rounded up to bins of 2^k * {1, 1.25, 1.5, 1.75} (at most 25 % waste), then to a
// multiple of 64 bytes; CPU blocks are 64-byte aligned (one cache line, the widest AVX-512 load).
// On CUDA a freed block may be reused at once because all work on a device runs on one stream, in
// order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/device.h"

namespace minidl {

struct AllocatorStats {
    uint64_t system_allocs = 0;  // blocks taken from the system (malloc / cudaMalloc)
    uint64_t system_frees = 0;   // blocks given back (empty_cache)
    uint64_t cache_hits = 0;     // allocations served from the free lists
    size_t bytes_in_use = 0;     // bytes handed out and not yet returned (binned sizes)
    size_t bytes_reserved = 0;   // bytes held from the system: in use + cached
    size_t peak_bytes_in_use = 0;
};

class Allocator {
  public:
    virtual ~Allocator() = default;
    // A block of at least nbytes (nbytes > 0). Never returns nullptr: throws on exhaustion.
    virtual void* allocate(size_t nbytes) = 0;
    // Returns a block from allocate(nbytes) with the same nbytes.
    virtual void deallocate(void* ptr, size_t nbytes) = 0;
    virtual AllocatorStats stats() const = 0;
    // Gives every cached (free) block back to the system.
    virtual void empty_cache() = 0;
};

// The size-binned cache shared by the CPU and CUDA allocators; subclasses say how a block is
// taken from and given back to the system.
class CachingAllocator : public Allocator {
  public:
    void* allocate(size_t nbytes) override;
    void deallocate(void* ptr, size_t nbytes) override;
    AllocatorStats stats() const override;
    void empty_cache() override;

    // The bin an allocation of nbytes is served from.
    static size_t bin_size(size_t nbytes);

  protected:
    ~CachingAllocator() override = default;
    virtual void* system_allocate(size_t nbytes) = 0;
    virtual void system_free(void* ptr) = 0;

  private:
    mutable std::mutex mutex_;
    std::unordered_map<size_t, std::vector<void*>> free_blocks_;
    AllocatorStats stats_;
};

// The process-wide CPU allocator (64-byte aligned).
Allocator& cpu_allocator();

// The allocator of a device: cpu_allocator() or the CUDA caching allocator of device.index.
Allocator& allocator_for(Device device);

}  // namespace minidl
