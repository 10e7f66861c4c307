// tests/support/tiny_model.h — the model of the end-to-end fixtures (tests/fixtures/e2e_*.json):
// EmbeddingBag(20, 8, mean) -> Linear(8, 8) -> ReLU -> Linear(8, 2), with PyTorch's names
// (embedding.weight, fc1.*, fc2.*), and helpers to load a fixture's weights and batches.
#pragma once

#include <memory>
#include <vector>

#include "nn/embedding.h"
#include "nn/linear.h"
#include "nn/module.h"
#include "ops/ops.h"
#include "tests/support/fixtures.h"

namespace minidl::test {

struct TinyModel : nn::Cloneable<TinyModel> {
    TinyModel(int64_t vocab = 20, int64_t dim = 8, int64_t classes = 2)
        : vocab_(vocab), dim_(dim), classes_(classes) {
        reset();
    }
    void reset() override {
        embedding = register_module("embedding", std::make_shared<nn::EmbeddingBag>(vocab_, dim_));
        fc1 = register_module("fc1", std::make_shared<nn::Linear>(dim_, dim_));
        fc2 = register_module("fc2", std::make_shared<nn::Linear>(dim_, classes_));
    }
    Tensor forward(const Tensor& ids, const Tensor& offsets) {
        return fc2->forward(relu(fc1->forward(embedding->forward(ids, offsets))));
    }
    std::string type_name() const override { return "TinyModel"; }

    int64_t vocab_, dim_, classes_;
    std::shared_ptr<nn::EmbeddingBag> embedding;
    std::shared_ptr<nn::Linear> fc1, fc2;
};

struct FixtureBatch {
    Tensor ids, offsets, labels;
};

// Loads fx["init"] into the model (strict).
inline void load_init(nn::Module& model, const json& fx, const char* key = "init") {
    StateDict init;
    for (const auto& [name, t] : fx.at(key).items()) init.tensors[name] = tensor_from_json(t);
    model.load_state_dict(init);
}

inline std::vector<FixtureBatch> load_batches(const json& fx) {
    std::vector<FixtureBatch> out;
    for (const auto& b : fx.at("batches"))
        out.push_back({tensor_from_json(b.at("ids")), tensor_from_json(b.at("offsets")),
                       tensor_from_json(b.at("labels"))});
    return out;
}

}  // namespace minidl::test
