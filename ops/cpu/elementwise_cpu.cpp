// ops/cpu/elementwise_cpu.cpp — CPU kernels for unary and binary elementwise ops, broadcast
// reduction (sum_to) and axpy. The math of each op is in ops/elementwise.cpp and core/kernels.h.
//
// Elementwise kernels allow the output to alias an input (x.mul_(s) runs unary(x, x)). Work is
// split over the thread pool in chunks of kElementwiseGrain elements; each element is computed
// the same way whatever the split, so results never depend on the thread count.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/parallel.h"
#include "core/row_grad.h"
#include "ops/cpu/cpu_kernels.h"
#include "ops/cpu/dispatch.h"

namespace minidl {

using cpu::acc_t;
using cpu::dispatch_float;
using cpu::kElementwiseGrain;

namespace {

constexpr double kSqrt2OverPi = 0.7978845608028654;  // sqrt(2 / pi)
constexpr double kInvSqrt2 = 0.7071067811865476;     // 1 / sqrt(2)
constexpr double kInvSqrt2Pi = 0.3989422804014327;   // 1 / sqrt(2 pi)
constexpr double kGeluCubic = 0.044715;

template <typename A>
inline A unary_value(UnaryOp op, A x, A alpha) {
    switch (op) {
        case UnaryOp::Neg:
            return -x;
        case UnaryOp::Exp:
            return std::exp(x);
        case UnaryOp::Log:
            return std::log(x);
        case UnaryOp::Sqrt:
            return std::sqrt(x);
        case UnaryOp::Abs:
            return std::abs(x);
        case UnaryOp::Relu:
            return x > A(0) ? x : A(0);
        case UnaryOp::GeluErf:
            return A(0.5) * x * (A(1) + std::erf(x * A(kInvSqrt2)));
        case UnaryOp::GeluTanh: {
            const A u = A(kSqrt2OverPi) * (x + A(kGeluCubic) * x * x * x);
            return A(0.5) * x * (A(1) + std::tanh(u));
        }
        case UnaryOp::Tanh:
            return std::tanh(x);
        case UnaryOp::Sigmoid:
            return A(1) / (A(1) + std::exp(-x));
        case UnaryOp::AddScalar:
            return x + alpha;
        case UnaryOp::MulScalar:
            return x * alpha;
        case UnaryOp::DivScalar:
            return x / alpha;
        case UnaryOp::RDivScalar:
            return alpha / x;
        case UnaryOp::PowScalar:
            return std::pow(x, alpha);
        case UnaryOp::RSubScalar:
            return alpha - x;
    }
    return x;
}

// dy/dx * gy, given x and y = f(x).
template <typename A>
inline A unary_grad(UnaryOp op, A x, A y, A gy, A alpha) {
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
            const A cdf = A(0.5) * (A(1) + std::erf(x * A(kInvSqrt2)));
            const A pdf = A(kInvSqrt2Pi) * std::exp(A(-0.5) * x * x);
            return gy * (cdf + x * pdf);
        }
        case UnaryOp::GeluTanh: {
            const A x2 = x * x;
            const A u = A(kSqrt2OverPi) * (x + A(kGeluCubic) * x2 * x);
            const A t = std::tanh(u);
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
            return alpha == A(0) ? A(0) : gy * alpha * std::pow(x, alpha - A(1));
        case UnaryOp::RSubScalar:
            return -gy;
    }
    return gy;
}

template <typename A>
inline A binary_value(BinaryOp op, A a, A b) {
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

// Strides of `s` (right-aligned into `nd` dims) with 0 for broadcast (size-1 or missing) dims.
std::vector<int64_t> broadcast_strides(const Shape& s, size_t nd) {
    std::vector<int64_t> st(nd, 0);
    const std::vector<int64_t> own = contiguous_strides(s);
    for (size_t i = 0; i < s.size(); ++i) {
        const size_t j = nd - s.size() + i;
        st[j] = s[i] == 1 ? 0 : own[i];
    }
    return st;
}

}  // namespace

void CpuKernels::unary(UnaryOp op, const Tensor& x, Tensor& y, double alpha) {
    dispatch_float(x.dtype(), "unary", [&](auto tag) {
        using T = decltype(tag);
        using A = acc_t<T>;
        const T* px = x.raw<T>();
        T* py = y.raw<T>();
        const A a = static_cast<A>(alpha);
        parallel_for(x.numel(), kElementwiseGrain, [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i)
                py[i] = static_cast<T>(unary_value<A>(op, static_cast<A>(px[i]), a));
        });
    });
}

void CpuKernels::unary_backward(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& gy,
                                Tensor& gx, double alpha) {
    dispatch_float(gy.dtype(), "unary_backward", [&](auto tag) {
        using T = decltype(tag);
        using A = acc_t<T>;
        const T* px = x.defined() ? x.raw<T>() : nullptr;
        const T* py = y.defined() ? y.raw<T>() : nullptr;
        const T* pg = gy.raw<T>();
        T* out = gx.raw<T>();
        const A a = static_cast<A>(alpha);
        parallel_for(gy.numel(), kElementwiseGrain, [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i) {
                const A xv = px ? static_cast<A>(px[i]) : A(0);
                const A yv = py ? static_cast<A>(py[i]) : A(0);
                out[i] = static_cast<T>(unary_grad<A>(op, xv, yv, static_cast<A>(pg[i]), a));
            }
        });
    });
}

void CpuKernels::binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) {
    dispatch_float(out.dtype(), "binary", [&](auto tag) {
        using T = decltype(tag);
        using A = acc_t<T>;
        const T* pa = a.raw<T>();
        const T* pb = b.raw<T>();
        T* po = out.raw<T>();
        const int64_t n = out.numel();
        if (a.shape() == out.shape() && b.shape() == out.shape()) {  // no broadcast
            parallel_for(n, kElementwiseGrain, [&](int64_t s, int64_t e) {
                for (int64_t i = s; i < e; ++i)
                    po[i] = static_cast<T>(
                        binary_value<A>(op, static_cast<A>(pa[i]), static_cast<A>(pb[i])));
            });
            return;
        }
        if (b.numel() == 1 && a.shape() == out.shape()) {  // tensor (op) scalar tensor
            const A bv = static_cast<A>(pb[0]);
            parallel_for(n, kElementwiseGrain, [&](int64_t s, int64_t e) {
                for (int64_t i = s; i < e; ++i)
                    po[i] = static_cast<T>(binary_value<A>(op, static_cast<A>(pa[i]), bv));
            });
            return;
        }
        // General broadcast: walk out as [rows, last] with per-operand strides (0 = broadcast).
        const Shape& os = out.shape();
        const size_t nd = os.size();
        const std::vector<int64_t> sa = broadcast_strides(a.shape(), nd);
        const std::vector<int64_t> sb = broadcast_strides(b.shape(), nd);
        const int64_t last = nd ? os[nd - 1] : 1;
        const int64_t rows = last ? n / last : 0;
        const int64_t la = nd ? sa[nd - 1] : 0, lb = nd ? sb[nd - 1] : 0;
        const int64_t grain_rows =
            std::max<int64_t>(1, kElementwiseGrain / std::max<int64_t>(last, 1));
        parallel_for(rows, grain_rows, [&](int64_t r0, int64_t r1) {
            for (int64_t r = r0; r < r1; ++r) {
                // Offsets of row r in a and b: decompose r over the outer dims.
                int64_t oa = 0, ob = 0, rem = r;
                for (size_t d = nd - 1; d-- > 0;) {
                    const int64_t idx = rem % os[d];
                    rem /= os[d];
                    oa += idx * sa[d];
                    ob += idx * sb[d];
                }
                T* dst = po + r * last;
                for (int64_t j = 0; j < last; ++j)
                    dst[j] = static_cast<T>(binary_value<A>(op, static_cast<A>(pa[oa + j * la]),
                                                            static_cast<A>(pb[ob + j * lb])));
            }
        });
    });
}

void CpuKernels::sum_to(const Tensor& x, Tensor& out) {
    dispatch_float(x.dtype(), "sum_to", [&](auto tag) {
        using T = decltype(tag);
        using A = acc_t<T>;
        const T* px = x.raw<T>();
        T* po = out.raw<T>();
        const Shape& xs = x.shape();
        const size_t nd = xs.size();
        const std::vector<int64_t> so = broadcast_strides(out.shape(), nd);
        const int64_t on = out.numel();
        // Each output element sums the x elements that broadcast onto it, in increasing x order,
        // so the order is fixed. Accumulate in a buffer of A, then round once.
        std::vector<A> acc(static_cast<size_t>(on), A(0));
        const int64_t n = x.numel();
        std::vector<int64_t> idx(nd, 0);
        int64_t off = 0;
        for (int64_t i = 0; i < n; ++i) {
            acc[off] += static_cast<A>(px[i]);
            for (size_t d = nd; d-- > 0;) {  // increment the multi-index, track the out offset
                if (++idx[d] < xs[d]) {
                    off += so[d];
                    break;
                }
                off -= so[d] * (xs[d] - 1);
                idx[d] = 0;
            }
        }
        for (int64_t i = 0; i < on; ++i)
            po[i] = static_cast<T>(acc[i]);
    });
}

// axpy's arithmetic for one element (row_axpy repeats it on the touched rows, bitwise).
template <typename T>
T axpy_element(acc_t<T> a, T y, T x) {
    using A = acc_t<T>;
    return a == A(1) ? static_cast<T>(static_cast<A>(y) + static_cast<A>(x))
                     : static_cast<T>(static_cast<A>(y) + a * static_cast<A>(x));
}

void CpuKernels::axpy(double alpha, const Tensor& x, Tensor& y) {
    dispatch_float(y.dtype(), "axpy", [&](auto tag) {
        using T = decltype(tag);
        using A = acc_t<T>;
        const T* px = x.raw<T>();
        T* py = y.raw<T>();
        const A a = static_cast<A>(alpha);
        parallel_for(y.numel(), kElementwiseGrain, [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i)
                py[i] = axpy_element<T>(a, py[i], px[i]);
        });
    });
}

void row_axpy(double alpha, const Tensor& rows, const Tensor& values, Tensor& table) {
    MDL_ASSERT(table.device().is_cpu() && table.dim() == 2, "row_axpy: a CPU table [V, C], got ",
               table.str());
    const int64_t C = table.size(1), R = rows.numel();
    const int64_t* r = rows.data<int64_t>();
    dispatch_float(table.dtype(), "row_axpy", [&](auto tag) {
        using T = decltype(tag);
        const T* px = values.raw<T>();
        T* py = table.raw<T>();
        const acc_t<T> a = static_cast<acc_t<T>>(alpha);
        parallel_for(R, std::max<int64_t>(1, kElementwiseGrain / std::max<int64_t>(C, 1)),
                     [&](int64_t b, int64_t e) {
                         for (int64_t k = b; k < e; ++k)
                             for (int64_t c = 0; c < C; ++c)
                                 py[r[k] * C + c] =
                                     axpy_element<T>(a, py[r[k] * C + c], px[k * C + c]);
                     });
    });
}

namespace {

// The touched rows of `table` ([V, C]) with their centres (`center`, [R, C]): calls
// f(T{}, a, w, w0, C) for every k, w = table row rows[k], w0 = center row k, with a = alpha in
// acc_t<T>, rows split over the threads. `op` names the caller in errors.
template <typename F>
void for_rows_with_center(const char* op, const Tensor& rows, const Tensor& center, double alpha,
                          Tensor& table, const F& f) {
    MDL_ASSERT(table.device().is_cpu() && table.dim() == 2 && center.dtype() == table.dtype() &&
                   center.numel() == rows.numel() * table.size(1),
               op, ": centres ", center.str(), " for ", rows.numel(), " rows of ", table.str());
    const int64_t C = table.size(1), R = rows.numel();
    const int64_t* r = rows.data<int64_t>();
    dispatch_float(table.dtype(), op, [&](auto tag) {
        using T = decltype(tag);
        const T* pc = center.raw<T>();
        T* pt = table.raw<T>();
        const auto a = static_cast<acc_t<T>>(alpha);
        parallel_for(R, std::max<int64_t>(1, kElementwiseGrain / std::max<int64_t>(C, 1)),
                     [&](int64_t b, int64_t e) {
                         for (int64_t k = b; k < e; ++k)
                             f(tag, a, pt + r[k] * C, pc + k * C, C);
                     });
    });
}

}  // namespace

void row_project(const Tensor& rows, const Tensor& center, double scale, Tensor& table) {
    for_rows_with_center("row_project", rows, center, scale, table,
                         [](auto tag, auto a, auto* w, const auto* w0, int64_t C) {
                             using T = decltype(tag);
                             using A = acc_t<T>;
                             for (int64_t c = 0; c < C; ++c) {
                                 // sub, mul, add: each rounded to T as the separate ops round it.
                                 const auto x0 = static_cast<A>(w0[c]);
                                 const auto diff =
                                     static_cast<A>(static_cast<T>(static_cast<A>(w[c]) - x0));
                                 const auto step = static_cast<A>(static_cast<T>(diff * a));
                                 w[c] = static_cast<T>(x0 + step);
                             }
                         });
}

void row_clamp_relative(const Tensor& rows, const Tensor& center, double eps, Tensor& table) {
    for_rows_with_center("row_clamp_relative", rows, center, eps, table,
                         [](auto tag, auto a, auto* w, const auto* w0, int64_t C) {
                             using T = decltype(tag);
                             using A = acc_t<T>;
                             for (int64_t c = 0; c < C; ++c) {
                                 // abs, mul, sub, add, maximum, minimum: each rounded to T as the
                                 // separate ops round it.
                                 const auto x0 = static_cast<A>(w0[c]);
                                 const auto radius = static_cast<A>(static_cast<T>(
                                     static_cast<A>(static_cast<T>(std::abs(x0))) * a));
                                 const auto lo = static_cast<A>(static_cast<T>(x0 - radius));
                                 const auto hi = static_cast<A>(static_cast<T>(x0 + radius));
                                 const auto x = static_cast<A>(w[c]);
                                 const A above = binary_value(BinaryOp::Maximum, x, lo);
                                 w[c] = static_cast<T>(binary_value(BinaryOp::Minimum, above, hi));
                             }
                         });
}

Tensor gather_rows(const Tensor& table, const Tensor& rows) {
    MDL_ASSERT(table.device().is_cpu() && table.dim() == 2, "gather_rows: a CPU table [V, C], got ",
               table.str());
    const int64_t C = table.size(1), R = rows.numel();
    Tensor out = Tensor::empty({R, C}, table.dtype());
    const size_t row_bytes = static_cast<size_t>(C) * dtype_size(table.dtype());
    const int64_t* r = rows.data<int64_t>();
    const auto* src = static_cast<const char*>(table.data_ptr());
    auto* dst = static_cast<char*>(out.data_ptr());
    for (int64_t k = 0; k < R; ++k)
        std::memcpy(dst + k * row_bytes, src + r[k] * row_bytes, row_bytes);
    return out;
}

void scatter_rows(const Tensor& saved, const Tensor& rows, Tensor& table) {
    MDL_ASSERT(table.device().is_cpu() && table.dim() == 2 &&
                   saved.numel() == rows.numel() * table.size(1),
               "scatter_rows: ", saved.str(), " into ", table.str());
    const size_t row_bytes = static_cast<size_t>(table.size(1)) * dtype_size(table.dtype());
    const int64_t* r = rows.data<int64_t>();
    const auto* src = static_cast<const char*>(saved.data_ptr());
    auto* dst = static_cast<char*>(table.data_ptr());
    for (int64_t k = 0; k < rows.numel(); ++k)
        std::memcpy(dst + r[k] * row_bytes, src + k * row_bytes, row_bytes);
}

}  // namespace minidl
