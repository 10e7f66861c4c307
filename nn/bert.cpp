// nn/bert.cpp — the BERT encoder and classifier (math, names and initialisation in nn/bert.h;
// reference: transformers/models/bert/modeling_bert.py).
#include "nn/bert.h"

#include <string>
#include <string_view>

#include "core/check.h"
#include "ops/attention.h"
#include "ops/elementwise.h"
#include "ops/shape_ops.h"
#include "tricks/checkpoint.h"

namespace minidl::nn {

namespace {

// A node of the name tree that only groups children (HF's "attention", "encoder", "pooler"):
// made and filled by its parent's reset(), so cloning the parent rebuilds it.
class Group : public Module {
  public:
    explicit Group(std::string name) : name_(std::move(name)) {}
    std::string type_name() const override { return name_; }

  private:
    std::string name_;
};

// HF's _init_weights for the layers BERT is made of.
void init_linear(Linear& fc, double std) {
    init::normal_(fc.weight, 0.0, std);
    if (fc.bias.defined()) init::zeros_(fc.bias);
}

void init_embedding(Embedding& e, double std) {
    init::normal_(e.weight, 0.0, std);
    if (e.padding_idx() >= 0) {
        NoGradGuard no_grad;
        e.weight.narrow0(e.padding_idx(), 1).zero_();
    }
}

std::shared_ptr<Linear> bert_linear(int64_t in, int64_t out, const BertConfig& c) {
    auto fc = std::make_shared<Linear>(in, out);
    init_linear(*fc, c.initializer_range);
    return fc;
}

std::shared_ptr<LayerNorm> bert_layer_norm(const BertConfig& c) {
    return std::make_shared<LayerNorm>(Shape{c.hidden_size}, c.layer_norm_eps);
}

void check_ids(const char* who, const Tensor& ids, const Tensor& key_mask) {
    MDL_CHECK(ids.defined() && ids.dim() == 2 && ids.dtype() == DType::I64, ShapeError, who,
              ": ids must be an i64 tensor [B, L], got ",
              ids.defined() ? shape_str(ids.shape()) : "(undefined)");
    MDL_CHECK(!key_mask.defined() || key_mask.shape() == ids.shape(), ShapeError, who,
              ": key_mask must have the shape of ids ", shape_str(ids.shape()), ", got ",
              key_mask.defined() ? shape_str(key_mask.shape()) : "");
}

}  // namespace

void BertConfig::validate() const {
    auto positive = [](const char* name, int64_t v) {
        MDL_CHECK(v > 0, ValueError, "BertConfig: ", name, " must be positive, got ", v);
    };
    positive("vocab_size", vocab_size);
    positive("hidden_size", hidden_size);
    positive("num_hidden_layers", num_hidden_layers);
    positive("num_attention_heads", num_attention_heads);
    positive("intermediate_size", intermediate_size);
    positive("max_position_embeddings", max_position_embeddings);
    positive("type_vocab_size", type_vocab_size);
    positive("num_labels", num_labels);
    MDL_CHECK(hidden_size % num_attention_heads == 0, ValueError, "BertConfig: hidden_size ",
              hidden_size, " is not a multiple of num_attention_heads ", num_attention_heads);
    for (auto [name, p] : {std::pair{"hidden_dropout_prob", hidden_dropout_prob},
                           std::pair{"attention_probs_dropout_prob", attention_probs_dropout_prob}})
        MDL_CHECK(p >= 0.0 && p < 1.0, ValueError, "BertConfig: ", name, " must be in [0, 1), got ",
                  p);
    MDL_CHECK(
        layer_norm_eps > 0 && initializer_range >= 0, ValueError,
        "BertConfig: layer_norm_eps must be positive and initializer_range non-negative, got ",
        layer_norm_eps, " and ", initializer_range);
    MDL_CHECK(pad_token_id >= 0 && pad_token_id < vocab_size, ValueError,
              "BertConfig: pad_token_id ", pad_token_id, " is not an id of the vocabulary of ",
              vocab_size);
}

// ---- embeddings ---------------------------------------------------------------------------------

BertEmbeddings::BertEmbeddings(const BertConfig& config) : config_(config) {
    config_.validate();
    reset();
}

void BertEmbeddings::reset() {
    const BertConfig& c = config_;
    word_embeddings =
        register_module("word_embeddings",
                        std::make_shared<Embedding>(c.vocab_size, c.hidden_size, c.pad_token_id));
    position_embeddings =
        register_module("position_embeddings",
                        std::make_shared<Embedding>(c.max_position_embeddings, c.hidden_size));
    token_type_embeddings = register_module(
        "token_type_embeddings", std::make_shared<Embedding>(c.type_vocab_size, c.hidden_size));
    for (Embedding* e :
         {word_embeddings.get(), position_embeddings.get(), token_type_embeddings.get()})
        init_embedding(*e, c.initializer_range);
    norm = register_module("LayerNorm", bert_layer_norm(c));
    dropout = register_module("dropout", std::make_shared<Dropout>(c.hidden_dropout_prob));
}

Tensor BertEmbeddings::forward(const Tensor& ids) {
    check_ids("BertEmbeddings", ids, Tensor());
    const int64_t L = ids.size(1);
    MDL_CHECK(L <= config_.max_position_embeddings, ShapeError, "BertEmbeddings: ", L,
              " tokens per row exceed max_position_embeddings = ", config_.max_position_embeddings);
    const Device d = ids.device();
    // Positions 0..L-1 and token type 0, [L, C] each, broadcast over the batch.
    const Tensor positions = Tensor::arange(0, static_cast<double>(L), 1.0, DType::I64, d);
    const Tensor types = Tensor::zeros({L}, DType::I64, d);
    Tensor h = word_embeddings->forward(ids) + position_embeddings->forward(positions);
    h = h + token_type_embeddings->forward(types);
    return dropout->forward(norm->forward(h));
}

// ---- attention ----------------------------------------------------------------------------------

BertSelfAttention::BertSelfAttention(const BertConfig& config) : config_(config) {
    config_.validate();
    reset();
}

void BertSelfAttention::reset() {
    const int64_t C = config_.hidden_size;
    query = register_module("query", bert_linear(C, C, config_));
    key = register_module("key", bert_linear(C, C, config_));
    value = register_module("value", bert_linear(C, C, config_));
}

Tensor BertSelfAttention::forward(const Tensor& h, const Tensor& key_mask) {
    MDL_CHECK(h.defined() && h.dim() == 3 && h.size(2) == config_.hidden_size, ShapeError,
              "BertSelfAttention: h must be [B, L, ", config_.hidden_size, "], got ",
              h.defined() ? shape_str(h.shape()) : "(undefined)");
    const int64_t B = h.size(0), L = h.size(1), H = config_.num_attention_heads,
                  D = config_.hidden_size / H;
    // [B, L, C] -> [B, L, H, D] -> [B, H, L, D]: head j takes features [j D, (j + 1) D).
    auto heads = [&](Linear& proj) { return proj.forward(h).view({B, L, H, D}).transpose(1, 2); };
    AttentionOptions o;
    o.key_mask = key_mask;
    o.dropout_p = config_.attention_probs_dropout_prob;
    o.training = is_training();
    const Tensor ctx = scaled_dot_product_attention(heads(*query), heads(*key), heads(*value), o);
    return ctx.transpose(1, 2).view({B, L, H * D});
}

BertResidualOutput::BertResidualOutput(const BertConfig& config, int64_t in_features)
    : config_(config), in_features_(in_features) {
    config_.validate();
    reset();
}

void BertResidualOutput::reset() {
    dense = register_module("dense", bert_linear(in_features_, config_.hidden_size, config_));
    norm = register_module("LayerNorm", bert_layer_norm(config_));
    dropout = register_module("dropout", std::make_shared<Dropout>(config_.hidden_dropout_prob));
}

Tensor BertResidualOutput::forward(const Tensor& x, const Tensor& residual) {
    return norm->forward(add_to_residual(x, residual));
}

Tensor BertResidualOutput::add_to_residual(const Tensor& x, const Tensor& residual) {
    return dropout->forward(dense->forward(x)) + residual;
}

// ---- layer, model, classifier -------------------------------------------------------------------

BertLayer::BertLayer(const BertConfig& config) : config_(config) {
    config_.validate();
    reset();
}

void BertLayer::reset() {
    auto attention = register_module("attention", std::make_shared<Group>("BertAttention"));
    self_attention =
        attention->register_module("self", std::make_shared<BertSelfAttention>(config_));
    attention_output = attention->register_module(
        "output", std::make_shared<BertResidualOutput>(config_, config_.hidden_size));
    auto inter = register_module("intermediate", std::make_shared<Group>("BertIntermediate"));
    intermediate = inter->register_module(
        "dense", bert_linear(config_.hidden_size, config_.intermediate_size, config_));
    output = register_module(
        "output", std::make_shared<BertResidualOutput>(config_, config_.intermediate_size));
}

Tensor BertLayer::forward(const Tensor& h, const Tensor& key_mask) {
    return feed_forward(attention_block(h, key_mask));
}

Tensor BertLayer::attention_block(const Tensor& h, const Tensor& key_mask) {
    if (config_.norm_first) {
        const Tensor attended =
            self_attention->forward(attention_output->norm->forward(h), key_mask);
        return attention_output->add_to_residual(attended, h);
    }
    return attention_output->forward(self_attention->forward(h, key_mask), h);
}

Tensor BertLayer::feed_forward(const Tensor& a) {
    if (config_.norm_first)
        return output->add_to_residual(gelu(intermediate->forward(output->norm->forward(a))), a);
    return output->forward(gelu(intermediate->forward(a)), a);
}

BertModel::BertModel(const BertConfig& config) : config_(config) {
    config_.validate();
    reset();
}

void BertModel::reset() {
    embeddings = register_module("embeddings", std::make_shared<BertEmbeddings>(config_));
    auto encoder = register_module("encoder", std::make_shared<Group>("BertEncoder"));
    auto layer = encoder->register_module("layer", std::make_shared<Group>("ModuleList"));
    layers.clear();
    for (int64_t i = 0; i < config_.num_hidden_layers; ++i)
        layers.push_back(
            layer->register_module(std::to_string(i), std::make_shared<BertLayer>(config_)));
    auto pool = register_module("pooler", std::make_shared<Group>("BertPooler"));
    pooler = pool->register_module("dense",
                                   bert_linear(config_.hidden_size, config_.hidden_size, config_));
}

Tensor BertModel::forward(const Tensor& ids, const Tensor& key_mask) {
    check_ids("BertModel", ids, key_mask);
    Tensor h = embeddings->forward(ids);
    for (const auto& layer : layers) {
        if (config_.gradient_checkpointing) {
            // The sub-blocks' dropouts draw from the default generator, which checkpoint replays.
            h = tricks::checkpoint(
                [layer](const std::vector<Tensor>& in) {
                    return layer->attention_block(in[0], in[1]);
                },
                {h, key_mask});
            h = tricks::checkpoint(
                [layer](const std::vector<Tensor>& in) { return layer->feed_forward(in[0]); }, {h});
        } else {
            h = layer->forward(h, key_mask);
        }
    }
    return h;
}

Tensor BertModel::pool(const Tensor& hidden) {
    const int64_t B = hidden.size(0), C = hidden.size(2);
    return tanh(pooler->forward(slice(hidden, 1, 0, 1).view({B, C})));
}

BertForSequenceClassification::BertForSequenceClassification(const BertConfig& config)
    : config_(config) {
    config_.validate();
    reset();
}

void BertForSequenceClassification::reset() {
    bert = register_module("bert", std::make_shared<BertModel>(config_));
    dropout = register_module("dropout", std::make_shared<Dropout>(config_.hidden_dropout_prob));
    classifier = register_module("classifier",
                                 bert_linear(config_.hidden_size, config_.num_labels, config_));
}

Tensor BertForSequenceClassification::forward(const Tensor& ids, const Tensor& key_mask) {
    return classifier->forward(dropout->forward(bert->pool(bert->forward(ids, key_mask))));
}

bool takes_weight_decay(const std::string& parameter_name) {
    const std::string_view name = parameter_name;
    return !name.ends_with(".bias") && name.find("LayerNorm.weight") == std::string_view::npos;
}

}  // namespace minidl::nn
