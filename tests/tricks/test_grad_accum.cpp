// tests/tricks/test_grad_accum.cpp — accumulation equals the big batch exactly: ragged
// micro-batches weighted by their share (grad_accum_ragged.json), an Adam trajectory with 2
// micro-batches per step (e2e_adam_accum2.json), and the plans.
#include <doctest/doctest.h>

#include <cmath>

#include "nn/linear.h"
#include "optim/adam.h"
#include "optim/sgd.h"
#include "tests/support/compare.h"
#include "tests/support/tiny_model.h"
#include "tricks/grad_accum.h"
#include "tricks/train_step.h"

using namespace minidl;
using namespace minidl::test;

TEST_CASE("tricks/grad_accum: ragged micro-batches weighted by size give the full-batch gradient") {
    const json fx = load_fixture("grad_accum_ragged");
    const Tensor w = tensor_from_json(fx.at("weight")), b = tensor_from_json(fx.at("bias"));
    const Tensor X = tensor_from_json(fx.at("inputs")), Y = tensor_from_json(fx.at("labels"));
    const auto sizes = fx.at("micro_batch_sizes").get<std::vector<int64_t>>();

    auto accumulate = [&](bool by_share) {
        Tensor wg = w.clone().set_requires_grad(), bg = b.clone().set_requires_grad();
        int64_t begin = 0;
        for (int64_t n : sizes) {
            Tensor loss = cross_entropy(linear(X.narrow0(begin, n), wg, bg), Y.narrow0(begin, n));
            const double weight = by_share ? static_cast<double>(n) / 10.0 : 1.0 / 3.0;
            (loss * weight).backward();
            begin += n;
        }
        return std::pair{wg.grad(), bg.grad()};
    };
    const auto [gw, gb] = accumulate(true);
    double err = check_close(gw, values_from_json(fx.at("full_batch_grads").at("weight")), 1e-5,
                             1e-6, "weight grad");
    err = std::max(err, check_close(gb, values_from_json(fx.at("full_batch_grads").at("bias")),
                                    1e-5, 1e-6, "bias grad"));
    MESSAGE("grad_accum_ragged: max relative error " << err);
    // The seed's loss / accum_iter is wrong for a ragged group.
    const auto [nw, nb] = accumulate(false);
    CHECK_FALSE(compare_close(nw.to_vector<double>(),
                              values_from_json(fx.at("full_batch_grads").at("weight")), 1e-5, 1e-6)
                    .ok);

    // The same through the training step: accumulate_gradients plans 10 samples in 3 micro-batches
    // itself ([4, 3, 3], weights 0.4, 0.3, 0.3) and must give the full-batch gradient too.
    {
        Tensor wg = w.clone().set_requires_grad(), bg = b.clone().set_requires_grad();
        optim::SGD sgd(std::vector<Tensor>{wg, bg}, {.lr = 0.1});
        tricks::TrainStepConfig cfg{.optimizer = &sgd};
        cfg.accum_steps = 3;
        const std::vector<tricks::MicroBatch> plan = tricks::GradAccumulator(3).plan(10);
        REQUIRE(plan.size() == 3);
        CHECK(plan[2].end - plan[2].begin < plan[0].end - plan[0].begin);  // a ragged split
        int calls = 0;
        const tricks::StepResult r =
            tricks::accumulate_gradients(cfg, 10, [&](int64_t b0, int64_t e0) {
                ++calls;
                return cross_entropy(linear(X.narrow0(b0, e0 - b0), wg, bg),
                                     Y.narrow0(b0, e0 - b0));
            });
        CHECK(calls == 3);
        CHECK(std::isfinite(r.loss));
        check_close(wg.grad(), values_from_json(fx.at("full_batch_grads").at("weight")), 1e-5, 1e-6,
                    "train_step weight grad");
        check_close(bg.grad(), values_from_json(fx.at("full_batch_grads").at("bias")), 1e-5, 1e-6,
                    "train_step bias grad");
    }

    // A loader of 10 samples in batches of 4, one step per 3 batches, is exactly this group:
    // the streaming plan gives these weights.
    const tricks::LoaderPlan plan(10, 4, 3);
    CHECK(plan.weight(0) == 0.4);
    CHECK(plan.weight(2) == 0.2);
    CHECK(plan.steps_after(2));
}

TEST_CASE(
    "tricks/grad_accum: Adam with 2 micro-batches per step matches PyTorch "
    "(e2e_adam_accum2.json)") {
    const json fx = load_fixture("e2e_adam_accum2");
    TinyModel net;
    load_init(net, fx);
    optim::Adam opt(net.parameters(), {.lr = fx.at("lr")});
    const std::vector<FixtureBatch> batches = load_batches(fx);
    tricks::GradAccumulator acc(2);
    std::vector<double> losses;
    for (size_t step = 0; step < 6; ++step) {
        opt.zero_grad();
        // The fixture's micro-batches are given (3 samples each): weights 1/2 each.
        for (const tricks::MicroBatch& mb : acc.plan(2)) {
            const FixtureBatch& b = batches[step * 2 + mb.begin];
            Tensor loss = cross_entropy(net.forward(b.ids, b.offsets), b.labels);
            losses.push_back(loss.item());
            tricks::GradAccumulator::weight_loss(loss, mb).backward();
        }
        opt.step();
    }
    double err =
        check_close(losses, fx.at("losses").get<std::vector<double>>(), 1e-4, 1e-6, "losses");
    for (const auto& [name, t] : fx.at("final").items())
        err = std::max(err, check_close(net.state_dict().at(name), values_from_json(t), 1e-4, 1e-6,
                                        "final " + name));
    MESSAGE("e2e_adam_accum2: max relative error " << err);
}

TEST_CASE("tricks/grad_accum: plans by sample and by token counts") {
    tricks::GradAccumulator acc(4);
    const auto p = acc.plan(10);  // sizes 3, 3, 2, 2
    REQUIRE(p.size() == 4);
    double total = 0;
    for (const auto& mb : p)
        total += mb.weight;
    check_close({total}, {1.0}, 1e-15, 0, "weights sum to 1");
    CHECK(p[0].end - p[0].begin == 3);
    CHECK(p[3].end - p[3].begin == 2);
    CHECK(acc.plan(2).size() == 2);  // never more micro-batches than samples
    const auto t = tricks::GradAccumulator(2).plan(std::vector<int64_t>{1, 1, 6, 2});
    CHECK(t[0].weight == 0.2);
    CHECK(t[1].weight == 0.8);
    CHECK(tricks::GradAccumulator(1).plan(5).front().weight == 1.0);
    CHECK_THROWS_AS(tricks::GradAccumulator(0), ValueError);
}

TEST_CASE("tricks/grad_accum: the streaming plan weights a ragged tail by its samples") {
    tricks::LoaderPlan plan(/*num_samples=*/10, /*batch_size=*/3, /*steps=*/2);
    // Batches of 3, 3, 3, 1: groups {0, 1} (6 samples) and {2, 3} (4 samples).
    CHECK(plan.num_batches() == 4);
    CHECK(plan.weight(0) == 0.5);
    CHECK(plan.weight(2) == 0.75);
    CHECK(plan.weight(3) == 0.25);
    CHECK_FALSE(plan.steps_after(0));
    CHECK(plan.steps_after(1));
    CHECK(plan.steps_after(3));
}

TEST_CASE("tricks/train_step: the step's loss summed on the device, read once or left there") {
    // 7 samples in 3 micro-batches (3, 2, 2): the step's loss is sum_j (n_j / 7) * loss_j. With
    // read_loss it is read into `loss`, bitwise the host sum of the micro-batches' losses; without,
    // `loss` is NaN and loss_tensor holds the same bits; the weights move the same either way.
    Generator gen(5);
    const Tensor x = Tensor::randn({7, 4}, &gen);
    const Tensor y = Tensor::from_vector(std::vector<int64_t>{0, 2, 1, 1, 0, 2, 2}, {7});
    std::vector<std::vector<Tensor>> finals;
    std::vector<tricks::StepResult> results;
    for (bool read : {true, false}) {
        manual_seed(3);
        nn::Linear net(4, 3);
        optim::SGD opt(net.parameters(), {.lr = 0.1});
        tricks::TrainStepConfig cfg{.optimizer = &opt, .accum_steps = 3};
        cfg.read_loss = read;
        results.push_back(tricks::train_step(cfg, 7, [&](int64_t b, int64_t e) {
            return cross_entropy(net.forward(x.narrow0(b, e - b)), y.narrow0(b, e - b));
        }));
        std::vector<Tensor> w;
        for (const Tensor& p : net.parameters())
            w.push_back(p.detach().clone());
        finals.push_back(w);
    }
    // The host's sum of the micro-batches' read losses, by the same plan.
    manual_seed(3);
    nn::Linear net(4, 3);
    double expected = 0.0;
    for (const tricks::MicroBatch& mb : tricks::GradAccumulator(3).plan(7))
        expected += mb.weight * cross_entropy(net.forward(x.narrow0(mb.begin, mb.end - mb.begin)),
                                              y.narrow0(mb.begin, mb.end - mb.begin))
                                    .item();
    CHECK(results[0].loss == expected);
    CHECK(results[0].loss_tensor.item() == expected);
    CHECK(std::isnan(results[1].loss));
    REQUIRE(results[1].loss_tensor.defined());
    CHECK(results[1].loss_tensor.dtype() == DType::F64);
    CHECK(results[1].loss_tensor.item() == expected);
    for (size_t i = 0; i < finals[0].size(); ++i)
        CHECK(bitwise_equal(finals[0][i], finals[1][i]));
}
