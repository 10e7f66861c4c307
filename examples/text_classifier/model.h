// examples/text_classifier/model.h — the classifier: a bag of embeddings and a two-layer MLP,
// the model of docs/text_classifier.md and of bench/torch_text_classifier.py, parameter for
// parameter.
//
//   ids [L] (I64), offsets [B] (I64)   one bag of token ids per document (text.h's Batch)
//   h      = EmbeddingBag(V, C, mean)(ids, offsets)     [B, C]   h_b = mean of the bag's rows
//   z      = relu(fc1(h)) = relu(h W1^T + b1)          [B, H]
//   logits = fc2(z) = z W2^T + b2                       [B, K]
// with V the vocabulary, C = H = 64, K the classes. Parameter names are PyTorch's
// (embedding.weight, fc1.weight, fc1.bias, fc2.weight, fc2.bias), so model.safetensors loads into
// the PyTorch model of bench/torch_text_classifier.py unchanged. Initialisation is PyTorch's
// default (nn/embedding.h: N(0, 1); nn/linear.h: U(-1/sqrt(in), 1/sqrt(in)) for weight then
// bias), drawn from the default generator in that order: seed it first (manual_seed).
// No padding index: id 0 (<pad>, the whole bag of an empty document) is an ordinary row, as in
// the PyTorch reference.
//
// The embedding layer's output hook (nn/embedding.h) is where FreeLB and the robustness report's
// attack shift h; the model itself never changes for them.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/state_dict.h"
#include "core/tensor.h"
#include "nn/embedding.h"
#include "nn/linear.h"
#include "nn/module.h"

namespace textclf {

struct ModelConfig {
    int64_t vocab = 2;    // V, including <pad> and <unk>
    int64_t dim = 64;     // C, the embedding width
    int64_t hidden = 64;  // H
    int64_t classes = 2;  // K
};

class TextClassifier : public minidl::nn::Cloneable<TextClassifier> {
  public:
    explicit TextClassifier(ModelConfig config);

    void reset() override;
    // ids [L], offsets [B] -> logits [B, K] (F32; the low dtype's products under autocast).
    minidl::Tensor forward(const minidl::Tensor& ids, const minidl::Tensor& offsets);
    std::string type_name() const override { return "TextClassifier"; }

    const ModelConfig& config() const { return config_; }

    std::shared_ptr<minidl::nn::EmbeddingBag> embedding;
    std::shared_ptr<minidl::nn::Linear> fc1, fc2;

  private:
    ModelConfig config_;
};

// The weights alone, as a fresh snapshot on the host (what model.safetensors holds).
minidl::StateDict weights_snapshot(const TextClassifier& model);

// Writes model.safetensors (weights only, PyTorch names, metadata "format": "pt") atomically;
// throws NonFiniteError naming the tensor, writing nothing, when a weight is NaN or infinite.
void save_weights(const TextClassifier& model, const std::string& path);
// Loads weights saved by save_weights (or by PyTorch's safetensors writer) into `model`; the
// shapes must match (ShapeError naming the tensor otherwise).
void load_weights(TextClassifier& model, const std::string& path);
// The ModelConfig a weights file implies: vocab and dim from embedding.weight, hidden from
// fc1.weight, classes from fc2.weight. FormatError when a tensor is missing or malformed.
ModelConfig infer_model_config(const std::string& path);

}  // namespace textclf
