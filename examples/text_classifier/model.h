// examples/text_classifier/model.h — the two classifiers the program trains: a bag of embeddings
// with a two-layer MLP (the default, --model bag), and a BERT encoder (--model transformer).
//
// Bag model (docs/text_classifier.md; bench/torch_text_classifier.py, parameter for parameter):
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
// Transformer (docs/transformer.md; tests/fixtures/torch_bert.py): nn/bert.h's
// BertForSequenceClassification, the same module tree and Hugging Face's parameter names
// (bert.embeddings.word_embeddings.weight, ..., classifier.weight), BERT-Tiny's shape by default:
//   ids [B, L] (I64, [CLS] t1 ... tn [SEP] then [PAD]), mask [B, L] (1 = token, 0 = padding)
//   logits = classifier(Dropout(tanh(pooler(BERT(ids, mask)[:, 0]))))      [B, K]
// with HF's initialisation (N(0, 0.02), the [PAD] row 0 and kept out of the gradient).
//
// The embedding layer's output hook (nn/embedding.h) is where FreeLB and the robustness report's
// attack shift its output (the bag's mean, or each token's word embedding); the models
// themselves never change for them.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/state_dict.h"
#include "core/tensor.h"
#include "nn/bert.h"
#include "nn/embedding.h"
#include "nn/linear.h"
#include "nn/module.h"

namespace textclf {

enum class ModelKind { Bag, Transformer };
std::string model_kind_name(ModelKind kind);          // "bag", "transformer"
ModelKind parse_model_kind(const std::string& name);  // ValueError naming --model otherwise

struct ModelConfig {
    ModelKind kind = ModelKind::Bag;
    int64_t vocab = 2;    // V, including the specials
    int64_t dim = 64;     // bag: C, the embedding width
    int64_t hidden = 64;  // bag: H, the MLP's width; transformer: the hidden size (128)
    int64_t classes = 2;  // K
    // Transformer only (BERT-Tiny's defaults).
    int64_t layers = 2, heads = 2, intermediate = 512, positions = 512;
    double dropout = 0.1;  // hidden and attention dropout
    bool checkpoint_activations = false;

    // The encoder's configuration (transformer).
    minidl::nn::BertConfig bert() const;
};

// What a model reads: the bag model ids [L] + offsets [B]; the transformer ids [B, L] + mask
// [B, L]. The unused field stays undefined.
struct ModelInput {
    minidl::Tensor ids, offsets, mask;
    int64_t size() const;                        // B
    ModelInput to(minidl::Device device) const;  // every defined tensor on `device`
};

// Either model, behind one interface (the trainer, the evaluation and the robustness report
// take this).
class TextClassifier : public minidl::nn::Module {
  public:
    // -> logits [B, K] (F32; the low dtype's products under autocast).
    virtual minidl::Tensor forward(const ModelInput& input) = 0;
    const ModelConfig& config() const { return config_; }
    ModelKind kind() const { return config_.kind; }

  protected:
    explicit TextClassifier(ModelConfig config) : config_(std::move(config)) {}
    TextClassifier(const TextClassifier&) = default;
    ModelConfig config_;
};

class BagClassifier : public minidl::nn::Cloneable<BagClassifier, TextClassifier> {
  public:
    explicit BagClassifier(ModelConfig config);
    void reset() override;
    minidl::Tensor forward(const ModelInput& input) override;
    // ids [L], offsets [B] -> logits [B, K].
    minidl::Tensor forward(const minidl::Tensor& ids, const minidl::Tensor& offsets);
    std::string type_name() const override { return "BagClassifier"; }

    std::shared_ptr<minidl::nn::EmbeddingBag> embedding;
    std::shared_ptr<minidl::nn::Linear> fc1, fc2;
};

class TransformerClassifier : public minidl::nn::Cloneable<TransformerClassifier, TextClassifier> {
  public:
    explicit TransformerClassifier(ModelConfig config);
    void reset() override;
    minidl::Tensor forward(const ModelInput& input) override;
    std::string type_name() const override { return "TransformerClassifier"; }
    // The token table's lookup, whose output FreeLB and the robustness attack perturb.
    minidl::nn::Embedding& word_embeddings() { return *bert->embeddings->word_embeddings; }

    std::shared_ptr<minidl::nn::BertModel> bert;
    std::shared_ptr<minidl::nn::Dropout> dropout;
    std::shared_ptr<minidl::nn::Linear> classifier;
};

// The model `config` describes, initialised from the default generator.
std::shared_ptr<TextClassifier> make_model(const ModelConfig& config);

// The weights alone, as a fresh snapshot on the host (what model.safetensors holds).
minidl::StateDict weights_snapshot(const TextClassifier& model);

// Writes model.safetensors (weights only, PyTorch names, metadata "format": "pt") atomically;
// throws NonFiniteError naming the tensor, writing nothing, when a weight is NaN or infinite.
void save_weights(const TextClassifier& model, const std::string& path);
// Loads weights saved by save_weights (or by PyTorch's safetensors writer) into `model`; the
// shapes must match (ShapeError naming the tensor otherwise).
void load_weights(TextClassifier& model, const std::string& path);
// The bag ModelConfig a weights file implies: vocab and dim from embedding.weight, hidden from
// fc1.weight, classes from fc2.weight. FormatError when a tensor is missing or malformed.
ModelConfig infer_model_config(const std::string& path);

// config.json, the transformer's configuration under Hugging Face's BertConfig keys (model_type
// "bert", num_hidden_layers, hidden_size, ..., id2label / label2id from the class names) plus
// "max_length" (the input's [CLS] ... [SEP] cap): what another program needs beside
// model.safetensors and vocab.txt.
nlohmann::json bert_config_json(const ModelConfig& config, const std::vector<std::string>& classes,
                                int64_t max_len);
// The ModelConfig of a config.json written by bert_config_json (FormatError naming the key when
// one is missing or malformed), and its class names and max_length.
struct BertConfigFile {
    ModelConfig config;
    std::vector<std::string> classes;
    int64_t max_len = 128;
};
BertConfigFile read_bert_config(const std::string& path);

}  // namespace textclf
