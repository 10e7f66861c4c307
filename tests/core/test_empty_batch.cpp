// tests/core/test_empty_batch.cpp — a batch of zero samples. The ops give PyTorch's defined
// results (empty outputs; a sum over nothing is 0, a mean over nothing is NaN; gradients through
// an empty batch are zero), and a training step over zero samples is a ValueError that changes
// nothing: no zero_grad, no optimizer step.
#include <doctest/doctest.h>

#include <cmath>
#include <memory>

#include "core/check.h"
#include "ops/ops.h"
#include "optim/sgd.h"
#include "tests/support/compare.h"
#include "tests/support/tiny_model.h"
#include "tricks/train_step.h"

using namespace minidl;
using minidl::test::bitwise_equal;

namespace {
Tensor no_ids() {
    return Tensor::from_vector(std::vector<int64_t>{}, {0});
}
}  // namespace

TEST_CASE(
    "core/empty batch: the model's ops on zero samples give empty outputs and zero gradients") {
    test::TinyModel model(20, 8, 3);
    const Tensor logits = model.forward(no_ids(), no_ids());  // zero bags
    CHECK(logits.shape() == Shape{0, 3});
    CHECK(softmax(logits).shape() == Shape{0, 3});
    CHECK(log_softmax(logits).shape() == Shape{0, 3});
    CHECK(sum(logits).item<float>() == 0.0f);
    CHECK(std::isnan(mean(logits).item<float>()));  // 0 / 0, as PyTorch
    const Tensor loss = cross_entropy(logits, no_ids());
    CHECK(std::isnan(loss.item<float>()));  // PyTorch: cross_entropy of an empty batch is nan
    const Tensor total = cross_entropy(logits, no_ids(), {.reduction = Reduction::Sum});
    CHECK(total.item<float>() == 0.0f);
    total.backward();
    for (const auto& [name, p] : model.named_parameters()) {
        CAPTURE(name);
        REQUIRE(p.grad().defined());
        CHECK(bitwise_equal(p.grad(), Tensor::zeros(p.shape())));
    }
}

TEST_CASE(
    "core/empty batch: a training step over zero samples is a ValueError that changes nothing") {
    test::TinyModel model(20, 8, 3);
    optim::SGD sgd(model.parameters(), {.lr = 0.1});
    // A gradient from an earlier backward: the failed step must neither zero it nor apply it.
    const Tensor ids = Tensor::from_vector(std::vector<int64_t>{1, 2, 3}, {3});
    const Tensor offsets = Tensor::from_vector(std::vector<int64_t>{0, 2}, {2});
    const Tensor labels = Tensor::from_vector(std::vector<int64_t>{0, 2}, {2});
    cross_entropy(model.forward(ids, offsets), labels).backward();
    const Tensor w = model.fc2->weight.clone(), g = model.fc2->weight.grad().clone();
    tricks::TrainStepConfig cfg;
    cfg.optimizer = &sgd;
    int calls = 0;
    auto loss_fn = [&](int64_t, int64_t) {
        ++calls;
        return cross_entropy(model.forward(ids, offsets), labels);
    };
    CHECK_THROWS_WITH_AS(tricks::train_step(cfg, 0, loss_fn),
                         doctest::Contains("train_step: empty batch (0 samples)"), ValueError);
    CHECK_THROWS_AS(tricks::train_step(cfg, -1, loss_fn), ValueError);
    CHECK(calls == 0);
    CHECK(bitwise_equal(model.fc2->weight, w));
    CHECK(bitwise_equal(model.fc2->weight.grad(), g));
    CHECK_THROWS_AS(tricks::accumulate_gradients(cfg, 0, loss_fn), ValueError);
}
