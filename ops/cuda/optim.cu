// ops/cuda/optim.cu — CUDA kernels for the optimizer updates and mixed-precision unscaling:
// adam_step, sgd_step, ema_update, swa_update, unscale_and_check (interfaces in core/kernels.h).
//
// The formulas and their order of float operations are the CPU's (ops/cpu/optim_cpu.cpp, after
// PyTorch 1.13's _single_tensor_adam/adamw/sgd), with the scalar coefficients computed in double
// on the host and rounded once:
//   Adam   g = -g (maximize);  g += wd p (Adam)  or  p *= 1 - lr wd (AdamW)
//          m = m beta1 + (1 - beta1) g;  v = v beta2 + (1 - beta2) g g;  vmax = max(vmax, v)
//          p = p + (-lr / (1 - beta1^t)) m / (sqrt(v or vmax) / sqrt(1 - beta2^t) + eps)
//   SGD    g = -g (maximize);  g += wd p;  b = g (first step) or b momentum + (1 - dampening) g;
//          g = g + momentum b (nesterov) or b;  p = p - lr g
//   EMA    shadow = shadow decay + (1 - decay) param
//   SWA    average = average + (current - average) / (n + 1), each operation rounded to the dtype
//   unscale g = g * inv_scale; found_inf = 1 if any g was inf or NaN (left alone otherwise)
// Parameters are F32, F64, F16 or BF16 (computed in acc_t); optimizer state is F32. The GPU keeps
// subnormal numbers where the CPU flushes them to zero (< 1.2e-38: no visible difference), and
// may fuse multiply-adds differently from the CPU build: results agree to a few ulps.
//
// Strategy: each update is one memory-bound pass that reads and writes every array once. Threads
// take packs of V consecutive elements (V = 4, or 2 for F64: 16-byte loads of the parameter and
// of each F32 state array) when every pointer is aligned for it, one element otherwise; the last
// n % V elements are done one by one. unscale_and_check scales in place and raises found_inf from
// the device (a warp vote, one store per warp that saw a non-finite value): no host sync; up to
// 48 gradients of a dtype share one launch.
#include <algorithm>
#include <climits>
#include <cmath>

#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/cuda_kernels.h"

namespace minidl {

using namespace cuda_detail;

namespace {

// The elements per pack for a parameter type.
template <typename T>
constexpr int pack_width() {
    return sizeof(T) == 8 ? 2 : 4;
}

// ---- Adam ------------------------------------------------------------------------------------

template <typename A>
struct AdamCoefficients {
    A grad_sign;     // -1 with maximize
    A weight_decay;  // coupled (Adam) decay, folded into g
    A decay_factor;  // 1 - lr * wd (AdamW), 1 otherwise
    A beta1, one_minus_beta1, beta2, one_minus_beta2;
    A bias_correction2_sqrt;  // sqrt(1 - beta2^t)
    A eps;
    A neg_step_size;  // -lr / (1 - beta1^t)
    bool amsgrad, coupled;
};

template <typename T, typename A>
__device__ __forceinline__ void adam_element(T& p, T g, float& m, float& v, float& vmax,
                                             const AdamCoefficients<A>& c) {
    A param = convert<A>(p) * c.decay_factor;
    A grad = c.grad_sign * convert<A>(g);
    if (c.coupled) grad = grad + c.weight_decay * param;
    const A mi = static_cast<A>(m) * c.beta1 + c.one_minus_beta1 * grad;
    const A vi = static_cast<A>(v) * c.beta2 + c.one_minus_beta2 * grad * grad;
    m = static_cast<float>(mi);
    v = static_cast<float>(vi);
    A second = vi;
    if (c.amsgrad) {
        const A vm = static_cast<A>(vmax);
        second = vm > vi ? vm : vi;
        vmax = static_cast<float>(second);
    }
    const A denom = dev_sqrt(second) / c.bias_correction2_sqrt + c.eps;
    param = param + c.neg_step_size * mi / denom;
    p = convert<T>(param);
}

template <typename T, int V>
__global__ void adam_packed_kernel(T* __restrict__ p, const T* __restrict__ g,
                                   float* __restrict__ m, float* __restrict__ v,
                                   float* __restrict__ vmax, int64_t n,
                                   AdamCoefficients<acc_t<T>> c) {
    const int64_t packs = n / V;
    for (int64_t k = global_thread(); k < packs; k += grid_stride()) {
        Pack<T, V> pp = reinterpret_cast<Pack<T, V>*>(p)[k];
        const Pack<T, V> gp = reinterpret_cast<const Pack<T, V>*>(g)[k];
        Pack<float, V> mp = reinterpret_cast<Pack<float, V>*>(m)[k];
        Pack<float, V> vp = reinterpret_cast<Pack<float, V>*>(v)[k];
        Pack<float, V> xp{};
        if (c.amsgrad) xp = reinterpret_cast<Pack<float, V>*>(vmax)[k];
#pragma unroll
        for (int l = 0; l < V; ++l)
            adam_element(pp.v[l], gp.v[l], mp.v[l], vp.v[l], xp.v[l], c);
        reinterpret_cast<Pack<T, V>*>(p)[k] = pp;
        reinterpret_cast<Pack<float, V>*>(m)[k] = mp;
        reinterpret_cast<Pack<float, V>*>(v)[k] = vp;
        if (c.amsgrad) reinterpret_cast<Pack<float, V>*>(vmax)[k] = xp;
    }
    for (int64_t i = packs * V + global_thread(); i < n; i += grid_stride()) {
        float unused = 0.0f;
        adam_element(p[i], g[i], m[i], v[i], c.amsgrad ? vmax[i] : unused, c);
    }
}

// ---- SGD -------------------------------------------------------------------------------------

template <typename A>
struct SgdCoefficients {
    A grad_sign, weight_decay, momentum, one_minus_dampening, neg_lr;
    bool use_momentum, first_step, nesterov, coupled;
};

template <typename T, typename A>
__device__ __forceinline__ void sgd_element(T& p, T g, float& buf, const SgdCoefficients<A>& c) {
    const A param = convert<A>(p);
    A grad = c.grad_sign * convert<A>(g);
    if (c.coupled) grad = grad + c.weight_decay * param;
    if (c.use_momentum) {
        // PyTorch: buf = clone(d_p) on the first step, no dampening.
        const A b =
            c.first_step ? grad : static_cast<A>(buf) * c.momentum + c.one_minus_dampening * grad;
        buf = static_cast<float>(b);
        grad = c.nesterov ? grad + c.momentum * b : b;
    }
    p = convert<T>(param + c.neg_lr * grad);
}

template <typename T, int V>
__global__ void sgd_packed_kernel(T* __restrict__ p, const T* __restrict__ g,
                                  float* __restrict__ buf, int64_t n, SgdCoefficients<acc_t<T>> c) {
    const int64_t packs = n / V;
    for (int64_t k = global_thread(); k < packs; k += grid_stride()) {
        Pack<T, V> pp = reinterpret_cast<Pack<T, V>*>(p)[k];
        const Pack<T, V> gp = reinterpret_cast<const Pack<T, V>*>(g)[k];
        Pack<float, V> bp{};
        if (c.use_momentum && !c.first_step) bp = reinterpret_cast<Pack<float, V>*>(buf)[k];
#pragma unroll
        for (int l = 0; l < V; ++l)
            sgd_element(pp.v[l], gp.v[l], bp.v[l], c);
        reinterpret_cast<Pack<T, V>*>(p)[k] = pp;
        if (c.use_momentum) reinterpret_cast<Pack<float, V>*>(buf)[k] = bp;
    }
    for (int64_t i = packs * V + global_thread(); i < n; i += grid_stride()) {
        float unused = 0.0f;
        sgd_element(p[i], g[i], c.use_momentum ? buf[i] : unused, c);
    }
}

// ---- EMA ---------------------------------------------------------------------------------------

template <typename T, int V>
__global__ void ema_packed_kernel(float* __restrict__ shadow, const T* __restrict__ param,
                                  int64_t n, acc_t<T> keep, acc_t<T> take) {
    using A = acc_t<T>;
    const int64_t packs = n / V;
    for (int64_t k = global_thread(); k < packs; k += grid_stride()) {
        Pack<float, V> sp = reinterpret_cast<Pack<float, V>*>(shadow)[k];
        const Pack<T, V> pp = reinterpret_cast<const Pack<T, V>*>(param)[k];
#pragma unroll
        for (int l = 0; l < V; ++l)
            sp.v[l] =
                static_cast<float>(static_cast<A>(sp.v[l]) * keep + take * convert<A>(pp.v[l]));
        reinterpret_cast<Pack<float, V>*>(shadow)[k] = sp;
    }
    for (int64_t i = packs * V + global_thread(); i < n; i += grid_stride())
        shadow[i] =
            static_cast<float>(static_cast<A>(shadow[i]) * keep + take * convert<A>(param[i]));
}

// ---- SWA ---------------------------------------------------------------------------------------

// average + (current - average) / count, each operation rounded to T (as the three ops would).
template <typename T>
__device__ __forceinline__ T swa_value(T avg, T cur, acc_t<T> count) {
    using A = acc_t<T>;
    const T diff = convert<T>(convert<A>(cur) - convert<A>(avg));
    const T step = convert<T>(convert<A>(diff) / count);
    return convert<T>(convert<A>(avg) + convert<A>(step));
}

template <typename T, int V>
__global__ void swa_packed_kernel(T* __restrict__ average, const T* __restrict__ current, int64_t n,
                                  acc_t<T> count) {
    const int64_t packs = n / V;
    for (int64_t k = global_thread(); k < packs; k += grid_stride()) {
        Pack<T, V> ap = reinterpret_cast<Pack<T, V>*>(average)[k];
        const Pack<T, V> cp = reinterpret_cast<const Pack<T, V>*>(current)[k];
#pragma unroll
        for (int l = 0; l < V; ++l)
            ap.v[l] = swa_value<T>(ap.v[l], cp.v[l], count);
        reinterpret_cast<Pack<T, V>*>(average)[k] = ap;
    }
    for (int64_t i = packs * V + global_thread(); i < n; i += grid_stride())
        average[i] = swa_value<T>(average[i], current[i], count);
}

// ---- unscale_and_check -------------------------------------------------------------------------

// Many gradients per launch (PyTorch's _foreach / _amp_foreach_non_finite_check_and_unscale_): up
// to kTensorsPerLaunch tensors of one dtype travel in the kernel's arguments, each cut into
// chunks of kUnscaleChunk elements, one block per chunk; block b works on tensor t, the last with
// first_block[t] <= b. A model's few dozen gradients take one launch instead of one each.
constexpr int kTensorsPerLaunch = 48;
constexpr int64_t kUnscaleChunk = kBlock * 16;

struct UnscaleBatch {
    void* ptr[kTensorsPerLaunch];
    int64_t n[kTensorsPerLaunch];
    int64_t first_block[kTensorsPerLaunch + 1];
    int count;
};

template <typename T>
__global__ void unscale_check_kernel(UnscaleBatch batch, const float* __restrict__ inv_scale,
                                     float* __restrict__ found_inf) {
    using A = acc_t<T>;
    const int64_t block = blockIdx.x;
    int t = 0;
    while (t + 1 < batch.count && batch.first_block[t + 1] <= block)
        ++t;
    T* g = static_cast<T*>(batch.ptr[t]);
    const int64_t begin = (block - batch.first_block[t]) * kUnscaleChunk;
    const int64_t end = min(batch.n[t], begin + kUnscaleChunk);
    const A inv = static_cast<A>(*inv_scale);
    bool non_finite = false;
    for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
        const A x = convert<A>(g[i]);
        non_finite |= !isfinite(x);
        g[i] = convert<T>(x * inv);
    }
    // Every thread of the block reaches the vote (the loop above has no early exit).
    if (__any_sync(0xffffffffu, non_finite) && (threadIdx.x & 31) == 0) *found_inf = 1.0f;
}

void check_state(const char* kernel, const char* name, const Tensor& state, const Tensor& param) {
    MDL_ASSERT(state.dtype() == DType::F32, kernel, ": ", name, " must be f32, got ",
               state.dtype());
    MDL_ASSERT(state.numel() == param.numel(), kernel, ": ", name, " has ", state.numel(),
               " elements, the parameter ", param.numel());
    MDL_ASSERT(state.device() == param.device(), kernel, ": ", name, " is on ", state.device(),
               ", the parameter on ", param.device());
}

// Launches kernel<T, V> with V = pack_width<T>() when every pointer is aligned to a pack, else V
// = 1.
template <typename T, typename Launch>
void launch_packed(std::initializer_list<std::pair<const void*, size_t>> pointers,
                   const Launch& launch) {
    constexpr int V = pack_width<T>();
    bool packed = true;
    for (const auto& [ptr, elem] : pointers)
        packed = packed && aligned_for(ptr, elem * V);
    if (packed) {
        launch(std::integral_constant<int, V>{});
    } else {
        launch(std::integral_constant<int, 1>{});
    }
}

}  // namespace

void CudaKernels::adam_step(Tensor& param, const Tensor& grad, Tensor& exp_avg, Tensor& exp_avg_sq,
                            Tensor* max_exp_avg_sq, const AdamArgs& args) {
    MDL_ASSERT(grad.dtype() == param.dtype() && grad.numel() == param.numel(),
               "adam_step: gradient ", grad.dtype(), " ", shape_str(grad.shape()),
               " does not match parameter ", param.dtype(), " ", shape_str(param.shape()));
    check_state("adam_step", "exp_avg", exp_avg, param);
    check_state("adam_step", "exp_avg_sq", exp_avg_sq, param);
    MDL_ASSERT(!args.amsgrad || max_exp_avg_sq != nullptr,
               "adam_step: amsgrad needs max_exp_avg_sq");
    if (args.amsgrad) check_state("adam_step", "max_exp_avg_sq", *max_exp_avg_sq, param);
    MDL_ASSERT(args.step >= 1, "adam_step: step must count from 1, got ", args.step);
    const int64_t n = param.numel();
    if (n == 0) return;
    const int dev = cuda::device_of(param);
    cuda::DeviceGuard guard(dev);
    const double t = static_cast<double>(args.step);
    const double bias_correction1 = 1.0 - std::pow(args.beta1, t);
    const double bias_correction2 = 1.0 - std::pow(args.beta2, t);
    dispatch_float(param.dtype(), "adam_step", [&](auto tag) {
        using T = decltype(tag);
        using A = acc_t<T>;
        const AdamCoefficients<A> c{
            .grad_sign = static_cast<A>(args.maximize ? -1.0 : 1.0),
            .weight_decay = static_cast<A>(args.weight_decay),
            .decay_factor = static_cast<A>(
                args.decoupled_weight_decay ? 1.0 - args.lr * args.weight_decay : 1.0),
            .beta1 = static_cast<A>(args.beta1),
            .one_minus_beta1 = static_cast<A>(1.0 - args.beta1),
            .beta2 = static_cast<A>(args.beta2),
            .one_minus_beta2 = static_cast<A>(1.0 - args.beta2),
            .bias_correction2_sqrt = static_cast<A>(std::sqrt(bias_correction2)),
            .eps = static_cast<A>(args.eps),
            .neg_step_size = static_cast<A>(-(args.lr / bias_correction1)),
            .amsgrad = args.amsgrad,
            .coupled = !args.decoupled_weight_decay && args.weight_decay != 0.0};
        T* p = param.raw<T>();
        const T* g = grad.raw<const T>();
        float* m = exp_avg.raw<float>();
        float* v = exp_avg_sq.raw<float>();
        float* vmax = args.amsgrad ? max_exp_avg_sq->raw<float>() : nullptr;
        launch_packed<T>({{p, sizeof(T)}, {g, sizeof(T)}, {m, 4}, {v, 4}, {vmax, 4}},
                         [&](auto width) {
                             constexpr int V = decltype(width)::value;
                             adam_packed_kernel<T, V>
                                 <<<grid_for(ceil_div(n, V)), kBlock, 0, cuda::stream(dev)>>>(
                                     p, g, m, v, vmax, n, c);
                             MDL_CUDA_LAUNCH_CHECK();
                         });
    });
}

void CudaKernels::sgd_step(Tensor& param, const Tensor& grad, Tensor* momentum_buffer,
                           const SgdArgs& args) {
    MDL_ASSERT(grad.dtype() == param.dtype() && grad.numel() == param.numel(),
               "sgd_step: gradient ", grad.dtype(), " ", shape_str(grad.shape()),
               " does not match parameter ", param.dtype(), " ", shape_str(param.shape()));
    const bool use_momentum = args.momentum != 0.0;
    MDL_ASSERT(!use_momentum || momentum_buffer != nullptr,
               "sgd_step: momentum needs a momentum buffer");
    if (use_momentum) check_state("sgd_step", "momentum_buffer", *momentum_buffer, param);
    const int64_t n = param.numel();
    if (n == 0) return;
    const int dev = cuda::device_of(param);
    cuda::DeviceGuard guard(dev);
    dispatch_float(param.dtype(), "sgd_step", [&](auto tag) {
        using T = decltype(tag);
        using A = acc_t<T>;
        const SgdCoefficients<A> c{.grad_sign = static_cast<A>(args.maximize ? -1.0 : 1.0),
                                   .weight_decay = static_cast<A>(args.weight_decay),
                                   .momentum = static_cast<A>(args.momentum),
                                   .one_minus_dampening = static_cast<A>(1.0 - args.dampening),
                                   .neg_lr = static_cast<A>(-args.lr),
                                   .use_momentum = use_momentum,
                                   .first_step = args.first_step,
                                   .nesterov = args.nesterov,
                                   .coupled = args.weight_decay != 0.0};
        T* p = param.raw<T>();
        const T* g = grad.raw<const T>();
        float* buf = use_momentum ? momentum_buffer->raw<float>() : nullptr;
        launch_packed<T>({{p, sizeof(T)}, {g, sizeof(T)}, {buf, 4}}, [&](auto width) {
            constexpr int V = decltype(width)::value;
            sgd_packed_kernel<T, V>
                <<<grid_for(ceil_div(n, V)), kBlock, 0, cuda::stream(dev)>>>(p, g, buf, n, c);
            MDL_CUDA_LAUNCH_CHECK();
        });
    });
}

void CudaKernels::ema_update(Tensor& shadow, const Tensor& param, double decay) {
    check_state("ema_update", "shadow", shadow, param);
    const int64_t n = param.numel();
    if (n == 0) return;
    const int dev = cuda::device_of(param);
    cuda::DeviceGuard guard(dev);
    dispatch_float(param.dtype(), "ema_update", [&](auto tag) {
        using T = decltype(tag);
        using A = acc_t<T>;
        float* s = shadow.raw<float>();
        const T* p = param.raw<const T>();
        launch_packed<T>({{s, 4}, {p, sizeof(T)}}, [&](auto width) {
            constexpr int V = decltype(width)::value;
            ema_packed_kernel<T, V><<<grid_for(ceil_div(n, V)), kBlock, 0, cuda::stream(dev)>>>(
                s, p, n, static_cast<A>(decay), static_cast<A>(1.0 - decay));
            MDL_CUDA_LAUNCH_CHECK();
        });
    });
}

void CudaKernels::swa_update(Tensor& average, const Tensor& current, int64_t n_averaged) {
    MDL_ASSERT(average.dtype() == current.dtype() && average.numel() == current.numel() &&
                   average.device() == current.device(),
               "swa_update: average ", average.dtype(), " ", shape_str(average.shape()), " on ",
               average.device(), " and current ", current.dtype(), " ", shape_str(current.shape()),
               " on ", current.device(), " must share dtype, size and device");
    const int64_t n = average.numel();
    if (n == 0) return;
    const int dev = cuda::device_of(average);
    cuda::DeviceGuard guard(dev);
    dispatch_float(average.dtype(), "swa_update", [&](auto tag) {
        using T = decltype(tag);
        using A = acc_t<T>;
        T* avg = average.raw<T>();
        const T* cur = current.raw<const T>();
        launch_packed<T>({{avg, sizeof(T)}, {cur, sizeof(T)}}, [&](auto width) {
            constexpr int V = decltype(width)::value;
            swa_packed_kernel<T, V><<<grid_for(ceil_div(n, V)), kBlock, 0, cuda::stream(dev)>>>(
                avg, cur, n, static_cast<A>(static_cast<double>(n_averaged + 1)));
            MDL_CUDA_LAUNCH_CHECK();
        });
    });
}

void CudaKernels::unscale_and_check(std::vector<Tensor>& grads, const Tensor& inv_scale,
                                    Tensor& found_inf) {
    MDL_ASSERT(inv_scale.dtype() == DType::F32 && inv_scale.numel() == 1,
               "unscale_and_check: inv_scale must be f32 [1], got ", inv_scale.dtype(), " ",
               shape_str(inv_scale.shape()));
    MDL_ASSERT(found_inf.dtype() == DType::F32 && found_inf.numel() == 1,
               "unscale_and_check: found_inf must be f32 [1], got ", found_inf.dtype(), " ",
               shape_str(found_inf.shape()));
    const int dev = cuda::device_of(found_inf);
    MDL_ASSERT(inv_scale.device() == found_inf.device(), "unscale_and_check: inv_scale is on ",
               inv_scale.device(), ", found_inf on ", found_inf.device());
    cuda::DeviceGuard guard(dev);
    const cudaStream_t s = cuda::stream(dev);
    const float* inv = inv_scale.raw<const float>();
    float* flag = found_inf.raw<float>();
    // The gradients by dtype, in their order; each dtype's in batches of kTensorsPerLaunch.
    std::vector<std::pair<DType, std::vector<Tensor*>>> by_dtype;
    for (Tensor& g : grads) {
        if (!g.defined() || g.numel() == 0) continue;
        MDL_ASSERT(g.device() == found_inf.device(), "unscale_and_check: a gradient is on ",
                   g.device(), ", found_inf on ", found_inf.device());
        auto it = std::find_if(by_dtype.begin(), by_dtype.end(),
                               [&](const auto& group) { return group.first == g.dtype(); });
        if (it == by_dtype.end()) it = by_dtype.insert(by_dtype.end(), {g.dtype(), {}});
        it->second.push_back(&g);
    }
    for (const auto& [dtype, tensors] : by_dtype) {
        dispatch_float(dtype, "unscale_and_check", [&](auto tag) {
            using T = decltype(tag);
            for (size_t first = 0; first < tensors.size(); first += kTensorsPerLaunch) {
                UnscaleBatch batch{};
                batch.count =
                    static_cast<int>(std::min<size_t>(kTensorsPerLaunch, tensors.size() - first));
                for (int t = 0; t < batch.count; ++t) {
                    Tensor& g = *tensors[first + static_cast<size_t>(t)];
                    batch.ptr[t] = g.raw<T>();
                    batch.n[t] = g.numel();
                    batch.first_block[t + 1] =
                        batch.first_block[t] + ceil_div(g.numel(), kUnscaleChunk);
                }
                const int64_t blocks = batch.first_block[batch.count];
                MDL_ASSERT(blocks <= INT32_MAX, "unscale_and_check: ", blocks, " blocks");
                unscale_check_kernel<T>
                    <<<static_cast<unsigned>(blocks), kBlock, 0, s>>>(batch, inv, flag);
                MDL_CUDA_LAUNCH_CHECK();
            }
        });
    }
}

}  // namespace minidl
