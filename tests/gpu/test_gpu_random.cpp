// tests/gpu/test_gpu_random.cpp — uniform / normal / bernoulli_scaled on CUDA against the CPU
// kernels: the same (seed, offset) gives the same numbers on both devices.
//
// Uniform draws over a power-of-two range and Bernoulli masks are exact on both sides: bitwise.
// Uniform over other ranges: one float fused multiply-add on both sides (the CPU build uses FMA
// with -march=native): the dtype's tolerance allows a CPU build without FMA. Normal draws go
// through logf/sinf/cosf/sqrtf, whose last bit differs between CUDA and the host libm:
// rtol 1e-5, atol 1e-5 for F32/F64 (values are float draws in both), the dtype's tolerance for
// 16-bit.
#include <doctest/doctest.h>

#include <cmath>

#include "tests/gpu/gpu_support.h"

using namespace minidl;
using namespace minidl::gpu_test;

namespace {
const std::vector<int64_t> kSizes{1, 3, 4, 5, 1001, 65537};
const uint64_t kSeed = 0x5eed1234abcdULL, kOffset = 77;
}  // namespace

TEST_CASE("gpu/random: uniform matches the CPU bit for bit over power-of-two ranges") {
    for (DType dt : float_dtypes()) {
        for (int64_t n : kSizes) {
            for (const auto& [low, high] : {std::pair{0.0, 1.0}, std::pair{-2.0, 2.0}}) {
                const std::string what = describe(
                    "uniform [" + std::to_string(low) + ", " + std::to_string(high) + ")", dt, {n});
                Both r =
                    run_both(what, {nan_filled({n}, dt)}, [&](Kernels& k, std::vector<Tensor>& t) {
                        k.uniform(t[0], low, high, kSeed, kOffset);
                    });
                check_bitwise(r.gpu[0], r.cpu[0], what);
            }
            const std::string what = describe("uniform [-0.1, 0.3)", dt, {n});
            Both r = run_both(what, {nan_filled({n}, dt)}, [&](Kernels& k, std::vector<Tensor>& t) {
                k.uniform(t[0], -0.1, 0.3, kSeed, kOffset);
            });
            // F64 holds float draws (exact in F32): compare them at float's tolerance, which is
            // what a CPU build without FMA differs by (one float ulp).
            const bool f64 = dt == DType::F64;
            check_parity(f64 ? r.gpu[0].to(DType::F32) : r.gpu[0],
                         f64 ? r.cpu[0].to(DType::F32) : r.cpu[0], what);
        }
    }
}

TEST_CASE("gpu/random: bernoulli_scaled masks match the CPU bit for bit") {
    for (DType dt : float_dtypes()) {
        for (int64_t n : kSizes) {
            for (double keep : {0.9, 0.5, 1.0 / 3.0, 1.0}) {
                const std::string what =
                    describe("bernoulli_scaled keep=" + std::to_string(keep), dt, {n});
                Both r =
                    run_both(what, {nan_filled({n}, dt)}, [&](Kernels& k, std::vector<Tensor>& t) {
                        k.bernoulli_scaled(t[0], keep, kSeed, kOffset + 5);
                    });
                check_bitwise(r.gpu[0], r.cpu[0], what);
            }
        }
    }
}

TEST_CASE("gpu/random: normal matches the CPU to the last bits of libm") {
    for (DType dt : float_dtypes()) {
        for (int64_t n : kSizes) {
            const std::string what = describe("normal(0.5, 2)", dt, {n});
            Both r = run_both(what, {nan_filled({n}, dt)}, [&](Kernels& k, std::vector<Tensor>& t) {
                k.normal(t[0], 0.5, 2.0, kSeed, kOffset);
            });
            const Tolerance tol = is_half(dt) ? tolerance(dt) : Tolerance{1e-5, 1e-5};
            check_parity(r.gpu[0], r.cpu[0], what, tol);
        }
    }
}

TEST_CASE("gpu/random: consecutive offsets continue the stream (no overlap, no gap)") {
    // Two fills of 6 at offsets 0 and 2 (blocks of 4 draws) equal one fill of 14 split at 8.
    Tensor whole = nan_filled({14}, DType::F32, gpu());
    Tensor first = nan_filled({8}, DType::F32, gpu()), second = nan_filled({6}, DType::F32, gpu());
    cuda::kernels().uniform(whole, 0, 1, 9, 0);
    cuda::kernels().uniform(first, 0, 1, 9, 0);
    cuda::kernels().uniform(second, 0, 1, 9, 2);
    const std::vector<float> w = whole.to_vector<float>(), a = first.to_vector<float>(),
                             b = second.to_vector<float>();
    for (size_t i = 0; i < 8; ++i)
        CHECK(w[i] == a[i]);
    for (size_t i = 0; i < 6; ++i)
        CHECK(w[8 + i] == b[i]);
}

TEST_CASE("gpu/random: uniform never returns high, and clamps as the CPU does") {
    // Rounding low + (high - low) u to the dtype can give high (ops/random_bound.h): bf16 rounds
    // u in [1 - 2^-9, 1) to 1, f16 u in [1 - 2^-12, 1); 0.3 rounds up in every 16-bit dtype;
    // in F32 (and F64, drawn in float) 1 + 2^-20 u rounds to high for u > 1 - 2^-4. With 2^18
    // draws each range hits its clamp tens to thousands of times. The clamped value is the same
    // on both devices: bitwise (all but [0, 0.3) are power-of-two spans, exact on both sides).
    const int64_t n = int64_t{1} << 18;
    const double tiny = std::ldexp(1.0, -20);
    for (DType dt : float_dtypes()) {
        for (const auto& [low, high] : {std::pair{0.0, 1.0}, std::pair{-2.0, -1.0},
                                        std::pair{0.0, 0.3}, std::pair{1.0, 1.0 + tiny}}) {
            const std::string what = describe(
                "uniform clamp [" + std::to_string(low) + ", " + std::to_string(high) + ")", dt,
                {n});
            Both r = run_both(what, {nan_filled({n}, dt)}, [&](Kernels& k, std::vector<Tensor>& t) {
                k.uniform(t[0], low, high, kSeed, kOffset);
            });
            const std::vector<double> v = r.gpu[0].to_vector<double>();
            int64_t outside = 0;
            for (double x : v)
                outside += !(x >= low && x < high);
            INFO(what << ": " << outside << " draws outside [low, high)");
            CHECK(outside == 0);
            if (high == 0.3) {
                check_parity(r.gpu[0], r.cpu[0], what);
            } else {
                check_bitwise(r.gpu[0], r.cpu[0], what);
            }
        }
    }
}
