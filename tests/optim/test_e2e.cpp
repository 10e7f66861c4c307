// tests/optim/test_e2e.cpp — end to end against PyTorch 1.13 (tests/fixtures/e2e_adam.json):
// EmbeddingBag(20, 8, mean) -> Linear(8, 8) -> ReLU -> Linear(8, 2), cross-entropy, Adam lr 0.01,
// PyTorch's initial weights loaded through load_state_dict, six fixed batches; the loss at each
// step and the final weights.
//
// Tolerance: rtol 1e-4, atol 1e-6 (a multi-step f32 trajectory through every layer).
#include <doctest/doctest.h>

#include "nn/embedding.h"
#include "nn/linear.h"
#include "nn/module.h"
#include "ops/ops.h"
#include "optim/adam.h"
#include "tests/support/compare.h"
#include "tests/support/fixtures.h"

using namespace minidl;
using minidl::test::check_close;
using minidl::test::json;
using minidl::test::load_fixture;
using minidl::test::tensor_from_json;
using minidl::test::values_from_json;

namespace {

// The fixture's model, with PyTorch's names: embedding.weight, fc1.*, fc2.*.
struct Tiny : nn::Cloneable<Tiny> {
    Tiny() { reset(); }
    void reset() override {
        embedding = register_module("embedding", std::make_shared<nn::EmbeddingBag>(20, 8));
        fc1 = register_module("fc1", std::make_shared<nn::Linear>(8, 8));
        fc2 = register_module("fc2", std::make_shared<nn::Linear>(8, 2));
    }
    Tensor forward(const Tensor& ids, const Tensor& offsets) {
        return fc2->forward(relu(fc1->forward(embedding->forward(ids, offsets))));
    }
    std::shared_ptr<nn::EmbeddingBag> embedding;
    std::shared_ptr<nn::Linear> fc1, fc2;
};

}  // namespace

TEST_CASE("optim/e2e: Adam training matches PyTorch on e2e_adam.json") {
    const json fx = load_fixture("e2e_adam");
    Tiny net;
    StateDict init;
    for (const auto& [name, t] : fx.at("init").items())
        init.tensors[name] = tensor_from_json(t);
    net.load_state_dict(init);

    optim::Adam opt(net.parameters(), {.lr = fx.at("lr"),
                                       .beta1 = fx.at("betas")[0],
                                       .beta2 = fx.at("betas")[1],
                                       .eps = fx.at("eps"),
                                       .weight_decay = fx.at("weight_decay")});
    std::vector<double> losses;
    for (const auto& batch : fx.at("batches")) {
        opt.zero_grad();
        const Tensor logits =
            net.forward(tensor_from_json(batch.at("ids")), tensor_from_json(batch.at("offsets")));
        const Tensor loss = cross_entropy(logits, tensor_from_json(batch.at("labels")));
        losses.push_back(loss.item());
        loss.backward();
        opt.step();
    }
    double err =
        check_close(losses, fx.at("losses").get<std::vector<double>>(), 1e-4, 1e-6, "losses");
    const StateDict final_state = net.state_dict();
    for (const auto& [name, t] : fx.at("final").items())
        err = std::max(err, check_close(final_state.tensors.at(name), values_from_json(t), 1e-4,
                                        1e-6, "final " + name));
    MESSAGE("e2e_adam: max relative error " << err);
}
