// ops/cuda/random.cu — CUDA kernels for random fills: uniform, normal, and dropout's scaled
// Bernoulli mask, from the counter-based Philox4x32-10 of core/philox.h.
//
// Element i takes lane i % 4 of Philox block (offset + i / 4) under key seed — exactly the CPU's
// mapping (ops/cpu/random_cpu.cpp) — so a fill is a pure function of (seed, offset, i) and the
// numbers match the CPU's:
//   uniform    x = low + (high - low) u, u = philox_uniform(bits) in [0, 1), in float:
//              bitwise the CPU's value (both compute the float fused multiply-add; a CPU build
//              without FMA instructions (MINIDL_NATIVE=OFF) may differ in the last bit when
//              high - low is not a power of two), then rounded to the dtype and clamped to the
//              largest value of the dtype below high (ops/random_bound.h), as the CPU does: the
//              rounding alone can give high (bf16 rounds every x in [1 - 2^-9, 1) to 1)
//   bernoulli  1 / keep_prob if u < keep_prob else 0: bitwise the CPU's (scale converted on the
//              host exactly as the CPU converts it)
//   normal     Box-Muller on lane pairs (0, 1) and (2, 3): z0 = r cos(2 pi u2), z1 = r sin(2 pi
//   u2),
//              r = sqrt(-2 ln u1), u1 in (0, 1]; CUDA's logf/sinf/cosf/sqrtf may differ from the
//              host libm's in the last bit.
//
// Strategy: one thread per Philox block (four elements): the ten rounds are computed once and
// feed four consecutive outputs; grid-stride loop over the blocks.
#include "core/philox.h"
#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/cuda_kernels.h"
#include "ops/random_bound.h"

namespace minidl {

using namespace cuda_detail;

namespace {

enum class Draw : uint8_t { Uniform, Normal, Bernoulli };

struct RandomArgs {
    uint64_t seed, offset;
    int64_t n;
    float a, b;  // uniform: low, high - low; normal: mean, std; bernoulli: keep_prob, unused
};

// `bound`: uniform: the largest value of T below high (the clamp); bernoulli: 1 / keep_prob.
template <typename T>
__device__ __forceinline__ T draw_one(Draw kind, const Philox4& r, int lane, const RandomArgs& a,
                                      T bound) {
    using A = acc_t<T>;
    if (kind == Draw::Uniform) {
        const T v = convert<T>(fmaf(a.b, philox_uniform(r.v[lane]), a.a));
        return convert<A>(v) > convert<A>(bound) ? bound : v;
    }
    const T bernoulli_scale = bound;
    if (kind == Draw::Bernoulli)
        return philox_uniform(r.v[lane]) < a.a ? bernoulli_scale : convert<T>(0.0f);
    const int base = lane & 2;
    const float u1 = philox_uniform_open0(r.v[base]);
    const float u2 = philox_uniform(r.v[base + 1]);
    const float radius = sqrtf(-2.0f * logf(u1));
    const float angle = 6.2831853071795864769f * u2;
    const float z = (lane & 1) ? radius * sinf(angle) : radius * cosf(angle);
    return convert<T>(a.a + a.b * z);
}

template <typename T>
__global__ void random_philox_block_kernel(T* __restrict__ out, Draw kind, RandomArgs a, T bound) {
    const int64_t blocks = (a.n + 3) / 4;
    for (int64_t blk = global_thread(); blk < blocks; blk += grid_stride()) {
        const Philox4 r = philox4x32_10(a.offset + static_cast<uint64_t>(blk), a.seed);
#pragma unroll
        for (int lane = 0; lane < 4; ++lane) {
            const int64_t i = blk * 4 + lane;
            if (i < a.n) out[i] = draw_one<T>(kind, r, lane, a, bound);
        }
    }
}

// `bound` (see draw_one) is converted to T on the host, exactly as the CPU converts it.
void launch_random(Tensor& out, Draw kind, const RandomArgs& a, double bound, const char* op) {
    if (a.n == 0) return;
    const int dev = cuda::device_of(out);
    cuda::DeviceGuard guard(dev);
    dispatch_float(out.dtype(), op, [&](auto tag) {
        using T = decltype(tag);
        random_philox_block_kernel<T><<<grid_for((a.n + 3) / 4), kBlock, 0, cuda::stream(dev)>>>(
            out.raw<T>(), kind, a, convert<T>(bound));
        MDL_CUDA_LAUNCH_CHECK();
    });
}

}  // namespace

void CudaKernels::uniform(Tensor& out, double low, double high, uint64_t seed, uint64_t offset) {
    const RandomArgs a{seed, offset, out.numel(), static_cast<float>(low),
                       static_cast<float>(high - low)};
    launch_random(out, Draw::Uniform, a, uniform_top(low, high, out.dtype()), "uniform");
}

void CudaKernels::normal(Tensor& out, double mean, double std, uint64_t seed, uint64_t offset) {
    const RandomArgs a{seed, offset, out.numel(), static_cast<float>(mean),
                       static_cast<float>(std)};
    launch_random(out, Draw::Normal, a, 0.0, "normal");
}

void CudaKernels::bernoulli_scaled(Tensor& out, double keep_prob, uint64_t seed, uint64_t offset) {
    const RandomArgs a{seed, offset, out.numel(), static_cast<float>(keep_prob), 0.0f};
    launch_random(out, Draw::Bernoulli, a, 1.0 / keep_prob, "bernoulli_scaled");
}

}  // namespace minidl
