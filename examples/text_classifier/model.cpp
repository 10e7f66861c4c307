// examples/text_classifier/model.cpp — see model.h.
#include "examples/text_classifier/model.h"

#include "core/check.h"
#include "core/finite.h"
#include "core/safetensors.h"
#include "examples/text_classifier/io.h"
#include "ops/elementwise.h"

namespace textclf {

using minidl::Tensor;
namespace nn = minidl::nn;

std::string model_kind_name(ModelKind kind) {
    return kind == ModelKind::Bag ? "bag" : "transformer";
}

ModelKind parse_model_kind(const std::string& name) {
    if (name == "bag") return ModelKind::Bag;
    MDL_CHECK(name == "transformer", minidl::ValueError,
              "--model must be bag or transformer, got '", name, "'");
    return ModelKind::Transformer;
}

nn::BertConfig ModelConfig::bert() const {
    nn::BertConfig c;
    c.vocab_size = vocab;
    c.hidden_size = hidden;
    c.num_hidden_layers = layers;
    c.num_attention_heads = heads;
    c.intermediate_size = intermediate;
    c.max_position_embeddings = positions;
    c.hidden_dropout_prob = dropout;
    c.attention_probs_dropout_prob = dropout;
    c.num_labels = classes;
    c.gradient_checkpointing = checkpoint_activations;
    return c;
}

int64_t ModelInput::size() const {
    return offsets.defined() ? offsets.size(0) : ids.size(0);
}

ModelInput ModelInput::to(minidl::Device device) const {
    ModelInput out;
    out.ids = ids.to(device);
    if (offsets.defined()) out.offsets = offsets.to(device);
    if (mask.defined()) out.mask = mask.to(device);
    return out;
}

BagClassifier::BagClassifier(ModelConfig config) : Cloneable(std::move(config)) {
    const ModelConfig& c = config_;
    MDL_CHECK(
        c.kind == ModelKind::Bag && c.vocab >= 2 && c.dim > 0 && c.hidden > 0 && c.classes >= 2,
        minidl::ValueError, "BagClassifier: need vocab >= 2, dim > 0, hidden > 0 and ",
        "classes >= 2, got vocab=", c.vocab, " dim=", c.dim, " hidden=", c.hidden,
        " classes=", c.classes);
    reset();
}

void BagClassifier::reset() {
    // Registration order = PyTorch's __init__ order = the order of the initialisers' draws.
    embedding = register_module(
        "embedding",
        std::make_shared<nn::EmbeddingBag>(config_.vocab, config_.dim, minidl::BagMode::Mean));
    fc1 = register_module("fc1", std::make_shared<nn::Linear>(config_.dim, config_.hidden));
    fc2 = register_module("fc2", std::make_shared<nn::Linear>(config_.hidden, config_.classes));
}

Tensor BagClassifier::forward(const Tensor& ids, const Tensor& offsets) {
    return fc2->forward(minidl::relu(fc1->forward(embedding->forward(ids, offsets))));
}

Tensor BagClassifier::forward(const ModelInput& input) {
    MDL_CHECK(input.offsets.defined(), minidl::ValueError,
              "BagClassifier::forward: needs ids [L] and offsets [B], got no offsets");
    return forward(input.ids, input.offsets);
}

TransformerClassifier::TransformerClassifier(ModelConfig config) : Cloneable(std::move(config)) {
    MDL_CHECK(config_.kind == ModelKind::Transformer, minidl::ValueError,
              "TransformerClassifier: the config is a ", model_kind_name(config_.kind), " model's");
    config_.bert().validate();
    reset();
}

void TransformerClassifier::reset() {
    // nn/bert.h's classifier builds (and initialises, in Hugging Face's order) the module tree;
    // its three children become this module's, so the names are HF's exactly.
    const auto full = std::make_shared<nn::BertForSequenceClassification>(config_.bert());
    bert = register_module("bert", full->bert);
    dropout = register_module("dropout", full->dropout);
    classifier = register_module("classifier", full->classifier);
}

Tensor TransformerClassifier::forward(const ModelInput& input) {
    MDL_CHECK(input.ids.dim() == 2, minidl::ShapeError,
              "TransformerClassifier::forward: ids must be [B, L], got ", input.ids.str());
    return classifier->forward(dropout->forward(bert->pool(bert->forward(input.ids, input.mask))));
}

std::shared_ptr<TextClassifier> make_model(const ModelConfig& config) {
    if (config.kind == ModelKind::Bag) return std::make_shared<BagClassifier>(config);
    return std::make_shared<TransformerClassifier>(config);
}

minidl::StateDict weights_snapshot(const TextClassifier& model) {
    minidl::StateDict live = model.state_dict();
    minidl::StateDict out;
    for (const auto& [name, t] : live.tensors)
        out.tensors[name] = t.to(minidl::Device::cpu()).clone();
    return out;
}

void save_weights(const TextClassifier& model, const std::string& path) {
    minidl::StateDict sd = model.state_dict();  // save_safetensors copies device tensors
    // The key Hugging Face's loaders look for to know the tensors are PyTorch's layout.
    sd.metadata["format"] = "pt";
    minidl::require_finite(sd, "save_weights", path);  // never publish NaN/inf weights
    minidl::save_safetensors(path, sd);
}

void load_weights(TextClassifier& model, const std::string& path) {
    minidl::StateDict sd = minidl::load_safetensors(path);
    sd.metadata.clear();
    model.load_state_dict(sd);
}

ModelConfig infer_model_config(const std::string& path) {
    const minidl::SafetensorsHeader header = minidl::read_safetensors_header(path);
    auto shape_of = [&](const std::string& name) -> minidl::Shape {
        for (const auto& e : header.entries)
            if (e.name == name) {
                MDL_CHECK(e.shape.size() == 2, minidl::FormatError, "infer_model_config: ", path,
                          ": '", name, "' must be 2-d, got ", minidl::shape_str(e.shape));
                return e.shape;
            }
        throw minidl::FormatError(
            minidl::detail::concat("infer_model_config: ", path, ": no tensor '", name, "'"));
    };
    const minidl::Shape emb = shape_of("embedding.weight"), w1 = shape_of("fc1.weight"),
                        w2 = shape_of("fc2.weight");
    MDL_CHECK(w1[1] == emb[1] && w2[1] == w1[0], minidl::FormatError, "infer_model_config: ", path,
              ": inconsistent shapes embedding.weight ", minidl::shape_str(emb), ", fc1.weight ",
              minidl::shape_str(w1), ", fc2.weight ", minidl::shape_str(w2));
    return ModelConfig{.vocab = emb[0], .dim = emb[1], .hidden = w1[0], .classes = w2[0]};
}

nlohmann::json bert_config_json(const ModelConfig& c, const std::vector<std::string>& classes,
                                int64_t max_len) {
    const nn::BertConfig b = c.bert();
    nlohmann::json id2label = nlohmann::json::object(), label2id = nlohmann::json::object();
    for (size_t k = 0; k < classes.size(); ++k) {
        id2label[std::to_string(k)] = classes[k];
        label2id[classes[k]] = k;
    }
    return {{"architectures", {"BertForSequenceClassification"}},
            {"model_type", "bert"},
            {"vocab_size", b.vocab_size},
            {"hidden_size", b.hidden_size},
            {"num_hidden_layers", b.num_hidden_layers},
            {"num_attention_heads", b.num_attention_heads},
            {"intermediate_size", b.intermediate_size},
            {"hidden_act", "gelu"},
            {"hidden_dropout_prob", b.hidden_dropout_prob},
            {"attention_probs_dropout_prob", b.attention_probs_dropout_prob},
            {"max_position_embeddings", b.max_position_embeddings},
            {"type_vocab_size", b.type_vocab_size},
            {"initializer_range", b.initializer_range},
            {"layer_norm_eps", b.layer_norm_eps},
            {"pad_token_id", b.pad_token_id},
            {"position_embedding_type", "absolute"},
            {"num_labels", static_cast<int64_t>(classes.size())},
            {"id2label", id2label},
            {"label2id", label2id},
            {"max_length", max_len},
            {"minidl_model", "transformer"}};
}

BertConfigFile read_bert_config(const std::string& path) {
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(read_file(path));
    } catch (const nlohmann::json::exception& e) {
        throw minidl::FormatError(
            minidl::detail::concat("read_bert_config: ", path, ": ", e.what()));
    }
    auto get = [&](const char* key) -> const nlohmann::json& {
        MDL_CHECK(j.contains(key), minidl::FormatError, "read_bert_config: ", path, ": no '", key,
                  "'");
        return j[key];
    };
    BertConfigFile out;
    try {
        MDL_CHECK(get("model_type") == "bert", minidl::FormatError, "read_bert_config: ", path,
                  ": model_type is ", j["model_type"].dump(), ", not \"bert\"");
        MDL_CHECK(j.value("hidden_act", std::string("gelu")) == "gelu", minidl::FormatError,
                  "read_bert_config: ", path, ": hidden_act ", j["hidden_act"].dump(),
                  " (only \"gelu\", the erf form, is implemented)");
        ModelConfig& c = out.config;
        c.kind = ModelKind::Transformer;
        c.vocab = get("vocab_size").get<int64_t>();
        c.hidden = get("hidden_size").get<int64_t>();
        c.layers = get("num_hidden_layers").get<int64_t>();
        c.heads = get("num_attention_heads").get<int64_t>();
        c.intermediate = get("intermediate_size").get<int64_t>();
        c.positions = get("max_position_embeddings").get<int64_t>();
        c.dropout = j.value("hidden_dropout_prob", 0.1);
        MDL_CHECK(j.value("type_vocab_size", int64_t{2}) == 2 &&
                      j.value("layer_norm_eps", 1e-12) == 1e-12 &&
                      j.value("pad_token_id", int64_t{0}) == 0,
                  minidl::FormatError, "read_bert_config: ", path,
                  ": type_vocab_size 2, layer_norm_eps 1e-12 and pad_token_id 0 are what this "
                  "program implements");
        const nlohmann::json& id2label = get("id2label");
        for (size_t k = 0; k < id2label.size(); ++k) {
            const std::string key = std::to_string(k);
            MDL_CHECK(id2label.contains(key), minidl::FormatError, "read_bert_config: ", path,
                      ": id2label has no \"", key, "\"");
            out.classes.push_back(id2label[key].get<std::string>());
        }
        c.classes = static_cast<int64_t>(out.classes.size());
        out.max_len = j.value("max_length", c.positions);
    } catch (const nlohmann::json::exception& e) {
        throw minidl::FormatError(
            minidl::detail::concat("read_bert_config: ", path, ": ", e.what()));
    }
    return out;
}

}  // namespace textclf
