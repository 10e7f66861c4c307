// ops/cpu/optim_cpu.cpp — CPU kernels for the optimizer updates and mixed-precision unscaling:
// adam_step, sgd_step, ema_update, swa_update, unscale_and_check (interfaces in core/kernels.h).
//
// Each update is one pass over the tensor that reads and writes every state array once: the
// step is memory-bound, so fusing is what makes it fast. The formulas are PyTorch 1.13's
// _single_tensor_adam / _single_tensor_adamw / _single_tensor_sgd (torch/optim/adam.py,
// adamw.py, sgd.py), in the same order of float operations, with the scalar coefficients
// (bias corrections, step size) computed in double and rounded once, as PyTorch does:
//   Adam   (Kingma & Ba 2015, arXiv:1412.6980; AdamW: Loshchilov & Hutter 2019,
//           arXiv:1711.05101)
//     g = -g (maximize);  g += wd p (Adam)  or  p *= 1 - lr wd (AdamW)
//     m = m beta1 + (1 - beta1) g;  v = v beta2 + (1 - beta2) g g;  vmax = max(vmax, v)
//     p = p + (-lr / (1 - beta1^t)) m / (sqrt(v or vmax) / sqrt(1 - beta2^t) + eps)
//   SGD    g = -g (maximize);  g += wd p;  b = g (first step) or b momentum + (1 - dampening) g;
//          g = g + momentum b (nesterov) or b;  p = p - lr g
//   EMA    shadow = shadow decay + (1 - decay) param
//   SWA    average = average + (current - average) / (n + 1), each operation rounded to the
//          dtype (torch.optim.swa_utils.AveragedModel's default average, as three ops would)
//   unscale g = g * inv_scale; found_inf = 1 if any g was inf or NaN
//
// Threading: the tensor is cut into blocks of kOptimBlock elements — a fixed cut, independent of
// the thread count — and the pool takes the blocks. Every element is computed by the same
// instructions whichever thread runs it and wherever the pool's chunks fall, so the results are
// bitwise the same for any number of threads.
//
// Denormals: Adam's moments of rarely-updated rows (embedding rows of rare tokens) decay by
// beta1/beta2 every step until they are subnormal, and x86 handles subnormal operands in
// microcode, up to ~100x slower. The update loops therefore run with MXCSR's flush-to-zero (FTZ:
// subnormal results become 0) and denormals-are-zero (DAZ: subnormal inputs read as 0) bits set
// on each executing thread, and restore the previous MXCSR when the thread leaves the loop. The
// values affected are below 1.2e-38, far below anything a weight or a moment can resolve.
//
// The inner loops are plain indexed loops over __restrict pointers with the branches hoisted into
// template flags, so GCC vectorises them (-O3 -march=native -fno-math-errno; checked with
// -fopt-info-vec). Parameters may be F32, F64, F16 or BF16 (16-bit values are computed in float);
// state tensors are F32.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#if defined(__SSE__)
#include <pmmintrin.h>  // _MM_DENORMALS_ZERO_ON
#include <xmmintrin.h>  // _mm_getcsr, _mm_setcsr, _MM_FLUSH_ZERO_ON
#endif

#include "core/check.h"
#include "core/parallel.h"
#include "ops/cpu/cpu_kernels.h"
#include "ops/cpu/dispatch.h"

namespace minidl {

using cpu::acc_t;
using cpu::dispatch_float;

namespace {

// Elements per block: 64 KiB of F32 per array, a few blocks per thread on large tensors.
constexpr int64_t kOptimBlock = 16384;

// Sets FTZ and DAZ for its lifetime on the current thread (does nothing off x86).
class FlushDenormalsScope {
  public:
    FlushDenormalsScope();
    ~FlushDenormalsScope();
    FlushDenormalsScope(const FlushDenormalsScope&) = delete;
    FlushDenormalsScope& operator=(const FlushDenormalsScope&) = delete;

  private:
    unsigned int saved_ = 0;  // the MXCSR to restore
};

#if defined(__SSE__)
FlushDenormalsScope::FlushDenormalsScope() : saved_(_mm_getcsr()) {
    _mm_setcsr(saved_ | _MM_FLUSH_ZERO_ON | _MM_DENORMALS_ZERO_ON);
}
FlushDenormalsScope::~FlushDenormalsScope() {
    _mm_setcsr(saved_);
}
#else
FlushDenormalsScope::FlushDenormalsScope() = default;
FlushDenormalsScope::~FlushDenormalsScope() = default;
#endif

// Calls run(begin, end) for the fixed blocks of [0, n), in parallel, with denormals flushed
// (flush_denormals) on every thread that runs blocks.
template <typename Run>
void for_blocks(int64_t n, bool flush_denormals, const Run& run) {
    const int64_t blocks = (n + kOptimBlock - 1) / kOptimBlock;
    parallel_for(blocks, 1, [&](int64_t b0, int64_t b1) {
        auto body = [&] {
            for (int64_t b = b0; b < b1; ++b)
                run(b * kOptimBlock, std::min(n, (b + 1) * kOptimBlock));
        };
        if (flush_denormals) {
            FlushDenormalsScope ftz;
            body();
        } else {
            body();
        }
    });
}

// Runs f(std::true_type) or f(std::false_type): a runtime flag made a compile-time one, so the
// loops carry no branch on it.
template <typename F>
void with_flag(bool flag, const F& f) {
    if (flag) {
        f(std::true_type{});
    } else {
        f(std::false_type{});
    }
}

void check_state(const char* kernel, const char* name, const Tensor& state, const Tensor& param) {
    MDL_ASSERT(state.dtype() == DType::F32, kernel, ": ", name, " must be f32, got ",
               state.dtype());
    MDL_ASSERT(state.numel() == param.numel(), kernel, ": ", name, " has ", state.numel(),
               " elements, the parameter ", param.numel());
}

// SWA's running mean and its argument checks (the CUDA kernel rounds the same way).
template <typename T, typename A>
inline T swa_value(T avg, T cur, A count) {
    const T diff = static_cast<T>(static_cast<A>(cur) - static_cast<A>(avg));
    const T step = static_cast<T>(static_cast<A>(diff) / count);
    return static_cast<T>(static_cast<A>(avg) + static_cast<A>(step));
}

void check_average(const char* kernel, const Tensor& average, const Tensor& current) {
    MDL_ASSERT(average.dtype() == current.dtype() && average.numel() == current.numel() &&
                   average.device() == current.device(),
               kernel, ": average ", average.dtype(), " ", shape_str(average.shape()), " on ",
               average.device(), " and current ", current.dtype(), " ", shape_str(current.shape()),
               " on ", current.device(), " must share dtype, size and device");
}

// ---- Adam / AdamW
// --------------------------------------------------------------------------------

// The scalars of one Adam step, in the arithmetic type A.
template <typename A>
struct AdamCoefficients {
    A grad_sign;     // -1 with maximize
    A weight_decay;  // coupled (Adam) decay, folded into g
    A decay_factor;  // 1 - lr * wd (AdamW), 1 otherwise
    A beta1, one_minus_beta1, beta2, one_minus_beta2;
    A bias_correction2_sqrt;  // sqrt(1 - beta2^t)
    A eps;
    A neg_step_size;  // -lr / (1 - beta1^t)
};

// kZeroGrad: the gradient is +0.0 everywhere and g is not read (the untouched rows of a
// row-sparse gradient). The arithmetic is the same expression on the same value, and GCC may not
// fold x * 0 or x + 0 without -ffast-math (signed zeros, NaN), so the result is bitwise what a
// dense gradient of zeros gives.
template <typename T, typename A, bool kAmsgrad, bool kCoupledDecay, bool kZeroGrad = false>
void adam_run(T* __restrict p, const T* __restrict g, float* __restrict m, float* __restrict v,
              float* __restrict vmax, int64_t n, const AdamCoefficients<A>& c) {
    for (int64_t i = 0; i < n; ++i) {
        A param = static_cast<A>(p[i]) * c.decay_factor;
        A grad = c.grad_sign * (kZeroGrad ? static_cast<A>(T(0)) : static_cast<A>(g[i]));
        if constexpr (kCoupledDecay) grad = grad + c.weight_decay * param;
        const A mi = static_cast<A>(m[i]) * c.beta1 + c.one_minus_beta1 * grad;
        const A vi = static_cast<A>(v[i]) * c.beta2 + c.one_minus_beta2 * grad * grad;
        m[i] = static_cast<float>(mi);
        v[i] = static_cast<float>(vi);
        A second = vi;
        if constexpr (kAmsgrad) {
            const A vm = static_cast<A>(vmax[i]);
            second = vm > vi ? vm : vi;
            vmax[i] = static_cast<float>(second);
        }
        const A denom = std::sqrt(second) / c.bias_correction2_sqrt + c.eps;
        param = param + c.neg_step_size * mi / denom;
        p[i] = static_cast<T>(param);
    }
}

// The step's scalars in double, as PyTorch computes them in Python floats, rounded once to A.
template <typename A>
AdamCoefficients<A> adam_coefficients(const AdamArgs& args) {
    const double t = static_cast<double>(args.step);
    const double bias_correction1 = 1.0 - std::pow(args.beta1, t);
    const double bias_correction2 = 1.0 - std::pow(args.beta2, t);
    return AdamCoefficients<A>{
        .grad_sign = static_cast<A>(args.maximize ? -1.0 : 1.0),
        .weight_decay = static_cast<A>(args.weight_decay),
        .decay_factor =
            static_cast<A>(args.decoupled_weight_decay ? 1.0 - args.lr * args.weight_decay : 1.0),
        .beta1 = static_cast<A>(args.beta1),
        .one_minus_beta1 = static_cast<A>(1.0 - args.beta1),
        .beta2 = static_cast<A>(args.beta2),
        .one_minus_beta2 = static_cast<A>(1.0 - args.beta2),
        .bias_correction2_sqrt = static_cast<A>(std::sqrt(bias_correction2)),
        .eps = static_cast<A>(args.eps),
        .neg_step_size = static_cast<A>(-(args.lr / bias_correction1))};
}

void check_adam_args(const char* kernel, const Tensor& param, const Tensor& exp_avg,
                     const Tensor& exp_avg_sq, const Tensor* max_exp_avg_sq,
                     const AdamArgs& args) {
    check_state(kernel, "exp_avg", exp_avg, param);
    check_state(kernel, "exp_avg_sq", exp_avg_sq, param);
    MDL_ASSERT(!args.amsgrad || max_exp_avg_sq != nullptr, kernel,
               ": amsgrad needs max_exp_avg_sq");
    if (args.amsgrad) check_state(kernel, "max_exp_avg_sq", *max_exp_avg_sq, param);
    MDL_ASSERT(args.step >= 1, kernel, ": step must count from 1, got ", args.step);
}

// ---- SGD -------------------------------------------------------------------------------------

template <typename A>
struct SgdCoefficients {
    A grad_sign, weight_decay, momentum, one_minus_dampening, neg_lr;
};

template <typename T, typename A, bool kMomentum, bool kFirstStep, bool kNesterov,
          bool kCoupledDecay>
void sgd_run(T* __restrict p, const T* __restrict g, float* __restrict buf, int64_t n,
             const SgdCoefficients<A>& c) {
    for (int64_t i = 0; i < n; ++i) {
        const A param = static_cast<A>(p[i]);
        A grad = c.grad_sign * static_cast<A>(g[i]);
        if constexpr (kCoupledDecay) grad = grad + c.weight_decay * param;
        if constexpr (kMomentum) {
            A b;
            if constexpr (kFirstStep) {
                b = grad;  // PyTorch: buf = clone(d_p), no dampening on the first step
            } else {
                b = static_cast<A>(buf[i]) * c.momentum + c.one_minus_dampening * grad;
            }
            buf[i] = static_cast<float>(b);
            if constexpr (kNesterov) {
                grad = grad + c.momentum * b;
            } else {
                grad = b;
            }
        }
        p[i] = static_cast<T>(param + c.neg_lr * grad);
    }
}

// ---- unscale_and_check -----------------------------------------------------------------------

// The bits of an element and the mask of its exponent field: all ones means inf or NaN.
template <typename T>
struct FloatBits;
template <>
struct FloatBits<float> {
    using U = uint32_t;
    static constexpr U kExponent = 0x7f800000u;
};
template <>
struct FloatBits<double> {
    using U = uint64_t;
    static constexpr U kExponent = 0x7ff0000000000000ull;
};
template <>
struct FloatBits<Eigen::half> {
    using U = uint16_t;
    static constexpr U kExponent = 0x7c00u;
};
template <>
struct FloatBits<Eigen::bfloat16> {
    using U = uint16_t;
    static constexpr U kExponent = 0x7f80u;
};

// Scales g[0, n) by inv_scale; returns true when any element was inf or NaN (tested on the bits,
// an integer OR-reduction that vectorises where a floating one would not).
template <typename T, typename A>
bool unscale_run(T* __restrict g, int64_t n, A inv_scale) {
    using U = typename FloatBits<T>::U;
    constexpr U kExponent = FloatBits<T>::kExponent;
    unsigned non_finite = 0;
    for (int64_t i = 0; i < n; ++i) {
        U bits;
        std::memcpy(&bits, &g[i], sizeof(U));
        non_finite |= static_cast<unsigned>((bits & kExponent) == kExponent);
        g[i] = static_cast<T>(static_cast<A>(g[i]) * inv_scale);
    }
    return non_finite != 0;
}

}  // namespace

void CpuKernels::adam_step(Tensor& param, const Tensor& grad, Tensor& exp_avg, Tensor& exp_avg_sq,
                           Tensor* max_exp_avg_sq, const AdamArgs& args) {
    MDL_ASSERT(grad.dtype() == param.dtype() && grad.numel() == param.numel(),
               "adam_step: gradient ", grad.dtype(), " ", shape_str(grad.shape()),
               " does not match parameter ", param.dtype(), " ", shape_str(param.shape()));
    check_adam_args("adam_step", param, exp_avg, exp_avg_sq, max_exp_avg_sq, args);

    const bool coupled = !args.decoupled_weight_decay && args.weight_decay != 0.0;
    dispatch_float(param.dtype(), "adam_step", [&](auto tag) {
        using T = decltype(tag);
        using A = acc_t<T>;
        const AdamCoefficients<A> c = adam_coefficients<A>(args);
        T* p = param.raw<T>();
        const T* g = grad.raw<T>();
        float* m = exp_avg.raw<float>();
        float* v = exp_avg_sq.raw<float>();
        float* vmax = args.amsgrad ? max_exp_avg_sq->raw<float>() : nullptr;
        with_flag(args.amsgrad, [&](auto amsgrad) {
            with_flag(coupled, [&](auto coupled_decay) {
                for_blocks(param.numel(), true, [&](int64_t b, int64_t e) {
                    adam_run<T, A, decltype(amsgrad)::value, decltype(coupled_decay)::value>(
                        p + b, g + b, m + b, v + b, vmax ? vmax + b : nullptr, e - b, c);
                });
            });
        });
    });
}

// The row-sparse step: each fixed block of elements is walked as runs of untouched elements
// (adam_run with kZeroGrad: g is never read) and pieces of touched rows (adam_run on the row's
// stored gradient). Same blocks, same per-element instructions as adam_step: bitwise its result.
void CpuKernels::adam_step_rows(Tensor& param, const Tensor& rows, const Tensor& values,
                                Tensor& exp_avg, Tensor& exp_avg_sq, Tensor* max_exp_avg_sq,
                                const AdamArgs& args) {
    MDL_ASSERT(param.dim() == 2 && values.dim() == 2 && values.dtype() == param.dtype() &&
                   values.shape()[1] == param.shape()[1] && rows.dtype() == DType::I64 &&
                   rows.numel() == values.shape()[0],
               "adam_step_rows: rows ", shape_str(rows.shape()), " and values ", values.dtype(),
               " ", shape_str(values.shape()), " do not fit the parameter ", param.dtype(), " ",
               shape_str(param.shape()));
    check_adam_args("adam_step_rows", param, exp_avg, exp_avg_sq, max_exp_avg_sq, args);
    const bool coupled = !args.decoupled_weight_decay && args.weight_decay != 0.0;
    const int64_t C = param.shape()[1], n = param.numel(), R = rows.numel();
    const int64_t* touched = rows.data<int64_t>();
    dispatch_float(param.dtype(), "adam_step_rows", [&](auto tag) {
        using T = decltype(tag);
        using A = acc_t<T>;
        const AdamCoefficients<A> c = adam_coefficients<A>(args);
        T* p = param.raw<T>();
        const T* g = values.raw<T>();
        float* m = exp_avg.raw<float>();
        float* v = exp_avg_sq.raw<float>();
        float* vmax = args.amsgrad ? max_exp_avg_sq->raw<float>() : nullptr;
        with_flag(args.amsgrad, [&](auto amsgrad) {
            with_flag(coupled, [&](auto coupled_decay) {
                constexpr bool kAms = decltype(amsgrad)::value;
                constexpr bool kCoupled = decltype(coupled_decay)::value;
                for_blocks(n, true, [&](int64_t b, int64_t e) {
                    // k: the first touched row at or after the row holding element b.
                    int64_t k = std::lower_bound(touched, touched + R, b / C) - touched;
                    for (int64_t pos = b; pos < e;) {
                        const int64_t row_start = k < R ? touched[k] * C : n;
                        if (pos < row_start) {  // untouched: g = +0.0
                            const int64_t end = std::min(e, row_start);
                            adam_run<T, A, kAms, kCoupled, true>(
                                p + pos, nullptr, m + pos, v + pos, vmax ? vmax + pos : nullptr,
                                end - pos, c);
                            pos = end;
                            continue;
                        }
                        const int64_t end = std::min(e, row_start + C);
                        adam_run<T, A, kAms, kCoupled>(p + pos, g + k * C + (pos - row_start),
                                                       m + pos, v + pos,
                                                       vmax ? vmax + pos : nullptr, end - pos, c);
                        if (end == row_start + C) ++k;
                        pos = end;
                    }
                });
            });
        });
    });
}

void CpuKernels::sgd_step(Tensor& param, const Tensor& grad, Tensor* momentum_buffer,
                          const SgdArgs& args) {
    MDL_ASSERT(grad.dtype() == param.dtype() && grad.numel() == param.numel(),
               "sgd_step: gradient ", grad.dtype(), " ", shape_str(grad.shape()),
               " does not match parameter ", param.dtype(), " ", shape_str(param.shape()));
    const bool use_momentum = args.momentum != 0.0;
    MDL_ASSERT(!use_momentum || momentum_buffer != nullptr,
               "sgd_step: momentum needs a momentum buffer");
    if (use_momentum) check_state("sgd_step", "momentum_buffer", *momentum_buffer, param);
    const bool coupled = args.weight_decay != 0.0;
    dispatch_float(param.dtype(), "sgd_step", [&](auto tag) {
        using T = decltype(tag);
        using A = acc_t<T>;
        const SgdCoefficients<A> c{.grad_sign = static_cast<A>(args.maximize ? -1.0 : 1.0),
                                   .weight_decay = static_cast<A>(args.weight_decay),
                                   .momentum = static_cast<A>(args.momentum),
                                   .one_minus_dampening = static_cast<A>(1.0 - args.dampening),
                                   .neg_lr = static_cast<A>(-args.lr)};
        T* p = param.raw<T>();
        const T* g = grad.raw<T>();
        float* buf = use_momentum ? momentum_buffer->raw<float>() : nullptr;
        with_flag(use_momentum, [&](auto momentum) {
            with_flag(args.first_step, [&](auto first) {
                with_flag(args.nesterov, [&](auto nesterov) {
                    with_flag(coupled, [&](auto coupled_decay) {
                        for_blocks(param.numel(), true, [&](int64_t b, int64_t e) {
                            sgd_run<T, A, decltype(momentum)::value, decltype(first)::value,
                                    decltype(nesterov)::value, decltype(coupled_decay)::value>(
                                p + b, g + b, buf ? buf + b : nullptr, e - b, c);
                        });
                    });
                });
            });
        });
    });
}

void CpuKernels::ema_update(Tensor& shadow, const Tensor& param, double decay) {
    check_state("ema_update", "shadow", shadow, param);
    dispatch_float(param.dtype(), "ema_update", [&](auto tag) {
        using T = decltype(tag);
        using A = acc_t<T>;
        const A keep = static_cast<A>(decay);
        const A take = static_cast<A>(1.0 - decay);
        float* __restrict s = shadow.raw<float>();
        const T* __restrict p = param.raw<T>();
        for_blocks(param.numel(), false, [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i)
                s[i] =
                    static_cast<float>(static_cast<A>(s[i]) * keep + take * static_cast<A>(p[i]));
        });
    });
}

void CpuKernels::swa_update(Tensor& average, const Tensor& current, int64_t n_averaged) {
    check_average("swa_update", average, current);
    dispatch_float(average.dtype(), "swa_update", [&](auto tag) {
        using T = decltype(tag);
        using A = acc_t<T>;
        const A count = static_cast<A>(static_cast<double>(n_averaged + 1));
        T* __restrict avg = average.raw<T>();
        const T* __restrict cur = current.raw<T>();
        for_blocks(average.numel(), false, [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i)
                avg[i] = swa_value<T, A>(avg[i], cur[i], count);
        });
    });
}

void CpuKernels::unscale_and_check(std::vector<Tensor>& grads, const Tensor& inv_scale,
                                   Tensor& found_inf) {
    MDL_ASSERT(inv_scale.dtype() == DType::F32 && inv_scale.numel() == 1,
               "unscale_and_check: inv_scale must be f32 [1], got ", inv_scale.dtype(), " ",
               shape_str(inv_scale.shape()));
    MDL_ASSERT(found_inf.dtype() == DType::F32 && found_inf.numel() == 1,
               "unscale_and_check: found_inf must be f32 [1], got ", found_inf.dtype(), " ",
               shape_str(found_inf.shape()));
    const float inv = inv_scale.raw<float>()[0];
    bool any_non_finite = false;
    for (Tensor& g : grads) {
        if (!g.defined() || g.numel() == 0) continue;
        dispatch_float(g.dtype(), "unscale_and_check", [&](auto tag) {
            using T = decltype(tag);
            using A = acc_t<T>;
            T* data = g.raw<T>();
            const int64_t n = g.numel();
            // One flag per block, combined after the pass: no shared writes between threads.
            std::vector<unsigned char> block_flags(
                static_cast<size_t>((n + kOptimBlock - 1) / kOptimBlock));
            for_blocks(n, false, [&](int64_t b, int64_t e) {
                block_flags[static_cast<size_t>(b / kOptimBlock)] =
                    unscale_run<T, A>(data + b, e - b, static_cast<A>(inv));
            });
            for (unsigned char flag : block_flags)
                any_non_finite = any_non_finite || flag;
        });
    }
    if (any_non_finite) found_inf.raw<float>()[0] = 1.0f;
}

}  // namespace minidl
