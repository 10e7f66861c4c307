// tests/core/test_allocator.cpp — both packings of core/allocator.h's cache over a fake system.
//
// BudgetAllocator takes its segments (or blocks) from malloc, refuses (returns nullptr, as
// cudaMalloc's out-of-memory does) past a byte budget, and counts what it was asked for, so that
// each test can say exactly how many system allocations the cache took and gave back. The memory
// is never touched: only the addresses matter. The tests without "own blocks" in their names run
// the segment packing that CUDA uses; those with it, the CPU's one allocation per block.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/allocator.h"
#include "core/check.h"
#include "tests/support/allocator_stats.h"

using namespace minidl;
using minidl::test::same;

namespace {

constexpr size_t kKiB = 1024;
constexpr size_t kMiB = 1024 * 1024;

class BudgetAllocator final : public CachingAllocator {
  public:
    explicit BudgetAllocator(size_t budget, Packing packing = Packing::kSegments)
        : CachingAllocator("fake:3", packing), budget_(budget) {}
    ~BudgetAllocator() override {
        for (auto& [ptr, n] : segments_)
            std::free(ptr);
    }

    size_t system_bytes = 0;
    size_t peak_system_bytes = 0;
    size_t live_system_allocations() const { return segments_.size(); }
    int refused = 0;
    bool single_threaded = true;  // the books can be compared with system_bytes

  protected:
    void* system_allocate(size_t nbytes) override {
        std::lock_guard<std::mutex> lock(mutex_);
        if (system_bytes + nbytes > budget_) {
            ++refused;
            return nullptr;
        }
        void* ptr = std::aligned_alloc(64, nbytes);
        REQUIRE(ptr != nullptr);
        segments_[ptr] = nbytes;
        system_bytes += nbytes;
        peak_system_bytes = std::max(peak_system_bytes, system_bytes);
        return ptr;
    }
    void system_free(void* ptr) override {
        // Calls back into the allocator: this would deadlock if the cache held its mutex here.
        // The segment is already out of the books when the system is asked to take it back.
        const size_t reserved = stats().bytes_reserved;
        std::lock_guard<std::mutex> lock(mutex_);
        if (single_threaded) CHECK(reserved <= system_bytes - segments_.at(ptr));
        auto it = segments_.find(ptr);
        REQUIRE(it != segments_.end());  // only whole segments, each once
        system_bytes -= it->second;
        segments_.erase(it);
        std::free(ptr);
    }

  private:
    size_t budget_;
    std::mutex mutex_;  // system_free runs outside the cache's lock, concurrently
    std::map<void*, size_t> segments_;
};

// 4 threads, each allocating 2,000 blocks of size(rng) bytes and freeing them in random order (at
// most 17 alive), emptying the cache now and then; every block is freed at the end.
void run_threads(BudgetAllocator& alloc, size_t (*size)(std::mt19937&)) {
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&alloc, size, t] {
            std::mt19937 rng(static_cast<unsigned>(t));
            std::vector<std::pair<void*, size_t>> mine;
            for (int i = 0; i < 2000; ++i) {
                const size_t nbytes = size(rng);
                mine.emplace_back(alloc.allocate(nbytes), nbytes);
                if (mine.size() > 16 || (i % 97 == 0)) {
                    const size_t k = rng() % mine.size();
                    alloc.deallocate(mine[k].first, mine[k].second);
                    mine.erase(mine.begin() + static_cast<std::ptrdiff_t>(k));
                }
                if (i % 500 == 0) alloc.empty_cache();
            }
            for (auto& [p, n] : mine)
                alloc.deallocate(p, n);
        });
    }
    for (std::thread& th : threads)
        th.join();
}

}  // namespace

TEST_CASE("core/allocator: random sizes reuse split blocks and stay within 2x the live bytes") {
    // 1000 allocations of 1 KiB..8 MiB (log-uniform, so both pools are used), at most 48 alive,
    // freed in random order. Exact-size bins would keep a block of every size ever seen; without
    // splitting every 1 KiB request would hold a 2 MiB segment.
    BudgetAllocator alloc(size_t{1} << 40);
    std::mt19937_64 rng(7);
    std::uniform_real_distribution<double> log2_size(10.0, 23.0);
    struct Live {
        char* ptr;
        size_t nbytes;
    };
    std::vector<Live> live;
    std::map<char*, size_t> by_address;  // to check that no two live blocks overlap
    size_t live_bytes = 0, peak_live_bytes = 0;
    auto free_random = [&] {
        const size_t i = rng() % live.size();
        alloc.deallocate(live[i].ptr, live[i].nbytes);
        live_bytes -= live[i].nbytes;
        by_address.erase(live[i].ptr);
        live[i] = live.back();
        live.pop_back();
    };
    for (int i = 0; i < 1000; ++i) {
        const size_t nbytes = static_cast<size_t>(std::exp2(log2_size(rng)));
        char* p = static_cast<char*>(alloc.allocate(nbytes));
        REQUIRE(reinterpret_cast<uintptr_t>(p) % 64 == 0);
        auto next = by_address.lower_bound(p);
        if (next != by_address.end()) REQUIRE(p + nbytes <= next->first);
        if (next != by_address.begin()) {
            auto prev = std::prev(next);
            REQUIRE(prev->first + prev->second <= p);
        }
        by_address[p] = nbytes;
        live.push_back({p, nbytes});
        live_bytes += nbytes;
        peak_live_bytes = std::max(peak_live_bytes, live_bytes);
        const size_t keep = 1 + rng() % 48;
        while (live.size() > keep)
            free_random();
    }
    while (!live.empty())
        free_random();
    const AllocatorStats s = alloc.stats();
    CAPTURE(peak_live_bytes);
    CAPTURE(alloc.peak_system_bytes);
    CAPTURE(s.system_allocs);
    CHECK(alloc.peak_system_bytes <= 2 * peak_live_bytes);
    CHECK(s.cache_hits + s.system_allocs == 1000);
    CHECK(s.bytes_in_use == 0);
    CHECK(s.peak_bytes_in_use >= peak_live_bytes);
    CHECK(s.bytes_cached == s.bytes_reserved);  // every segment merged back into one free block
    CHECK(s.bytes_reserved == alloc.system_bytes);
    alloc.empty_cache();
    CHECK(alloc.system_bytes == 0);
    CHECK(alloc.stats().system_frees == s.system_allocs);
    CHECK(alloc.stats().bytes_reserved == 0);
}

TEST_CASE("core/allocator: a free block is split for smaller requests and merged back") {
    BudgetAllocator alloc(size_t{1} << 40);
    SUBCASE("large pool") {
        // 20 MiB is a segment of its own; two 10 MiB halves split it, freeing both merges it.
        void* whole = alloc.allocate(20 * kMiB);
        alloc.deallocate(whole, 20 * kMiB);
        char* a = static_cast<char*>(alloc.allocate(10 * kMiB));
        char* b = static_cast<char*>(alloc.allocate(10 * kMiB));
        CHECK(alloc.stats().system_allocs == 1);
        CHECK(a == whole);
        CHECK(b == a + 10 * kMiB);
        alloc.deallocate(b, 10 * kMiB);
        alloc.deallocate(a, 10 * kMiB);
        CHECK(alloc.stats().bytes_cached == 20 * kMiB);
        void* again = alloc.allocate(20 * kMiB);
        CHECK(again == whole);
        CHECK(alloc.stats().system_allocs == 1);
        CHECK(alloc.stats().cache_hits == 3);
        alloc.deallocate(again, 20 * kMiB);
    }
    SUBCASE("small pool") {
        // 2048 blocks of 1 KiB fill exactly one 2 MiB segment; freed in random order they merge
        // back into one block, which a 1 MiB request can then take.
        std::vector<void*> blocks;
        for (int i = 0; i < 2048; ++i)
            blocks.push_back(alloc.allocate(1000));
        CHECK(alloc.stats().system_allocs == 1);
        CHECK(alloc.stats().bytes_cached == 0);
        std::shuffle(blocks.begin(), blocks.end(), std::mt19937(5));
        for (void* p : blocks)
            alloc.deallocate(p, 1000);
        CHECK(alloc.stats().bytes_cached == 2 * kMiB);
        void* p = alloc.allocate(kMiB);
        void* q = alloc.allocate(kMiB);
        CHECK(alloc.stats().system_allocs == 1);
        alloc.deallocate(p, kMiB);
        alloc.deallocate(q, kMiB);
    }
    SUBCASE("a large block keeps a tail of at most 1 MiB") {
        // 19.5 MiB from a 20 MiB segment: the 0.5 MiB left could only serve the small pool.
        void* p = alloc.allocate(19 * kMiB + 512 * kKiB);
        const AllocatorStats s = alloc.stats();
        CHECK(s.bytes_in_use == 19 * kMiB + 512 * kKiB);
        CHECK(s.bytes_reserved == 20 * kMiB);
        CHECK(s.bytes_cached == 0);
        alloc.deallocate(p, 19 * kMiB + 512 * kKiB);
        CHECK(alloc.stats().bytes_cached == 20 * kMiB);
    }
    const AllocatorStats s = alloc.stats();
    CHECK(s.bytes_in_use == 0);
    alloc.empty_cache();
    CHECK(alloc.system_bytes == 0);
    CHECK(alloc.stats().system_frees == s.system_allocs);
}

TEST_CASE("core/allocator: out of memory gives back free segments, retries, then throws") {
    BudgetAllocator alloc(64 * kMiB);
    SUBCASE("the retry succeeds once the free segments are given back") {
        void* a = alloc.allocate(20 * kMiB);
        void* b = alloc.allocate(20 * kMiB);
        alloc.deallocate(a, 20 * kMiB);
        alloc.deallocate(b, 20 * kMiB);
        // 40 MiB cached in two 20 MiB segments, neither big enough; 40 + 30 > 64.
        void* c = alloc.allocate(30 * kMiB);
        CHECK(alloc.refused == 1);
        CHECK(alloc.stats().system_frees == 2);
        CHECK(alloc.stats().bytes_reserved == 30 * kMiB);
        CHECK(alloc.system_bytes == 30 * kMiB);
        alloc.deallocate(c, 30 * kMiB);
    }
    SUBCASE("nothing to give back: a clear error, and nothing changed") {
        void* keep = alloc.allocate(30 * kMiB);
        void* small = alloc.allocate(kKiB);
        alloc.deallocate(small, kKiB);  // a wholly free 2 MiB segment: given back on failure
        const AllocatorStats before = alloc.stats();
        std::string message;
        try {
            alloc.allocate(40 * kMiB);
            FAIL("expected OutOfMemoryError");
        } catch (const OutOfMemoryError& e) {
            message = e.what();
        }
        CAPTURE(message);
        CHECK(message.find("41943040 bytes") != std::string::npos);         // requested
        CHECK(message.find("fake:3") != std::string::npos);                 // the device
        CHECK(message.find("in use 31457280 bytes") != std::string::npos);  // 30 MiB
        CHECK(message.find("cached 0 bytes") != std::string::npos);
        CHECK(message.find("reserved 31457280 bytes") != std::string::npos);
        CHECK(message.find("1 wholly free segments were given back") != std::string::npos);
        // The small segment went back before the retry; the rest is as it was.
        AllocatorStats after = alloc.stats();
        CHECK(after.system_frees == before.system_frees + 1);
        CHECK(after.bytes_reserved == before.bytes_reserved - 2 * kMiB);
        CHECK(after.bytes_cached == before.bytes_cached - 2 * kMiB);
        CHECK(after.bytes_in_use == before.bytes_in_use);
        CHECK(after.peak_bytes_in_use == before.peak_bytes_in_use);
        CHECK(after.system_allocs == before.system_allocs);
        // A second failure with nothing cached changes nothing at all.
        CHECK_THROWS_AS(alloc.allocate(40 * kMiB), DeviceError);
        CHECK(same(alloc.stats(), after));
        CHECK(alloc.refused == 3);  // first try, retry, and the second call's only try
        // Still usable: 30 + 20 fits.
        void* more = alloc.allocate(20 * kMiB);
        CHECK(alloc.stats().bytes_in_use == 50 * kMiB);
        alloc.deallocate(more, 20 * kMiB);
        alloc.deallocate(keep, 30 * kMiB);
    }
    CHECK(alloc.stats().bytes_in_use == 0);
    CHECK(alloc.stats().bytes_reserved == alloc.system_bytes);
}

TEST_CASE("core/allocator: empty_cache gives back every wholly free segment and only those") {
    BudgetAllocator alloc(size_t{1} << 40);
    void* small_kept = alloc.allocate(kKiB);  // its 2 MiB segment stays: partly used
    void* small_freed = alloc.allocate(kKiB);
    void* huge = alloc.allocate(12 * kMiB);   // a 12 MiB segment, wholly used
    void* medium = alloc.allocate(4 * kMiB);  // a 20 MiB segment
    CHECK(alloc.stats().system_allocs == 3);
    CHECK(alloc.system_bytes == 34 * kMiB);
    alloc.deallocate(small_freed, kKiB);
    alloc.deallocate(medium, 4 * kMiB);
    alloc.deallocate(huge, 12 * kMiB);
    alloc.empty_cache();
    AllocatorStats s = alloc.stats();
    CHECK(s.system_frees == 2);
    CHECK(s.bytes_reserved == 2 * kMiB);
    CHECK(alloc.system_bytes == 2 * kMiB);
    CHECK(s.bytes_in_use == kKiB);
    CHECK(s.bytes_cached == 2 * kMiB - kKiB);
    alloc.deallocate(small_kept, kKiB);
    alloc.empty_cache();
    s = alloc.stats();
    CHECK(s.system_frees == 3);
    CHECK(s.bytes_reserved == 0);
    CHECK(s.bytes_cached == 0);
    CHECK(alloc.system_bytes == 0);
}

TEST_CASE("core/allocator: threads allocating and freeing concurrently leave it consistent") {
    BudgetAllocator alloc(size_t{1} << 40);
    alloc.single_threaded = false;
    run_threads(alloc, [](std::mt19937& rng) -> size_t { return size_t{1} << (6 + rng() % 18); });
    const AllocatorStats s = alloc.stats();
    CHECK(s.bytes_in_use == 0);
    CHECK(s.bytes_cached == s.bytes_reserved);
    CHECK(s.bytes_reserved == alloc.system_bytes);
    CHECK(s.cache_hits + s.system_allocs == 8000);
}

TEST_CASE("core/allocator: freeing a pointer it did not hand out is reported as a bug") {
    BudgetAllocator alloc(size_t{1} << 40);
    void* p = alloc.allocate(100);
    int other = 0;
    CHECK_THROWS_AS(alloc.deallocate(&other, 100), InternalError);
    CHECK_THROWS_AS(alloc.deallocate(p, 5000), InternalError);  // a different size than asked
    alloc.deallocate(p, 100);
    CHECK_THROWS_AS(alloc.deallocate(p, 100), InternalError);  // twice
    CHECK(alloc.stats().bytes_in_use == 0);
}

TEST_CASE("core/allocator: the segment packing rounds to 512 bytes") {
    for (size_t n : {1ul, 63ul, 64ul, 65ul, 100ul, 1000ul, 4097ul, 1000000ul}) {
        const size_t bin = CachingAllocator::bin_size(n, CachingAllocator::Packing::kSegments);
        CHECK(bin >= n);
        CHECK(bin % 512 == 0);
        CHECK(bin < n + 512);
    }
    BudgetAllocator alloc(size_t{1} << 40);
    CHECK(alloc.bin_size(1000) == 1024);
    CHECK(alloc.segment_size(1000, alloc.packing()) == 2 * kMiB);
}

// The CPU's packing: one system allocation per block, so that AddressSanitizer sees every tensor
// as its own heap block (core/allocator.h).
TEST_CASE("core/allocator: own blocks: every live block is its own system allocation") {
    BudgetAllocator alloc(size_t{1} << 40, CachingAllocator::Packing::kOwnBlocks);
    CHECK(alloc.bin_size(1000) == 1024);
    CHECK(alloc.bin_size(1100) == 1280);  // 1024 * 1.25
    CHECK(alloc.bin_size(40) == 64);
    // Many small blocks, which the segment packing would put into one 2 MiB segment.
    std::mt19937 rng(11);
    std::vector<std::pair<void*, size_t>> live;
    size_t binned = 0;
    for (int i = 0; i < 200; ++i) {
        const size_t nbytes = 1 + rng() % 4096;
        live.emplace_back(alloc.allocate(nbytes), nbytes);
        binned += alloc.bin_size(nbytes);
        CHECK(reinterpret_cast<uintptr_t>(live.back().first) % 64 == 0);
    }
    AllocatorStats s = alloc.stats();
    CHECK(s.cache_hits == 0);
    CHECK(s.system_allocs == 200);
    CHECK(alloc.live_system_allocations() == live.size());
    CHECK(s.bytes_in_use == binned);
    CHECK(s.bytes_reserved == binned);  // each allocation is exactly its bin: no slack
    CHECK(alloc.system_bytes == binned);
    CHECK(s.bytes_cached == 0);
    for (auto& [p, n] : live)
        alloc.deallocate(p, n);
    s = alloc.stats();
    CHECK(s.bytes_in_use == 0);
    CHECK(s.bytes_cached == binned);
    CHECK(s.bytes_reserved == binned);
    alloc.empty_cache();
    CHECK(alloc.live_system_allocations() == 0);
}

TEST_CASE("core/allocator: own blocks: a freed block serves the same bin, not a smaller one") {
    BudgetAllocator alloc(size_t{1} << 40, CachingAllocator::Packing::kOwnBlocks);
    SUBCASE("same bin: reused, no new system allocation") {
        void* p = alloc.allocate(1000);
        alloc.deallocate(p, 1000);
        void* q = alloc.allocate(1020);  // another size in the same 1024-byte bin
        CHECK(q == p);
        CHECK(alloc.stats().system_allocs == 1);
        CHECK(alloc.stats().cache_hits == 1);
        CHECK(alloc.stats().bytes_in_use == 1024);
        CHECK(alloc.stats().bytes_cached == 0);
        alloc.deallocate(q, 1020);
    }
    SUBCASE("a much larger cached block is left alone") {
        void* big = alloc.allocate(4 * kMiB);
        alloc.deallocate(big, 4 * kMiB);
        void* small = alloc.allocate(kKiB);
        CHECK(small != big);
        CHECK(alloc.stats().system_allocs == 2);
        CHECK(alloc.stats().cache_hits == 0);
        CHECK(alloc.stats().bytes_cached == 4 * kMiB);  // still cached, whole
        CHECK(alloc.stats().bytes_in_use == kKiB);
        CHECK(alloc.live_system_allocations() == 2);
        // Nor the next bin up (1280 bytes for 1025..1280): a block serves its bin only.
        void* next_bin = alloc.allocate(1100);
        alloc.deallocate(next_bin, 1100);
        void* again = alloc.allocate(kKiB);
        CHECK(again != next_bin);
        CHECK(alloc.stats().system_allocs == 4);
        alloc.deallocate(again, kKiB);
        alloc.deallocate(small, kKiB);
    }
    SUBCASE("best fit among blocks of the bin, each handed out once") {
        void* a = alloc.allocate(3000);
        void* b = alloc.allocate(3000);
        alloc.deallocate(a, 3000);
        alloc.deallocate(b, 3000);
        void* c = alloc.allocate(3000);
        void* d = alloc.allocate(2900);
        CHECK(c != d);
        CHECK(((c == a && d == b) || (c == b && d == a)));
        CHECK(alloc.stats().system_allocs == 2);
        alloc.deallocate(c, 3000);
        alloc.deallocate(d, 2900);
    }
    CHECK(alloc.stats().bytes_in_use == 0);
    CHECK(alloc.stats().bytes_reserved == alloc.system_bytes);
}

TEST_CASE("core/allocator: own blocks: empty_cache returns every cached block") {
    BudgetAllocator alloc(size_t{1} << 40, CachingAllocator::Packing::kOwnBlocks);
    std::vector<std::pair<void*, size_t>> blocks;
    for (size_t n : {100ul, 100ul, 5000ul, 70000ul, 3 * kMiB, 30 * kMiB})
        blocks.emplace_back(alloc.allocate(n), n);
    void* kept = alloc.allocate(kKiB);
    for (auto& [p, n] : blocks)
        alloc.deallocate(p, n);
    alloc.empty_cache();
    const AllocatorStats s = alloc.stats();
    CHECK(s.system_allocs == 7);
    CHECK(s.system_frees == 6);
    CHECK(s.bytes_cached == 0);
    CHECK(s.bytes_in_use == kKiB);
    CHECK(s.bytes_reserved == kKiB);
    CHECK(alloc.system_bytes == kKiB);
    CHECK(alloc.live_system_allocations() == 1);
    alloc.deallocate(kept, kKiB);
    alloc.empty_cache();
    CHECK(alloc.live_system_allocations() == 0);
    CHECK(alloc.stats().system_frees == 7);
}

TEST_CASE("core/allocator: own blocks: out of memory gives back the cache, then throws") {
    BudgetAllocator alloc(64 * kMiB, CachingAllocator::Packing::kOwnBlocks);
    void* keep = alloc.allocate(32 * kMiB);
    void* cached = alloc.allocate(20 * kMiB);
    alloc.deallocate(cached, 20 * kMiB);
    // 32 live + 20 cached + 24 (the bin of 20 MiB + 1) > 64: the cached block goes, the retry
    // fits.
    void* c = alloc.allocate(20 * kMiB + 1);
    CHECK(alloc.refused == 1);
    CHECK(alloc.stats().system_frees == 1);
    CHECK(alloc.system_bytes == 56 * kMiB);
    CHECK(alloc.stats().bytes_reserved == 56 * kMiB);
    const AllocatorStats before = alloc.stats();
    std::string message;
    try {
        alloc.allocate(20 * kMiB);
        FAIL("expected OutOfMemoryError");
    } catch (const OutOfMemoryError& e) {
        message = e.what();
    }
    CAPTURE(message);
    CHECK(message.find("requested 20971520 bytes") != std::string::npos);
    CHECK(message.find("fake:3") != std::string::npos);
    CHECK(message.find("in use 58720256 bytes") != std::string::npos);  // 56 MiB
    CHECK(message.find("0 wholly free segments were given back") != std::string::npos);
    CHECK(alloc.refused == 2);  // nothing cached to give back: no retry
    CHECK(same(alloc.stats(), before));
    alloc.deallocate(c, 20 * kMiB + 1);
    alloc.deallocate(keep, 32 * kMiB);
    CHECK(alloc.stats().bytes_in_use == 0);
    CHECK(alloc.stats().bytes_reserved == alloc.system_bytes);
}

TEST_CASE("core/allocator: own blocks: threads allocating and freeing leave it consistent") {
    BudgetAllocator alloc(size_t{1} << 40, CachingAllocator::Packing::kOwnBlocks);
    alloc.single_threaded = false;
    run_threads(alloc, [](std::mt19937& rng) -> size_t {
        return 1 + rng() % (size_t{1} << (6 + rng() % 14));
    });
    const AllocatorStats s = alloc.stats();
    CHECK(s.bytes_in_use == 0);
    CHECK(s.bytes_cached == s.bytes_reserved);
    CHECK(s.bytes_reserved == alloc.system_bytes);
    CHECK(s.cache_hits + s.system_allocs == 8000);
    CHECK(s.system_allocs - s.system_frees == alloc.live_system_allocations());
}
