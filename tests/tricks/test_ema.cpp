// tests/tricks/test_ema.cpp — EMA against the seed's rule and TensorFlow's warm-up
// (ema_decay0.9*.json), an Adam + EMA trajectory (e2e_adam_ema0.9.json), the scope guard, the
// invariances (decay 0 = the weights) and skipped steps.
#include <doctest/doctest.h>

#include "nn/module.h"
#include "optim/adam.h"
#include "optim/sgd.h"
#include "tests/support/compare.h"
#include "tests/support/tiny_model.h"
#include "tricks/ema.h"

using namespace minidl;
using namespace minidl::test;

namespace {
struct OneParam : nn::Cloneable<OneParam> {
    explicit OneParam(Tensor init) : init_(std::move(init)) { reset(); }
    void reset() override { w = register_parameter("w", init_.clone()); }
    Tensor init_, w;
};
}  // namespace

TEST_CASE("tricks/ema: shadow follows the seed's rule and the warm-up rule (ema_decay0.9*.json)") {
    for (const char* name : {"ema_decay0.9", "ema_decay0.9_warmup"}) {
        SUBCASE(name) {
            const json fx = load_fixture(name);
            OneParam m(tensor_from_json(fx.at("registered")));
            tricks::EMA ema(m, {.decay = fx.at("decay"), .warmup = fx.at("warmup")});
            double err = 0;
            for (size_t k = 0; k < fx.at("params_after_each_step").size(); ++k) {
                {
                    NoGradGuard no_grad;
                    m.w.copy_(tensor_from_json(fx.at("params_after_each_step")[k]));
                }
                CHECK(ema.update());
                err = std::max(
                    err, check_close(ema.shadow("w"),
                                     values_from_json(fx.at("shadow_after_each_update")[k]), 1e-5,
                                     1e-6, "shadow after update " + std::to_string(k)));
            }
            CHECK(ema.num_updates() == 6);
            MESSAGE(std::string(name) << ": max relative error " << err);
        }
    }
}

TEST_CASE("tricks/ema: Adam + EMA trajectory matches PyTorch (e2e_adam_ema0.9.json)") {
    const json fx = load_fixture("e2e_adam_ema0.9");
    TinyModel net;
    load_init(net, fx);
    optim::Adam opt(net.parameters(), {.lr = fx.at("lr")});
    tricks::EMA ema(net, {.decay = fx.at("ema_decay"), .optimizer = &opt});
    std::vector<double> losses;
    for (const FixtureBatch& b : load_batches(fx)) {
        opt.zero_grad();
        Tensor loss = cross_entropy(net.forward(b.ids, b.offsets), b.labels);
        losses.push_back(loss.item());
        loss.backward();
        opt.step();
        CHECK(ema.update());
    }
    double err =
        check_close(losses, fx.at("losses").get<std::vector<double>>(), 1e-4, 1e-6, "losses");
    for (const auto& [name, t] : fx.at("final").items())
        err = std::max(err, check_close(net.state_dict().at(name), values_from_json(t), 1e-4, 1e-6,
                                        "final " + name));
    for (const auto& [name, t] : fx.at("ema_shadow").items())
        err = std::max(
            err, check_close(ema.shadow(name), values_from_json(t), 1e-4, 1e-6, "shadow " + name));
    MESSAGE("e2e_adam_ema0.9: max relative error " << err);
}

TEST_CASE("tricks/ema: apply_shadow swaps the average in and the scope restores bitwise") {
    TinyModel net;
    const StateDict live = [&] {
        StateDict s;
        for (auto& [k, v] : net.state_dict().tensors)
            s.tensors[k] = v.clone();
        return s;
    }();
    tricks::EMA ema(net, {.decay = 0.5});
    {
        NoGradGuard no_grad;
        for (Tensor p : net.parameters())
            p.add_(Tensor::ones_like(p));
    }
    ema.update();  // shadow = 0.5 w0 + 0.5 (w0 + 1) = w0 + 0.5
    const Tensor moved = net.fc1->weight.clone();
    try {
        auto swapped = ema.apply_shadow();
        CHECK(ema.applied());
        check_close(net.fc1->weight, live.at("fc1.weight") + 0.5, 1e-6, 1e-6, "shadow applied");
        CHECK_THROWS_AS(ema.update(), StateError);
        throw std::runtime_error("evaluation failed");
    } catch (const std::runtime_error&) {
    }
    CHECK_FALSE(ema.applied());
    CHECK(bitwise_equal(net.fc1->weight, moved));  // restored although evaluation threw
}

TEST_CASE("tricks/ema: decay 0 is the weights, the shadow stays F32 for 16-bit weights") {
    TinyModel net;
    tricks::EMA ema(net, {.decay = 0.0});
    {
        NoGradGuard no_grad;
        for (Tensor p : net.parameters())
            p.mul_(3.0);
    }
    ema.update();
    for (const auto& [name, p] : net.named_parameters())
        CHECK(bitwise_equal(ema.shadow(name), p));
    TinyModel half;
    half.to(DType::BF16);
    tricks::EMA ema16(half, {.decay = 0.9});
    CHECK(ema16.shadow("fc1.weight").dtype() == DType::F32);
    const Tensor shadow0 = ema16.shadow("fc1.weight").clone();
    {
        NoGradGuard no_grad;
        half.fc1->weight.mul_(3.0);
    }
    ema16.update();
    // The average is computed and kept in F32: 0.9 * w0 + 0.1 * w, not rounded to BF16.
    const Tensor w = half.fc1->weight.to(DType::F32);
    const Tensor expected = shadow0 * 0.9 + w * 0.1;
    const Tensor shadow = ema16.shadow("fc1.weight");
    CHECK(shadow.dtype() == DType::F32);
    check_close(shadow, expected, 1e-6, 1e-7, "F32 shadow after an update");
    CHECK_FALSE(bitwise_equal(shadow, shadow.to(DType::BF16).to(DType::F32)));
}

TEST_CASE("tricks/ema: bound to an optimizer, a skipped step advances nothing") {
    TinyModel net;
    optim::SGD opt(net.parameters(), {.lr = 0.1});
    tricks::EMA ema(net, {.decay = 0.9, .optimizer = &opt});
    CHECK_FALSE(ema.update());  // no optimizer step yet
    CHECK(ema.num_updates() == 0);
    for (Tensor p : net.parameters())
        p.set_grad(Tensor::ones_like(p));
    opt.step();
    CHECK(ema.update());
    CHECK_FALSE(ema.update());  // the same step twice
    CHECK(ema.num_updates() == 1);
}

TEST_CASE("tricks/ema: warm-up makes early averages fast: d_t = min(d, (1+t)/(10+t))") {
    TinyModel net;
    tricks::EMA ema(net, {.decay = 0.999, .warmup = true});
    check_close({ema.current_decay()}, {2.0 / 11.0}, 1e-15, 0, "first update");
    for (int i = 0; i < 100; ++i)
        ema.update();
    check_close({ema.current_decay()}, {102.0 / 111.0}, 1e-15, 0, "update 101");
}

TEST_CASE("tricks/ema: state_dict round trip continues identically") {
    TinyModel net;
    tricks::EMA a(net, {.decay = 0.8});
    a.update();
    tricks::EMA b(net, {.decay = 0.8});
    b.load_state_dict(a.state_dict());
    CHECK(b.num_updates() == 1);
    {
        NoGradGuard no_grad;
        for (Tensor p : net.parameters())
            p.add_(Tensor::ones_like(p), 0.25);
    }
    a.update();
    b.update();
    for (const auto& [name, s] : a.shadows())
        CHECK(bitwise_equal(s, b.shadow(name)));
}
