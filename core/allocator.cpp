// core/allocator.cpp — the caching allocator and its CPU instance (see allocator.h for the two
// packings: segments split and merged for CUDA, one system allocation per 25 % bin for the CPU).
#include "core/allocator.h"

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <utility>

#include "core/backend.h"

namespace minidl {

namespace {

constexpr size_t kMiB = size_t{1} << 20;
constexpr size_t kRound = 512;               // every block size and offset is a multiple of this
constexpr size_t kSmallRequest = kMiB;       // at most this: the small pool
constexpr size_t kSmallSegment = 2 * kMiB;   // the small pool's segments
constexpr size_t kLargeSegment = 20 * kMiB;  // large-pool segments for requests under kHugeRequest
constexpr size_t kHugeRequest = 10 * kMiB;   // at least this: a segment of its own size...
constexpr size_t kHugeRound = 2 * kMiB;      // ...rounded up to this
// A large block keeps a tail of at most this instead of splitting it off: such a tail could only
// serve a small request, and small requests have their own pool.
constexpr size_t kLargeSplitMin = kMiB;

std::string format_bytes(size_t n) {
    char buf[64];
    if (n >= (size_t{1} << 30))
        std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(n) / (1 << 30));
    else
        std::snprintf(buf, sizeof buf, "%.2f MiB", static_cast<double>(n) / (1 << 20));
    return std::to_string(n) + " bytes (" + buf + ")";
}

}  // namespace

size_t CachingAllocator::bin_size(size_t nbytes, Packing packing) {
    if (packing == Packing::kOwnBlocks) {
        if (nbytes <= 64) return 64;
        // 2^k * {1, 1.25, 1.5, 1.75}: the power of two at or below, then the quarter step above.
        // Coarse bins let a freed block serve the next request of a nearby size exactly.
        const size_t top = std::bit_floor(nbytes);
        const size_t quarter = top / 4;
        const size_t bin = (nbytes + quarter - 1) / quarter * quarter;
        // A multiple of 64 (aligned_alloc wants the size to be a multiple of the alignment).
        return (bin + 63) / 64 * 64;
    }
    if (nbytes == 0) return kRound;
    return (nbytes + kRound - 1) / kRound * kRound;
}

size_t CachingAllocator::segment_size(size_t nbytes, Packing packing) {
    const size_t size = bin_size(nbytes, packing);
    if (packing == Packing::kOwnBlocks) return size;
    if (size <= kSmallRequest) return kSmallSegment;
    if (size < kHugeRequest) return kLargeSegment;
    return (size + kHugeRound - 1) / kHugeRound * kHugeRound;
}

CachingAllocator::CachingAllocator(std::string label, Packing packing)
    : label_(std::move(label)), packing_(packing) {}

CachingAllocator::~CachingAllocator() {
    // The segments cannot be given back here (system_free belongs to the destroyed subclass); the
    // process-wide instances are never destroyed anyway. Only the bookkeeping is freed.
    std::vector<Block*> heads;
    for (Block* b : small_free_)
        heads.push_back(b);
    for (Block* b : large_free_)
        heads.push_back(b);
    for (auto& [ptr, b] : allocated_)
        heads.push_back(b);
    for (const PendingFree& p : pending_)
        heads.push_back(p.block);
    for (Block* b : heads)
        delete b;
}

void* CachingAllocator::take_cached(size_t size) {
    Pool& p = pool(size <= kSmallRequest);
    Block key{nullptr, size, false};
    auto it = p.lower_bound(&key);  // the smallest free block of at least size bytes
    if (it == p.end()) return nullptr;
    // An own block serves its own bin only: a bigger one would hold more than the request needs
    // for as long as the tensor lives, and it cannot be split.
    if (packing_ == Packing::kOwnBlocks && (*it)->size != size) return nullptr;
    ++stats_.cache_hits;
    return hand_out(*it, size);
}

void* CachingAllocator::hand_out(Block* b, size_t size) {
    Pool& p = pool(b->small);
    const size_t rest = b->size - size;
    const bool split =
        packing_ == Packing::kSegments && (b->small ? rest >= kRound : rest > kLargeSplitMin);
    // Everything that may throw (allocating the tail's Block, the map node) comes before the first
    // change, so that a failure leaves the cache as it was.
    Block* tail = split ? new Block{b->ptr + size, rest, b->small} : nullptr;
    try {
        allocated_.emplace(b->ptr, b);
    } catch (...) {
        delete tail;
        throw;
    }
    p.erase(b);
    stats_.bytes_cached -= b->size;
    if (tail != nullptr) {
        tail->prev = b;
        tail->next = b->next;
        if (b->next != nullptr) b->next->prev = tail;
        b->next = tail;
        b->size = size;
        p.insert(tail);
        stats_.bytes_cached += tail->size;
    }
    b->allocated = true;
    b->counted = size;
    stats_.bytes_in_use += size;
    if (stats_.bytes_in_use > stats_.peak_bytes_in_use)
        stats_.peak_bytes_in_use = stats_.bytes_in_use;
    return b->ptr;
}

std::vector<void*> CachingAllocator::detach_free_segments() {
    std::vector<void*> bases;
    for (Pool* p : {&small_free_, &large_free_}) {
        for (auto it = p->begin(); it != p->end();) {
            Block* b = *it;
            // Free neighbours are always merged, so a wholly free segment is one lone block.
            if (b->prev != nullptr || b->next != nullptr) {
                ++it;
                continue;
            }
            bases.push_back(b->ptr);
            stats_.bytes_cached -= b->size;
            stats_.bytes_reserved -= b->size;
            ++stats_.system_frees;
            it = p->erase(it);
            delete b;
        }
    }
    return bases;
}

void CachingAllocator::release(const std::vector<void*>& bases) {
    std::exception_ptr first;
    for (void* base : bases) {
        try {
            system_free(base);
        } catch (...) {
            if (!first) first = std::current_exception();
        }
    }
    if (first) std::rethrow_exception(first);
}

void* CachingAllocator::allocate(size_t nbytes) {
    const size_t size = bin_size(nbytes, packing_);
    const size_t segment = segment_size(nbytes, packing_);
    std::unique_lock<std::mutex> lock(mutex_);
    process_pending();
    if (void* ptr = take_cached(size)) return ptr;
    // system_allocate runs under the lock (it does not call back into the allocator); a throw
    // from it (a CUDA error other than out-of-memory) leaves nothing changed.
    void* base = system_allocate(segment);
    size_t released = 0;
    if (base == nullptr && !pending_.empty()) {
        // Out of memory while freed blocks wait for other streams: wait for them first.
        drain_pending(lock);
        if (void* ptr = take_cached(size)) return ptr;
        base = system_allocate(segment);
    }
    if (base == nullptr) {
        // Out of memory: give the wholly free segments back, outside the lock (cudaFree waits for
        // the device), then try once more. Another thread may free a fitting block meanwhile.
        const std::vector<void*> bases = detach_free_segments();
        released = bases.size();
        lock.unlock();
        release(bases);
        lock.lock();
        if (void* ptr = take_cached(size)) return ptr;
        if (released > 0) base = system_allocate(segment);
        if (base == nullptr)
            throw OutOfMemoryError(out_of_memory_message(nbytes, size, segment, released));
    }
    Block* b = nullptr;
    try {
        b = new Block{static_cast<char*>(base), segment, size <= kSmallRequest};
        pool(b->small).insert(b);
    } catch (...) {
        delete b;
        lock.unlock();
        system_free(base);
        throw;
    }
    ++stats_.system_allocs;
    stats_.bytes_reserved += segment;
    stats_.bytes_cached += segment;
    return hand_out(b, size);
}

std::string CachingAllocator::out_of_memory_message(size_t nbytes, size_t size, size_t segment,
                                                    size_t released) const {
    return detail::concat(
        "allocate: out of memory on ", label_, ", requested ", format_bytes(nbytes),
        " (a new segment of ", format_bytes(segment), " for a block of ", size, " bytes); in use ",
        format_bytes(stats_.bytes_in_use), ", cached ", format_bytes(stats_.bytes_cached),
        " in free blocks of partly used segments, reserved ", format_bytes(stats_.bytes_reserved),
        " from the system; ", released,
        " wholly free segments were given back before the retry. Hint: free tensors that are no "
        "longer needed, or reduce the batch size or sequence length");
}

void CachingAllocator::deallocate(void* ptr, size_t nbytes) {
    if (ptr == nullptr) return;
    std::lock_guard<std::mutex> lock(mutex_);
    auto found = allocated_.find(ptr);
    MDL_ASSERT(found != allocated_.end(), "deallocate(", ptr, ", ", nbytes, ") on ", label_,
               ": not a block this allocator handed out (or freed twice)");
    Block* b = found->second;
    MDL_ASSERT(b->counted == bin_size(nbytes, packing_), "deallocate(", ptr, ", ", nbytes, ") on ",
               label_, ": the block was allocated for ", b->counted, " bytes");
    // Used on other streams: the block rejoins the cache only once their work, queued by now, is
    // done. What may throw (the vectors' room) comes before the first change.
    std::vector<void*> events;
    if (!b->streams.empty()) {
        pending_.reserve(pending_.size() + 1);
        events.reserve(b->streams.size());
    }
    allocated_.erase(found);
    if (!b->streams.empty()) {
        for (void* stream : b->streams)
            if (void* e = record_event(stream)) events.push_back(e);
        b->streams.clear();
        if (!events.empty()) {
            pending_.push_back({b, std::move(events)});
            return;
        }
    }
    free_block(b);
}

void CachingAllocator::free_block(Block* b) {
    stats_.bytes_in_use -= b->counted;
    b->allocated = false;
    b->counted = 0;
    Pool& p = pool(b->small);
    // Merge with the free neighbours of the same segment, so that it can become one block again
    // (an own block has none).
    // Folds `right`, the free block after `left` in their segment, into `left`.
    const auto absorb = [](Block* left, Block* right) {
        left->size += right->size;
        left->next = right->next;
        if (right->next != nullptr) right->next->prev = left;
        delete right;
    };
    // The pool orders blocks by size: a neighbour leaves it before its size changes.
    if (Block* prev = b->prev; prev != nullptr && !prev->allocated) {
        p.erase(prev);
        stats_.bytes_cached -= prev->size;
        absorb(prev, b);
        b = prev;
    }
    if (Block* next = b->next; next != nullptr && !next->allocated) {
        p.erase(next);
        stats_.bytes_cached -= next->size;
        absorb(b, next);
    }
    p.insert(b);
    stats_.bytes_cached += b->size;
}

void CachingAllocator::process_pending() {
    for (size_t i = 0; i < pending_.size();) {
        PendingFree& p = pending_[i];
        const bool done =
            std::all_of(p.events.begin(), p.events.end(), [&](void* e) { return event_done(e); });
        if (!done) {
            ++i;
            continue;
        }
        for (void* e : p.events)
            release_event(e);
        Block* b = p.block;
        pending_[i] = std::move(pending_.back());
        pending_.pop_back();
        free_block(b);
    }
}

void CachingAllocator::drain_pending(std::unique_lock<std::mutex>& lock) {
    std::vector<void*> events;
    for (const PendingFree& p : pending_)
        events.insert(events.end(), p.events.begin(), p.events.end());
    lock.unlock();
    for (void* e : events)
        wait_event(e);  // the events stay alive: only process_pending releases them
    lock.lock();
    process_pending();
}

void CachingAllocator::record_stream(void* ptr, void* stream) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto found = allocated_.find(ptr);
    MDL_CHECK(found != allocated_.end(), ValueError, "record_stream(", ptr, ") on ", label_,
              ": not the start of a block this allocator handed out (or already freed)");
    std::vector<void*>& streams = found->second->streams;
    if (std::find(streams.begin(), streams.end(), stream) == streams.end())
        streams.push_back(stream);
}

size_t CachingAllocator::pending_frees() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return pending_.size();
}

AllocatorStats CachingAllocator::stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
}

void CachingAllocator::empty_cache() {
    std::vector<void*> bases;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        process_pending();
        bases = detach_free_segments();
    }
    release(bases);
}

namespace {

class CpuAllocator final : public CachingAllocator {
  public:
    // One malloc per block: AddressSanitizer then sees every tensor as its own heap block.
    CpuAllocator() : CachingAllocator("cpu", Packing::kOwnBlocks) {}

  protected:
    void* system_allocate(size_t nbytes) override {
        // aligned_alloc wants a size that is a multiple of the alignment; bins >= 64 are.
        return std::aligned_alloc(64, nbytes);
    }
    void system_free(void* ptr) override { std::free(ptr); }
};

}  // namespace

Allocator& cpu_allocator() {
    // Leaked on purpose: tensors held by static objects may be freed after main returns.
    static CpuAllocator* instance = new CpuAllocator();
    return *instance;
}

Allocator& allocator_for(Device device) {
    if (device.is_cpu()) return cpu_allocator();
    return cuda::allocator(device.index);
}

}  // namespace minidl
