// ops/cpu/layer_norm_cpu.cpp — CPU kernels for layer normalisation over the last C elements of
// each row (ops/layer_norm.h has the math).
//
// Statistics are computed per row in acc_t (float for 16-bit and F32 inputs, double for F64) with
// two passes (mean, then the mean of squared deviations), which avoids the cancellation of
// E[x^2] - E[x]^2. The weight/bias gradients sum over rows: each column is summed by one thread
// in row order, so the result is independent of the thread count.
#include <cmath>

#include "core/parallel.h"
#include "ops/cpu/cpu_kernels.h"
#include "ops/cpu/dispatch.h"

namespace minidl {

using cpu::acc_t;
using cpu::dispatch_float;

void CpuKernels::layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y,
                            Tensor& mean, Tensor& rstd, double eps) {
    dispatch_float(x.dtype(), "layer_norm", [&](auto tag) {
        using T = decltype(tag);
        using A = acc_t<T>;
        const int64_t C = x.shape().back();
        const int64_t R = C ? x.numel() / C : 0;
        const T* px = x.raw<T>();
        const T* pw = w.defined() ? w.raw<T>() : nullptr;
        const T* pb = b.defined() ? b.raw<T>() : nullptr;
        T* py = y.raw<T>();
        A* pm = mean.raw<A>();
        A* pr = rstd.raw<A>();
        parallel_for(R, std::max<int64_t>(1, 16384 / std::max<int64_t>(C, 1)),
                     [&](int64_t r0, int64_t r1) {
                         for (int64_t r = r0; r < r1; ++r) {
                             const T* row = px + r * C;
                             A mu = 0;
                             for (int64_t c = 0; c < C; ++c)
                                 mu += static_cast<A>(row[c]);
                             mu /= static_cast<A>(C);
                             A var = 0;
                             for (int64_t c = 0; c < C; ++c) {
                                 const A d = static_cast<A>(row[c]) - mu;
                                 var += d * d;
                             }
                             var /= static_cast<A>(C);
                             const A rs = A(1) / std::sqrt(var + static_cast<A>(eps));
                             pm[r] = mu;
                             pr[r] = rs;
                             for (int64_t c = 0; c < C; ++c) {
                                 A v = (static_cast<A>(row[c]) - mu) * rs;
                                 if (pw) v *= static_cast<A>(pw[c]);
                                 if (pb) v += static_cast<A>(pb[c]);
                                 py[r * C + c] = static_cast<T>(v);
                             }
                         }
                     });
    });
}

void CpuKernels::layer_norm_backward(const Tensor& x, const Tensor& w, const Tensor& mean,
                                     const Tensor& rstd, const Tensor& gy, Tensor& gx, Tensor& gw,
                                     Tensor& gb) {
    dispatch_float(x.dtype(), "layer_norm_backward", [&](auto tag) {
        using T = decltype(tag);
        using A = acc_t<T>;
        const int64_t C = x.shape().back();
        const int64_t R = C ? x.numel() / C : 0;
        const T* px = x.raw<T>();
        const T* pw = w.defined() ? w.raw<T>() : nullptr;
        const A* pm = mean.raw<A>();
        const A* pr = rstd.raw<A>();
        const T* pg = gy.raw<T>();
        if (gx.defined()) {
            T* out = gx.raw<T>();
            // dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)),  dxhat = dy w
            parallel_for(
                R, std::max<int64_t>(1, 16384 / std::max<int64_t>(C, 1)),
                [&](int64_t r0, int64_t r1) {
                    for (int64_t r = r0; r < r1; ++r) {
                        const T* row = px + r * C;
                        const T* g = pg + r * C;
                        A sum_d = 0, sum_dx = 0;
                        for (int64_t c = 0; c < C; ++c) {
                            const A xhat = (static_cast<A>(row[c]) - pm[r]) * pr[r];
                            const A d = static_cast<A>(g[c]) * (pw ? static_cast<A>(pw[c]) : A(1));
                            sum_d += d;
                            sum_dx += d * xhat;
                        }
                        const A md = sum_d / static_cast<A>(C);
                        const A mdx = sum_dx / static_cast<A>(C);
                        for (int64_t c = 0; c < C; ++c) {
                            const A xhat = (static_cast<A>(row[c]) - pm[r]) * pr[r];
                            const A d = static_cast<A>(g[c]) * (pw ? static_cast<A>(pw[c]) : A(1));
                            out[r * C + c] = static_cast<T>(pr[r] * (d - md - xhat * mdx));
                        }
                    }
                });
        }
        if (gw.defined() || gb.defined()) {
            T* ow = gw.defined() ? gw.raw<T>() : nullptr;
            T* ob = gb.defined() ? gb.raw<T>() : nullptr;
            parallel_for(C, std::max<int64_t>(1, 16384 / std::max<int64_t>(R, 1)),
                         [&](int64_t c0, int64_t c1) {
                             for (int64_t c = c0; c < c1; ++c) {
                                 A sw = 0, sb = 0;
                                 for (int64_t r = 0; r < R; ++r) {
                                     const A g = static_cast<A>(pg[r * C + c]);
                                     sw += g * (static_cast<A>(px[r * C + c]) - pm[r]) * pr[r];
                                     sb += g;
                                 }
                                 if (ow) ow[c] = static_cast<T>(static_cast<A>(ow[c]) + sw);
                                 if (ob) ob[c] = static_cast<T>(static_cast<A>(ob[c]) + sb);
                             }
                         });
        }
    });
}

}  // namespace minidl
