// tests/optim/test_optim_kernels.cpp — the CPU optimizer kernels (ops/cpu/optim_cpu.cpp):
// flush-to-zero of subnormal moments with MXCSR restored afterwards, results independent of the
// thread count, and ema_update / unscale_and_check against direct double computations.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#if defined(__SSE__)
#include <xmmintrin.h>
#endif

#include "core/kernels.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "ops/elementwise.h"
#include "optim/adam.h"
#include "optim/sgd.h"
#include "tests/support/compare.h"

using namespace minidl;
using minidl::test::bitwise_equal;
using minidl::test::check_close;

namespace {

#if defined(__SSE__)
// MXCSR without its six sticky exception flags (any inexact float operation sets one): the
// control bits — rounding, masks, FTZ (0x8000), DAZ (0x0040) — are what a kernel must restore.
unsigned int mxcsr_control() {
    return _mm_getcsr() & ~0x3Fu;
}
#endif

// Restores the pool size when a test changes it.
struct ThreadCountGuard {
    int saved = get_num_threads();
    ~ThreadCountGuard() { set_num_threads(saved); }
};

}  // namespace

#if defined(__SSE__)
TEST_CASE("optim/adam: subnormal moments are flushed to zero and MXCSR is restored") {
    ThreadCountGuard threads;
    set_num_threads(1);  // the update runs on this thread, whose MXCSR is checked
    const unsigned int mxcsr_before = mxcsr_control();
    REQUIRE((mxcsr_before & (_MM_FLUSH_ZERO_ON | 0x0040u)) == 0);  // the test needs FTZ/DAZ off

    // g = 1e-20: (1 - beta2) g^2 = 1e-43 is subnormal and flushes to 0 (it would stay 1e-43
    // without FTZ); m = 0.1 g = 1e-21 is normal and stays.
    Tensor p = Tensor::ones({64}).set_requires_grad();
    p.set_grad(Tensor::full({64}, 1e-20));
    optim::Adam opt({p}, {.lr = 0.01});
    opt.step();
    CHECK(mxcsr_control() == mxcsr_before);
    const Tensor& v = opt.state(0)->tensors.at("exp_avg_sq");
    for (double x : v.to_vector<double>())
        CHECK(x == 0.0);
    for (double x : opt.state(0)->tensors.at("exp_avg").to_vector<double>())
        CHECK(x == doctest::Approx(1e-21).epsilon(1e-5));
    // The same product outside the optimizer stays subnormal: the flush is the kernel's doing.
    volatile float g = 1e-20f, c = 0.001f;
    CHECK(c * g * g > 0.0f);

    // A moment decaying below FLT_MIN (DAZ/FTZ on the decay itself), at the kernel level.
    Tensor param = Tensor::zeros({32});
    Tensor grad = Tensor::zeros({32});
    Tensor m = Tensor::full({32}, 1.2e-38);  // normal; 0.9 * m = 1.08e-38 is subnormal
    Tensor sq = Tensor::zeros({32});
    cpu_kernels().adam_step(param, grad, m, sq, nullptr, AdamArgs{.lr = 0.01, .step = 2});
    CHECK(mxcsr_control() == mxcsr_before);
    for (double x : m.to_vector<double>())
        CHECK(x == 0.0);

    // SGD's momentum buffer too.
    Tensor w = Tensor::zeros({16});
    Tensor buf = Tensor::full({16}, 1.2e-38);
    cpu_kernels().sgd_step(w, Tensor::zeros({16}), &buf,
                           SgdArgs{.lr = 0.1, .momentum = 0.9, .first_step = false});
    CHECK(mxcsr_control() == mxcsr_before);
    for (double x : buf.to_vector<double>())
        CHECK(x == 0.0);
}
#endif

TEST_CASE("optim/adam: adam_step gives bitwise the same result on 1 and 2 threads") {
    ThreadCountGuard threads;
    // Not a multiple of the block or vector sizes, so chunk edges fall mid-block.
    const int64_t n = (int64_t{1} << 20) + 13;
    Generator gen(42);
    const Tensor p0 = Tensor::randn({n}, &gen);
    const Tensor g = Tensor::randn({n}, &gen);
    const Tensor m0 = Tensor::randn({n}, &gen, DType::F32, Device::cpu(), 0.0, 0.1);
    const Tensor v0 = Tensor::rand({n}, &gen, DType::F32, Device::cpu(), 0.0, 0.1);
    const AdamArgs args{.lr = 1e-3, .weight_decay = 0.01, .amsgrad = true, .step = 7};
    auto run = [&](int nthreads) {
        set_num_threads(nthreads);
        std::vector<Tensor> out = {p0.clone(), m0.clone(), v0.clone(), v0 * 1.01};
        cpu_kernels().adam_step(out[0], g, out[1], out[2], &out[3], args);
        return out;
    };
    const std::vector<Tensor> one = run(1), two = run(2);
    for (size_t i = 0; i < one.size(); ++i) {
        CAPTURE(i);
        CHECK(bitwise_equal(one[i], two[i]));
    }
    CHECK_FALSE(bitwise_equal(one[0], p0));  // it did update

    // SGD with momentum and Nesterov too.
    auto run_sgd = [&](int nthreads) {
        set_num_threads(nthreads);
        std::vector<Tensor> out = {p0.clone(), m0.clone()};
        cpu_kernels().sgd_step(out[0], g, &out[1],
                               SgdArgs{.lr = 0.1,
                                       .momentum = 0.9,
                                       .weight_decay = 1e-4,
                                       .nesterov = true,
                                       .first_step = false});
        return out;
    };
    const std::vector<Tensor> s1 = run_sgd(1), s2 = run_sgd(2);
    CHECK(bitwise_equal(s1[0], s2[0]));
    CHECK(bitwise_equal(s1[1], s2[1]));
}

TEST_CASE("optim/kernels: ema_update is decay * shadow + (1 - decay) * param") {
    Generator gen(3);
    const Tensor param = Tensor::randn({100000}, &gen);
    Tensor shadow = Tensor::randn({100000}, &gen);
    const std::vector<double> p = param.to_vector<double>(), s = shadow.to_vector<double>();
    std::vector<double> expected(p.size());
    for (size_t i = 0; i < p.size(); ++i)
        expected[i] = 0.9 * s[i] + 0.1 * p[i];
    cpu_kernels().ema_update(shadow, param, 0.9);
    check_close(shadow, expected, 1e-6, 1e-7, "ema_update f32 param");
    // A 16-bit parameter (AMP models) against an F32 shadow.
    Tensor shadow2 = Tensor::zeros({100000});
    const Tensor half = param.to(DType::BF16);
    cpu_kernels().ema_update(shadow2, half, 0.0);
    check_close(shadow2, half.to_vector<double>(), 0.0, 0.0, "decay 0 copies the parameter");
}

TEST_CASE("optim/kernels: unscale_and_check scales every gradient and flags inf/NaN") {
    const Tensor inv_scale = Tensor::full({1}, 1.0 / 1024.0);
    for (DType dtype : {DType::F32, DType::F64, DType::F16, DType::BF16}) {
        CAPTURE(dtype);
        Generator gen(9);
        const Tensor base = Tensor::randn({50000}, &gen, DType::F32, Device::cpu(), 0.0, 100.0);
        // Copies: for F32, base.to(F32) would be base itself, which the kernel scales in place.
        std::vector<Tensor> grads = {base.to(dtype).clone(), (base * 2.0).to(dtype)};
        const std::vector<double> before0 = grads[0].to_vector<double>();
        Tensor found = Tensor::zeros({1});
        cpu_kernels().unscale_and_check(grads, inv_scale, found);
        CHECK(found.item() == 0.0);
        std::vector<double> expected(before0.size());
        for (size_t i = 0; i < before0.size(); ++i)
            expected[i] = before0[i] / 1024.0;
        // Scaling by a power of two is exact, except where an F16 result falls below 6.1e-5
        // into the subnormals, whose spacing is 2^-24: one rounding, at most 2^-25.
        const double atol = dtype == DType::F16 ? std::ldexp(1.0, -25) : 0.0;
        check_close(grads[0], expected, 0.0, atol, "unscaled");

        // One inf in the second tensor, deep inside a block: flagged; the rest still scaled.
        std::vector<double> with_inf = (base * 2.0).to_vector<double>();
        with_inf[33333] = std::numeric_limits<double>::infinity();
        std::vector<Tensor> bad = {base.to(dtype).clone(),
                                   Tensor::from_vector(with_inf, {50000}, dtype)};
        cpu_kernels().unscale_and_check(bad, inv_scale, found);
        CHECK(found.item() == 1.0);
        check_close(bad[0], expected, 0.0, atol, "tensors before the inf are scaled");

        // NaN is flagged too; a flag already set is left alone by a clean pass.
        std::vector<double> with_nan(10, 1.0);
        with_nan[9] = std::nan("");
        std::vector<Tensor> nan_grads = {Tensor::from_vector(with_nan, {10}, dtype)};
        Tensor found2 = Tensor::zeros({1});
        cpu_kernels().unscale_and_check(nan_grads, inv_scale, found2);
        CHECK(found2.item() == 1.0);
        std::vector<Tensor> clean = {Tensor::ones({10}, dtype)};
        cpu_kernels().unscale_and_check(clean, inv_scale, found2);
        CHECK(found2.item() == 1.0);
    }
}
