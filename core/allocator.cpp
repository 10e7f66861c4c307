// core/allocator.cpp — the size-binned caching allocator and its CPU instance (see allocator.h).
#include "core/allocator.h"

#include <bit>
#include <cstdlib>
#include <new>

#include "core/backend.h"
#include "core/check.h"

namespace minidl {

size_t CachingAllocator::bin_size(size_t nbytes) {
    if (nbytes <= 64) return 64;
    // 2^k * {1, 1.25, 1.5, 1.75}: take the power of two at or below, then the quarter step above.
    const size_t top = std::bit_floor(nbytes);
    const size_t quarter = top / 4;
    const size_t bin = (nbytes + quarter - 1) / quarter * quarter;
    // A multiple of 64 (aligned_alloc wants the size to be a multiple of the alignment).
    return (bin + 63) / 64 * 64;
}

void* CachingAllocator::allocate(size_t nbytes) {
    const size_t bin = bin_size(nbytes);
    std::lock_guard<std::mutex> lock(mutex_);
    void* ptr = nullptr;
    auto it = free_blocks_.find(bin);
    if (it != free_blocks_.end() && !it->second.empty()) {
        ptr = it->second.back();
        it->second.pop_back();
        ++stats_.cache_hits;
    } else {
        ptr = system_allocate(bin);
        if (ptr == nullptr) {
            // Out of memory: give the cache back and try once more before failing.
            for (auto& [size, blocks] : free_blocks_) {
                for (void* p : blocks)
                    system_free(p);
                stats_.system_frees += blocks.size();
                stats_.bytes_reserved -= size * blocks.size();
                blocks.clear();
            }
            ptr = system_allocate(bin);
            if (ptr == nullptr) throw std::bad_alloc();
        }
        ++stats_.system_allocs;
        stats_.bytes_reserved += bin;
    }
    stats_.bytes_in_use += bin;
    if (stats_.bytes_in_use > stats_.peak_bytes_in_use)
        stats_.peak_bytes_in_use = stats_.bytes_in_use;
    return ptr;
}

void CachingAllocator::deallocate(void* ptr, size_t nbytes) {
    if (ptr == nullptr) return;
    const size_t bin = bin_size(nbytes);
    std::lock_guard<std::mutex> lock(mutex_);
    free_blocks_[bin].push_back(ptr);
    stats_.bytes_in_use -= bin;
}

AllocatorStats CachingAllocator::stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
}

void CachingAllocator::empty_cache() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [size, blocks] : free_blocks_) {
        for (void* p : blocks)
            system_free(p);
        stats_.system_frees += blocks.size();
        stats_.bytes_reserved -= size * blocks.size();
    }
    free_blocks_.clear();
}

namespace {

class CpuAllocator final : public CachingAllocator {
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
