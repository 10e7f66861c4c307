// tests/tricks/test_pgd.cpp — PGD against the reference class run by PyTorch
// (tests/fixtures/make_trick_fixtures.py): one attack of K = 3 steps whose projection binds
// (pgd_attack.json: each step's perturbation, the gradients the optimizer sees, the restore), a
// 4-step Adam trajectory through train_step (pgd_trajectory.json), the objective at alpha 0
// (twice the clean gradient), and a non-finite norm on one of several tensors (nothing moves).
//
// Tolerances: one attack rtol 1e-5 / atol 1e-6 (f32 ops); trajectories rtol 1e-4 / atol 1e-6.
#include <doctest/doctest.h>

#include <limits>

#include "core/autograd.h"
#include "optim/adam.h"
#include "tests/support/token_model.h"
#include "tricks/pgd.h"
#include "tricks/train_step.h"

using namespace minidl;
using namespace minidl::test;

TEST_CASE(
    "tricks/pgd: one attack matches the reference class, projection included "
    "(pgd_attack.json)") {
    const json fx = load_fixture("pgd_attack");
    REQUIRE(fx.at("projected").get<bool>());
    TokenModel net;
    load_init(net, fx);
    const TokenBatch batch = token_batch(fx);
    const std::vector<Tensor> w0 = weights(net);

    Tensor loss = batch.loss(net);
    double err =
        check_close({loss.item()}, {fx.at("loss_clean").get<double>()}, 1e-5, 1e-6, "clean loss");
    loss.backward();
    err = std::max(err, check_grads(net, fx.at("grads_clean"), 1e-5, 1e-6, "clean grad"));

    tricks::PGD pgd(
        net, {.epsilon = fx.at("epsilon"), .alpha = fx.at("alpha"), .steps = fx.at("steps")});
    int pass = 0;
    const tricks::AttackResult r = pgd.run([&] {
        const Tensor e0 = w0[0];  // embedding.weight comes first
        err = std::max(err, check_close(net.embedding->weight - e0,
                                        values_from_json(fx.at("perturbations").at(pass)), 1e-5,
                                        1e-6, "perturbation after attack " + std::to_string(pass)));
        Tensor adv = batch.loss(net);
        err = std::max(
            err, check_close({adv.item()}, {fx.at("adversarial_losses").at(pass).get<double>()},
                             1e-5, 1e-6, "adversarial loss " + std::to_string(pass)));
        adv.backward();
        ++pass;
    });
    CHECK(pass == 3);
    CHECK(r.perturbed);
    CHECK_FALSE(r.nonfinite);
    err = std::max(err, check_grads(net, fx.at("grads_after"), 1e-5, 1e-6, "gradient after"));
    CHECK(all_bitwise_equal(weights(net), w0));  // restored bitwise
    MESSAGE("pgd_attack: max relative error " << err);
}

TEST_CASE(
    "tricks/pgd: Adam + PGD trajectory through train_step matches PyTorch "
    "(pgd_trajectory.json)") {
    const json fx = load_fixture("pgd_trajectory");
    TokenModel net;
    load_init(net, fx);
    optim::Adam opt(net.parameters(), {.lr = fx.at("lr")});
    tricks::PGD pgd(
        net, {.epsilon = fx.at("epsilon"), .alpha = fx.at("alpha"), .steps = fx.at("steps")});
    tricks::TrainStepConfig cfg{.optimizer = &opt, .pgd = &pgd};
    std::vector<double> losses;
    for (const json& b : fx.at("batches")) {
        const TokenBatch batch = token_batch(b);
        losses.push_back(tricks::train_step(cfg, batch.size(), [&](int64_t begin, int64_t end) {
                             return batch.slice(begin, end).loss(net);
                         }).loss);
    }
    double err =
        check_close(losses, fx.at("losses").get<std::vector<double>>(), 1e-4, 1e-6, "losses");
    err = std::max(err, check_state(net, fx.at("final"), 1e-4, 1e-6, "final"));
    MESSAGE("pgd_trajectory: max relative error " << err);
}

TEST_CASE("tricks/pgd: with alpha 0 the K passes still run: twice the clean gradient, bitwise") {
    const json fx = load_fixture("pgd_attack");
    TokenModel net;
    load_init(net, fx);
    const TokenBatch batch = token_batch(fx);
    batch.loss(net).backward();
    const std::vector<Tensor> clean = gradients(net), w0 = weights(net);
    tricks::PGD pgd(net, {.epsilon = 0.5, .alpha = 0.0, .steps = 3});
    int passes = 0;
    const tricks::AttackResult r = pgd.run([&] {
        batch.loss(net).backward();
        ++passes;
    });
    CHECK(passes == 3);
    CHECK_FALSE(r.perturbed);
    std::vector<Tensor> twice;
    for (const Tensor& g : clean)
        twice.push_back(g * 2.0);
    CHECK(all_bitwise_equal(gradients(net), twice));
    CHECK(all_bitwise_equal(weights(net), w0));
}

TEST_CASE("tricks/pgd: a non-finite norm on one of several tensors moves none of them") {
    const json fx = load_fixture("pgd_attack");
    TokenModel net;
    load_init(net, fx);
    const TokenBatch batch = token_batch(fx);
    batch.loss(net).backward();
    // embedding.weight comes first and has a finite gradient; fc2.weight's overflowed.
    {
        NoGradGuard no_grad;
        Tensor g = net.fc2->weight.grad().clone();
        g.fill_(std::numeric_limits<double>::infinity());
        net.fc2->weight.set_grad(g);
    }
    const std::vector<Tensor> w0 = weights(net);
    tricks::PGD pgd(net, {.filter = {.predicate = [](const std::string& name, const Tensor&) {
                              return name == "embedding.weight" || name == "fc2.weight";
                          }}});
    const tricks::AttackResult r = pgd.attack(true);
    CHECK(r.nonfinite);
    CHECK_FALSE(r.perturbed);
    CHECK(all_bitwise_equal(weights(net), w0));
    pgd.restore();
    CHECK(all_bitwise_equal(weights(net), w0));
}
