// core/parallel.h — the CPU thread pool behind GEMM, large elementwise passes and optimizers.
//
// set_num_threads(n) sizes the pool (default: the cores this process may run on, or the
// MINIDL_NUM_THREADS environment variable). parallel_for(n, grain, fn) calls fn(begin, end) on
// disjoint chunks covering [0, n), on up to get_num_threads() threads including the caller; ranges
// smaller than `grain` run inline, as do calls made from inside a pool thread (no nesting) and
// calls made while another thread is using the pool (replica threads of DataParallel then simply
// run their kernels single-threaded instead of queueing).
//
// Chunk boundaries depend on the thread count. Elementwise work does not care; a reduction must
// not let them decide its summation order — use fixed-size blocks (parallel_blocks) and combine
// the per-block partial results in block order, so results are identical for any thread count.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <utility>

namespace minidl {

// Throws ValueError for n < 1, and when the system refuses to start that many threads (a process
// or user thread limit, memory for the stacks): the message names n and the system's reason, and
// the pool keeps its previous size.
void set_num_threads(int n);
int get_num_threads();

namespace detail {
// Type-erased callable reference (no allocation): fn(ctx, begin, end).
struct RangeFn {
    void (*call)(const void* ctx, int64_t begin, int64_t end);
    const void* ctx;
};
void parallel_for_impl(int64_t n, int64_t grain, RangeFn fn);
// For tests: after `n` more worker threads have started, the next start fails once, as the
// system's do at a thread limit (EAGAIN). n < 0 cancels.
void refuse_thread_starts_after(int n);
}  // namespace detail

template <typename F>
void parallel_for(int64_t n, int64_t grain, const F& fn) {
    if (n <= 0) return;
    if (n <= grain) {
        fn(int64_t{0}, n);
        return;
    }
    detail::RangeFn erased{
        [](const void* ctx, int64_t b, int64_t e) { (*static_cast<const F*>(ctx))(b, e); }, &fn};
    detail::parallel_for_impl(n, grain, erased);
}

// Splits [0, n) into blocks of exactly `block` elements (the last one shorter) and calls
// fn(block_index, begin, end) once per block, in parallel. The blocking is independent of the
// thread count.
template <typename F>
void parallel_blocks(int64_t n, int64_t block, const F& fn) {
    const int64_t nblocks = (n + block - 1) / block;
    parallel_for(nblocks, 1, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b)
            fn(b, b * block, std::min(n, (b + 1) * block));
    });
}

}  // namespace minidl
