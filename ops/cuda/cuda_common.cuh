// ops/cuda/cuda_common.cuh — what every CUDA kernel file uses: element types and conversions,
// dtype dispatch, launch sizes, warp and block reductions.
//
// Element types: F32 float, F64 double, F16 __half, BF16 __nv_bfloat16, I64 int64_t. Arithmetic
// runs in acc_t<T>: double for double, float for everything else (16-bit values are widened once
// per element and rounded once on store), as on the CPU (ops/cpu/dispatch.h). Conversions follow
// the CPU's: 16-bit values go through float; double -> 16-bit rounds to float first, then to
// 16 bits (two roundings, exactly like Eigen's half(double)); float -> integer truncates.
//
// Launch sizes depend on the problem shape only, never on the device, so a reduction sums in the
// same order on any GPU.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math_constants.h>

#include <cstdint>
#include <initializer_list>
#include <type_traits>
#include <utility>

#include "core/check.h"
#include "core/dtype.h"
#include "ops/cuda/cuda_check.h"
#include "ops/cuda/cuda_context.h"

// After every kernel launch: launch-configuration errors surface here, with file and line (and,
// under MINIDL_CUDA_SYNC=1, the kernel's own faults: cuda_check.h).
#define MDL_CUDA_LAUNCH_CHECK()                                  \
    do {                                                         \
        ::minidl::cuda_detail::launch_check(__FILE__, __LINE__); \
    } while (0)

namespace minidl::cuda_detail {

// ---- element types ------------------------------------------------------------------------------

template <typename T>
constexpr bool is_16bit_v = std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>;

template <typename T>
using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

// Any element type to any other, as the CPU kernels convert (see the file comment).
template <typename D, typename S>
__host__ __device__ __forceinline__ D convert(S v) {
    if constexpr (std::is_same_v<D, S>) {
        return v;
    } else if constexpr (std::is_same_v<S, __half>) {
        return convert<D>(__half2float(v));
    } else if constexpr (std::is_same_v<S, __nv_bfloat16>) {
        return convert<D>(__bfloat162float(v));
    } else if constexpr (std::is_same_v<D, __half>) {
        return __float2half_rn(static_cast<float>(v));
    } else if constexpr (std::is_same_v<D, __nv_bfloat16>) {
        return __float2bfloat16_rn(static_cast<float>(v));
    } else {
        return static_cast<D>(v);
    }
}

// ---- dtype dispatch -----------------------------------------------------------------------------

// body(T{}) for the element type of a floating dtype; DTypeError names `op` otherwise.
template <typename F>
void dispatch_float(DType dtype, const char* op, F&& body) {
    switch (dtype) {
        case DType::F32:
            body(float{});
            return;
        case DType::F64:
            body(double{});
            return;
        case DType::F16:
            body(__half{});
            return;
        case DType::BF16:
            body(__nv_bfloat16{});
            return;
        default:
            throw DTypeError(detail::concat(op, ": expected a floating dtype, got ", dtype));
    }
}

template <typename F>
void dispatch_all(DType dtype, const char* op, F&& body) {
    if (dtype == DType::I64) {
        body(int64_t{});
        return;
    }
    dispatch_float(dtype, op, std::forward<F>(body));
}

// ---- launch sizes -------------------------------------------------------------------------------

constexpr int kBlock = 256;
// Grid-stride kernels use at most this many blocks: ~15 waves of 256-thread blocks on a 132-SM
// H100, enough to saturate memory bandwidth; a fixed number keeps launches device-independent.
constexpr int64_t kMaxBlocks = 8192;

inline unsigned grid_for(int64_t work, int block = kBlock) {
    const int64_t blocks = (work + block - 1) / block;
    return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > kMaxBlocks ? kMaxBlocks : blocks));
}

inline int64_t ceil_div(int64_t a, int64_t b) {
    return (a + b - 1) / b;
}

// The index of this thread in a 1-D grid and the grid-stride.
__device__ __forceinline__ int64_t global_thread() {
    return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_stride() {
    return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

// ---- packed passes
// --------------------------------------------------------------------------------

// Memory-bound passes move V consecutive elements per access when every pointer is aligned to
// V elements: one 16-byte load or store instead of V narrow ones (V = 16 / sizeof(T): 4 floats,
// 2 doubles, 8 halves). Thread k takes pack k (a grid-stride loop over n / V packs); the last
// n % V elements, and every element of a pass whose pointers are not aligned (a view that starts
// mid-block), go one by one.
template <typename T, int V>
struct alignas(sizeof(T) * V) Pack {
    T v[V];
};

inline bool aligned_for(const void* p, size_t bytes) {
    return p == nullptr || reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

// launch(std::integral_constant<int, V>{}) with V = 16 / widest when every (pointer, element
// size) is aligned to V of its elements, else with V = 1.
template <typename Launch>
void launch_packed16(size_t widest, std::initializer_list<std::pair<const void*, size_t>> pointers,
                     const Launch& launch) {
    MDL_ASSERT(widest == 2 || widest == 4 || widest == 8, "launch_packed16: elements of ", widest,
               " bytes");
    bool packed = true;
    for (const auto& [ptr, elem] : pointers)
        packed = packed && aligned_for(ptr, elem * (16 / widest));
    if (!packed) {
        launch(std::integral_constant<int, 1>{});
    } else if (widest == 8) {
        launch(std::integral_constant<int, 2>{});
    } else if (widest == 4) {
        launch(std::integral_constant<int, 4>{});
    } else {
        launch(std::integral_constant<int, 8>{});
    }
}

// ---- math in the accumulation type --------------------------------------------------------------

__device__ __forceinline__ float dev_exp(float x) {
    return expf(x);
}
__device__ __forceinline__ double dev_exp(double x) {
    return exp(x);
}
__device__ __forceinline__ float dev_log(float x) {
    return logf(x);
}
__device__ __forceinline__ double dev_log(double x) {
    return log(x);
}
__device__ __forceinline__ float dev_abs(float x) {
    return fabsf(x);
}
__device__ __forceinline__ double dev_abs(double x) {
    return fabs(x);
}
__device__ __forceinline__ float dev_sqrt(float x) {
    return sqrtf(x);
}
__device__ __forceinline__ double dev_sqrt(double x) {
    return sqrt(x);
}
__device__ __forceinline__ float dev_tanh(float x) {
    return tanhf(x);
}
__device__ __forceinline__ double dev_tanh(double x) {
    return tanh(x);
}
__device__ __forceinline__ float dev_erf(float x) {
    return erff(x);
}
__device__ __forceinline__ double dev_erf(double x) {
    return erf(x);
}
__device__ __forceinline__ float dev_pow(float x, float y) {
    return powf(x, y);
}
__device__ __forceinline__ double dev_pow(double x, double y) {
    return pow(x, y);
}
__device__ __forceinline__ bool dev_isinf(float x) {
    return isinf(x);
}
__device__ __forceinline__ bool dev_isinf(double x) {
    return isinf(x);
}

template <typename A>
__device__ __forceinline__ A neg_infinity() {
    if constexpr (std::is_same_v<A, double>) {
        return -CUDART_INF;
    } else {
        return -CUDART_INF_F;
    }
}

// ---- reductions ---------------------------------------------------------------------------------
// Butterfly (xor) shuffles: every lane ends with the same value, bit for bit (each step combines
// a with b on one lane and b with a on its partner, and + and max are commutative).

struct SumOp {
    template <typename A>
    __device__ __forceinline__ A operator()(A a, A b) const {
        return a + b;
    }
};
struct MaxOp {
    template <typename A>
    __device__ __forceinline__ A operator()(A a, A b) const {
        return a > b ? a : b;
    }
};

struct MinOp {
    template <typename A>
    __device__ __forceinline__ A operator()(A a, A b) const {
        return a < b ? a : b;
    }
};

// The value of lane (this lane ^ mask). Overload it for a struct to reduce structs.
template <typename V>
__device__ __forceinline__ V shfl_xor(V v, int mask) {
    return __shfl_xor_sync(0xffffffffu, v, mask);
}

template <typename A, typename Op>
__device__ __forceinline__ A warp_reduce(A v, Op op) {
#pragma unroll
    for (int mask = 16; mask > 0; mask >>= 1)
        v = op(v, shfl_xor(v, mask));
    return v;
}

// Reduces v over the threads of one row of the block (threadIdx.x; blockDim.x a multiple of 32,
// at most 1024) and returns the result to every one of them. Rows are threadIdx.y; `scratch`
// holds 32 values per row (blockDim.y * 32 in all). Every thread of the block must call it (it
// synchronises when blockDim.x > 32). Partial results are combined in warp order: deterministic.
template <typename A, typename Op>
__device__ __forceinline__ A row_reduce(A v, Op op, A* scratch) {
    v = warp_reduce(v, op);
    if (blockDim.x == 32) return v;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    A* row = scratch + threadIdx.y * 32;
    if (lane == 0) row[warp] = v;
    __syncthreads();
    A r = row[0];
    for (int w = 1; w < static_cast<int>(blockDim.x >> 5); ++w)
        r = op(r, row[w]);
    __syncthreads();  // the scratch may be reused right after
    return r;
}

// ---- row-wise launches --------------------------------------------------------------------------
// Kernels that reduce along contiguous rows of n elements use blocks of (bx, by): by rows per
// block and bx threads per row — a warp per row (8 rows per block) up to 1024 elements, a block of
// 256 threads per row beyond.

inline dim3 rowwise_block(int64_t n) {
    return n > 1024 ? dim3(256, 1) : dim3(32, 8);
}
inline unsigned rowwise_grid(int64_t rows, dim3 block) {
    const int64_t blocks = ceil_div(rows, block.y);
    return static_cast<unsigned>(blocks < kMaxBlocks ? blocks : kMaxBlocks);
}

}  // namespace minidl::cuda_detail

// Loops `base` over the first rows of this block's groups of blockDim.y rows, in steps that are
// uniform across the block (row_reduce synchronises all of its threads); the thread's own row is
// base + threadIdx.y, which may lie past the end (the thread must still take part).
#define MDL_FOR_EACH_ROW_GROUP(base, rows)                                            \
    for (int64_t base = static_cast<int64_t>(blockIdx.x) * blockDim.y; base < (rows); \
         base += static_cast<int64_t>(gridDim.x) * blockDim.y)
