// tests/tricks/test_awp.cpp — AWP against the Kaggle AWP class run by PyTorch
// (tests/fixtures/make_trick_fixtures.py): single attacks with the clamp binding everywhere
// (awp_attack), partly (awp_attack_small), two ascent steps (awp_attack_steps2) and the paper's
// layer-wise bound (awp_attack_layerwise) — each step's perturbation, the adversarial gradient
// the optimizer sees (the clean one dropped) and the bitwise restore; 4-step Adam trajectories
// through train_step, alone and with 2 micro-batches per step; adv_lr 0 (the clean gradient,
// bitwise); a non-finite norm on one of several tensors (nothing moves).
//
// Tolerances: one attack rtol 1e-5 / atol 1e-6 (f32 ops); trajectories rtol 1e-4 / atol 1e-6.
#include <doctest/doctest.h>

#include <limits>
#include <map>

#include "core/autograd.h"
#include "optim/adam.h"
#include "tests/support/token_model.h"
#include "tricks/awp.h"
#include "tricks/train_step.h"

using namespace minidl;
using namespace minidl::test;

namespace {

tricks::AWPOptions options_of(const json& fx) {
    return {.adv_lr = fx.at("adv_lr"),
            .adv_eps = fx.at("adv_eps"),
            .bound = fx.at("bound") == "layerwise" ? tricks::AWPBound::Layerwise
                                                   : tricks::AWPBound::Elementwise,
            .steps = fx.at("steps")};
}

}  // namespace

TEST_CASE("tricks/awp: one attack matches the reference class (awp_attack*.json)") {
    for (const std::string name :
         {"awp_attack", "awp_attack_small", "awp_attack_steps2", "awp_attack_layerwise"}) {
        CAPTURE(name);
        const json fx = load_fixture(name);
        TokenModel net;
        load_init(net, fx);
        const TokenBatch batch = token_batch(fx);
        const std::vector<Tensor> init = weights(net);
        std::map<std::string, Tensor> w0;  // copies: a state dict shares the parameters' storage
        for (const auto& [param, p] : net.named_parameters())
            w0[param] = p.detach().clone();

        Tensor loss = batch.loss(net);
        double err = check_close({loss.item()}, {fx.at("loss_clean").get<double>()}, 1e-5, 1e-6,
                                 "clean loss");
        loss.backward();
        err = std::max(err, check_grads(net, fx.at("grads_clean"), 1e-5, 1e-6, "clean grad"));

        tricks::AWP awp(net, options_of(fx));
        CHECK(awp.selection().size() == 3);  // embedding.weight, fc1.weight, fc2.weight
        int pass = 0;
        const tricks::AttackResult r = awp.run([&] {
            const StateDict now = net.state_dict();
            for (const auto& [param, v] : fx.at("perturbations").at(pass).items())
                err = std::max(
                    err,
                    check_close(now.at(param) - w0.at(param), values_from_json(v), 1e-5, 1e-6,
                                "perturbation " + param + " after step " + std::to_string(pass)));
            Tensor adv = batch.loss(net);
            err = std::max(
                err, check_close({adv.item()}, {fx.at("adversarial_losses").at(pass).get<double>()},
                                 1e-5, 1e-6, "adversarial loss"));
            adv.backward();
            ++pass;
        });
        CHECK(pass == fx.at("steps").get<int>());
        CHECK(r.perturbed);
        // The optimizer sees the adversarial gradient alone.
        err = std::max(err, check_grads(net, fx.at("grads_after"), 1e-5, 1e-6, "gradient after"));
        CHECK(all_bitwise_equal(weights(net), init));
        MESSAGE(name << ": max relative error " << err);
    }
}

TEST_CASE(
    "tricks/awp: Adam + AWP trajectories through train_step match PyTorch "
    "(awp_trajectory*.json)") {
    for (const std::string name : {"awp_trajectory", "awp_trajectory_accum2"}) {
        CAPTURE(name);
        const json fx = load_fixture(name);
        TokenModel net;
        load_init(net, fx);
        optim::Adam opt(net.parameters(), {.lr = fx.at("lr")});
        tricks::AWP awp(net, options_of(fx));
        const int64_t accum = fx.at("accumulation_steps");
        tricks::TrainStepConfig cfg{.optimizer = &opt, .awp = &awp};
        cfg.accum_steps = accum;
        const json& batches = fx.at("batches");
        const std::vector<double> micro_losses = fx.at("losses").get<std::vector<double>>();
        std::vector<double> losses, expected;
        for (size_t step = 0; step * accum < batches.size(); ++step) {
            // The step's micro-batches joined into one batch; train_step splits it again.
            std::vector<Tensor> ids, labels;
            double mean = 0;
            for (int64_t j = 0; j < accum; ++j) {
                const TokenBatch b = token_batch(batches.at(step * accum + j));
                ids.push_back(b.ids);
                labels.push_back(b.labels);
                mean += micro_losses[step * accum + j] / static_cast<double>(accum);
            }
            const TokenBatch batch{concat(ids, 0), concat(labels, 0)};
            losses.push_back(tricks::train_step(cfg, batch.size(), [&](int64_t b, int64_t e) {
                                 return batch.slice(b, e).loss(net);
                             }).loss);
            expected.push_back(mean);
        }
        double err = check_close(losses, expected, 1e-4, 1e-6, "losses");
        err = std::max(err, check_state(net, fx.at("final"), 1e-4, 1e-6, "final"));
        MESSAGE(name << ": max relative error " << err);
    }
}

TEST_CASE(
    "tricks/awp: with adv_lr 0 the adversarial pass runs at w0: the clean gradient, bitwise") {
    const json fx = load_fixture("awp_attack");
    TokenModel net;
    load_init(net, fx);
    const TokenBatch batch = token_batch(fx);
    batch.loss(net).backward();
    const std::vector<Tensor> clean = gradients(net), w0 = weights(net);
    tricks::AWP awp(net, {.adv_lr = 0.0});
    int passes = 0;
    const tricks::AttackResult r = awp.run([&] {
        batch.loss(net).backward();
        ++passes;
    });
    CHECK(passes == 1);
    CHECK_FALSE(r.perturbed);
    CHECK(all_bitwise_equal(gradients(net), clean));
    CHECK(all_bitwise_equal(weights(net), w0));
}

TEST_CASE("tricks/awp: a non-finite norm on one of several tensors moves none of them") {
    const json fx = load_fixture("awp_attack");
    TokenModel net;
    load_init(net, fx);
    const TokenBatch batch = token_batch(fx);
    batch.loss(net).backward();
    {
        NoGradGuard no_grad;
        Tensor g = net.fc2->weight.grad().clone();
        g.fill_(std::numeric_limits<double>::quiet_NaN());
        net.fc2->weight.set_grad(g);
    }
    const std::vector<Tensor> w0 = weights(net);
    tricks::AWP awp(net);
    bool moved = true;
    const tricks::AttackResult r = awp.run([&] {
        moved = !all_bitwise_equal(weights(net), w0);
        batch.loss(net).backward();
    });
    CHECK(r.nonfinite);
    CHECK_FALSE(r.perturbed);
    CHECK_FALSE(moved);
    CHECK(all_bitwise_equal(weights(net), w0));
}

TEST_CASE("tricks/awp: a pass that throws leaves the weights restored and the next step clean") {
    const json fx = load_fixture("awp_attack");
    TokenModel net;
    load_init(net, fx);
    const TokenBatch batch = token_batch(fx);
    batch.loss(net).backward();
    const std::vector<Tensor> w0 = weights(net);
    tricks::AWP awp(net);
    CHECK_THROWS_AS(awp.run([&] { throw ValueError("adversarial pass failed"); }), ValueError);
    CHECK(all_bitwise_equal(weights(net), w0));
    CHECK_THROWS_AS(tricks::AWP(net, {.steps = 0}), ValueError);
    CHECK_THROWS_AS(tricks::AWP(net, {.adv_lr = -1.0}), ValueError);
}
