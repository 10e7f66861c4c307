// ops/cpu/reduce_cpu.cpp — CPU kernels for reductions over one dim (sum, mean, max with first
// argmax), the multi-tensor sum of squares, and the I64 min/max used by id range checks.
//
// The tensor is seen as [outer, n, inner] and reduced over n. Sums accumulate in double for every
// float dtype (an F32 sum of 10^6 terms keeps ~1e-10 relative error instead of ~1e-5), and the
// summation order is fixed: per output element, j increasing; for a whole-tensor sum, fixed
// blocks of kSumBlock elements combined in block order (a sum of squares keeps 16 lanes per
// block, see sum_squares_run). Results do not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <limits>

#include "core/parallel.h"
#include "core/row_grad.h"
#include "ops/cpu/cpu_kernels.h"
#include "ops/cpu/dispatch.h"

namespace minidl {

using cpu::acc_t;
using cpu::dispatch_float;

namespace {

constexpr int64_t kSumBlock = 16384;

// Sum over [begin, end) of a contiguous run, in double.
template <typename T>
double sum_run(const T* p, int64_t begin, int64_t end) {
    double s = 0;
    for (int64_t i = begin; i < end; ++i)
        s += static_cast<double>(p[i]);
    return s;
}

// One term of a sum of squares: x^2 in double (16-bit and F32 values squared from their float).
template <typename T>
double squared(T x) {
    const double v = static_cast<double>(static_cast<float>(x));
    return v * v;
}
template <>
double squared<double>(double x) {
    return x * x;
}

// A sum of squares keeps kLanes running sums: the element at flat index i adds to lane i % kLanes,
// in index order, and a block's lanes are then added in lane order, from 0.0. One sequential sum
// would wait for each add's result (latency-bound, ~4 cycles an element); independent lanes
// vectorise and keep the adders busy. Blocks start at multiples of kSumBlock, a multiple of
// kLanes, so the lane of an element depends on its flat index alone, and row_sum_squares below
// can repeat every rounding from the touched rows only.
constexpr int64_t kLanes = 16;
static_assert(kSumBlock % kLanes == 0);

// The sum of a block's lanes, in lane order.
double fold_lanes(const double (&lane)[kLanes]) {
    double s = 0;
    for (double v : lane)
        s += v;
    return s;
}

// Sum of squares over [begin, end), begin a multiple of kLanes (a block's start).
template <typename T>
double sum_squares_run(const T* p, int64_t begin, int64_t end) {
    double lane[kLanes] = {};
    int64_t i = begin;
    for (; i + kLanes <= end; i += kLanes)
        for (int64_t k = 0; k < kLanes; ++k)
            lane[k] += squared(p[i + k]);
    for (int64_t k = 0; i < end; ++i, ++k)
        lane[k] += squared(p[i]);
    return fold_lanes(lane);
}

// A deterministic blocked sum of f over [0, n): fixed blocks, combined in order.
template <typename BlockSum>
double blocked_sum(int64_t n, const BlockSum& block_sum) {
    const int64_t nblocks = (n + kSumBlock - 1) / kSumBlock;
    std::vector<double> partial(static_cast<size_t>(nblocks), 0.0);
    parallel_blocks(n, kSumBlock, [&](int64_t b, int64_t begin, int64_t end) {
        partial[b] = block_sum(begin, end);
    });
    double total = 0;
    for (double p : partial)
        total += p;
    return total;
}

}  // namespace

void CpuKernels::reduce(ReduceOp op, const Tensor& x, Tensor& out, Tensor* indices, int64_t outer,
                        int64_t n, int64_t inner) {
    dispatch_float(x.dtype(), "reduce", [&](auto tag) {
        using T = decltype(tag);
        const T* px = x.raw<T>();
        T* po = out.raw<T>();
        int64_t* pi = indices ? indices->data<int64_t>() : nullptr;
        const int64_t outputs = outer * inner;

        if (op != ReduceOp::Max && outputs == 1) {  // whole-tensor (or single-row) sum
            const double s =
                blocked_sum(n, [&](int64_t b, int64_t e) { return sum_run(px, b, e); });
            po[0] = static_cast<T>(op == ReduceOp::Mean ? s / static_cast<double>(n) : s);
            return;
        }
        if (op != ReduceOp::Max && inner > 1) {
            // Sums down the rows of [outer, n, inner] (a bias gradient: [rows, features] ->
            // [features]): a block of kColumns outputs at a time, accumulated row by row — every
            // output still sums its n inputs in order j = 0, 1, ... in double (the same bits as one
            // output at a time), but each row is read once, contiguously, instead of once per
            // output.
            constexpr int64_t kColumns = 256;
            const int64_t blocks_per_o = (inner + kColumns - 1) / kColumns;
            const int64_t grain =
                std::max<int64_t>(1, 32768 / std::max<int64_t>(n * std::min(inner, kColumns), 1));
            parallel_for(outer * blocks_per_o, grain, [&](int64_t begin, int64_t end) {
                double acc[kColumns];
                for (int64_t blk = begin; blk < end; ++blk) {
                    const int64_t o = blk / blocks_per_o, i0 = blk % blocks_per_o * kColumns;
                    const int64_t cols = std::min(kColumns, inner - i0);
                    std::fill_n(acc, cols, 0.0);
                    const T* base = px + o * n * inner + i0;
                    for (int64_t j = 0; j < n; ++j) {
                        const T* row = base + j * inner;
                        for (int64_t c = 0; c < cols; ++c)
                            acc[c] += static_cast<double>(row[c]);
                    }
                    T* dst = po + o * inner + i0;
                    for (int64_t c = 0; c < cols; ++c)
                        dst[c] = static_cast<T>(
                            op == ReduceOp::Mean ? acc[c] / static_cast<double>(n) : acc[c]);
                }
            });
            return;
        }
        // One output element per (o, i); its n inputs are strided by `inner`.
        const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(n, 1));
        parallel_for(outputs, grain, [&](int64_t begin, int64_t end) {
            for (int64_t k = begin; k < end; ++k) {
                const int64_t o = k / inner, i = k % inner;
                const T* base = px + o * n * inner + i;
                if (op == ReduceOp::Max) {
                    // First maximum; NaN wins (propagates), as in PyTorch.
                    double best = -std::numeric_limits<double>::infinity();
                    int64_t best_j = 0;
                    for (int64_t j = 0; j < n; ++j) {
                        const double v = static_cast<double>(base[j * inner]);
                        if (v > best || (v != v && best == best)) {
                            best = v;
                            best_j = j;
                            if (v != v) break;
                        }
                    }
                    po[k] = static_cast<T>(best);
                    if (pi) pi[k] = best_j;
                } else {
                    double s = 0;
                    for (int64_t j = 0; j < n; ++j)
                        s += static_cast<double>(base[j * inner]);
                    po[k] = static_cast<T>(op == ReduceOp::Mean ? s / static_cast<double>(n) : s);
                }
            }
        });
    });
}

double CpuKernels::sum_squares(const std::vector<Tensor>& xs) {
    double total = 0;
    for (const Tensor& x : xs) {
        if (!x.defined() || x.numel() == 0) continue;
        dispatch_float(x.dtype(), "sum_squares", [&](auto tag) {
            using T = decltype(tag);
            const T* p = x.raw<T>();
            total += blocked_sum(x.numel(),
                                 [&](int64_t b, int64_t e) { return sum_squares_run(p, b, e); });
        });
    }
    return total;
}

namespace {

// sum_squares of a dense [V, C] tensor that is zero outside the rows `rows` ([R], increasing),
// whose row k holds value(k, c): blocked_sum's blocks of the flat index, each element added to its
// lane (flat % kLanes) in index order, a block's lanes folded in lane order, the block sums
// combined in block order. Elements outside the rows would add exactly +0.0 to their lane (lanes
// start at +0.0 and squares are never negative), which changes no sum, so skipping them leaves
// every rounding the same.
template <typename T, typename Value>
double rows_sum_squares(const int64_t* rows, int64_t R, int64_t C, const Value& value) {
    double total = 0;
    double lane[kLanes] = {};
    int64_t block = -1;
    for (int64_t k = 0; k < R; ++k) {
        const int64_t first = rows[k] * C;  // the row's flat index in the dense tensor
        // The row in runs that stay inside one block of the dense sum.
        for (int64_t c = 0; c < C;) {
            const int64_t flat = first + c;
            const int64_t run_block = flat / kSumBlock;
            const int64_t run = std::min(C - c, (run_block + 1) * kSumBlock - flat);
            if (run_block != block) {  // the next block: its lanes join the total
                total += fold_lanes(lane);
                std::fill_n(lane, kLanes, 0.0);
                block = run_block;
            }
            int64_t j = 0;
            if (flat % kLanes == 0)  // lane-aligned (a width of 64 always is): whole groups
                for (; j + kLanes <= run; j += kLanes)
                    for (int64_t l = 0; l < kLanes; ++l)
                        lane[l] += squared(static_cast<T>(value(k, c + j + l)));
            for (; j < run; ++j)
                lane[(flat + j) % kLanes] += squared(static_cast<T>(value(k, c + j)));
            c += run;
        }
    }
    return total + fold_lanes(lane);
}

}  // namespace

double row_sum_squares(const Tensor& rows, const Tensor& values, int64_t row_width) {
    MDL_ASSERT(rows.device().is_cpu() && values.device().is_cpu(),
               "row_sum_squares: row-sparse gradients live on the CPU");
    double total = 0;
    dispatch_float(values.dtype(), "row_sum_squares", [&](auto tag) {
        using T = decltype(tag);
        const T* v = values.raw<T>();
        total = rows_sum_squares<T>(rows.data<int64_t>(), rows.numel(), row_width,
                                    [&](int64_t k, int64_t c) { return v[k * row_width + c]; });
    });
    return total;
}

double row_distance_sum_squares(const Tensor& rows, const Tensor& center, const Tensor& table) {
    MDL_ASSERT(table.device().is_cpu() && table.dim() == 2 && center.dtype() == table.dtype() &&
                   center.numel() == rows.numel() * table.size(1),
               "row_distance_sum_squares: centres ", center.str(), " for ", rows.numel(),
               " rows of ", table.str());
    const int64_t C = table.size(1);
    const int64_t* r = rows.data<int64_t>();
    double total = 0;
    dispatch_float(table.dtype(), "row_distance_sum_squares", [&](auto tag) {
        using T = decltype(tag);
        using A = acc_t<T>;
        const T* pt = table.raw<T>();
        const T* pc = center.raw<T>();
        // The difference rounded to T, as the sub op rounds it.
        total = rows_sum_squares<T>(r, rows.numel(), C, [&](int64_t k, int64_t c) {
            return static_cast<T>(static_cast<A>(pt[r[k] * C + c]) - static_cast<A>(pc[k * C + c]));
        });
    });
    return total;
}

void CpuKernels::minmax_i64(const Tensor& x, int64_t& min_out, int64_t& max_out) {
    const int64_t* p = x.data<int64_t>();
    int64_t lo = std::numeric_limits<int64_t>::max(), hi = std::numeric_limits<int64_t>::min();
    for (int64_t i = 0; i < x.numel(); ++i) {
        lo = std::min(lo, p[i]);
        hi = std::max(hi, p[i]);
    }
    min_out = lo;
    max_out = hi;
}

}  // namespace minidl
