// ops/cuda/layer_norm.cu — CUDA kernels for layer normalisation over the last C elements of each
// of R rows (ops/layer_norm.h has the math):
//   forward   mean = sum_c x / C,  var = sum_c (x - mean)^2 / C,  rstd = 1 / sqrt(var + eps)
//             y = (x - mean) rstd w + b                           (w, b optional)
//   backward  xhat = (x - mean) rstd,  d = gy w
//             gx = rstd (d - mean_c(d) - xhat mean_c(d xhat))
//             gw += sum_r gy xhat,  gb += sum_r gy                (gx, gw, gb each optional)
// Statistics are in acc_t (double for F64, float otherwise) with two passes over the row (mean,
// then squared deviations), as on the CPU: no E[x^2] - E[x]^2 cancellation. mean and rstd [R] are
// stored in acc_t for backward.
//
// Strategy: rows of up to 1024 elements get a warp each (8 rows per block), longer rows a block of
// 256 threads; threads stride over the row and reduce with warp shuffles; the row is re-read from
// L1/L2 for each pass. The column sums gw/gb are deterministic two-pass reductions: blocks of
// 32 x 8 threads sum 32 neighbouring columns over a chunk of kRowsPerChunk rows (coalesced reads,
// combined in shared memory in thread-row order) into a partial buffer [chunks, C]; then one
// thread per column adds its chunks in order and accumulates into gw/gb.
#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/cuda_kernels.h"

namespace minidl {

using namespace cuda_detail;

namespace {

constexpr int64_t kRowsPerChunk = 256;

template <typename T>
__global__ void layer_norm_rowwise_kernel(const T* __restrict__ x, const T* __restrict__ w,
                                          const T* __restrict__ b, T* __restrict__ y,
                                          acc_t<T>* __restrict__ mean, acc_t<T>* __restrict__ rstd,
                                          int64_t R, int64_t C, double eps) {
    using A = acc_t<T>;
    __shared__ A scratch[8 * 32];
    MDL_FOR_EACH_ROW_GROUP(base, R) {
        const int64_t r = base + threadIdx.y;
        const bool valid = r < R;
        const T* xr = x + (valid ? r : 0) * C;
        A s = 0;
        if (valid)
            for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
                s += convert<A>(xr[c]);
        const A mu = row_reduce(s, SumOp(), scratch) / static_cast<A>(C);
        A q = 0;
        if (valid)
            for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
                const A d = convert<A>(xr[c]) - mu;
                q += d * d;
            }
        const A var = row_reduce(q, SumOp(), scratch) / static_cast<A>(C);
        const A rs = A(1) / dev_sqrt(var + static_cast<A>(eps));
        if (valid) {
            if (threadIdx.x == 0) {
                mean[r] = mu;
                rstd[r] = rs;
            }
            for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
                A v = (convert<A>(xr[c]) - mu) * rs;
                if (w) v *= convert<A>(w[c]);
                if (b) v += convert<A>(b[c]);
                y[r * C + c] = convert<T>(v);
            }
        }
    }
}

template <typename T>
__global__ void layer_norm_backward_rowwise_kernel(const T* __restrict__ x, const T* __restrict__ w,
                                                   const acc_t<T>* __restrict__ mean,
                                                   const acc_t<T>* __restrict__ rstd,
                                                   const T* __restrict__ gy, T* __restrict__ gx,
                                                   int64_t R, int64_t C) {
    using A = acc_t<T>;
    __shared__ A scratch[8 * 32];
    MDL_FOR_EACH_ROW_GROUP(base, R) {
        const int64_t r = base + threadIdx.y;
        const bool valid = r < R;
        const int64_t off = (valid ? r : 0) * C;
        const A mu = valid ? mean[r] : A(0), rs = valid ? rstd[r] : A(0);
        A sum_d = 0, sum_dx = 0;
        if (valid)
            for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
                const A xhat = (convert<A>(x[off + c]) - mu) * rs;
                const A d = convert<A>(gy[off + c]) * (w ? convert<A>(w[c]) : A(1));
                sum_d += d;
                sum_dx += d * xhat;
            }
        const A md = row_reduce(sum_d, SumOp(), scratch) / static_cast<A>(C);
        const A mdx = row_reduce(sum_dx, SumOp(), scratch) / static_cast<A>(C);
        if (valid)
            for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
                const A xhat = (convert<A>(x[off + c]) - mu) * rs;
                const A d = convert<A>(gy[off + c]) * (w ? convert<A>(w[c]) : A(1));
                gx[off + c] = convert<T>(rs * (d - md - xhat * mdx));
            }
    }
}

// Block (32, 8), task (chunk, column tile): pw/pb[chunk, c] = sum over the chunk's rows of
// gy xhat and gy (either pointer may be null).
template <typename T>
__global__ void layer_norm_param_grad_partial_kernel(
    const T* __restrict__ x, const acc_t<T>* __restrict__ mean, const acc_t<T>* __restrict__ rstd,
    const T* __restrict__ gy, acc_t<T>* __restrict__ pw, acc_t<T>* __restrict__ pb, int64_t R,
    int64_t C) {
    using A = acc_t<T>;
    __shared__ A scratch_w[8][32], scratch_b[8][32];
    const int64_t tiles = (C + 31) / 32, chunks = (R + kRowsPerChunk - 1) / kRowsPerChunk;
    for (int64_t t = blockIdx.x; t < chunks * tiles; t += gridDim.x) {
        const int64_t chunk = t / tiles, c = (t - chunk * tiles) * 32 + threadIdx.x;
        const int64_t r1 = min(R, (chunk + 1) * kRowsPerChunk);
        A sw = 0, sb = 0;
        if (c < C)
            for (int64_t r = chunk * kRowsPerChunk + threadIdx.y; r < r1; r += blockDim.y) {
                const A g = convert<A>(gy[r * C + c]);
                sw += g * (convert<A>(x[r * C + c]) - mean[r]) * rstd[r];
                sb += g;
            }
        scratch_w[threadIdx.y][threadIdx.x] = sw;
        scratch_b[threadIdx.y][threadIdx.x] = sb;
        __syncthreads();
        if (threadIdx.y == 0 && c < C) {
            for (int yy = 1; yy < static_cast<int>(blockDim.y); ++yy) {
                sw += scratch_w[yy][threadIdx.x];
                sb += scratch_b[yy][threadIdx.x];
            }
            if (pw) pw[chunk * C + c] = sw;
            if (pb) pb[chunk * C + c] = sb;
        }
        __syncthreads();
    }
}

// gw[c] += sum over chunks of pw[chunk, c] (likewise gb), in chunk order.
template <typename T>
__global__ void layer_norm_param_grad_final_kernel(const acc_t<T>* __restrict__ pw,
                                                   const acc_t<T>* __restrict__ pb,
                                                   T* __restrict__ gw, T* __restrict__ gb,
                                                   int64_t chunks, int64_t C) {
    using A = acc_t<T>;
    for (int64_t c = global_thread(); c < C; c += grid_stride()) {
        A sw = 0, sb = 0;
        for (int64_t k = 0; k < chunks; ++k) {
            if (gw) sw += pw[k * C + c];
            if (gb) sb += pb[k * C + c];
        }
        if (gw) gw[c] = convert<T>(convert<A>(gw[c]) + sw);
        if (gb) gb[c] = convert<T>(convert<A>(gb[c]) + sb);
    }
}

}  // namespace

void CudaKernels::layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y,
                             Tensor& mean, Tensor& rstd, double eps) {
    const int64_t C = x.shape().back();
    const int64_t R = C ? x.numel() / C : 0;
    if (R == 0) return;
    const int dev = cuda::device_of(x);
    cuda::DeviceGuard guard(dev);
    dispatch_float(x.dtype(), "layer_norm", [&](auto tag) {
        using T = decltype(tag);
        using A = acc_t<T>;
        const dim3 block = rowwise_block(C);
        layer_norm_rowwise_kernel<T><<<rowwise_grid(R, block), block, 0, cuda::stream(dev)>>>(
            x.raw<const T>(), w.defined() ? w.raw<const T>() : nullptr,
            b.defined() ? b.raw<const T>() : nullptr, y.raw<T>(), mean.raw<A>(), rstd.raw<A>(), R,
            C, eps);
        MDL_CUDA_LAUNCH_CHECK();
    });
}

void CudaKernels::layer_norm_backward(const Tensor& x, const Tensor& w, const Tensor& mean,
                                      const Tensor& rstd, const Tensor& gy, Tensor& gx, Tensor& gw,
                                      Tensor& gb) {
    const int64_t C = x.shape().back();
    const int64_t R = C ? x.numel() / C : 0;
    if (R == 0) return;
    const int dev = cuda::device_of(x);
    cuda::DeviceGuard guard(dev);
    const cudaStream_t s = cuda::stream(dev);
    dispatch_float(x.dtype(), "layer_norm_backward", [&](auto tag) {
        using T = decltype(tag);
        using A = acc_t<T>;
        const A* pm = mean.raw<const A>();
        const A* pr = rstd.raw<const A>();
        if (gx.defined()) {
            const dim3 block = rowwise_block(C);
            layer_norm_backward_rowwise_kernel<T><<<rowwise_grid(R, block), block, 0, s>>>(
                x.raw<const T>(), w.defined() ? w.raw<const T>() : nullptr, pm, pr,
                gy.raw<const T>(), gx.raw<T>(), R, C);
            MDL_CUDA_LAUNCH_CHECK();
        }
        if (!gw.defined() && !gb.defined()) return;
        const int64_t chunks = ceil_div(R, kRowsPerChunk);
        cuda::DeviceBuffer partial(dev, static_cast<size_t>(2 * chunks * C) * sizeof(A));
        A* pw = gw.defined() ? partial.as<A>() : nullptr;
        A* pb = gb.defined() ? partial.as<A>() + chunks * C : nullptr;
        const int64_t tasks = chunks * ceil_div(C, 32);
        layer_norm_param_grad_partial_kernel<T>
            <<<static_cast<unsigned>(std::min(tasks, kMaxBlocks)), dim3(32, 8), 0, s>>>(
                x.raw<const T>(), pm, pr, gy.raw<const T>(), pw, pb, R, C);
        MDL_CUDA_LAUNCH_CHECK();
        layer_norm_param_grad_final_kernel<T>
            <<<grid_for(C), kBlock, 0, s>>>(pw, pb, gw.defined() ? gw.raw<T>() : nullptr,
                                            gb.defined() ? gb.raw<T>() : nullptr, chunks, C);
        MDL_CUDA_LAUNCH_CHECK();
    });
}

}  // namespace minidl
