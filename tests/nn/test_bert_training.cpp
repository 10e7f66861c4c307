// tests/nn/test_bert_training.cpp — the BERT classifier trained through tricks::train_step against
// PyTorch (make_transformer_fixtures.py, bert_classifier_trajectory; the PyTorch model is
// tests/fixtures/torch_bert.py): five AdamW steps with no decay on biases and LayerNorm weights,
// Hugging Face's linear warm-up whose first step runs at lr 0, gradient-norm clipping that bites
// on about half the steps; plain (every step's parameters), with FGM on word_embeddings, and with
// two accumulation micro-batches (the last step's parameters). Dropout 0.
//
// Tolerance: rtol 1e-4 + atol 1e-6 per element (an f32 trajectory through two encoder layers),
// the lr of each step to 1e-12.
#include <doctest/doctest.h>

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "nn/bert.h"
#include "ops/ops.h"
#include "optim/adamw.h"
#include "optim/lr_scheduler.h"
#include "tests/support/compare.h"
#include "tests/support/fixtures.h"
#include "tricks/fgm.h"
#include "tricks/train_step.h"

using namespace minidl;
using namespace minidl::test;

namespace {

constexpr double kRtol = 1e-4, kAtol = 1e-6;

struct Trajectory {
    std::vector<double> losses, lrs, grad_norms;
    std::vector<StateDict> after_step;
};

// Builds the fixture's model from its initial weights and trains it on the fixture's batches the
// way text_classifier does: one tricks::train_step per batch.
Trajectory train(const json& fx) {
    const json& cfg = fx.at("config");
    nn::BertConfig c;
    c.vocab_size = cfg.at("vocab_size");
    c.hidden_size = cfg.at("hidden_size");
    c.num_hidden_layers = cfg.at("num_hidden_layers");
    c.num_attention_heads = cfg.at("num_attention_heads");
    c.intermediate_size = cfg.at("intermediate_size");
    c.max_position_embeddings = cfg.at("max_position_embeddings");
    c.num_labels = cfg.at("num_labels");
    c.hidden_dropout_prob = 0;
    c.attention_probs_dropout_prob = 0;
    nn::BertForSequenceClassification model(c);
    StateDict init;
    for (const auto& [name, value] : fx.at("init").items())
        init.tensors[name] = tensor_from_json(value);
    model.load_state_dict(init);  // strict: PyTorch's names are exactly the model's

    const double weight_decay = fx.at("weight_decay");
    std::vector<Tensor> decay, plain;
    for (const auto& [name, p] : model.named_parameters())
        (nn::takes_weight_decay(name) ? decay : plain).push_back(p);
    optim::AdamW opt({{decay, std::nullopt, weight_decay}, {plain, std::nullopt, 0.0}},
                     {.lr = fx.at("lr"),
                      .beta1 = fx.at("betas")[0],
                      .beta2 = fx.at("betas")[1],
                      .eps = fx.at("eps"),
                      .weight_decay = weight_decay});
    optim::LinearWarmupDecay schedule(
        opt, {.warmup_steps = fx.at("warmup_steps"), .total_steps = fx.at("total_steps")});
    std::optional<tricks::FGM> fgm;
    if (!fx.at("fgm_epsilon").is_null())
        fgm.emplace(model, tricks::FGMOptions{.epsilon = fx.at("fgm_epsilon"),
                                              .filter = {.contains = fx.at("fgm_target")}});
    tricks::TrainStepConfig step{.optimizer = &opt,
                                 .fgm = fgm ? &*fgm : nullptr,
                                 .accum_steps = fx.at("accumulation_steps"),
                                 .clip_norm = fx.at("clip_norm"),
                                 .scheduler = &schedule};

    Trajectory out;
    for (const auto& batch : fx.at("batches")) {
        const Tensor ids = tensor_from_json(batch.at("ids"));
        const Tensor mask = tensor_from_json(batch.at("key_mask"));
        const Tensor labels = tensor_from_json(batch.at("labels"));
        out.lrs.push_back(opt.param_groups()[0].lr);
        const tricks::StepResult r =
            tricks::train_step(step, ids.shape()[0], [&](int64_t begin, int64_t end) {
                const Tensor logits =
                    model.forward(slice(ids, 0, begin, end), slice(mask, 0, begin, end));
                return cross_entropy(logits, slice(labels, 0, begin, end));
            });
        CHECK(r.stepped);
        out.losses.push_back(r.loss);
        out.grad_norms.push_back(r.grad_norm);
        StateDict now = model.state_dict();  // views of the parameters: copied
        for (auto& [name, t] : now.tensors)
            t = t.detach().clone();
        out.after_step.push_back(std::move(now));
    }
    return out;
}

// The largest relative error of `state` against the fixture's {name: tensor}, every name checked.
double compare_parameters(const StateDict& state, const json& expected, const std::string& what) {
    double worst = 0;
    CHECK(state.tensors.size() == expected.size());
    for (const auto& [name, value] : expected.items()) {
        CAPTURE(name);
        REQUIRE(state.tensors.count(name) == 1);
        worst = std::max(worst, check_close(state.tensors.at(name), values_from_json(value), kRtol,
                                            kAtol, what + " " + name));
    }
    return worst;
}

double check_run(const std::string& fixture) {
    const json fx = load_fixture(fixture);
    const Trajectory run = train(fx);
    double worst =
        check_close(run.lrs, fx.at("lrs").get<std::vector<double>>(), 1e-12, 1e-12, "lrs");
    CHECK(run.lrs.front() == 0.0);  // Hugging Face's warm-up starts at lr 0
    worst = std::max(worst, check_close(run.losses, fx.at("losses").get<std::vector<double>>(),
                                        kRtol, kAtol, "losses"));
    const auto norms = fx.at("grad_norms").get<std::vector<double>>();
    worst = std::max(worst, check_close(run.grad_norms, norms, kRtol, kAtol, "grad norms"));
    const double clip = fx.at("clip_norm");
    CHECK(std::count_if(norms.begin(), norms.end(), [&](double n) { return n > clip; }) >= 2);
    const json& after = fx.at("after_step");
    for (size_t s = 0; s < after.size(); ++s)
        worst = std::max(worst, compare_parameters(run.after_step.at(s), after[s],
                                                   "step " + std::to_string(s + 1)));
    worst = std::max(worst, compare_parameters(run.after_step.back(), fx.at("final"), "final"));
    return worst;
}

}  // namespace

TEST_CASE("nn/bert training: five AdamW steps with warm-up and clipping match PyTorch") {
    MESSAGE("bert_classifier_adamw: max relative error " << check_run("bert_classifier_adamw"));
}

TEST_CASE("nn/bert training: with FGM on word_embeddings the trajectory matches PyTorch") {
    MESSAGE("bert_classifier_adamw_fgm: max relative error "
            << check_run("bert_classifier_adamw_fgm"));
}

TEST_CASE("nn/bert training: two accumulation micro-batches match PyTorch's weighted sum") {
    MESSAGE("bert_classifier_adamw_accum2: max relative error "
            << check_run("bert_classifier_adamw_accum2"));
}

TEST_CASE("nn/bert training: Hugging Face's no-decay rule") {
    CHECK(nn::takes_weight_decay("bert.encoder.layer.0.attention.self.query.weight"));
    CHECK(nn::takes_weight_decay("bert.embeddings.word_embeddings.weight"));
    CHECK(nn::takes_weight_decay("classifier.weight"));
    CHECK_FALSE(nn::takes_weight_decay("classifier.bias"));
    CHECK_FALSE(nn::takes_weight_decay("bert.embeddings.LayerNorm.weight"));
    CHECK_FALSE(nn::takes_weight_decay("bert.encoder.layer.1.output.LayerNorm.weight"));
    CHECK_FALSE(nn::takes_weight_decay("bert.encoder.layer.1.output.LayerNorm.bias"));
}
