// ops/cuda/softmax.cu — CUDA kernels for softmax / log-softmax (forward and backward) and the
// fused cross-entropy (forward and backward). The math is in ops/softmax.h and ops/loss.h:
//   softmax      y_j = e^(x_j - lse),  lse = m + log sum_j e^(x_j - m),  m = max_j x_j
//   log_softmax  y_j = x_j - lse
//   backward     softmax: gx = y (gy - sum_j gy_j y_j);  log: gx = gy - e^y sum_j gy_j
//   cross_entropy (logits [N, C], targets [N], label smoothing ls):
//     loss_i = (1 - ls)(lse_i - x_{i,t_i}) + ls (lse_i - mean_c x_{i,c}); 0 for ignored rows
//     gx_{i,c} = g_i (e^(x_{i,c} - lse_i) - (1 - ls)[c = t_i] - ls / C); 0 for ignored rows
// Each fiber (a row of n elements at stride `inner`) is computed in acc_t (double for F64, float
// otherwise) with the max subtracted before exp; a row whose max is infinite has lse = max, as on
// the CPU. NaNs are skipped by the max (as std::max does on the CPU) and poison the sum.
//
// Strategy: contiguous rows (inner == 1) get a warp each (8 rows per 256-thread block) up to 1024
// elements and a 256-thread block each beyond (vocabulary-sized rows); threads stride over the
// row, reduce with warp shuffles, and re-read the row for the next pass (the row stays in L1/L2).
// Strided fibers (inner > 1) get one thread each: neighbouring threads read neighbouring i,
// coalesced. The cross-entropy backward is elementwise over [N, C] with per-row lse.
#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/cuda_kernels.h"

namespace minidl {

using namespace cuda_detail;

namespace {

// max that skips NaN (fmax): commutative, so every lane of a butterfly agrees.
struct MaxSkipNanOp {
    __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
    __device__ __forceinline__ double operator()(double a, double b) const { return fmax(a, b); }
};

template <typename A>
__device__ __forceinline__ A finish_lse(A m, A sum) {
    return dev_isinf(m) ? m : m + dev_log(sum);
}

template <typename T>
__global__ void softmax_rowwise_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t rows,
                                       int64_t n, bool log) {
    using A = acc_t<T>;
    __shared__ A scratch[8 * 32];
    MDL_FOR_EACH_ROW_GROUP(base, rows) {
        const int64_t r = base + threadIdx.y;
        const bool valid = r < rows;
        const T* xr = x + (valid ? r : 0) * n;
        A m = neg_infinity<A>();
        if (valid)
            for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
                m = MaxSkipNanOp()(m, convert<A>(xr[j]));
        m = row_reduce(m, MaxSkipNanOp(), scratch);
        A s = 0;
        if (valid)
            for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
                s += dev_exp(convert<A>(xr[j]) - m);
        s = row_reduce(s, SumOp(), scratch);
        const A lse = finish_lse(m, s);
        if (valid)
            for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
                const A z = convert<A>(xr[j]) - lse;
                y[r * n + j] = convert<T>(log ? z : dev_exp(z));
            }
    }
}

// One thread per fiber (o, i) of [outer, n, inner].
template <typename T>
__global__ void softmax_strided_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t outer,
                                       int64_t n, int64_t inner, bool log) {
    using A = acc_t<T>;
    for (int64_t f = global_thread(); f < outer * inner; f += grid_stride()) {
        const int64_t base = (f / inner) * n * inner + f % inner;
        A m = neg_infinity<A>();
        for (int64_t j = 0; j < n; ++j)
            m = MaxSkipNanOp()(m, convert<A>(x[base + j * inner]));
        A s = 0;
        for (int64_t j = 0; j < n; ++j)
            s += dev_exp(convert<A>(x[base + j * inner]) - m);
        const A lse = finish_lse(m, s);
        for (int64_t j = 0; j < n; ++j) {
            const A z = convert<A>(x[base + j * inner]) - lse;
            y[base + j * inner] = convert<T>(log ? z : dev_exp(z));
        }
    }
}

template <typename T>
__global__ void softmax_backward_rowwise_kernel(const T* __restrict__ y, const T* __restrict__ gy,
                                                T* __restrict__ gx, int64_t rows, int64_t n,
                                                bool log) {
    using A = acc_t<T>;
    __shared__ A scratch[8 * 32];
    MDL_FOR_EACH_ROW_GROUP(base, rows) {
        const int64_t r = base + threadIdx.y;
        const bool valid = r < rows;
        const int64_t off = (valid ? r : 0) * n;
        A dot = 0;
        if (valid)
            for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
                dot += log ? convert<A>(gy[off + j])
                           : convert<A>(gy[off + j]) * convert<A>(y[off + j]);
        dot = row_reduce(dot, SumOp(), scratch);
        if (valid)
            for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
                const A yv = convert<A>(y[off + j]), gv = convert<A>(gy[off + j]);
                gx[off + j] = convert<T>(log ? gv - dev_exp(yv) * dot : yv * (gv - dot));
            }
    }
}

template <typename T>
__global__ void softmax_backward_strided_kernel(const T* __restrict__ y, const T* __restrict__ gy,
                                                T* __restrict__ gx, int64_t outer, int64_t n,
                                                int64_t inner, bool log) {
    using A = acc_t<T>;
    for (int64_t f = global_thread(); f < outer * inner; f += grid_stride()) {
        const int64_t base = (f / inner) * n * inner + f % inner;
        A dot = 0;
        for (int64_t j = 0; j < n; ++j) {
            const int64_t k = base + j * inner;
            dot += log ? convert<A>(gy[k]) : convert<A>(gy[k]) * convert<A>(y[k]);
        }
        for (int64_t j = 0; j < n; ++j) {
            const int64_t k = base + j * inner;
            const A yv = convert<A>(y[k]), gv = convert<A>(gy[k]);
            gx[k] = convert<T>(log ? gv - dev_exp(yv) * dot : yv * (gv - dot));
        }
    }
}

struct CrossEntropyArgs {
    int64_t rows, classes, ignore_index;
    double label_smoothing;
};

template <typename T>
__global__ void cross_entropy_rowwise_kernel(const T* __restrict__ logits,
                                             const int64_t* __restrict__ targets,
                                             acc_t<T>* __restrict__ losses,
                                             acc_t<T>* __restrict__ lse_out, CrossEntropyArgs a) {
    using A = acc_t<T>;
    __shared__ A scratch[8 * 32];
    const A ls = static_cast<A>(a.label_smoothing);
    const int64_t C = a.classes;
    MDL_FOR_EACH_ROW_GROUP(base, a.rows) {
        const int64_t r = base + threadIdx.y;
        const bool valid = r < a.rows;
        const T* xr = logits + (valid ? r : 0) * C;
        A m = neg_infinity<A>();
        if (valid)
            for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
                m = MaxSkipNanOp()(m, convert<A>(xr[c]));
        m = row_reduce(m, MaxSkipNanOp(), scratch);
        A s = 0, total = 0;
        if (valid)
            for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
                const A v = convert<A>(xr[c]);
                s += dev_exp(v - m);
                total += v;
            }
        s = row_reduce(s, SumOp(), scratch);
        if (ls != A(0)) total = row_reduce(total, SumOp(), scratch);  // uniform across the block
        if (valid && threadIdx.x == 0) {
            const A l = finish_lse(m, s);
            lse_out[r] = l;
            const int64_t t = targets[r];
            if (t == a.ignore_index) {
                losses[r] = 0;
            } else {
                A loss = (A(1) - ls) * (l - convert<A>(xr[t]));
                if (ls != A(0)) loss += ls * (l - total / static_cast<A>(C));
                losses[r] = loss;
            }
        }
    }
}

template <typename T>
__global__ void cross_entropy_backward_elementwise_kernel(const T* __restrict__ logits,
                                                          const int64_t* __restrict__ targets,
                                                          const acc_t<T>* __restrict__ lse,
                                                          const acc_t<T>* __restrict__ row_grad,
                                                          T* __restrict__ gx, CrossEntropyArgs a) {
    using A = acc_t<T>;
    const A ls = static_cast<A>(a.label_smoothing);
    const A uniform = ls / static_cast<A>(a.classes);
    for (int64_t k = global_thread(); k < a.rows * a.classes; k += grid_stride()) {
        const int64_t r = k / a.classes, c = k - r * a.classes;
        const int64_t t = targets[r];
        if (t == a.ignore_index) {
            gx[k] = convert<T>(A(0));
            continue;
        }
        const A p = dev_exp(convert<A>(logits[k]) - lse[r]);
        const A target = (c == t ? A(1) - ls : A(0)) + uniform;
        gx[k] = convert<T>(row_grad[r] * (p - target));
    }
}

}  // namespace

void CudaKernels::softmax(const Tensor& x, Tensor& y, int64_t outer, int64_t n, int64_t inner,
                          bool log) {
    if (outer * n * inner == 0) return;
    const int dev = cuda::device_of(x);
    cuda::DeviceGuard guard(dev);
    const cudaStream_t s = cuda::stream(dev);
    dispatch_float(x.dtype(), "softmax", [&](auto tag) {
        using T = decltype(tag);
        if (inner == 1) {
            const dim3 block = rowwise_block(n);
            softmax_rowwise_kernel<T><<<rowwise_grid(outer, block), block, 0, s>>>(
                x.raw<const T>(), y.raw<T>(), outer, n, log);
        } else {
            softmax_strided_kernel<T><<<grid_for(outer * inner), kBlock, 0, s>>>(
                x.raw<const T>(), y.raw<T>(), outer, n, inner, log);
        }
        MDL_CUDA_LAUNCH_CHECK();
    });
}

void CudaKernels::softmax_backward(const Tensor& y, const Tensor& gy, Tensor& gx, int64_t outer,
                                   int64_t n, int64_t inner, bool log) {
    if (outer * n * inner == 0) return;
    const int dev = cuda::device_of(y);
    cuda::DeviceGuard guard(dev);
    const cudaStream_t s = cuda::stream(dev);
    dispatch_float(y.dtype(), "softmax_backward", [&](auto tag) {
        using T = decltype(tag);
        if (inner == 1) {
            const dim3 block = rowwise_block(n);
            softmax_backward_rowwise_kernel<T><<<rowwise_grid(outer, block), block, 0, s>>>(
                y.raw<const T>(), gy.raw<const T>(), gx.raw<T>(), outer, n, log);
        } else {
            softmax_backward_strided_kernel<T><<<grid_for(outer * inner), kBlock, 0, s>>>(
                y.raw<const T>(), gy.raw<const T>(), gx.raw<T>(), outer, n, inner, log);
        }
        MDL_CUDA_LAUNCH_CHECK();
    });
}

void CudaKernels::cross_entropy(const Tensor& logits, const Tensor& targets, Tensor& losses,
                                Tensor& lse, double label_smoothing, int64_t ignore_index) {
    const int64_t N = logits.shape()[0], C = logits.shape()[1];
    if (N == 0) return;
    const int dev = cuda::device_of(logits);
    cuda::DeviceGuard guard(dev);
    const CrossEntropyArgs a{N, C, ignore_index, label_smoothing};
    dispatch_float(logits.dtype(), "cross_entropy", [&](auto tag) {
        using T = decltype(tag);
        using A = acc_t<T>;
        const dim3 block = rowwise_block(C);
        cross_entropy_rowwise_kernel<T><<<rowwise_grid(N, block), block, 0, cuda::stream(dev)>>>(
            logits.raw<const T>(), targets.raw<const int64_t>(), losses.raw<A>(), lse.raw<A>(), a);
        MDL_CUDA_LAUNCH_CHECK();
    });
}

void CudaKernels::cross_entropy_backward(const Tensor& logits, const Tensor& targets,
                                         const Tensor& lse, const Tensor& row_grad, Tensor& gx,
                                         double label_smoothing, int64_t ignore_index) {
    const int64_t N = logits.shape()[0], C = logits.shape()[1];
    if (N * C == 0) return;
    const int dev = cuda::device_of(logits);
    cuda::DeviceGuard guard(dev);
    const CrossEntropyArgs a{N, C, ignore_index, label_smoothing};
    dispatch_float(logits.dtype(), "cross_entropy_backward", [&](auto tag) {
        using T = decltype(tag);
        using A = acc_t<T>;
        cross_entropy_backward_elementwise_kernel<T>
            <<<grid_for(N * C), kBlock, 0, cuda::stream(dev)>>>(
                logits.raw<const T>(), targets.raw<const int64_t>(), lse.raw<const A>(),
                row_grad.raw<const A>(), gx.raw<T>(), a);
        MDL_CUDA_LAUNCH_CHECK();
    });
}

}  // namespace minidl
