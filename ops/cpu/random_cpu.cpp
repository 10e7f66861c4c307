// ops/cpu/random_cpu.cpp — CPU kernels for random fills (uniform, normal, dropout masks).
//
// Element i takes lane i % 4 of Philox block (offset + i / 4) under key seed (core/philox.h), so
// every element is a pure function of (seed, offset, i): the fill is the same for any thread
// count and matches the CUDA kernels bit for bit for uniform and Bernoulli draws. Normals use
// Box-Muller on lane pairs (0, 1) and (2, 3): z0 = r cos(2 pi u2), z1 = r sin(2 pi u2),
// r = sqrt(-2 ln u1); the last ulp may differ from CUDA, whose sin/cos/log round differently.
// Uniform values are clamped to the largest value of the dtype below high (ops/random_bound.h):
// rounding low + (high - low) u to the dtype can otherwise give high itself.
#include <cmath>

#include "core/parallel.h"
#include "core/philox.h"
#include "ops/cpu/cpu_kernels.h"
#include "ops/cpu/dispatch.h"
#include "ops/random_bound.h"

namespace minidl {

using cpu::dispatch_float;
using cpu::kElementwiseGrain;

namespace {

// Calls put(i, r, lane) for every element, with r the Philox block of element i.
template <typename Put>
void for_each_draw(int64_t n, uint64_t seed, uint64_t offset, const Put& put) {
    const int64_t blocks = (n + 3) / 4;
    parallel_for(blocks, kElementwiseGrain / 4, [&](int64_t b0, int64_t b1) {
        for (int64_t blk = b0; blk < b1; ++blk) {
            const Philox4 r = philox4x32_10(offset + static_cast<uint64_t>(blk), seed);
            for (int lane = 0; lane < 4; ++lane) {
                const int64_t i = blk * 4 + lane;
                if (i < n) put(i, r, lane);
            }
        }
    });
}

}  // namespace

void CpuKernels::uniform(Tensor& out, double low, double high, uint64_t seed, uint64_t offset) {
    dispatch_float(out.dtype(), "uniform", [&](auto tag) {
        using T = decltype(tag);
        T* p = out.raw<T>();
        const float lo = static_cast<float>(low), span = static_cast<float>(high - low);
        const T top = static_cast<T>(uniform_top(low, high, out.dtype()));  // exact in T
        for_each_draw(out.numel(), seed, offset, [&](int64_t i, const Philox4& r, int lane) {
            const T v = static_cast<T>(lo + span * philox_uniform(r.v[lane]));
            p[i] = v > top ? top : v;
        });
    });
}

void CpuKernels::normal(Tensor& out, double mean, double std, uint64_t seed, uint64_t offset) {
    dispatch_float(out.dtype(), "normal", [&](auto tag) {
        using T = decltype(tag);
        T* p = out.raw<T>();
        const float m = static_cast<float>(mean), s = static_cast<float>(std);
        for_each_draw(out.numel(), seed, offset, [&](int64_t i, const Philox4& r, int lane) {
            const int base = lane & 2;
            const float u1 = philox_uniform_open0(r.v[base]);
            const float u2 = philox_uniform(r.v[base + 1]);
            const float radius = std::sqrt(-2.0f * std::log(u1));
            const float angle = 6.2831853071795864769f * u2;
            const float z = (lane & 1) ? radius * std::sin(angle) : radius * std::cos(angle);
            p[i] = static_cast<T>(m + s * z);
        });
    });
}

void CpuKernels::bernoulli_scaled(Tensor& out, double keep_prob, uint64_t seed, uint64_t offset) {
    dispatch_float(out.dtype(), "bernoulli_scaled", [&](auto tag) {
        using T = decltype(tag);
        T* p = out.raw<T>();
        const float keep = static_cast<float>(keep_prob);
        const T scale = static_cast<T>(1.0 / keep_prob);
        for_each_draw(out.numel(), seed, offset, [&](int64_t i, const Philox4& r, int lane) {
            p[i] = philox_uniform(r.v[lane]) < keep ? scale : static_cast<T>(0.0f);
        });
    });
}

}  // namespace minidl
