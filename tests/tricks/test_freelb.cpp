// tests/tricks/test_freelb.cpp — FreeLB against the authors' loop run by PyTorch
// (tests/fixtures/make_trick_fixtures.py), per token after an nn::Embedding: one attack with the
// GLUE defaults (freelb_attack.json: the loss of every pass and the accumulated gradients), one
// whose max_norm rescaling binds (freelb_attack_maxnorm.json), a 4-step Adam trajectory through
// train_step (freelb_trajectory.json; delta_0 of each step replayed from the fixture), and
// init_mag = adv_lr = 0 (the clean gradient).
//
// Tolerances: one attack rtol 1e-5 / atol 1e-6 (f32 ops); trajectories rtol 1e-4 / atol 1e-6.
#include <doctest/doctest.h>

#include "optim/adam.h"
#include "tests/support/token_model.h"
#include "tricks/freelb.h"
#include "tricks/train_step.h"

using namespace minidl;
using namespace minidl::test;

namespace {

tricks::FreeLBOptions options_of(const json& fx) {
    return {.steps = fx.at("steps"),
            .adv_lr = fx.at("adv_lr"),
            .init_mag = fx.at("init_mag"),
            .max_norm = fx.at("max_norm")};
}

}  // namespace

TEST_CASE(
    "tricks/freelb: one attack matches the authors' loop, max_norm branch included "
    "(freelb_attack*.json)") {
    for (const std::string name : {"freelb_attack", "freelb_attack_maxnorm"}) {
        CAPTURE(name);
        const json fx = load_fixture(name);
        TokenModel net;
        load_init(net, fx);
        const TokenBatch batch = token_batch(fx);
        const std::vector<Tensor> w0 = weights(net);
        tricks::FreeLB freelb(*net.embedding, options_of(fx));
        freelb.set_initial_delta(tensor_from_json(fx.at("delta0")));
        std::vector<double> pass_losses;
        const tricks::AttackResult r = freelb.run(
            [&] {
                Tensor loss = batch.loss(net);
                pass_losses.push_back(loss.item());
                return loss;
            },
            [](const Tensor& l) { l.backward(); });
        CHECK(r.perturbed);
        double err = check_close(pass_losses, fx.at("pass_losses").get<std::vector<double>>(), 1e-5,
                                 1e-6, "pass losses");
        err = std::max(err, check_grads(net, fx.at("grads_after"), 1e-5, 1e-6, "gradient after"));
        // The weights were never touched, and the hook is gone: a forward is the clean one.
        CHECK(all_bitwise_equal(weights(net), w0));
        TokenModel clean;
        load_init(clean, fx);
        CHECK(batch.loss(net).item() == batch.loss(clean).item());
        MESSAGE(name << ": max relative error " << err);
    }
}

TEST_CASE(
    "tricks/freelb: Adam + FreeLB trajectory through train_step matches PyTorch "
    "(freelb_trajectory.json)") {
    const json fx = load_fixture("freelb_trajectory");
    TokenModel net;
    load_init(net, fx);
    optim::Adam opt(net.parameters(), {.lr = fx.at("lr")});
    tricks::FreeLB freelb(*net.embedding, options_of(fx));
    tricks::TrainStepConfig cfg{.optimizer = &opt, .freelb = &freelb};
    std::vector<double> losses;
    for (const json& b : fx.at("batches")) {
        const TokenBatch batch = token_batch(b);
        freelb.set_initial_delta(tensor_from_json(b.at("delta0")));
        losses.push_back(tricks::train_step(cfg, batch.size(), [&](int64_t begin, int64_t end) {
                             return batch.slice(begin, end).loss(net);
                         }).loss);
    }
    double err = check_close(losses, fx.at("losses").get<std::vector<double>>(), 1e-4, 1e-6,
                             "losses (first pass)");
    err = std::max(err, check_state(net, fx.at("final"), 1e-4, 1e-6, "final"));
    MESSAGE("freelb_trajectory: max relative error " << err);
}

TEST_CASE("tricks/freelb: with init_mag and adv_lr 0 the K passes give the clean gradient") {
    const json fx = load_fixture("freelb_attack");
    TokenModel net;
    load_init(net, fx);
    const TokenBatch batch = token_batch(fx);
    batch.loss(net).backward();
    const std::vector<Tensor> clean = gradients(net);
    net.zero_grad();
    tricks::FreeLB freelb(*net.embedding, {.steps = 3, .adv_lr = 0.0, .init_mag = 0.0});
    int passes = 0;
    const tricks::AttackResult r = freelb.run(
        [&] {
            ++passes;
            return batch.loss(net);
        },
        [](const Tensor& l) { l.backward(); });
    CHECK(passes == 3);
    CHECK_FALSE(r.perturbed);
    const std::vector<Tensor> after = gradients(net);
    for (size_t i = 0; i < clean.size(); ++i)
        check_close(after[i], clean[i], 1e-6, 1e-7, "3 passes of loss / 3 = the clean gradient");
    CHECK_THROWS_AS(
        [&] {
            tricks::FreeLB bad(*net.embedding);
            bad.set_initial_delta(Tensor::zeros({2, 2}));
            bad.run([&] { return batch.loss(net); }, [](const Tensor& l) { l.backward(); });
        }(),
        ShapeError);
}
