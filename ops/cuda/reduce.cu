// ops/cuda/reduce.cu — CUDA kernels for reductions over one dim (sum, mean, max with the index of
// the first maximum), the multi-tensor sum of squares, and the I64 min/max of id range checks.
//
// Math: x is seen as [outer, n, inner] and reduced over n:
//   Sum  out[o, i] = sum_j x[o, j, i]         Mean  out[o, i] = sum_j x[o, j, i] / n  (NaN if n =
//   0) Max  out[o, i] = max_j x[o, j, i], indices[o, i] = the first j that attains it; a NaN wins
//        (the first NaN), as in PyTorch and the CPU kernel; n = 0 gives -inf and index 0.
//   sum_squares = sum over tensors and elements of x^2 (16-bit and F32 values widened to double).
// Sums accumulate in double for every dtype, as the CPU's do.
//
// Strategy (the order of every sum is fixed by the shapes alone, so results are bitwise
// reproducible run to run and independent of the GPU model):
//   inner == 1, contiguous rows: a warp per row (8 rows per block) up to 1024 elements, a block
//     of 256 threads per row beyond; each thread sums a strided subset of the row, then a
//     butterfly warp reduction and a fixed-order combination of the warps.
//   inner > 1: a block of 32 x 8 threads takes 32 neighbouring columns i (coalesced 32-element
//     reads) and splits j over its 8 thread rows, combined in shared memory in row order.
//   Few outputs and a long n (a full sum, a bias gradient, the max of a whole tensor): n is cut
//     into S chunks (of >= 1024 elements) reduced in parallel into a buffer [outer, S, inner]
//     (double sums; maxima with their indices), and a second pass combines the S partials.
//   sum_squares / minmax_i64: a fixed number of blocks per tensor write one partial each, and
//     one block combines them in order: a deterministic two-pass tree; one small copy to the host.
#include <cstdint>
#include <limits>

#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/cuda_kernels.h"

namespace minidl {

using namespace cuda_detail;

namespace {

// A running maximum and where it was found. Combining keeps the larger value, a NaN over any
// number, and the smaller index on ties: a function of the two operands alone, so any reduction
// tree gives the first maximum.
template <typename A>
struct ArgMax {
    A v;
    int64_t i;
};

template <typename A>
__device__ __forceinline__ ArgMax<A> shfl_xor(ArgMax<A> a, int mask) {
    return {__shfl_xor_sync(0xffffffffu, a.v, mask), __shfl_xor_sync(0xffffffffu, a.i, mask)};
}

struct ArgMaxOp {
    template <typename A>
    __device__ __forceinline__ ArgMax<A> operator()(ArgMax<A> a, ArgMax<A> b) const {
        const bool a_nan = a.v != a.v, b_nan = b.v != b.v;
        if (a_nan != b_nan) return a_nan ? a : b;
        if (!a_nan && a.v != b.v) return a.v > b.v ? a : b;
        return a.i <= b.i ? a : b;
    }
};

constexpr int64_t kNoIndex = std::numeric_limits<int64_t>::max();

// The per-thread accumulator and what it becomes in the output.
template <typename TIn, bool kMax>
struct Accumulator;

template <typename TIn>
struct Accumulator<TIn, false> {
    using V = double;
    static __device__ V identity() { return 0.0; }
    static __device__ V take(V acc, TIn x, int64_t) { return acc + convert<double>(x); }
};

template <typename TIn>
struct Accumulator<TIn, true> {
    using A = acc_t<TIn>;
    using V = ArgMax<A>;
    static __device__ V identity() { return {neg_infinity<A>(), kNoIndex}; }
    static __device__ V take(V acc, TIn x, int64_t j) {
        return ArgMaxOp()(acc, V{convert<A>(x), j});
    }
};

template <bool kMax>
using CombineOp = std::conditional_t<kMax, ArgMaxOp, SumOp>;

// Writes one reduced value: a sum divided by `divisor` (n for Mean, 1 for Sum; partial sums stay
// double), or a maximum and its index.
template <typename TOut>
__device__ __forceinline__ void store_result(double s, TOut* out, int64_t* idx, int64_t k,
                                             double divisor) {
    (void)idx;
    out[k] = convert<TOut>(s / divisor);
}
template <typename TOut, typename A>
__device__ __forceinline__ void store_result(ArgMax<A> m, TOut* out, int64_t* idx, int64_t k,
                                             double) {
    out[k] = convert<TOut>(m.v);
    if (idx) idx[k] = m.i == kNoIndex ? 0 : m.i;
}

// What a launch reduces: x [outer, n, inner] with n cut into `chunks` chunks of `chunk` j's;
// result k = (o * chunks + s) * inner + i.
struct ReduceShape {
    int64_t outer, n, inner, chunks, chunk;
    double divisor;
};

// inner == 1. Block (bx, by): by rows per block, bx threads per row (32 or 256). Task
// t = o * chunks + s reduces x[o, s * chunk : (s + 1) * chunk].
template <typename TIn, typename TOut, bool kMax>
__global__ void reduce_rows_kernel(const TIn* __restrict__ x, TOut* __restrict__ out,
                                   int64_t* __restrict__ idx, ReduceShape r) {
    using Acc = Accumulator<TIn, kMax>;
    using V = typename Acc::V;
    __shared__ V scratch[8 * 32];
    const int64_t tasks = r.outer * r.chunks;
    MDL_FOR_EACH_ROW_GROUP(base, tasks) {
        const int64_t t = base + threadIdx.y;
        V acc = Acc::identity();
        if (t < tasks) {
            const int64_t o = t / r.chunks, s = t - o * r.chunks;
            const int64_t j0 = s * r.chunk, j1 = min(r.n, j0 + r.chunk);
            const TIn* row = x + o * r.n;
            for (int64_t j = j0 + threadIdx.x; j < j1; j += blockDim.x)
                acc = Acc::take(acc, row[j], j);
        }
        acc = row_reduce(acc, CombineOp<kMax>(), scratch);
        if (t < tasks && threadIdx.x == 0) store_result(acc, out, idx, t, r.divisor);
    }
}

// inner > 1. Block (32, 8): task (o, s, tile) covers columns tile * 32 + threadIdx.x; the 8 thread
// rows take j = j0 + threadIdx.y, j0 + threadIdx.y + 8, ... and are combined in row order.
template <typename TIn, typename TOut, bool kMax>
__global__ void reduce_cols_kernel(const TIn* __restrict__ x, TOut* __restrict__ out,
                                   int64_t* __restrict__ idx, ReduceShape r) {
    using Acc = Accumulator<TIn, kMax>;
    using V = typename Acc::V;
    __shared__ V scratch[8][32];
    const int64_t tiles = (r.inner + 31) / 32;
    const int64_t tasks = r.outer * r.chunks * tiles;
    for (int64_t t = blockIdx.x; t < tasks; t += gridDim.x) {
        const int64_t tile = t % tiles, os = t / tiles;  // os = o * chunks + s
        const int64_t o = os / r.chunks, s = os - o * r.chunks;
        const int64_t i = tile * 32 + threadIdx.x;
        const int64_t j0 = s * r.chunk, j1 = min(r.n, j0 + r.chunk);
        V acc = Acc::identity();
        if (i < r.inner) {
            const TIn* col = x + o * r.n * r.inner + i;
            for (int64_t j = j0 + threadIdx.y; j < j1; j += blockDim.y)
                acc = Acc::take(acc, col[j * r.inner], j);
        }
        scratch[threadIdx.y][threadIdx.x] = acc;
        __syncthreads();
        if (threadIdx.y == 0 && i < r.inner) {
            for (int y = 1; y < static_cast<int>(blockDim.y); ++y)
                acc = CombineOp<kMax>()(acc, scratch[y][threadIdx.x]);
            store_result(acc, out, idx, os * r.inner + i, r.divisor);
        }
        __syncthreads();
    }
}

// One launch of the kernel that fits the layout.
template <typename TIn, typename TOut, bool kMax>
void launch_reduce(const TIn* x, TOut* out, int64_t* idx, const ReduceShape& r, cudaStream_t s) {
    if (r.inner == 1) {
        const dim3 block = rowwise_block(r.chunk);
        reduce_rows_kernel<TIn, TOut, kMax>
            <<<rowwise_grid(r.outer * r.chunks, block), block, 0, s>>>(x, out, idx, r);
    } else {
        const int64_t blocks = r.outer * r.chunks * ceil_div(r.inner, 32);
        reduce_cols_kernel<TIn, TOut, kMax>
            <<<static_cast<unsigned>(std::min(blocks, kMaxBlocks)), dim3(32, 8), 0, s>>>(x, out,
                                                                                         idx, r);
    }
    MDL_CUDA_LAUNCH_CHECK();
}

// How many chunks to cut n into: enough parallel warps (~8192, a few per thread slot of a
// 132-SM GPU) for few, long reductions, with chunks of at least kMinChunk elements. Depends on
// the shape only.
constexpr int64_t kTargetWarps = 8192, kMinChunk = 1024;

int64_t chunks_for(int64_t outer, int64_t n, int64_t inner) {
    if (n < 2 * kMinChunk) return 1;
    const int64_t warps = inner == 1 ? outer * (n > 1024 ? 8 : 1) : outer * ceil_div(inner, 32) * 8;
    if (warps >= kTargetWarps) return 1;
    return std::max<int64_t>(1, std::min(ceil_div(kTargetWarps, warps), ceil_div(n, kMinChunk)));
}

// ---- sum of squares and I64 min/max ----------------------------------------------------------

constexpr int kPartialBlocks = 512;  // at most, per tensor

int partial_blocks(int64_t n) {
    return static_cast<int>(std::min<int64_t>(kPartialBlocks, ceil_div(n, kBlock * 16)));
}

template <typename T>
__global__ void sum_squares_partial_kernel(const T* __restrict__ x, int64_t n,
                                           double* __restrict__ partial) {
    __shared__ double scratch[32];
    double s = 0;
    for (int64_t i = global_thread(); i < n; i += grid_stride()) {
        // 16-bit and F32 values are widened through float, exactly as the CPU does.
        const double v = std::is_same_v<T, double> ? convert<double>(x[i])
                                                   : static_cast<double>(convert<float>(x[i]));
        s += v * v;
    }
    s = row_reduce(s, SumOp(), scratch);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// One block: out[0] = the sum of partial[0, n), in a fixed order.
__global__ void sum_partials_kernel(const double* __restrict__ partial, int64_t n,
                                    double* __restrict__ out) {
    __shared__ double scratch[32];
    double s = 0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
        s += partial[i];
    s = row_reduce(s, SumOp(), scratch);
    if (threadIdx.x == 0) out[0] = s;
}

// Block b writes the min and max of its grid-stride share of [lo_in, hi_in) to lo_out[b] and
// hi_out[b]. The first pass reads x twice (lo_in = hi_in = x); the second reduces the partials.
__global__ void minmax_partial_kernel(const int64_t* __restrict__ lo_in,
                                      const int64_t* __restrict__ hi_in, int64_t n,
                                      int64_t* __restrict__ lo_out, int64_t* __restrict__ hi_out) {
    __shared__ int64_t scratch_lo[32], scratch_hi[32];
    int64_t lo = std::numeric_limits<int64_t>::max(), hi = std::numeric_limits<int64_t>::min();
    for (int64_t i = global_thread(); i < n; i += grid_stride()) {
        lo = min(lo, lo_in[i]);
        hi = max(hi, hi_in[i]);
    }
    lo = row_reduce(lo, MinOp(), scratch_lo);
    hi = row_reduce(hi, MaxOp(), scratch_hi);
    if (threadIdx.x == 0) {
        lo_out[blockIdx.x] = lo;
        hi_out[blockIdx.x] = hi;
    }
}

// The second pass of a split max: out[o, i] (and its index) combines the chunks' maxima
// vals[o, s, i] found at idxs[o, s, i], s = 0, 1, ... in order. ArgMaxOp depends on the operands
// alone, so the chunks give the first maximum (or the first NaN) of the whole row.
template <typename A, typename TOut>
__global__ void argmax_combine_kernel(const A* __restrict__ vals, const int64_t* __restrict__ idxs,
                                      TOut* __restrict__ out, int64_t* __restrict__ idx,
                                      int64_t outer, int64_t chunks, int64_t inner) {
    for (int64_t k = global_thread(); k < outer * inner; k += grid_stride()) {
        const int64_t o = k / inner, i = k - o * inner;
        ArgMax<A> m{neg_infinity<A>(), kNoIndex};
        for (int64_t c = 0; c < chunks; ++c) {
            const int64_t at = (o * chunks + c) * inner + i;
            m = ArgMaxOp()(m, ArgMax<A>{vals[at], idxs[at]});
        }
        store_result(m, out, idx, k, 1.0);
    }
}

}  // namespace

void CudaKernels::reduce(ReduceOp op, const Tensor& x, Tensor& out, Tensor* indices, int64_t outer,
                         int64_t n, int64_t inner) {
    if (outer * inner == 0) return;
    const int dev = cuda::device_of(out);
    cuda::DeviceGuard guard(dev);
    const cudaStream_t s = cuda::stream(dev);
    int64_t* idx = indices ? indices->raw<int64_t>() : nullptr;
    dispatch_float(x.dtype(), "reduce", [&](auto tag) {
        using T = decltype(tag);
        const T* px = x.raw<const T>();
        T* po = out.raw<T>();
        if (op == ReduceOp::Max) {
            const int64_t chunks = chunks_for(outer, n, inner);
            if (chunks == 1) {
                launch_reduce<T, T, true>(px, po, idx, {outer, n, inner, 1, n, 1.0}, s);
                return;
            }
            // Two passes, as for sums: each chunk's maximum and where it is, then their combination.
            using A = acc_t<T>;
            const int64_t chunk = ceil_div(n, chunks);
            const int64_t used = ceil_div(n, chunk);
            const auto partials = static_cast<size_t>(outer * used * inner);
            cuda::DeviceBuffer vals(dev, partials * sizeof(A)), idxs(dev, partials * sizeof(int64_t));
            launch_reduce<T, A, true>(px, vals.as<A>(), idxs.as<int64_t>(),
                                      {outer, n, inner, used, chunk, 1.0}, s);
            argmax_combine_kernel<A, T><<<grid_for(outer * inner), kBlock, 0, s>>>(
                vals.as<const A>(), idxs.as<const int64_t>(), po, idx, outer, used, inner);
            MDL_CUDA_LAUNCH_CHECK();
            return;
        }
        const double divisor = op == ReduceOp::Mean ? static_cast<double>(n) : 1.0;
        const int64_t chunks = chunks_for(outer, n, inner);
        if (chunks == 1) {
            launch_reduce<T, T, false>(px, po, nullptr, {outer, n, inner, 1, n, divisor}, s);
            return;
        }
        // Two passes: chunk sums into a double buffer [outer, chunks, inner], then their sum.
        const int64_t chunk = ceil_div(n, chunks);
        const int64_t used = ceil_div(n, chunk);
        cuda::DeviceBuffer partial(dev, static_cast<size_t>(outer * used * inner) * sizeof(double));
        launch_reduce<T, double, false>(px, partial.as<double>(), nullptr,
                                        {outer, n, inner, used, chunk, 1.0}, s);
        launch_reduce<double, T, false>(partial.as<const double>(), po, nullptr,
                                        {outer, used, inner, 1, used, divisor}, s);
    });
}

double CudaKernels::sum_squares(const std::vector<Tensor>& xs) {
    int dev = -1;
    int64_t total_partials = 0;
    for (const Tensor& x : xs) {
        if (!x.defined() || x.numel() == 0) continue;
        dev = cuda::device_of(x);
        total_partials += partial_blocks(x.numel());
    }
    if (dev < 0) return 0.0;
    cuda::DeviceGuard guard(dev);
    const cudaStream_t s = cuda::stream(dev);
    cuda::DeviceBuffer partial(dev, static_cast<size_t>(total_partials + 1) * sizeof(double));
    double* p = partial.as<double>();
    int64_t at = 0;
    for (const Tensor& x : xs) {
        if (!x.defined() || x.numel() == 0) continue;
        const int blocks = partial_blocks(x.numel());
        dispatch_float(x.dtype(), "sum_squares", [&](auto tag) {
            using T = decltype(tag);
            sum_squares_partial_kernel<T>
                <<<blocks, kBlock, 0, s>>>(x.raw<const T>(), x.numel(), p + at);
            MDL_CUDA_LAUNCH_CHECK();
        });
        at += blocks;
    }
    double* result = p + total_partials;
    sum_partials_kernel<<<1, 1024, 0, s>>>(p, total_partials, result);
    MDL_CUDA_LAUNCH_CHECK();
    double host = 0;
    MDL_CUDA_CHECK(cuda::copy_to_host(&host, result, sizeof(double), s));
    return host;
}

void CudaKernels::minmax_i64(const Tensor& x, int64_t& min_out, int64_t& max_out) {
    const int64_t n = x.numel();
    MDL_ASSERT(n > 0 && x.dtype() == DType::I64, "minmax_i64: needs a non-empty i64 tensor, got ",
               x.str());
    const int dev = cuda::device_of(x);
    cuda::DeviceGuard guard(dev);
    const cudaStream_t s = cuda::stream(dev);
    const int blocks = partial_blocks(n);
    // [lo partials | hi partials | lo | hi]
    cuda::DeviceBuffer buffer(dev, static_cast<size_t>(2 * blocks + 2) * sizeof(int64_t));
    int64_t* lo = buffer.as<int64_t>();
    int64_t* hi = lo + blocks;
    int64_t* result = hi + blocks;
    const int64_t* px = x.raw<const int64_t>();
    minmax_partial_kernel<<<blocks, kBlock, 0, s>>>(px, px, n, lo, hi);
    MDL_CUDA_LAUNCH_CHECK();
    minmax_partial_kernel<<<1, 1024, 0, s>>>(lo, hi, blocks, result, result + 1);
    MDL_CUDA_LAUNCH_CHECK();
    int64_t host[2] = {0, 0};
    MDL_CUDA_CHECK(cuda::copy_to_host(host, result, sizeof(host), s));
    min_out = host[0];
    max_out = host[1];
}

}  // namespace minidl
