// core/sync_counter.h — counting events from any thread, and measuring how many happened between
// two points of a program.
//
//   SyncCounter counter;            // process-wide in practice (cuda::host_sync_counter())
//   counter.add();                  // from any thread
//   SyncScope scope(counter);       // remembers the count now
//   ... work ...
//   scope.count();                  // events since the scope began, from every thread
//
// The CUDA backend counts its host-blocking synchronisations with one (core/backend.h:
// cuda::host_syncs, cuda::HostSyncScope), so a test can state "a training step waits for the GPU
// at most once". Header-only and free of CUDA so that the CPU test suite checks the counting.
//
// There is no reset on purpose: two scopes measuring overlapping regions (two threads, or nested
// scopes) would corrupt each other's counts if either could reset the shared counter. A scope
// measures a difference instead, which stays right however many scopes are open.
#pragma once

#include <atomic>
#include <cstdint>

namespace minidl {

// A monotonically increasing count. Relaxed atomics: the count orders nothing else, and a reader
// on another thread sees each increment once it is visible there (a join or a mutex in between
// makes it so).
class SyncCounter {
  public:
    void add(uint64_t n = 1) noexcept { count_.fetch_add(n, std::memory_order_relaxed); }
    uint64_t count() const noexcept { return count_.load(std::memory_order_relaxed); }

  private:
    std::atomic<uint64_t> count_{0};
};

// The events counted by `counter` since this scope was constructed. The counter must outlive it.
class SyncScope {
  public:
    explicit SyncScope(const SyncCounter& counter) noexcept
        : counter_(&counter), start_(counter.count()) {}
    uint64_t count() const noexcept { return counter_->count() - start_; }

  private:
    const SyncCounter* counter_;
    uint64_t start_;
};

}  // namespace minidl
