// examples/text_classifier/model.cpp — see model.h.
#include "examples/text_classifier/model.h"

#include "core/check.h"
#include "core/finite.h"
#include "core/safetensors.h"
#include "ops/elementwise.h"

namespace textclf {

using minidl::Tensor;
namespace nn = minidl::nn;

TextClassifier::TextClassifier(ModelConfig config) : config_(config) {
    MDL_CHECK(config.vocab >= 2 && config.dim > 0 && config.hidden > 0 && config.classes >= 2,
              minidl::ValueError, "TextClassifier: need vocab >= 2, dim > 0, hidden > 0 and ",
              "classes >= 2, got vocab=", config.vocab, " dim=", config.dim,
              " hidden=", config.hidden, " classes=", config.classes);
    reset();
}

void TextClassifier::reset() {
    // Registration order = PyTorch's __init__ order = the order of the initialisers' draws.
    embedding = register_module(
        "embedding",
        std::make_shared<nn::EmbeddingBag>(config_.vocab, config_.dim, minidl::BagMode::Mean));
    fc1 = register_module("fc1", std::make_shared<nn::Linear>(config_.dim, config_.hidden));
    fc2 = register_module("fc2", std::make_shared<nn::Linear>(config_.hidden, config_.classes));
}

Tensor TextClassifier::forward(const Tensor& ids, const Tensor& offsets) {
    return fc2->forward(minidl::relu(fc1->forward(embedding->forward(ids, offsets))));
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

}  // namespace textclf
