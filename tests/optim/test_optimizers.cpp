// tests/optim/test_optimizers.cpp — SGD, Adam and AdamW against PyTorch 1.13 trajectories
// (tests/fixtures/optim_*.json, made by make_fixtures.py: fixed initial values, five fixed
// gradients, the parameter after each step), and the Optimizer contract: parameter groups,
// skipped parameters, state_dict round trips that continue bitwise identically, and errors.
//
// Tolerance: rtol 1e-4, atol 1e-6 per step (multi-step f32 trajectories: both sides round each
// step's float operations, and PyTorch's vectorised kernels contract some of them into FMAs).
#include <doctest/doctest.h>

#include <cmath>

#include "core/autograd.h"
#include "core/check.h"
#include "core/rng.h"
#include "ops/elementwise.h"
#include "optim/adam.h"
#include "optim/adamw.h"
#include "optim/lr_scheduler.h"
#include "optim/sgd.h"
#include "tests/support/compare.h"
#include "tests/support/fixtures.h"

using namespace minidl;
using minidl::test::bitwise_equal;
using minidl::test::check_close;
using minidl::test::json;
using minidl::test::load_fixture;
using minidl::test::tensor_from_json;
using minidl::test::values_from_json;

namespace {

std::unique_ptr<optim::Optimizer> make_optimizer(const std::string& kind, const json& hp,
                                                 std::vector<Tensor> params) {
    if (kind.rfind("sgd", 0) == 0)
        return std::make_unique<optim::SGD>(params,
                                            optim::SgdOptions{.lr = hp.at("lr"),
                                                              .momentum = hp.at("momentum"),
                                                              .dampening = hp.at("dampening"),
                                                              .weight_decay = hp.at("weight_decay"),
                                                              .nesterov = hp.at("nesterov"),
                                                              .maximize = hp.at("maximize")});
    if (kind == "adamw")
        return std::make_unique<optim::AdamW>(
            params, optim::AdamWOptions{.lr = hp.at("lr"),
                                        .beta1 = hp.at("betas")[0],
                                        .beta2 = hp.at("betas")[1],
                                        .eps = hp.at("eps"),
                                        .weight_decay = hp.at("weight_decay"),
                                        .amsgrad = hp.at("amsgrad"),
                                        .maximize = hp.at("maximize")});
    return std::make_unique<optim::Adam>(params,
                                         optim::AdamOptions{.lr = hp.at("lr"),
                                                            .beta1 = hp.at("betas")[0],
                                                            .beta2 = hp.at("betas")[1],
                                                            .eps = hp.at("eps"),
                                                            .weight_decay = hp.at("weight_decay"),
                                                            .amsgrad = hp.at("amsgrad"),
                                                            .maximize = hp.at("maximize")});
}

// Replays a fixture; returns the max relative error over all steps.
double replay(const std::string& fixture, DType dtype) {
    const json fx = load_fixture(fixture);
    Tensor p = tensor_from_json(fx.at("initial"), dtype).set_requires_grad();
    auto opt = make_optimizer(fx.at("optimizer"), fx.at("params"), {p});
    double worst = 0.0;
    for (size_t s = 0; s < fx.at("grads").size(); ++s) {
        p.set_grad(tensor_from_json(fx.at("grads")[s], dtype));
        opt->step();
        worst = std::max(worst, check_close(p, values_from_json(fx.at("after_each_step")[s]), 1e-4,
                                            1e-6, fixture + " step " + std::to_string(s)));
    }
    CHECK(opt->step_count() == static_cast<int64_t>(fx.at("grads").size()));
    return worst;
}

const std::vector<std::string> kFixtures = {
    "optim_sgd",     "optim_sgd_momentum_wd", "optim_sgd_nesterov", "optim_adam",
    "optim_adam_wd", "optim_adamw",           "optim_adam_amsgrad"};

std::vector<Tensor> make_params(uint64_t seed) {
    Generator gen(seed);
    return {Tensor::randn({3, 5}, &gen).set_requires_grad(),
            Tensor::randn({7}, &gen).set_requires_grad(),
            Tensor::randn({2, 2}, &gen).set_requires_grad()};
}

std::vector<Tensor> copies(const std::vector<Tensor>& params) {
    std::vector<Tensor> out;
    for (const auto& p : params)
        out.push_back(p.detach().clone().set_requires_grad());
    return out;
}

// Gradients for step s; parameter 1 gets none on odd steps (it must be skipped then).
void set_grads(std::vector<Tensor>& params, int s) {
    Generator gen(1000 + static_cast<uint64_t>(s));
    for (size_t i = 0; i < params.size(); ++i)
        params[i].set_grad(i == 1 && s % 2 == 1 ? Tensor()
                                                : Tensor::randn(params[i].shape(), &gen));
}

}  // namespace

TEST_CASE("optim/sgd+adam+adamw: match PyTorch on every optim_*.json fixture") {
    for (const auto& name : kFixtures) {
        SUBCASE(name.c_str()) {
            const double err = replay(name, DType::F32);
            MESSAGE(name << ": max relative error " << err);
        }
    }
}

TEST_CASE("optim/sgd+adam+adamw: F64 parameters follow the same trajectories") {
    for (const auto& name : kFixtures) {
        SUBCASE(name.c_str()) {
            replay(name, DType::F64);
        }
    }
}

TEST_CASE("optim/optimizer: parameters without a gradient are skipped, state and all") {
    std::vector<Tensor> params = make_params(1);
    const Tensor untouched = params[1].clone();
    optim::Adam opt(params, {.lr = 0.1});
    params[0].set_grad(Tensor::ones({3, 5}));
    params[2].set_grad(Tensor::ones({2, 2}));
    opt.step();
    CHECK(bitwise_equal(params[1], untouched));
    CHECK(opt.state(1) == nullptr);
    REQUIRE(opt.state(0) != nullptr);
    CHECK(opt.state(0)->step == 1);
    CHECK(opt.state(0)->tensors.at("exp_avg").dtype() == DType::F32);
    opt.zero_grad();
    for (const auto& p : params)
        CHECK_FALSE(p.grad().defined());
    opt.step();  // nothing has a gradient: nothing changes
    CHECK(opt.state(0)->step == 1);
    CHECK(opt.step_count() == 2);
}

TEST_CASE("optim/optimizer: per-group lr and weight_decay equal separate optimizers") {
    std::vector<Tensor> a = make_params(2), b = copies(a);
    optim::Adam grouped(
        {optim::ParamGroupOptions{{a[0], a[1]}}, optim::ParamGroupOptions{{a[2]}, 0.05, 0.3}},
        {.lr = 0.01, .weight_decay = 0.1});
    optim::Adam first({b[0], b[1]}, {.lr = 0.01, .weight_decay = 0.1});
    optim::Adam second({b[2]}, {.lr = 0.05, .weight_decay = 0.3});
    REQUIRE(grouped.param_groups().size() == 2);
    CHECK(grouped.param_groups()[1].lr == 0.05);
    CHECK(grouped.param_groups()[0].weight_decay == 0.1);
    for (int s = 0; s < 4; ++s) {
        set_grads(a, s);
        set_grads(b, s);
        grouped.step();
        first.step();
        second.step();
    }
    for (size_t i = 0; i < a.size(); ++i)
        CHECK(bitwise_equal(a[i], b[i]));

    // lr is writable (what schedules do); add_param_group numbers new parameters after the rest.
    grouped.param_groups()[0].lr = 0.0;
    const Tensor frozen = a[0].clone();
    set_grads(a, 0);
    grouped.step();
    CHECK(bitwise_equal(a[0], frozen));
    Tensor extra = Tensor::ones({4}).set_requires_grad();
    grouped.add_param_group({{extra}, 1.0});
    CHECK(grouped.parameters().size() == 4);
    CHECK(grouped.param_groups()[2].weight_decay == 0.1);
}

TEST_CASE("optim/sgd: maximize equals descending on the negated gradient") {
    std::vector<Tensor> a = make_params(3), b = copies(a);
    optim::SGD up(a, {.lr = 0.1, .momentum = 0.9, .weight_decay = 0.01, .maximize = true});
    optim::SGD down(b, {.lr = 0.1, .momentum = 0.9, .weight_decay = 0.01});
    for (int s = 0; s < 3; ++s) {
        set_grads(a, s);
        set_grads(b, s);
        NoGradGuard no_grad;
        for (auto& p : b)
            if (p.grad().defined()) Tensor(p.grad()).mul_(-1.0);
        up.step();
        down.step();
    }
    for (size_t i = 0; i < a.size(); ++i)
        CHECK(bitwise_equal(a[i], b[i]));
}

TEST_CASE("optim/optimizer: a state_dict round trip continues bitwise identically") {
    struct Case {
        const char* name;
        std::function<std::unique_ptr<optim::Optimizer>(std::vector<Tensor>)> make;
    };
    const std::vector<Case> cases = {
        {"sgd",
         [](auto p) {
             return std::make_unique<optim::SGD>(
                 p, optim::SgdOptions{
                        .lr = 0.1, .momentum = 0.9, .dampening = 0.1, .weight_decay = 0.01});
         }},
        {"adam",
         [](auto p) {
             return std::make_unique<optim::Adam>(
                 p, optim::AdamOptions{.lr = 0.01, .weight_decay = 0.1, .amsgrad = true});
         }},
        {"adamw",
         [](auto p) { return std::make_unique<optim::AdamW>(p, optim::AdamWOptions{.lr = 0.01}); }},
    };
    for (const auto& c : cases) {
        SUBCASE(c.name) {
            std::vector<Tensor> a = make_params(4);
            auto uninterrupted = c.make(a);
            optim::StepLR schedule(*uninterrupted, 2, 0.5);
            for (int s = 0; s < 3; ++s) {
                set_grads(a, s);
                uninterrupted->step();
                schedule.step();
            }
            // Restore into a fresh optimizer over copies of the parameters.
            std::vector<Tensor> b = copies(a);
            auto restored = c.make(b);
            const StateDict saved = uninterrupted->state_dict();
            CHECK(saved.metadata.at("optimizer") == c.name);
            restored->load_state_dict(saved);
            CHECK(restored->param_groups()[0].lr == uninterrupted->param_groups()[0].lr);
            CHECK(restored->step_count() == 3);
            // The restored state is a copy: stepping one leaves the other's alone.
            CHECK_FALSE(restored->state(0)->tensors.begin()->second.is_same_memory(
                uninterrupted->state(0)->tensors.begin()->second));
            for (int s = 3; s < 7; ++s) {
                set_grads(a, s);
                set_grads(b, s);
                uninterrupted->step();
                restored->step();
            }
            for (size_t i = 0; i < a.size(); ++i)
                CHECK(bitwise_equal(a[i], b[i]));
            const StateDict sa = uninterrupted->state_dict(), sb = restored->state_dict();
            CHECK(sa.metadata == sb.metadata);
            for (const auto& [key, t] : sa.tensors)
                CHECK(bitwise_equal(t, sb.tensors.at(key)));
        }
    }
}

TEST_CASE("optim/optimizer: load_state_dict rejects mismatches before changing anything") {
    std::vector<Tensor> a = make_params(5);
    optim::Adam source(a, {.lr = 0.01});
    set_grads(a, 0);
    source.step();
    const StateDict good = source.state_dict();

    std::vector<Tensor> b = copies(a);
    optim::Adam target(b, {.lr = 0.5});
    SUBCASE("wrong state shape names the key and both shapes") {
        StateDict bad = good;
        bad.tensors["state.0.exp_avg"] = Tensor::zeros({5, 3});
        CHECK_THROWS_WITH_AS(target.load_state_dict(bad),
                             doctest::Contains("'state.0.exp_avg' has shape [5, 3] but parameter "
                                               "0 has shape [3, 5]"),
                             ShapeError);
    }
    SUBCASE("another kind of optimizer") {
        optim::SGD sgd(copies(a), {.lr = 0.1});
        CHECK_THROWS_WITH_AS(sgd.load_state_dict(good), doctest::Contains("'adam'"), StateError);
    }
    SUBCASE("different group sizes") {
        optim::Adam fewer({b[0], b[1]}, {.lr = 0.5});
        CHECK_THROWS_AS(fewer.load_state_dict(good), StateError);
    }
    SUBCASE("a malformed option") {
        StateDict bad = good;
        bad.metadata["options.beta1"] = "1.5";
        CHECK_THROWS_AS(target.load_state_dict(bad), ValueError);
        bad.metadata["options.beta1"] = "nine";
        CHECK_THROWS_AS(target.load_state_dict(bad), FormatError);
    }
    CHECK(target.param_groups()[0].lr == 0.5);
    CHECK(target.state(0) == nullptr);
    CHECK(target.options().beta1 == 0.9);
}

TEST_CASE("optim/optimizer: invalid options and parameters are rejected") {
    std::vector<Tensor> p = make_params(6);
    CHECK_THROWS_AS(optim::Adam(p, {.lr = -1.0}), ValueError);
    CHECK_THROWS_AS(optim::Adam(p, {.beta1 = 1.0}), ValueError);
    CHECK_THROWS_AS(optim::Adam(p, {.eps = -1e-8}), ValueError);
    CHECK_THROWS_WITH_AS(optim::SGD(p, {.lr = 0.1, .nesterov = true}),
                         doctest::Contains("nesterov requires momentum"), ValueError);
    CHECK_THROWS_AS(optim::SGD(p, {.lr = 0.1, .momentum = -0.5}), ValueError);
    CHECK_THROWS_AS(optim::SGD(std::vector<Tensor>{p[0], p[0]}, {.lr = 0.1}), ValueError);
    CHECK_THROWS_AS(optim::SGD(std::vector<Tensor>{}, {.lr = 0.1}), ValueError);
    CHECK_THROWS_AS(optim::SGD(std::vector<Tensor>{p[0] * 2.0}, {.lr = 0.1}), StateError);
    CHECK_THROWS_AS(optim::SGD(std::vector<Tensor>{Tensor::zeros({2}, DType::I64)}, {.lr = 0.1}),
                    DTypeError);
    optim::Adam opt(p, {});
    p[0].set_grad(Tensor::ones({3, 5}, DType::F64).to(DType::F32));
    p[1].set_grad(Tensor::ones({7}, DType::F16));
    CHECK_THROWS_WITH_AS(opt.step(), doctest::Contains("gradient is f16"), DTypeError);
    optim::AdamW defaults(copies(p));
    CHECK(defaults.options().weight_decay == 1e-2);
    CHECK(defaults.param_groups()[0].weight_decay == 1e-2);
}
