// tests/core/test_thread_limit.cpp — a thread count the system refuses: set_num_threads throws a
// ValueError naming the count and the system's reason, and the pool keeps its previous size and
// keeps working. The refusal is injected (detail::refuse_thread_starts_after) exactly where the
// system's EAGAIN from pthread_create arrives, because a real limit (RLIMIT_NPROC) does not apply
// to root, which CI runs as.
#include <doctest/doctest.h>

#include <atomic>
#include <cstdint>

#include "core/check.h"
#include "core/parallel.h"

using namespace minidl;

namespace {

// Restores the pool's size and the injection at scope exit, whatever the test did.
struct PoolRestore {
    int threads = get_num_threads();
    ~PoolRestore() {
        detail::refuse_thread_starts_after(-1);
        set_num_threads(threads);
    }
};

int64_t parallel_sum(int64_t n) {
    std::atomic<int64_t> total{0};
    parallel_for(n, 1, [&](int64_t b, int64_t e) {
        int64_t s = 0;
        for (int64_t i = b; i < e; ++i)
            s += i;
        total += s;
    });
    return total.load();
}

}  // namespace

TEST_CASE(
    "core/parallel: a thread count the system refuses names the count, the pool keeps its size") {
    PoolRestore restore;
    set_num_threads(2);
    detail::refuse_thread_starts_after(2);  // workers 1 and 2 start, worker 3 is refused
    CHECK_THROWS_WITH_AS(set_num_threads(6),
                         doctest::Contains("set_num_threads: cannot start 6 threads: the system "
                                           "refused thread 4 (Resource temporarily unavailable"),
                         ValueError);
    CHECK(get_num_threads() == 2);
    CHECK(parallel_sum(10000) == 10000 * 9999 / 2);
    // The refusal was one start: the system allows threads again, so does the pool.
    set_num_threads(3);
    CHECK(get_num_threads() == 3);
    CHECK(parallel_sum(10000) == 10000 * 9999 / 2);
}

TEST_CASE("core/parallel: fewer than one thread is a ValueError") {
    PoolRestore restore;
    CHECK_THROWS_WITH_AS(set_num_threads(0), doctest::Contains("got 0"), ValueError);
    CHECK_THROWS_WITH_AS(set_num_threads(-4), doctest::Contains("got -4"), ValueError);
    CHECK(get_num_threads() == restore.threads);
}
