// tests/core/test_allocator_streams.cpp — blocks used on other streams (core/allocator.h's
// record_stream): the segment packing over a fake system with fake streams, whose events complete
// when the test says their stream's work is done, or when the allocator waits for them.
#include <doctest/doctest.h>

#include <cstdlib>
#include <map>
#include <set>

#include "core/allocator.h"
#include "core/check.h"
#include "tests/support/allocator_stats.h"

using namespace minidl;
using minidl::test::same;

namespace {

constexpr size_t kMiB = 1024 * 1024;

// The segment packing over malloc with fake streams: an event recorded on a stream completes when
// the test says that stream's work is done (complete), or when the allocator waits for it.
class StreamAllocator final : public CachingAllocator {
  public:
    explicit StreamAllocator(size_t budget)
        : CachingAllocator("fake:5", Packing::kSegments), budget_(budget) {}
    ~StreamAllocator() override {
        for (auto& [ptr, n] : segments_)
            std::free(ptr);
        for (Event* e : events_)
            delete e;
    }

    // Every event recorded on `stream` so far has completed.
    void complete(void* stream) {
        for (Event* e : events_)
            if (e->stream == stream) e->done = true;
    }
    size_t live_events() const { return events_.size(); }
    int created = 0, released = 0, waited = 0;
    bool events_fail = false;  // record_event cannot make one (it then "waits for the stream")

  protected:
    void* system_allocate(size_t nbytes) override {
        if (system_bytes_ + nbytes > budget_) return nullptr;
        void* ptr = std::aligned_alloc(64, nbytes);
        REQUIRE(ptr != nullptr);
        segments_[ptr] = nbytes;
        system_bytes_ += nbytes;
        return ptr;
    }
    void system_free(void* ptr) override {
        system_bytes_ -= segments_.at(ptr);
        segments_.erase(ptr);
        std::free(ptr);
    }
    void* record_event(void* stream) noexcept override {
        if (events_fail) return nullptr;
        ++created;
        return *events_.insert(new Event{stream, false}).first;
    }
    bool event_done(void* event) noexcept override { return static_cast<Event*>(event)->done; }
    void wait_event(void* event) noexcept override {
        ++waited;
        static_cast<Event*>(event)->done = true;
    }
    void release_event(void* event) noexcept override {
        ++released;
        events_.erase(static_cast<Event*>(event));
        delete static_cast<Event*>(event);
    }

  private:
    struct Event {
        void* stream;
        bool done;
    };
    size_t budget_, system_bytes_ = 0;
    std::map<void*, size_t> segments_;
    std::set<Event*> events_;
};

void* const kStreamA = reinterpret_cast<void*>(0xa0);
void* const kStreamB = reinterpret_cast<void*>(0xb0);

}  // namespace

TEST_CASE("core/allocator: a block used on other streams is reused only after their work") {
    StreamAllocator alloc(64 * kMiB);
    void* a = alloc.allocate(4096);
    alloc.record_stream(a, kStreamA);
    alloc.record_stream(a, kStreamA);  // once per stream
    alloc.record_stream(a, kStreamB);
    alloc.deallocate(a, 4096);
    CHECK(alloc.pending_frees() == 1);
    CHECK(alloc.created == 2);
    CHECK(alloc.stats().bytes_in_use == 4096);  // still busy on the two streams
    void* b = alloc.allocate(4096);
    CHECK(b != a);
    alloc.complete(kStreamA);
    void* c = alloc.allocate(4096);  // stream B may still read a
    CHECK(c != a);
    CHECK(alloc.pending_frees() == 1);
    alloc.complete(kStreamB);
    void* d = alloc.allocate(4096);  // both done: a is free, and the best fit
    CHECK(d == a);
    CHECK(alloc.pending_frees() == 0);
    CHECK(alloc.released == 2);
    CHECK(alloc.live_events() == 0);
    // A block no other stream used is reused at once, as before.
    alloc.deallocate(c, 4096);
    CHECK(alloc.pending_frees() == 0);
    CHECK(alloc.allocate(4096) == c);
    // A marked block that is reused starts unmarked: its next free is immediate.
    alloc.deallocate(d, 4096);
    CHECK(alloc.pending_frees() == 0);
    CHECK(alloc.created == 2);
}

TEST_CASE("core/allocator: out of memory waits for the pending blocks' streams before failing") {
    // One 2 MiB segment of the small pool, both halves taken; the first waits for stream A.
    StreamAllocator alloc(2 * kMiB);
    void* a = alloc.allocate(kMiB);
    void* b = alloc.allocate(kMiB);
    alloc.record_stream(a, kStreamA);
    alloc.deallocate(a, kMiB);
    CHECK(alloc.pending_frees() == 1);
    void* c = alloc.allocate(kMiB);  // no memory left: waits for A's event, then reuses a
    CHECK(c == a);
    CHECK(alloc.waited == 1);
    CHECK(alloc.pending_frees() == 0);
    CHECK(alloc.live_events() == 0);
    // Nothing pending and nothing free: the usual error.
    CHECK_THROWS_AS(alloc.allocate(kMiB), OutOfMemoryError);
    alloc.deallocate(b, kMiB);
    alloc.deallocate(c, kMiB);
}

TEST_CASE("core/allocator: empty_cache returns a pending block's segment once its stream is done") {
    StreamAllocator alloc(64 * kMiB);
    void* a = alloc.allocate(4096);
    alloc.record_stream(a, kStreamA);
    alloc.deallocate(a, 4096);
    alloc.empty_cache();  // the segment still holds a busy block
    CHECK(alloc.stats().bytes_reserved == 2 * kMiB);
    alloc.complete(kStreamA);
    alloc.empty_cache();
    CHECK(alloc.stats().bytes_reserved == 0);
    CHECK(alloc.stats().bytes_in_use == 0);
}

TEST_CASE(
    "core/allocator: record_stream checks its pointer, and a stream without an event frees at "
    "once") {
    StreamAllocator alloc(64 * kMiB);
    void* a = alloc.allocate(4096);
    const AllocatorStats before = alloc.stats();
    CHECK_THROWS_AS(alloc.record_stream(static_cast<char*>(a) + 512, kStreamA), ValueError);
    CHECK(same(alloc.stats(), before));
    // record_event could not make an event (it waited for the stream itself): nothing pending.
    alloc.events_fail = true;
    alloc.record_stream(a, kStreamA);
    alloc.deallocate(a, 4096);
    CHECK(alloc.pending_frees() == 0);
    CHECK(alloc.allocate(4096) == a);
    // The CPU allocator has no streams: record_stream changes nothing.
    void* p = cpu_allocator().allocate(100);
    cpu_allocator().record_stream(p, kStreamA);
    cpu_allocator().deallocate(p, 100);
}
