// nn/bert.h — the BERT encoder and its sequence classifier, with Hugging Face's module tree.
//
// Devlin et al. 2019, "BERT", arXiv:1810.04805; the Transformer encoder of Vaswani et al. 2017,
// arXiv:1706.03762 (post-LayerNorm). With ids [B, L] (I64), a key mask [B, L] (1 = token,
// 0 = padding), hidden size C, H heads of D = C / H, intermediate size I:
//   embeddings   h0 = Dropout(LN(W_word[ids] + W_pos[0..L-1] + W_type[0]))        [B, L, C]
//   per layer    q, k, v = h Wq^T + bq, h Wk^T + bk, h Wv^T + bv, each split into heads
//                          [B, L, C] -> [B, L, H, D] -> [B, H, L, D] (head h: features h·D..)
//                ctx = attention(q, k, v, key_mask, dropout p_attn)  (ops/attention.h)
//                      merged back [B, H, L, D] -> [B, L, H, D] -> [B, L, C]
//                a   = LN(Dropout(ctx Wo^T + bo) + h)
//                out = LN(Dropout(GELU(a W1^T + b1) W2^T + b2) + a)        (GELU: erf form)
//                pre-LN (norm_first): q, k, v from LN1(h); a = h + Dropout(ctx Wo^T + bo);
//                out = a + Dropout(GELU(LN2(a) W1^T + b1) W2^T + b2)
//   pooler       p = tanh(h_N[:, 0] Wp^T + bp)                                       [B, C]
//   classifier   logits = Dropout(p) Wc^T + bc                                       [B, labels]
// Backward is the autograd of those ops. Every LayerNorm has eps layer_norm_eps (1e-12).
//
// Parameter names are Hugging Face's BertForSequenceClassification state_dict keys (the same
// names and shapes; tests/nn/test_bert.cpp lists them):
//   bert.embeddings.{word,position,token_type}_embeddings.weight, bert.embeddings.LayerNorm.*,
//   bert.encoder.layer.{i}.attention.self.{query,key,value}.*, ...attention.output.dense.*,
//   ...attention.output.LayerNorm.*, ...intermediate.dense.*, ...output.dense.*,
//   ...output.LayerNorm.*, bert.pooler.dense.*, classifier.*    (Linear weights [out, in]).
// Initialisation (HF's _init_weights): Linear and Embedding weights N(0, initializer_range),
// biases 0, LayerNorm weight 1 and bias 0, the [PAD] row of the word table 0 (and it gets no
// gradient: padding_idx). The position_ids buffer of HF's state_dict is not a parameter; it is
// 0..L-1 and made on the fly.
//
// Under autocast the Linear layers and attention run in the low dtype while LayerNorm returns
// f32 and the residual adds promote to f32 (core/autocast.h): the residual stream stays f32.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "nn/dropout.h"
#include "nn/embedding.h"
#include "nn/layer_norm.h"
#include "nn/linear.h"
#include "nn/module.h"

namespace minidl::nn {

// Hugging Face's BertConfig fields that shape the model; the defaults are BERT-Tiny
// (Turc et al. 2019, arXiv:1908.08962: 2 layers, hidden 128, 2 heads, intermediate 512).
struct BertConfig {
    int64_t vocab_size = 30522;
    int64_t hidden_size = 128;
    int64_t num_hidden_layers = 2;
    int64_t num_attention_heads = 2;
    int64_t intermediate_size = 512;
    int64_t max_position_embeddings = 512;
    int64_t type_vocab_size = 2;
    double layer_norm_eps = 1e-12;
    double hidden_dropout_prob = 0.1;
    double attention_probs_dropout_prob = 0.1;
    double initializer_range = 0.02;
    int64_t pad_token_id = 0;
    int64_t num_labels = 2;
    // Recompute each encoder layer during backward instead of keeping its activations
    // (tricks/checkpoint.h; Hugging Face's gradient_checkpointing). Gradients are unchanged.
    // The checkpoints are a layer's two sub-blocks (attention, feed-forward) rather than the
    // whole layer as in Hugging Face: the same recomputation, one more [B, L, C] kept per
    // layer, and a backward peak of the larger sub-block's activations instead of the layer's
    // (docs/checkpoint.md has the bytes).
    bool gradient_checkpointing = false;
    // Pre-LayerNorm layers (torch.nn.TransformerEncoderLayer's norm_first; Xiong et al. 2020,
    // arXiv:2002.04745): each sublayer normalises its input and adds its output to the raw
    // residual, with the same parameters and names. BERT is post-LN (false); no final LayerNorm
    // is added, as torch.nn.TransformerEncoder without `norm`.
    bool norm_first = false;

    // Throws ValueError naming the field unless every size is positive, the hidden size splits
    // into the heads, the dropouts are in [0, 1) and pad_token_id is an id.
    void validate() const;
};

// Token, position and token-type embeddings, summed, then LayerNorm and dropout.
class BertEmbeddings : public Cloneable<BertEmbeddings, Module> {
  public:
    explicit BertEmbeddings(const BertConfig& config);
    void reset() override;
    // ids [B, L] (I64, L <= max_position_embeddings) -> [B, L, C]; token type 0 everywhere.
    Tensor forward(const Tensor& ids);
    std::string type_name() const override { return "BertEmbeddings"; }

    std::shared_ptr<Embedding> word_embeddings, position_embeddings, token_type_embeddings;
    std::shared_ptr<LayerNorm> norm;  // "LayerNorm"
    std::shared_ptr<Dropout> dropout;

  private:
    BertConfig config_;
};

// The query, key and value projections and the attention over the heads ("attention.self").
class BertSelfAttention : public Cloneable<BertSelfAttention, Module> {
  public:
    explicit BertSelfAttention(const BertConfig& config);
    void reset() override;
    // h [B, L, C], key_mask [B, L] or undefined -> the merged heads' context [B, L, C].
    Tensor forward(const Tensor& h, const Tensor& key_mask);
    std::string type_name() const override { return "BertSelfAttention"; }

    std::shared_ptr<Linear> query, key, value;

  private:
    BertConfig config_;
};

// Linear, dropout, residual add, LayerNorm: "attention.output" (x = the context) and "output"
// (x = the intermediate activation) share this shape.
class BertResidualOutput : public Cloneable<BertResidualOutput, Module> {
  public:
    BertResidualOutput(const BertConfig& config, int64_t in_features);
    void reset() override;
    // LN(Dropout(x W^T + b) + residual).
    Tensor forward(const Tensor& x, const Tensor& residual);
    // Dropout(x W^T + b) + residual: the pre-LN form, whose LayerNorm the layer applies to the
    // sublayer's input instead.
    Tensor add_to_residual(const Tensor& x, const Tensor& residual);
    std::string type_name() const override { return "BertResidualOutput"; }

    std::shared_ptr<Linear> dense;
    std::shared_ptr<LayerNorm> norm;  // "LayerNorm"
    std::shared_ptr<Dropout> dropout;

  private:
    BertConfig config_;
    int64_t in_features_;
};

// One encoder layer ("encoder.layer.{i}").
class BertLayer : public Cloneable<BertLayer, Module> {
  public:
    explicit BertLayer(const BertConfig& config);
    void reset() override;
    // h [B, L, C], key_mask [B, L] (or undefined: every key) -> [B, L, C]:
    // feed_forward(attention_block(h, key_mask)).
    Tensor forward(const Tensor& h, const Tensor& key_mask);
    // The layer's two sub-blocks, each with its residual and LayerNorm: a = attention_block(h),
    // out = feed_forward(a). Gradient checkpointing recomputes them one at a time.
    Tensor attention_block(const Tensor& h, const Tensor& key_mask);
    Tensor feed_forward(const Tensor& a);
    std::string type_name() const override { return "BertLayer"; }

    std::shared_ptr<BertSelfAttention> self_attention;     // "attention.self"
    std::shared_ptr<BertResidualOutput> attention_output;  // "attention.output"
    std::shared_ptr<Linear> intermediate;                  // "intermediate.dense"
    std::shared_ptr<BertResidualOutput> output;            // "output"

  private:
    BertConfig config_;
};

// Embeddings, the layers and the pooler ("bert").
class BertModel : public Cloneable<BertModel, Module> {
  public:
    explicit BertModel(const BertConfig& config);
    void reset() override;
    // ids [B, L] (I64), key_mask [B, L] (1 = token, 0 = padding; any dtype; undefined: all
    // tokens) -> the last layer's hidden states [B, L, C].
    Tensor forward(const Tensor& ids, const Tensor& key_mask);
    // tanh(h[:, 0] Wp^T + bp): [B, L, C] -> [B, C].
    Tensor pool(const Tensor& hidden);
    std::string type_name() const override { return "BertModel"; }
    const BertConfig& config() const { return config_; }

    std::shared_ptr<BertEmbeddings> embeddings;
    std::vector<std::shared_ptr<BertLayer>> layers;  // "encoder.layer.{i}"
    std::shared_ptr<Linear> pooler;                  // "pooler.dense"

  private:
    BertConfig config_;
};

// BERT with a linear classifier on the pooled [CLS] state (HF's BertForSequenceClassification).
class BertForSequenceClassification : public Cloneable<BertForSequenceClassification, Module> {
  public:
    explicit BertForSequenceClassification(const BertConfig& config);
    void reset() override;
    // ids [B, L], key_mask [B, L] -> logits [B, num_labels].
    Tensor forward(const Tensor& ids, const Tensor& key_mask);
    std::string type_name() const override { return "BertForSequenceClassification"; }
    const BertConfig& config() const { return config_; }

    std::shared_ptr<BertModel> bert;
    std::shared_ptr<Dropout> dropout;
    std::shared_ptr<Linear> classifier;

  private:
    BertConfig config_;
};

// Hugging Face's fine-tuning rule for AdamW's parameter groups: every parameter decays except
// biases and LayerNorm weights (names ending in ".bias" or holding "LayerNorm.weight").
bool takes_weight_decay(const std::string& parameter_name);

}  // namespace minidl::nn
