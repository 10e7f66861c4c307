// ops/cpu/softmax_cpu.cpp — CPU kernels for softmax / log-softmax (forward and backward) and the
// fused cross-entropy (forward and backward). The math is in ops/softmax.h and ops/loss.h.
//
// Every row (a fiber of n elements, stride `inner`) is independent: rows are spread over the
// pool, and each row is computed in acc_t (double for F64, float otherwise) with the max
// subtracted before exp, so e^x never overflows.
#include <cmath>
#include <limits>

#include "core/parallel.h"
#include "ops/cpu/cpu_kernels.h"
#include "ops/cpu/dispatch.h"

namespace minidl {

using cpu::acc_t;
using cpu::dispatch_float;

namespace {

int64_t row_grain(int64_t n) {
    return std::max<int64_t>(1, 16384 / std::max<int64_t>(n, 1));
}

// log sum_c e^(x_c) of one fiber, stable.
template <typename A, typename T>
A log_sum_exp(const T* x, int64_t n, int64_t stride) {
    A m = -std::numeric_limits<A>::infinity();
    for (int64_t j = 0; j < n; ++j)
        m = std::max(m, static_cast<A>(x[j * stride]));
    if (std::isinf(m)) return m;  // all -inf (or +inf present): the sum is e^m
    A s = 0;
    for (int64_t j = 0; j < n; ++j)
        s += std::exp(static_cast<A>(x[j * stride]) - m);
    return m + std::log(s);
}

}  // namespace

void CpuKernels::softmax(const Tensor& x, Tensor& y, int64_t outer, int64_t n, int64_t inner,
                         bool log) {
    dispatch_float(x.dtype(), "softmax", [&](auto tag) {
        using T = decltype(tag);
        using A = acc_t<T>;
        const T* px = x.raw<T>();
        T* py = y.raw<T>();
        parallel_for(outer * inner, row_grain(n), [&](int64_t begin, int64_t end) {
            for (int64_t r = begin; r < end; ++r) {
                const int64_t base = (r / inner) * n * inner + r % inner;
                const A lse = log_sum_exp<A>(px + base, n, inner);
                for (int64_t j = 0; j < n; ++j) {
                    const A z = static_cast<A>(px[base + j * inner]) - lse;
                    py[base + j * inner] = static_cast<T>(log ? z : std::exp(z));
                }
            }
        });
    });
}

void CpuKernels::softmax_backward(const Tensor& y, const Tensor& gy, Tensor& gx, int64_t outer,
                                  int64_t n, int64_t inner, bool log) {
    dispatch_float(y.dtype(), "softmax_backward", [&](auto tag) {
        using T = decltype(tag);
        using A = acc_t<T>;
        const T* py = y.raw<T>();
        const T* pg = gy.raw<T>();
        T* out = gx.raw<T>();
        parallel_for(outer * inner, row_grain(n), [&](int64_t begin, int64_t end) {
            for (int64_t r = begin; r < end; ++r) {
                const int64_t base = (r / inner) * n * inner + r % inner;
                // softmax: dx = y (dy - sum(dy y));  log_softmax: dx = dy - e^y sum(dy)
                A dot = 0;
                for (int64_t j = 0; j < n; ++j) {
                    const int64_t k = base + j * inner;
                    dot +=
                        log ? static_cast<A>(pg[k]) : static_cast<A>(pg[k]) * static_cast<A>(py[k]);
                }
                for (int64_t j = 0; j < n; ++j) {
                    const int64_t k = base + j * inner;
                    const A yv = static_cast<A>(py[k]), gv = static_cast<A>(pg[k]);
                    out[k] = static_cast<T>(log ? gv - std::exp(yv) * dot : yv * (gv - dot));
                }
            }
        });
    });
}

void CpuKernels::cross_entropy(const Tensor& logits, const Tensor& targets, Tensor& losses,
                               Tensor& lse, double label_smoothing, int64_t ignore_index) {
    dispatch_float(logits.dtype(), "cross_entropy", [&](auto tag) {
        using T = decltype(tag);
        using A = acc_t<T>;
        const T* px = logits.raw<T>();
        const int64_t* pt = targets.data<int64_t>();
        A* pl = losses.raw<A>();
        A* plse = lse.raw<A>();
        const int64_t N = logits.shape()[0], C = logits.shape()[1];
        const A ls = static_cast<A>(label_smoothing);
        parallel_for(N, row_grain(C), [&](int64_t begin, int64_t end) {
            for (int64_t i = begin; i < end; ++i) {
                const T* row = px + i * C;
                const A l = log_sum_exp<A>(row, C, 1);
                plse[i] = l;
                if (pt[i] == ignore_index) {
                    pl[i] = 0;
                    continue;
                }
                A loss = (A(1) - ls) * (l - static_cast<A>(row[pt[i]]));
                if (ls != A(0)) {
                    A mean = 0;
                    for (int64_t c = 0; c < C; ++c)
                        mean += static_cast<A>(row[c]);
                    mean /= static_cast<A>(C);
                    loss += ls * (l - mean);
                }
                pl[i] = loss;
            }
        });
    });
}

void CpuKernels::cross_entropy_backward(const Tensor& logits, const Tensor& targets,
                                        const Tensor& lse, const Tensor& row_grad, Tensor& gx,
                                        double label_smoothing, int64_t ignore_index) {
    dispatch_float(logits.dtype(), "cross_entropy_backward", [&](auto tag) {
        using T = decltype(tag);
        using A = acc_t<T>;
        const T* px = logits.raw<T>();
        const int64_t* pt = targets.data<int64_t>();
        const A* plse = lse.raw<A>();
        const A* prg = row_grad.raw<A>();
        T* out = gx.raw<T>();
        const int64_t N = logits.shape()[0], C = logits.shape()[1];
        const A ls = static_cast<A>(label_smoothing);
        const A uniform = ls / static_cast<A>(C);
        parallel_for(N, row_grain(C), [&](int64_t begin, int64_t end) {
            for (int64_t i = begin; i < end; ++i) {
                T* g = out + i * C;
                if (pt[i] == ignore_index) {
                    for (int64_t c = 0; c < C; ++c)
                        g[c] = static_cast<T>(A(0));
                    continue;
                }
                const T* row = px + i * C;
                const A scale = prg[i];
                for (int64_t c = 0; c < C; ++c) {
                    const A p = std::exp(static_cast<A>(row[c]) - plse[i]);
                    const A target = (c == pt[i] ? A(1) - ls : A(0)) + uniform;
                    g[c] = static_cast<T>(scale * (p - target));
                }
            }
        });
    });
}

}  // namespace minidl
