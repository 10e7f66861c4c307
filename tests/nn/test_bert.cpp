// tests/nn/test_bert.cpp — the BERT encoder (nn/bert.h): one layer against PyTorch's
// TransformerEncoderLayer (bert_layer.json: output, the input's and every parameter's gradient,
// padded keys), its pre-LN form (bert_layer_prenorm.json) and under bf16 autocast
// (bert_layer_bf16.json), float64 gradchecks of a layer and of the whole classifier, the Hugging
// Face names, the initialisation, clones, autocast, and bad arguments.
//
// Tolerance against PyTorch: rtol 1e-4, atol 1e-5 (f32, different summation orders); the bf16
// layer by relative L2 (see its case).
#include <doctest/doctest.h>

#include <cmath>
#include <memory>
#include <set>
#include <string>

#include "core/check.h"
#include "nn/bert.h"
#include "ops/ops.h"
#include "tests/support/compare.h"
#include "tests/support/fixtures.h"
#include "tests/support/gradcheck.h"
#include "tricks/amp.h"

using namespace minidl;
using namespace minidl::test;

namespace {

nn::BertConfig small_config() {
    nn::BertConfig c;
    c.vocab_size = 11;
    c.hidden_size = 8;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 2;
    c.intermediate_size = 16;
    c.max_position_embeddings = 6;
    c.hidden_dropout_prob = 0;
    c.attention_probs_dropout_prob = 0;
    c.num_labels = 3;
    return c;
}

// [B, L] ids (I64) and the key mask of rows of `lengths` real tokens, padded with id 0.
std::pair<Tensor, Tensor> batch(const std::vector<std::vector<int64_t>>& rows, int64_t L) {
    std::vector<int64_t> ids, mask;
    for (const auto& row : rows)
        for (int64_t j = 0; j < L; ++j) {
            const bool real = j < static_cast<int64_t>(row.size());
            ids.push_back(real ? row[j] : 0);
            mask.push_back(real ? 1 : 0);
        }
    const auto B = static_cast<int64_t>(rows.size());
    return {Tensor::from_vector(ids, {B, L}), Tensor::from_vector(mask, {B, L})};
}

// A layer of the fixture's shape with its parameters (load_state_dict is strict: the fixture's
// names are exactly the layer's).
std::shared_ptr<nn::BertLayer> layer_from_fixture(const json& fx) {
    nn::BertConfig c = small_config();
    c.hidden_size = fx.at("config").at("hidden_size");
    c.num_attention_heads = fx.at("config").at("num_attention_heads");
    c.intermediate_size = fx.at("config").at("intermediate_size");
    c.norm_first = fx.at("config").value("norm_first", false);
    auto layer = std::make_shared<nn::BertLayer>(c);
    StateDict sd;
    for (const auto& [name, value] : fx.at("parameters").items())
        sd.tensors[name] = tensor_from_json(value, DType::F32);
    layer->load_state_dict(sd);
    return layer;
}

// The layer's output, the input's gradient and every parameter's gradient against a layer
// fixture; returns the largest relative error.
double check_layer_fixture(const std::string& fixture) {
    const json fx = load_fixture(fixture);
    const std::shared_ptr<nn::BertLayer> layer = layer_from_fixture(fx);
    Tensor h = tensor_from_json(fx.at("input"), DType::F32).set_requires_grad();
    const Tensor mask = tensor_from_json(fx.at("key_mask"));
    const Tensor out = layer->forward(h, mask);
    double worst = check_close(out, values_from_json(fx.at("output")), 1e-4, 1e-5, "output");
    sum(mul(out, tensor_from_json(fx.at("upstream"), DType::F32))).backward();
    worst = std::max(
        worst, check_close(h.grad(), values_from_json(fx.at("grad_input")), 1e-4, 1e-5, "dh"));
    int checked = 0;
    for (const auto& [name, p] : layer->named_parameters()) {
        CAPTURE(name);
        worst = std::max(worst, check_close(p.grad(), values_from_json(fx.at("gradients").at(name)),
                                            1e-4, 1e-5, name));
        ++checked;
    }
    CHECK(checked == 16);
    return worst;
}

// Moves every parameter off its initial value by U(-0.3, 0.3) (biases 0 and LayerNorm 1/0 would
// hide terms from a gradcheck), drawing with seeds first_seed, first_seed + 1, ...
void nudge_parameters(nn::Module& module, uint64_t first_seed) {
    NoGradGuard no_grad;
    uint64_t seed = first_seed;
    for (auto& [name, p] : module.named_parameters())
        p.add_(rand64(p.shape(), seed++, -0.3, 0.3).detach());
}

// ||a - b|| / ||b|| over all elements.
double relative_l2(const Tensor& a, const std::vector<double>& b) {
    const std::vector<double> x = a.to(DType::F64).to_vector<double>();
    REQUIRE(x.size() == b.size());
    double num = 0, den = 0;
    for (size_t i = 0; i < x.size(); ++i) {
        num += (x[i] - b[i]) * (x[i] - b[i]);
        den += b[i] * b[i];
    }
    return std::sqrt(num / den);
}

}  // namespace

TEST_CASE("nn/bert: one layer matches torch.nn.TransformerEncoderLayer (bert_layer.json)") {
    MESSAGE("bert_layer: max relative error " << check_layer_fixture("bert_layer"));
}

TEST_CASE("nn/bert: the pre-LN layer matches norm_first=True (bert_layer_prenorm.json)") {
    MESSAGE("bert_layer_prenorm: max relative error " << check_layer_fixture("bert_layer_prenorm"));
}

TEST_CASE("nn/bert: a layer under bf16 autocast matches PyTorch's explicit casts") {
    // bert_layer_bf16.json writes the casts of PyTorch's autocast lists out by hand. A GEMM that
    // rounds to bf16 (8 bits) after another summation order can differ by 2^-9 in an element, so
    // the comparison is by relative L2: within 2e-3 of the bf16 reference (a residual add in bf16
    // instead of f32 alone moves it by 4.6e-3), and at least 4 times closer to it than to the
    // same layer in f32.
    const json fx = load_fixture("bert_layer_bf16");
    const std::shared_ptr<nn::BertLayer> held = layer_from_fixture(fx);
    nn::BertLayer& layer = *held;
    Tensor h = tensor_from_json(fx.at("input"), DType::F32).set_requires_grad();
    Tensor out;
    {
        amp::Autocast autocast(DType::BF16);
        out = layer.forward(h, tensor_from_json(fx.at("key_mask")));
    }
    CHECK(out.dtype() == DType::F32);  // LayerNorm's output: the residual stream stays f32
    const double err = relative_l2(out, values_from_json(fx.at("output")));
    const double err_to_f32 = relative_l2(out, values_from_json(fx.at("output_f32")));
    MESSAGE("bert_layer_bf16: output relative L2 " << err << " (to the f32 layer " << err_to_f32
                                                   << ")");
    CHECK(err < 2e-3);
    CHECK(err * 4 < err_to_f32);
    sum(mul(out, tensor_from_json(fx.at("upstream"), DType::F32))).backward();
    CHECK(h.grad().dtype() == DType::F32);
    double worst = relative_l2(h.grad(), values_from_json(fx.at("grad_input")));
    for (const auto& [name, p] : layer.named_parameters()) {
        CAPTURE(name);
        CHECK(p.grad().dtype() == DType::F32);
        // The key bias adds q . b_k to every score of a query alike, which softmax ignores: its
        // gradient is 0 in exact arithmetic and bf16 rounding noise here, in PyTorch as in minidl.
        if (name == "attention.self.key.bias") continue;
        const double e = relative_l2(p.grad(), values_from_json(fx.at("gradients").at(name)));
        CHECK(e < 3e-2);
        worst = std::max(worst, e);
    }
    MESSAGE("bert_layer_bf16: gradients' worst relative L2 " << worst);
}

TEST_CASE("nn/bert: float64 gradcheck of a layer with padding, every parameter") {
    nn::BertConfig c = small_config();
    c.hidden_size = 4;
    c.intermediate_size = 6;
    manual_seed(21);
    nn::BertLayer layer(c);
    layer.to(DType::F64);
    nudge_parameters(layer, 100);
    const Tensor h = rand64({2, 3, 4}, 7);
    const Tensor mask = Tensor::from_vector(std::vector<int64_t>{1, 1, 1, 1, 1, 0}, {2, 3});
    const Tensor w = rand64({2, 3, 4}, 8).detach();
    std::vector<Tensor> inputs = {h};
    for (auto& [name, p] : layer.named_parameters())
        inputs.push_back(p);
    CHECK(gradcheck(
        [&](const std::vector<Tensor>& in) { return sum(mul(layer.forward(in[0], mask), w)); },
        inputs, {}, "BertLayer"));
}

TEST_CASE("nn/bert: float64 gradcheck of the classifier's loss, embeddings to classifier") {
    nn::BertConfig c = small_config();
    c.hidden_size = 4;
    c.intermediate_size = 6;
    c.num_hidden_layers = 1;
    manual_seed(22);
    nn::BertForSequenceClassification model(c);
    model.to(DType::F64);
    nudge_parameters(model, 200);
    const auto [ids, mask] = batch({{2, 5, 7}, {3, 9}}, 3);
    const Tensor labels = Tensor::from_vector(std::vector<int64_t>{1, 2}, {2});
    std::vector<Tensor> inputs;
    for (auto& [name, p] : model.named_parameters())
        inputs.push_back(p);
    CHECK(gradcheck(
        [&](const std::vector<Tensor>&) { return cross_entropy(model.forward(ids, mask), labels); },
        inputs, {}, "BertForSequenceClassification"));
}

TEST_CASE("nn/bert: parameter names are Hugging Face's BertForSequenceClassification keys") {
    nn::BertForSequenceClassification model(small_config());
    std::set<std::string> names;
    for (const auto& [name, p] : model.named_parameters())
        names.insert(name);
    std::set<std::string> expected = {"bert.embeddings.word_embeddings.weight",
                                      "bert.embeddings.position_embeddings.weight",
                                      "bert.embeddings.token_type_embeddings.weight",
                                      "bert.embeddings.LayerNorm.weight",
                                      "bert.embeddings.LayerNorm.bias",
                                      "bert.pooler.dense.weight",
                                      "bert.pooler.dense.bias",
                                      "classifier.weight",
                                      "classifier.bias"};
    for (int i = 0; i < 2; ++i)
        for (const char* suffix :
             {"attention.self.query", "attention.self.key", "attention.self.value",
              "attention.output.dense", "attention.output.LayerNorm", "intermediate.dense",
              "output.dense", "output.LayerNorm"})
            for (const char* kind : {".weight", ".bias"})
                expected.insert("bert.encoder.layer." + std::to_string(i) + "." + suffix + kind);
    CHECK(names == expected);
    CHECK(model.state_dict().tensors.size() == expected.size());                 // no buffers
    CHECK(model.bert->layers[1]->intermediate->weight.shape() == Shape{16, 8});  // [out, in]
    CHECK(model.classifier->weight.shape() == Shape{3, 8});
}

TEST_CASE("nn/bert: Hugging Face's initialisation, the [PAD] row 0 and without gradient") {
    nn::BertConfig c;  // BERT-Tiny with a 30522-row table: enough draws for the statistics
    manual_seed(5);
    nn::BertForSequenceClassification model(c);
    for (const auto& [name, p] : model.named_parameters()) {
        CAPTURE(name);
        const std::vector<double> v = p.to_vector<double>();
        const bool norm = name.find("LayerNorm") != std::string::npos;
        const bool is_bias = name.size() > 5 && name.substr(name.size() - 5) == ".bias";
        if (norm || is_bias) {
            const double want = norm && !is_bias ? 1.0 : 0.0;
            for (double x : v)
                REQUIRE(x == want);
            continue;
        }
        double s = 0, s2 = 0;
        for (double x : v) {
            s += x;
            s2 += x * x;
        }
        const double n = static_cast<double>(v.size());
        const double mean = s / n, sd = std::sqrt(s2 / n - mean * mean);
        // N(0, 0.02): the sample sd and mean within 4 standard errors (sd / sqrt(2n), sd /
        // sqrt(n)).
        CHECK(std::abs(sd / 0.02 - 1) <= 4 / std::sqrt(2 * n) + 1e-3);
        CHECK(std::abs(mean) <= 4 * 0.02 / std::sqrt(n));
    }
    const Tensor& word = model.bert->embeddings->word_embeddings->weight;
    for (double x : word.narrow0(0, 1).to_vector<double>())
        CHECK(x == 0.0);
    // A batch of [PAD] and real ids: row 0 of the table gets no gradient.
    const auto [ids, mask] = batch({{2, 7, 0}, {0, 9}}, 3);
    cross_entropy(model.forward(ids, mask), Tensor::from_vector(std::vector<int64_t>{0, 1}, {2}))
        .backward();
    for (double g : word.grad().narrow0(0, 1).to_vector<double>())
        CHECK(g == 0.0);
    CHECK(global_l2_norm({word.grad().narrow0(7, 1)}) > 0);
}

TEST_CASE("nn/bert: padding does not change the real tokens' outputs") {
    // The key mask keeps padded keys out of every real query's softmax: the same rows with more
    // padding (and other ids in it) give the same [CLS] logits.
    manual_seed(9);
    nn::BertForSequenceClassification model(small_config());
    const auto [ids3, mask3] = batch({{2, 5, 7}, {3, 9}}, 3);
    const auto [ids5, mask5] = batch({{2, 5, 7}, {3, 9}}, 5);
    Tensor ids5_noise = ids5.clone();
    {
        NoGradGuard no_grad;
        ids5_noise.narrow0(1, 1).view({5}).copy_(
            Tensor::from_vector(std::vector<int64_t>{3, 9, 4, 4, 10}, {5}));
    }
    const Tensor a = model.forward(ids3, mask3);
    check_close(model.forward(ids5, mask5), a.to_vector<double>(), 1e-5, 1e-6, "more padding");
    check_close(model.forward(ids5_noise, mask5), a.to_vector<double>(), 1e-5, 1e-6,
                "other ids under the mask");
}

TEST_CASE("nn/bert: a clone is bitwise the model and independent, dropout follows train()") {
    nn::BertConfig c = small_config();
    c.hidden_dropout_prob = 0.1;
    c.attention_probs_dropout_prob = 0.1;
    manual_seed(3);
    nn::BertForSequenceClassification model(c);
    auto copy = nn::clone(model);
    const auto [ids, mask] = batch({{2, 5, 7}, {3, 9}}, 3);
    model.eval();
    copy->eval();
    CHECK(bitwise_equal(model.forward(ids, mask), copy->forward(ids, mask)));
    {
        NoGradGuard no_grad;
        copy->classifier->bias.fill_(1.0);
    }
    CHECK_FALSE(bitwise_equal(model.forward(ids, mask), copy->forward(ids, mask)));
    // Training: two forwards draw two dropout masks; eval is deterministic.
    model.train();
    CHECK_FALSE(bitwise_equal(model.forward(ids, mask), model.forward(ids, mask)));
}

TEST_CASE("nn/bert: under bf16 autocast the model runs, the residual stream stays f32") {
    manual_seed(4);
    nn::BertForSequenceClassification model(small_config());
    const auto [ids, mask] = batch({{2, 5, 7}, {3, 9}}, 3);
    const Tensor ref = model.forward(ids, mask);
    Tensor logits, hidden;
    {
        amp::Autocast autocast(DType::BF16);
        hidden = model.bert->forward(ids, mask);
        logits = model.forward(ids, mask);
    }
    CHECK(hidden.dtype() == DType::F32);   // LayerNorm's output (f32 list)
    CHECK(logits.dtype() == DType::BF16);  // the classifier's Linear (low list)
    check_close(logits.to(DType::F32), ref.to_vector<double>(), 3e-2, 3e-2, "bf16 vs f32");
    cross_entropy(logits, Tensor::from_vector(std::vector<int64_t>{0, 2}, {2})).backward();
    for (const auto& [name, p] : model.named_parameters()) {
        CAPTURE(name);
        CHECK(p.grad().dtype() == DType::F32);
    }
}

TEST_CASE("nn/bert: bad configurations and inputs are errors naming what is wrong") {
    nn::BertConfig c = small_config();
    c.num_attention_heads = 3;
    CHECK_THROWS_WITH_AS(nn::BertModel{c},
                         doctest::Contains("not a multiple of num_attention_heads"), ValueError);
    c = small_config();
    c.hidden_dropout_prob = 1.0;
    CHECK_THROWS_WITH_AS(nn::BertModel{c}, doctest::Contains("hidden_dropout_prob"), ValueError);
    c = small_config();
    c.pad_token_id = 11;
    CHECK_THROWS_WITH_AS(nn::BertModel{c}, doctest::Contains("pad_token_id 11"), ValueError);
    nn::BertModel model(small_config());
    const auto [ids, mask] = batch({{2, 5, 7}}, 3);
    CHECK_THROWS_WITH_AS(model.forward(ids.to(DType::F32), mask), doctest::Contains("i64"),
                         ShapeError);
    CHECK_THROWS_WITH_AS(model.forward(ids, Tensor::ones({1, 4})), doctest::Contains("key_mask"),
                         ShapeError);
    const auto [long_ids, long_mask] = batch({{1, 2, 3, 4, 5, 6, 7}}, 7);
    CHECK_THROWS_WITH_AS(model.forward(long_ids, long_mask),
                         doctest::Contains("exceed max_position_embeddings = 6"), ShapeError);
}
