// tests/optim/test_lr_scheduler.cpp — LR schedules against PyTorch 1.13 (tests/fixtures/lr_*.json:
// the lr before each optimizer step, with scheduler.step() after each optimizer.step()), the
// LinearWarmupDecay shape, and state_dict round trips.
//
// Tolerance: rtol 1e-5, atol 1e-6 for single values (the lrs are doubles on both sides; the
// recursive cosine form accumulates a few ulp).
#include <doctest/doctest.h>

#include <cmath>

#include "core/check.h"
#include "optim/lr_scheduler.h"
#include "optim/sgd.h"
#include "tests/support/compare.h"
#include "tests/support/fixtures.h"

using namespace minidl;
using minidl::test::check_close;
using minidl::test::json;
using minidl::test::load_fixture;

namespace {

struct Setup {
    Tensor p = Tensor::zeros({1}).set_requires_grad();
    optim::SGD opt;
    explicit Setup(double lr) : opt({p}, {.lr = lr}) {}
};

// The lr before each of `steps` steps, stepping the optimizer then the schedule, as the fixture.
std::vector<double> trajectory(optim::Optimizer& opt, optim::LRScheduler& schedule, size_t steps) {
    std::vector<double> lrs;
    for (size_t s = 0; s < steps; ++s) {
        lrs.push_back(opt.param_groups()[0].lr);
        CHECK(schedule.get_last_lr()[0] == lrs.back());
        opt.step();
        schedule.step();
    }
    return lrs;
}

std::vector<double> expected_lrs(const json& fx) {
    return fx.at("lr_before_each_step").get<std::vector<double>>();
}

}  // namespace

TEST_CASE("optim/lr_scheduler: StepLR matches PyTorch on lr_step_size3_gamma0.5.json") {
    const json fx = load_fixture("lr_step_size3_gamma0.5");
    Setup s(fx.at("base_lr"));
    optim::StepLR schedule(s.opt, 3, 0.5);
    const std::vector<double> want = expected_lrs(fx);
    const double err =
        check_close(trajectory(s.opt, schedule, want.size()), want, 1e-5, 1e-6, "StepLR");
    MESSAGE("lr_step_size3_gamma0.5: max relative error " << err);
}

TEST_CASE("optim/lr_scheduler: CosineAnnealingLR matches PyTorch on lr_cosine_tmax8.json") {
    const json fx = load_fixture("lr_cosine_tmax8");
    Setup s(fx.at("base_lr"));
    optim::CosineAnnealingLR schedule(s.opt, 8, 0.001);
    const std::vector<double> want = expected_lrs(fx);  // 12 steps: past T_max it climbs back
    const double err = check_close(trajectory(s.opt, schedule, want.size()), want, 1e-5, 1e-6,
                                   "CosineAnnealingLR");
    MESSAGE("lr_cosine_tmax8: max relative error " << err);
}

TEST_CASE("optim/lr_scheduler: LambdaLR with gamma^(e / 3) reproduces the StepLR fixture") {
    const json fx = load_fixture("lr_step_size3_gamma0.5");
    Setup s(fx.at("base_lr"));
    optim::LambdaLR schedule(s.opt, [](int64_t e) { return std::pow(0.5, e / 3); });
    const std::vector<double> want = expected_lrs(fx);
    check_close(trajectory(s.opt, schedule, want.size()), want, 1e-5, 1e-6, "LambdaLR");
}

TEST_CASE("optim/lr_scheduler: LinearWarmupDecay warms up linearly and decays to its floor") {
    SUBCASE("linear") {
        Setup s(1.0);
        optim::LinearWarmupDecay schedule(
            s.opt, {.warmup_steps = 4, .total_steps = 12, .min_lr_ratio = 0.1});
        const std::vector<double> lrs = trajectory(s.opt, schedule, 16);
        // Warm-up: 0, 1/4, 2/4, 3/4, then the peak at epoch 4.
        for (int e = 0; e <= 4; ++e)
            CHECK(lrs[e] == doctest::Approx(e / 4.0).epsilon(1e-12));
        // Decay: equal steps of (1 - 0.1) / 8 down to the floor at total_steps, then flat.
        for (int e = 5; e <= 12; ++e)
            CHECK(lrs[e - 1] - lrs[e] == doctest::Approx(0.9 / 8.0).epsilon(1e-12));
        for (int e = 12; e < 16; ++e)
            CHECK(lrs[e] == doctest::Approx(0.1).epsilon(1e-12));
    }
    SUBCASE("cosine") {
        Setup s(2.0);
        optim::LinearWarmupDecay schedule(
            s.opt, {.warmup_steps = 2, .total_steps = 10, .decay = optim::DecayShape::Cosine});
        const std::vector<double> lrs = trajectory(s.opt, schedule, 12);
        CHECK(lrs[2] == doctest::Approx(2.0).epsilon(1e-12));   // peak
        CHECK(lrs[6] == doctest::Approx(1.0).epsilon(1e-12));   // halfway: half the peak
        CHECK(lrs[10] == doctest::Approx(0.0).epsilon(1e-12));  // floor 0
        // Symmetric about the midpoint, decreasing throughout.
        CHECK(lrs[4] + lrs[8] == doctest::Approx(2.0).epsilon(1e-12));
        for (int e = 3; e <= 10; ++e)
            CHECK(lrs[e] < lrs[e - 1]);
    }
    Setup s(1.0);
    CHECK_THROWS_AS(optim::LinearWarmupDecay(s.opt, {.warmup_steps = 5, .total_steps = 3}),
                    ValueError);
}

TEST_CASE("optim/lr_scheduler: state_dict restores the epoch counter and continues identically") {
    Setup a(0.1), b(0.1);
    optim::CosineAnnealingLR sa(a.opt, 8, 0.001);
    for (int i = 0; i < 5; ++i)
        sa.step();
    // The optimizer's lr travels in its own state_dict; the schedule's counters in this one.
    optim::CosineAnnealingLR sb(b.opt, 8, 0.001);
    b.opt.load_state_dict(a.opt.state_dict());
    sb.load_state_dict(sa.state_dict());
    CHECK(sb.last_epoch() == 5);
    for (int i = 0; i < 6; ++i) {
        sa.step();
        sb.step();
        CHECK(sa.get_last_lr() == sb.get_last_lr());
        CHECK(a.opt.param_groups()[0].lr == b.opt.param_groups()[0].lr);
    }
    optim::StepLR other(b.opt, 2);
    CHECK_THROWS_WITH_AS(other.load_state_dict(sa.state_dict()),
                         doctest::Contains("cosine_annealing_lr"), StateError);
}
