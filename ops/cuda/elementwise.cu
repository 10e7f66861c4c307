// ops/cuda/elementwise.cu — CUDA kernels for unary and binary elementwise ops, their backward,
// the broadcast reduction sum_to, and axpy. The math of each op is in core/kernels.h and
// ops/elementwise.cpp; the formulas below are the CPU's (ops/cpu/elementwise_cpu.cpp), computed in
// acc_t<T> (float, or double for F64).
//
//   unary            y = f(x)                      unary_backward  gx = gy * f'(x)  (uses y for
//                                                                   Exp, Sqrt, Tanh, Sigmoid)
//   binary           out = a (op) b, NumPy broadcasting of a and b to out's shape
//   sum_to           out = x summed over the dims where out (right-aligned) has size 1
//   axpy             y += alpha x
//
// Strategy: grid-stride loops, coalesced stores; the contiguous kernels (unary, its backward,
// binary on same shapes or with a scalar, axpy) move 16 bytes per access when the pointers are
// aligned (cuda_common.cuh, launch_packed16), the broadcast kernel one element per thread with
// 32-bit index arithmetic below 2^32 elements. Outputs may alias inputs (x.mul_(s) runs unary(x,
// x)), so no __restrict__ on elementwise pointers. Broadcast shapes are first collapsed (adjacent
// dims that broadcast the same way merge), so the common cases run with one or two dims of index
// arithmetic. sum_to maps onto the [outer, n, inner] sum of reduce.cu when the summed dims are one
// contiguous group (bias gradients, full sums), and otherwise on a kernel that gives each output
// element one thread looping over its inputs.
#include <cmath>

#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/cuda_kernels.h"

namespace minidl {

using namespace cuda_detail;

namespace {

constexpr int kMaxDims = 8;
constexpr double kSqrt2OverPi = 0.7978845608028654;  // sqrt(2 / pi)
constexpr double kInvSqrt2 = 0.7071067811865476;     // 1 / sqrt(2)
constexpr double kInvSqrt2Pi = 0.3989422804014327;   // 1 / sqrt(2 pi)
constexpr double kGeluCubic = 0.044715;

template <typename A>
__device__ __forceinline__ A unary_value(UnaryOp op, A x, A alpha) {
    switch (op) {
        case UnaryOp::Neg:
            return -x;
        case UnaryOp::Exp:
            return dev_exp(x);
        case UnaryOp::Log:
            return dev_log(x);
        case UnaryOp::Sqrt:
            return dev_sqrt(x);
        case UnaryOp::Abs:
            return dev_abs(x);
        case UnaryOp::Relu:
            return x > A(0) ? x : A(0);
        case UnaryOp::GeluErf:
            return A(0.5) * x * (A(1) + dev_erf(x * A(kInvSqrt2)));
        case UnaryOp::GeluTanh: {
            const A u = A(kSqrt2OverPi) * (x + A(kGeluCubic) * x * x * x);
            return A(0.5) * x * (A(1) + dev_tanh(u));
        }
        case UnaryOp::Tanh:
            return dev_tanh(x);
        case UnaryOp::Sigmoid:
            return A(1) / (A(1) + dev_exp(-x));
        case UnaryOp::AddScalar:
            return x + alpha;
        case UnaryOp::MulScalar:
            return x * alpha;
        case UnaryOp::DivScalar:
            return x / alpha;
        case UnaryOp::RDivScalar:
            return alpha / x;
        case UnaryOp::PowScalar:
            return dev_pow(x, alpha);
        case UnaryOp::RSubScalar:
            return alpha - x;
    }
    return x;
}

// gy * dy/dx, given x and y = f(x).
template <typename A>
__device__ __forceinline__ A unary_grad(UnaryOp op, A x, A y, A gy, A alpha) {
    switch (op) {
        case UnaryOp::Neg:
            return -gy;
        case UnaryOp::Exp:
            return gy * y;
        case UnaryOp::Log:
            return gy / x;
        case UnaryOp::Sqrt:
            return gy / (A(2) * y);
        case UnaryOp::Abs:
            return x > A(0) ? gy : (x < A(0) ? -gy : A(0));
        case UnaryOp::Relu:
            return x > A(0) ? gy : A(0);
        case UnaryOp::GeluErf: {
            const A cdf = A(0.5) * (A(1) + dev_erf(x * A(kInvSqrt2)));
            const A pdf = A(kInvSqrt2Pi) * dev_exp(A(-0.5) * x * x);
            return gy * (cdf + x * pdf);
        }
        case UnaryOp::GeluTanh: {
            const A x2 = x * x;
            const A u = A(kSqrt2OverPi) * (x + A(kGeluCubic) * x2 * x);
            const A t = dev_tanh(u);
            const A du = A(kSqrt2OverPi) * (A(1) + A(3 * kGeluCubic) * x2);
            return gy * (A(0.5) * (A(1) + t) + A(0.5) * x * (A(1) - t * t) * du);
        }
        case UnaryOp::Tanh:
            return gy * (A(1) - y * y);
        case UnaryOp::Sigmoid:
            return gy * y * (A(1) - y);
        case UnaryOp::AddScalar:
            return gy;
        case UnaryOp::MulScalar:
            return gy * alpha;
        case UnaryOp::DivScalar:
            return gy / alpha;
        case UnaryOp::RDivScalar:
            return -gy * alpha / (x * x);
        case UnaryOp::PowScalar:
            // PyTorch: d/dx x^0 = 0 everywhere (also at x = 0).
            return alpha == A(0) ? A(0) : gy * alpha * dev_pow(x, alpha - A(1));
        case UnaryOp::RSubScalar:
            return -gy;
    }
    return gy;
}

template <typename A>
__device__ __forceinline__ A binary_value(BinaryOp op, A a, A b) {
    switch (op) {
        case BinaryOp::Add:
            return a + b;
        case BinaryOp::Sub:
            return a - b;
        case BinaryOp::Mul:
            return a * b;
        case BinaryOp::Div:
            return a / b;
        // NaN propagates, as in PyTorch's maximum/minimum.
        case BinaryOp::Maximum:
            return (a != a || a >= b) ? a : b;
        case BinaryOp::Minimum:
            return (a != a || a <= b) ? a : b;
        case BinaryOp::GreaterEqual:
            return a >= b ? A(1) : A(0);
    }
    return a;
}

// The op is a kernel argument, not a template parameter: the switch is uniform across the grid
// (no divergence), and one kernel per dtype keeps the build small.
// The contiguous kernels take packs of V elements (cuda_common.cuh: 16-byte accesses when the
// pointers allow, V = 1 otherwise); an output may alias an input, which a pack reads whole before
// it writes.
template <typename T, int V>
__global__ void unary_elementwise_kernel(const T* x, T* y, int64_t n, UnaryOp op, acc_t<T> alpha) {
    using A = acc_t<T>;
    const int64_t packs = n / V;
    for (int64_t k = global_thread(); k < packs; k += grid_stride()) {
        const Pack<T, V> xp = reinterpret_cast<const Pack<T, V>*>(x)[k];
        Pack<T, V> yp;
#pragma unroll
        for (int l = 0; l < V; ++l)
            yp.v[l] = convert<T>(unary_value<A>(op, convert<A>(xp.v[l]), alpha));
        reinterpret_cast<Pack<T, V>*>(y)[k] = yp;
    }
    for (int64_t i = packs * V + global_thread(); i < n; i += grid_stride())
        y[i] = convert<T>(unary_value<A>(op, convert<A>(x[i]), alpha));
}

// x and y may be null (the op's gradient does not read them): they read as 0.
template <typename T, int V>
__global__ void unary_backward_elementwise_kernel(const T* x, const T* y, const T* gy, T* gx,
                                                  int64_t n, UnaryOp op, acc_t<T> alpha) {
    using A = acc_t<T>;
    const int64_t packs = n / V;
    for (int64_t k = global_thread(); k < packs; k += grid_stride()) {
        Pack<T, V> xp, yp;
        if (x) xp = reinterpret_cast<const Pack<T, V>*>(x)[k];
        if (y) yp = reinterpret_cast<const Pack<T, V>*>(y)[k];
        const Pack<T, V> gyp = reinterpret_cast<const Pack<T, V>*>(gy)[k];
        Pack<T, V> gxp;
#pragma unroll
        for (int l = 0; l < V; ++l) {
            const A xv = x ? convert<A>(xp.v[l]) : A(0);
            const A yv = y ? convert<A>(yp.v[l]) : A(0);
            gxp.v[l] = convert<T>(unary_grad<A>(op, xv, yv, convert<A>(gyp.v[l]), alpha));
        }
        reinterpret_cast<Pack<T, V>*>(gx)[k] = gxp;
    }
    for (int64_t i = packs * V + global_thread(); i < n; i += grid_stride()) {
        const A xv = x ? convert<A>(x[i]) : A(0);
        const A yv = y ? convert<A>(y[i]) : A(0);
        gx[i] = convert<T>(unary_grad<A>(op, xv, yv, convert<A>(gy[i]), alpha));
    }
}

// out[i] = a[i * a_step] (op) b[i * b_step], steps 0 or 1: same shapes, or one scalar operand
// (read once per pack).
template <typename T, int V>
__global__ void binary_flat_kernel(const T* a, int64_t a_step, const T* b, int64_t b_step, T* out,
                                   int64_t n, BinaryOp op) {
    using A = acc_t<T>;
    const int64_t packs = n / V;
    // A scalar operand, loaded once (out never aliases it: it has one element, out n).
    const T a0 = a_step ? T{} : a[0];
    const T b0 = b_step ? T{} : b[0];
    for (int64_t k = global_thread(); k < packs; k += grid_stride()) {
        Pack<T, V> ap, bp, op_out;
        if (a_step) {
            ap = reinterpret_cast<const Pack<T, V>*>(a)[k];
        } else {
#pragma unroll
            for (int l = 0; l < V; ++l)
                ap.v[l] = a0;
        }
        if (b_step) {
            bp = reinterpret_cast<const Pack<T, V>*>(b)[k];
        } else {
#pragma unroll
            for (int l = 0; l < V; ++l)
                bp.v[l] = b0;
        }
#pragma unroll
        for (int l = 0; l < V; ++l)
            op_out.v[l] = convert<T>(binary_value<A>(op, convert<A>(ap.v[l]), convert<A>(bp.v[l])));
        reinterpret_cast<Pack<T, V>*>(out)[k] = op_out;
    }
    for (int64_t i = packs * V + global_thread(); i < n; i += grid_stride())
        out[i] =
            convert<T>(binary_value<A>(op, convert<A>(a[i * a_step]), convert<A>(b[i * b_step])));
}

// Collapsed broadcast geometry: out's dims and each operand's strides (0 = broadcast).
struct BroadcastGeometry {
    int nd;
    int64_t shape[kMaxDims];
    int64_t a_stride[kMaxDims];
    int64_t b_stride[kMaxDims];
};

// The multi-index is taken apart in I: 32-bit unsigned when out has fewer than 2^32 elements (a
// 32-bit division is several times cheaper than a 64-bit one), int64_t otherwise.
template <typename T, typename I>
__global__ void binary_broadcast_kernel(const T* a, const T* b, T* out, BroadcastGeometry g,
                                        int64_t n, BinaryOp op) {
    using A = acc_t<T>;
    for (int64_t i = global_thread(); i < n; i += grid_stride()) {
        I rem = static_cast<I>(i);
        int64_t oa = 0, ob = 0;
        for (int d = g.nd - 1; d >= 0; --d) {
            const I size = static_cast<I>(g.shape[d]);
            const I idx = rem % size;
            rem /= size;
            oa += static_cast<int64_t>(idx) * g.a_stride[d];
            ob += static_cast<int64_t>(idx) * g.b_stride[d];
        }
        out[i] = convert<T>(binary_value<A>(op, convert<A>(a[oa]), convert<A>(b[ob])));
    }
}

// sum_to with several separate summed groups: output element o (multi-index over the kept dims)
// sums x over the multi-index of the summed dims, in increasing order, in double.
struct SumToGeometry {
    int kept_nd, summed_nd;
    int64_t kept_shape[kMaxDims], kept_stride[kMaxDims];  // strides in x
    int64_t summed_shape[kMaxDims], summed_stride[kMaxDims];
    int64_t summed_count;
};

template <typename T>
__global__ void sum_to_gather_kernel(const T* __restrict__ x, T* __restrict__ out, SumToGeometry g,
                                     int64_t outputs) {
    for (int64_t o = global_thread(); o < outputs; o += grid_stride()) {
        int64_t rem = o, base = 0;
        for (int d = g.kept_nd - 1; d >= 0; --d) {
            base += (rem % g.kept_shape[d]) * g.kept_stride[d];
            rem /= g.kept_shape[d];
        }
        double s = 0;
        for (int64_t r = 0; r < g.summed_count; ++r) {
            int64_t rr = r, off = base;
            for (int d = g.summed_nd - 1; d >= 0; --d) {
                off += (rr % g.summed_shape[d]) * g.summed_stride[d];
                rr /= g.summed_shape[d];
            }
            s += convert<double>(x[off]);
        }
        out[o] = convert<T>(s);
    }
}

template <typename T, int V>
__global__ void axpy_elementwise_kernel(acc_t<T> alpha, const T* x, T* y, int64_t n) {
    using A = acc_t<T>;
    const int64_t packs = n / V;
    for (int64_t k = global_thread(); k < packs; k += grid_stride()) {
        const Pack<T, V> xp = reinterpret_cast<const Pack<T, V>*>(x)[k];
        Pack<T, V> yp = reinterpret_cast<Pack<T, V>*>(y)[k];
#pragma unroll
        for (int l = 0; l < V; ++l)
            yp.v[l] = convert<T>(convert<A>(yp.v[l]) + alpha * convert<A>(xp.v[l]));
        reinterpret_cast<Pack<T, V>*>(y)[k] = yp;
    }
    for (int64_t i = packs * V + global_thread(); i < n; i += grid_stride())
        y[i] = convert<T>(convert<A>(y[i]) + alpha * convert<A>(x[i]));
}

// Strides of `s` right-aligned into `nd` dims, 0 where s broadcasts (size 1 or missing).
std::vector<int64_t> broadcast_strides(const Shape& s, size_t nd) {
    std::vector<int64_t> st(nd, 0);
    const std::vector<int64_t> own = contiguous_strides(s);
    for (size_t i = 0; i < s.size(); ++i)
        st[nd - s.size() + i] = s[i] == 1 ? 0 : own[i];
    return st;
}

// Out's dims with the operands' strides, size-1 dims dropped and neighbours merged where every
// operand steps through both the same way (contiguous, or broadcast in both).
BroadcastGeometry collapse_broadcast(const Shape& out, const Shape& a, const Shape& b) {
    const size_t nd = out.size();
    const std::vector<int64_t> sa = broadcast_strides(a, nd), sb = broadcast_strides(b, nd);
    std::vector<int64_t> shape, as, bs;
    for (size_t d = 0; d < nd; ++d) {
        if (out[d] == 1) continue;
        if (!shape.empty()) {
            const int64_t n = out[d];
            const bool a_merges = as.back() == sa[d] * n;  // also 0 == 0 * n
            const bool b_merges = bs.back() == sb[d] * n;
            if (a_merges && b_merges) {
                shape.back() *= n;
                as.back() = sa[d];
                bs.back() = sb[d];
                continue;
            }
        }
        shape.push_back(out[d]);
        as.push_back(sa[d]);
        bs.push_back(sb[d]);
    }
    MDL_CHECK(shape.size() <= static_cast<size_t>(kMaxDims), ShapeError,
              "binary: the CUDA broadcast kernel handles at most ", kMaxDims,
              " distinct broadcast dims, got a=", shape_str(a), " b=", shape_str(b),
              " out=", shape_str(out));
    BroadcastGeometry g{};
    g.nd = static_cast<int>(shape.size());
    for (size_t d = 0; d < shape.size(); ++d) {
        g.shape[d] = shape[d];
        g.a_stride[d] = as[d];
        g.b_stride[d] = bs[d];
    }
    return g;
}

}  // namespace

void CudaKernels::unary(UnaryOp op, const Tensor& x, Tensor& y, double alpha) {
    const int64_t n = x.numel();
    if (n == 0) return;
    const int dev = cuda::device_of(x);
    cuda::DeviceGuard guard(dev);
    dispatch_float(x.dtype(), "unary", [&](auto tag) {
        using T = decltype(tag);
        launch_packed16(
            sizeof(T), {{x.data_ptr(), sizeof(T)}, {y.data_ptr(), sizeof(T)}}, [&](auto width) {
                constexpr int V = decltype(width)::value;
                unary_elementwise_kernel<T, V>
                    <<<grid_for(ceil_div(n, V)), kBlock, 0, cuda::stream(dev)>>>(
                        x.raw<const T>(), y.raw<T>(), n, op, static_cast<acc_t<T>>(alpha));
                MDL_CUDA_LAUNCH_CHECK();
            });
    });
}

void CudaKernels::unary_backward(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& gy,
                                 Tensor& gx, double alpha) {
    const int64_t n = gy.numel();
    if (n == 0) return;
    const int dev = cuda::device_of(gy);
    cuda::DeviceGuard guard(dev);
    dispatch_float(gy.dtype(), "unary_backward", [&](auto tag) {
        using T = decltype(tag);
        const T* px = x.defined() ? x.raw<const T>() : nullptr;
        const T* py = y.defined() ? y.raw<const T>() : nullptr;
        launch_packed16(sizeof(T),
                        {{px, sizeof(T)},
                         {py, sizeof(T)},
                         {gy.data_ptr(), sizeof(T)},
                         {gx.data_ptr(), sizeof(T)}},
                        [&](auto width) {
                            constexpr int V = decltype(width)::value;
                            unary_backward_elementwise_kernel<T, V>
                                <<<grid_for(ceil_div(n, V)), kBlock, 0, cuda::stream(dev)>>>(
                                    px, py, gy.raw<const T>(), gx.raw<T>(), n, op,
                                    static_cast<acc_t<T>>(alpha));
                            MDL_CUDA_LAUNCH_CHECK();
                        });
    });
}

void CudaKernels::binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) {
    const int64_t n = out.numel();
    if (n == 0) return;
    const int dev = cuda::device_of(out);
    cuda::DeviceGuard guard(dev);
    const cudaStream_t s = cuda::stream(dev);
    dispatch_float(out.dtype(), "binary", [&](auto tag) {
        using T = decltype(tag);
        const bool a_full = a.numel() == n, b_full = b.numel() == n;
        if ((a_full || a.numel() == 1) && (b_full || b.numel() == 1)) {
            // Same number of elements as out means the same shape up to size-1 dims.
            // A scalar operand is read once per pack: only the full ones need the alignment.
            launch_packed16(sizeof(T),
                            {{a_full ? a.data_ptr() : nullptr, sizeof(T)},
                             {b_full ? b.data_ptr() : nullptr, sizeof(T)},
                             {out.data_ptr(), sizeof(T)}},
                            [&](auto width) {
                                constexpr int V = decltype(width)::value;
                                binary_flat_kernel<T, V>
                                    <<<grid_for(ceil_div(n, V)), kBlock, 0, s>>>(
                                        a.raw<const T>(), a_full ? 1 : 0, b.raw<const T>(),
                                        b_full ? 1 : 0, out.raw<T>(), n, op);
                            });
        } else {
            const BroadcastGeometry g = collapse_broadcast(out.shape(), a.shape(), b.shape());
            if (n <= static_cast<int64_t>(UINT32_MAX)) {
                binary_broadcast_kernel<T, uint32_t><<<grid_for(n), kBlock, 0, s>>>(
                    a.raw<const T>(), b.raw<const T>(), out.raw<T>(), g, n, op);
            } else {
                binary_broadcast_kernel<T, int64_t><<<grid_for(n), kBlock, 0, s>>>(
                    a.raw<const T>(), b.raw<const T>(), out.raw<T>(), g, n, op);
            }
        }
        MDL_CUDA_LAUNCH_CHECK();
    });
}

void CudaKernels::sum_to(const Tensor& x, Tensor& out) {
    const int64_t outputs = out.numel();
    if (outputs == 0) return;
    const Shape& xs = x.shape();
    const int64_t nd = static_cast<int64_t>(xs.size());
    const int64_t on = static_cast<int64_t>(out.shape().size());
    // Group x's dims (size-1 dims dropped) into runs that are all kept or all summed; each run is
    // contiguous in x and, for kept runs, in out.
    struct Run {
        bool summed;
        int64_t size;
    };
    std::vector<Run> runs;
    for (int64_t d = 0; d < nd; ++d) {
        if (xs[d] == 1) continue;
        const int64_t od = d - (nd - on);  // out is right-aligned against x
        const bool summed = od < 0 || out.shape()[od] == 1;
        if (!runs.empty() && runs.back().summed == summed) {
            runs.back().size *= xs[d];
        } else {
            runs.push_back({summed, xs[d]});
        }
    }
    int summed_runs = 0;
    for (const Run& r : runs)
        summed_runs += r.summed;
    if (summed_runs == 0) {  // nothing to sum: same elements, same order
        copy(x, out);
        return;
    }
    if (summed_runs == 1) {  // [outer, n, inner]: the reduction kernels of reduce.cu
        int64_t outer = 1, n = 1, inner = 1;
        bool before = true;
        for (const Run& r : runs) {
            if (r.summed) {
                n = r.size;
                before = false;
            } else {
                (before ? outer : inner) *= r.size;
            }
        }
        reduce(ReduceOp::Sum, x, out, nullptr, outer, n, inner);
        return;
    }
    MDL_CHECK(runs.size() <= static_cast<size_t>(kMaxDims), ShapeError,
              "sum_to: the CUDA kernel handles at most ", kMaxDims,
              " alternating groups, got x=", shape_str(xs), " out=", shape_str(out.shape()));
    SumToGeometry g{};
    g.summed_count = 1;
    int64_t stride = 1;
    std::vector<std::pair<Run, int64_t>> with_strides(runs.size());
    for (size_t i = runs.size(); i-- > 0;) {
        with_strides[i] = {runs[i], stride};
        stride *= runs[i].size;
    }
    for (const auto& [run, st] : with_strides) {
        if (run.summed) {
            g.summed_shape[g.summed_nd] = run.size;
            g.summed_stride[g.summed_nd++] = st;
            g.summed_count *= run.size;
        } else {
            g.kept_shape[g.kept_nd] = run.size;
            g.kept_stride[g.kept_nd++] = st;
        }
    }
    const int dev = cuda::device_of(x);
    cuda::DeviceGuard guard(dev);
    dispatch_float(x.dtype(), "sum_to", [&](auto tag) {
        using T = decltype(tag);
        sum_to_gather_kernel<T><<<grid_for(outputs), kBlock, 0, cuda::stream(dev)>>>(
            x.raw<const T>(), out.raw<T>(), g, outputs);
        MDL_CUDA_LAUNCH_CHECK();
    });
}

void CudaKernels::axpy(double alpha, const Tensor& x, Tensor& y) {
    const int64_t n = y.numel();
    if (n == 0) return;
    const int dev = cuda::device_of(y);
    cuda::DeviceGuard guard(dev);
    dispatch_float(y.dtype(), "axpy", [&](auto tag) {
        using T = decltype(tag);
        launch_packed16(sizeof(T), {{x.data_ptr(), sizeof(T)}, {y.data_ptr(), sizeof(T)}},
                        [&](auto width) {
                            constexpr int V = decltype(width)::value;
                            axpy_elementwise_kernel<T, V>
                                <<<grid_for(ceil_div(n, V)), kBlock, 0, cuda::stream(dev)>>>(
                                    static_cast<acc_t<T>>(alpha), x.raw<const T>(), y.raw<T>(), n);
                            MDL_CUDA_LAUNCH_CHECK();
                        });
    });
}

}  // namespace minidl
