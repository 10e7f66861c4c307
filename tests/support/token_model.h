// tests/support/token_model.h — the model of the adversarial-trick fixtures
// (tests/fixtures/make_trick_fixtures.py: pgd_*, freelb_*, awp_*, fgm_epsilon0):
// Embedding(20, 8) -> mean over tokens -> Linear(8, 8) -> ReLU -> Linear(8, 2), PyTorch's names
// (embedding.weight, fc1.*, fc2.*), ids [batch, tokens] without padding; and the comparisons the
// trick tests share.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "nn/embedding.h"
#include "nn/linear.h"
#include "nn/module.h"
#include "ops/ops.h"
#include "tests/support/compare.h"
#include "tests/support/fixtures.h"
#include "tests/support/tiny_model.h"

namespace minidl::test {

struct TokenModel : nn::Cloneable<TokenModel> {
    TokenModel() { reset(); }
    void reset() override {
        embedding = register_module("embedding", std::make_shared<nn::Embedding>(20, 8));
        fc1 = register_module("fc1", std::make_shared<nn::Linear>(8, 8));
        fc2 = register_module("fc2", std::make_shared<nn::Linear>(8, 2));
    }
    Tensor forward(const Tensor& ids) {
        return fc2->forward(relu(fc1->forward(mean(embedding->forward(ids), 1))));
    }
    std::string type_name() const override { return "TokenModel"; }

    std::shared_ptr<nn::Embedding> embedding;
    std::shared_ptr<nn::Linear> fc1, fc2;
};

struct TokenBatch {
    Tensor ids, labels;
    int64_t size() const { return ids.shape()[0]; }
    // Samples [begin, end) of the batch.
    TokenBatch slice(int64_t begin, int64_t end) const {
        return {ids.narrow0(begin, end - begin), labels.narrow0(begin, end - begin)};
    }
    Tensor loss(TokenModel& net) const { return cross_entropy(net.forward(ids), labels); }
};

// The case's own batch (fx["ids"], fx["labels"]) or fx["batches"][i].
inline TokenBatch token_batch(const json& j) {
    return {tensor_from_json(j.at("ids")), tensor_from_json(j.at("labels"))};
}

// Every parameter's .grad() against expected[name]; the expected set must be the whole model's
// (a gradient missing on one side fails). Returns the max relative error.
inline double check_grads(nn::Module& net, const json& expected, double rtol, double atol,
                          const std::string& what) {
    double err = 0;
    size_t compared = 0;
    for (const auto& [name, p] : net.named_parameters()) {
        REQUIRE_MESSAGE(p.grad().defined(), what, ": ", name, " has no gradient");
        err = std::max(err, check_close(p.grad(), values_from_json(expected.at(name)), rtol, atol,
                                        what + " " + name));
        ++compared;
    }
    CHECK(compared == expected.size());
    return err;
}

// Every parameter against expected[name] (a state such as fx["final"]).
inline double check_state(nn::Module& net, const json& expected, double rtol, double atol,
                          const std::string& what) {
    double err = 0;
    const StateDict state = net.state_dict();
    CHECK(state.tensors.size() == expected.size());
    for (const auto& [name, t] : expected.items())
        err = std::max(
            err, check_close(state.at(name), values_from_json(t), rtol, atol, what + " " + name));
    return err;
}

// Every parameter's gradient, cloned (undefined where there is none).
inline std::vector<Tensor> gradients(nn::Module& net) {
    std::vector<Tensor> out;
    for (const Tensor& p : net.parameters())
        out.push_back(p.grad().defined() ? p.grad().clone() : Tensor());
    return out;
}

inline std::vector<Tensor> weights(nn::Module& net) {
    std::vector<Tensor> out;
    for (const Tensor& p : net.parameters())
        out.push_back(p.detach().clone());
    return out;
}

inline bool all_bitwise_equal(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
        if (a[i].defined() != b[i].defined() || (a[i].defined() && !bitwise_equal(a[i], b[i])))
            return false;
    return true;
}

}  // namespace minidl::test
