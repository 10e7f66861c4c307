// tests/tricks/test_checkpoint.cpp — activation checkpointing (tricks/checkpoint.h): a float64
// gradcheck of a checkpointed block (inputs and the parameters it closes over); the BERT classifier
// with gradient_checkpointing against itself without, dropout 0.1 on: the loss and every gradient
// bitwise, also under bf16 autocast, and weights bitwise after AdamW steps through train_step with
// FGM and accumulation; the generator left where it would be; the memory a forward keeps for
// backward; a block that is not a function of its inputs, and bad arguments.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "core/allocator.h"
#include "core/autograd.h"
#include "core/check.h"
#include "core/rng.h"
#include "nn/bert.h"
#include "ops/ops.h"
#include "optim/adamw.h"
#include "tests/support/compare.h"
#include "tests/support/gradcheck.h"
#include "tricks/amp.h"
#include "tricks/awp.h"
#include "tricks/checkpoint.h"
#include "tricks/ema.h"
#include "tricks/fgm.h"
#include "tricks/freelb.h"
#include "tricks/pgd.h"
#include "tricks/train_step.h"

using namespace minidl;
using namespace minidl::test;

namespace {

nn::BertConfig config(bool checkpointing) {
    nn::BertConfig c;
    c.vocab_size = 40;
    c.hidden_size = 16;
    c.num_hidden_layers = 3;
    c.num_attention_heads = 2;
    c.intermediate_size = 32;
    c.max_position_embeddings = 16;
    c.num_labels = 3;
    c.hidden_dropout_prob = 0.1;  // dropout on: the recomputation must replay its masks
    c.attention_probs_dropout_prob = 0.1;
    c.gradient_checkpointing = checkpointing;
    return c;
}

struct Batch {
    Tensor ids, mask, labels;
};

Batch make_batch(int64_t B, int64_t L, uint64_t seed) {
    Generator g(seed);
    std::vector<int64_t> ids, mask, labels;
    for (int64_t b = 0; b < B; ++b) {
        const int64_t n = 2 + g.randint(L - 1);  // 2..L real tokens
        for (int64_t j = 0; j < L; ++j) {
            ids.push_back(j < n ? 5 + g.randint(35) : 0);
            mask.push_back(j < n ? 1 : 0);
        }
        labels.push_back(g.randint(3));
    }
    return {Tensor::from_vector(ids, {B, L}), Tensor::from_vector(mask, {B, L}),
            Tensor::from_vector(labels, {B})};
}

// Two copies of the same model, one with checkpointing.
struct Pair {
    nn::BertForSequenceClassification plain{config(false)};
    nn::BertForSequenceClassification ckpt{config(true)};
    Pair() { ckpt.load_state_dict(plain.state_dict()); }
};

// Forward and backward of the mean cross-entropy from the default generator at `seed`; the loss.
double loss_and_grads(nn::BertForSequenceClassification& model, const Batch& b, uint64_t seed) {
    manual_seed(seed);
    model.zero_grad();
    Tensor loss = cross_entropy(model.forward(b.ids, b.mask), b.labels);
    loss.backward();
    return loss.item();
}

void check_grads_bitwise(nn::BertForSequenceClassification& a,
                         nn::BertForSequenceClassification& b) {
    const auto pa = a.named_parameters(), pb = b.named_parameters();
    REQUIRE(pa.size() == pb.size());
    int compared = 0;
    for (size_t i = 0; i < pa.size(); ++i) {
        CAPTURE(pa[i].first);
        REQUIRE(pa[i].second.grad().defined() == pb[i].second.grad().defined());
        if (!pa[i].second.grad().defined()) continue;
        CHECK(bitwise_equal(pa[i].second.grad(), pb[i].second.grad()));
        ++compared;
    }
    CHECK(compared == static_cast<int>(pa.size()));
}

}  // namespace

TEST_CASE("tricks/checkpoint: float64 gradcheck of a checkpointed block") {
    // y = tanh(x W + b) * x: the block's own inputs x, W, b all get gradients through the node.
    Tensor x = rand64({3, 4}, 1, -1, 1), w = rand64({4, 4}, 2, -1, 1), b = rand64({4}, 3, -1, 1);
    auto block = [](const std::vector<Tensor>& in) {
        return mul(tanh(add(matmul(in[0], in[1]), in[2])), in[0]);
    };
    CHECK(gradcheck([&](const std::vector<Tensor>& in) { return tricks::checkpoint(block, in); },
                    {x, w, b}));
}

TEST_CASE("tricks/checkpoint: parameters closed over get their gradient as without it") {
    // The block's parameter is not an input of the node: the recomputation's backward reaches it.
    Tensor w = rand64({4, 4}, 4, -1, 1);
    Tensor x = rand64({2, 4}, 5, -1, 1);
    auto block = [&w](const std::vector<Tensor>& in) { return tanh(matmul(in[0], w)); };
    sum(block({x})).backward();
    const Tensor gw = w.grad().clone(), gx = x.grad().clone();
    w.set_grad(Tensor());
    x.set_grad(Tensor());
    sum(tricks::checkpoint(block, {x})).backward();
    CHECK(bitwise_equal(w.grad(), gw));
    CHECK(bitwise_equal(x.grad(), gx));
}

TEST_CASE(
    "tricks/checkpoint: the BERT classifier's loss and every gradient are bitwise unchanged") {
    Pair m;
    const Batch b = make_batch(4, 12, 7);
    const double loss_plain = loss_and_grads(m.plain, b, 99);
    const Generator::State after_plain = default_generator().state();
    const double loss_ckpt = loss_and_grads(m.ckpt, b, 99);
    CHECK(loss_plain == loss_ckpt);
    check_grads_bitwise(m.plain, m.ckpt);
    // The replay put the generator back: the next draws are those of the run without it.
    CHECK(default_generator().state().offset == after_plain.offset);

    // A different dropout seed changes the gradient: the comparison above sees the masks.
    loss_and_grads(m.plain, b, 100);
    const auto pa = m.plain.named_parameters(), pb = m.ckpt.named_parameters();
    CHECK_FALSE(bitwise_equal(pa[0].second.grad(), pb[0].second.grad()));
}

TEST_CASE("tricks/checkpoint: under bf16 autocast the recomputation runs in bf16 too") {
    Pair m;
    const Batch b = make_batch(3, 10, 8);
    double losses[2];
    nn::BertForSequenceClassification* models[2] = {&m.plain, &m.ckpt};
    for (int i = 0; i < 2; ++i) {
        manual_seed(5);
        models[i]->zero_grad();
        Tensor loss;
        {
            amp::Autocast autocast(DType::BF16);
            loss = cross_entropy(models[i]->forward(b.ids, b.mask), b.labels);
        }
        loss.backward();  // outside the scope: the node restores the forward's autocast state
        losses[i] = loss.item();
    }
    CHECK(losses[0] == losses[1]);
    check_grads_bitwise(m.plain, m.ckpt);
}

TEST_CASE("tricks/checkpoint: AdamW steps with FGM and accumulation stay bitwise equal") {
    Pair m;
    nn::BertForSequenceClassification* models[2] = {&m.plain, &m.ckpt};
    std::vector<StateDict> after;
    for (auto* model : models) {
        manual_seed(21);
        optim::AdamW opt(model->parameters(), {.lr = 1e-2});
        tricks::FGM fgm(*model, {.epsilon = 1.0, .filter = {.contains = "word_embeddings"}});
        tricks::TrainStepConfig step{
            .optimizer = &opt, .fgm = &fgm, .accum_steps = 2, .clip_norm = 1.0};
        for (uint64_t s = 0; s < 3; ++s) {
            const Batch b = make_batch(6, 10, 30 + s);
            tricks::train_step(step, 6, [&](int64_t begin, int64_t end) {
                return cross_entropy(
                    model->forward(slice(b.ids, 0, begin, end), slice(b.mask, 0, begin, end)),
                    slice(b.labels, 0, begin, end));
            });
        }
        after.push_back(model->state_dict());
    }
    for (const auto& [name, t] : after[0].tensors) {
        CAPTURE(name);
        CHECK(bitwise_equal(t, after[1].tensors.at(name)));
    }
}

TEST_CASE("tricks/checkpoint: the forward keeps only the sub-blocks' inputs for backward") {
    // Bytes still allocated after the forward (the graph's saved activations) with and without;
    // 4 layers of [8, 64, 32] hidden states and [8, 64, 128] feed-forward activations.
    nn::BertConfig c = config(false);
    c.num_hidden_layers = 4;
    c.hidden_size = 32;
    c.intermediate_size = 128;
    c.max_position_embeddings = 64;
    const Batch b = make_batch(8, 64, 9);
    size_t kept[2];
    for (int i = 0; i < 2; ++i) {
        c.gradient_checkpointing = i == 1;
        nn::BertForSequenceClassification model(c);
        manual_seed(3);
        const size_t before = cpu_allocator().stats().bytes_in_use;
        Tensor loss = cross_entropy(model.forward(b.ids, b.mask), b.labels);
        kept[i] = cpu_allocator().stats().bytes_in_use - before;
        loss.backward();
    }
    MESSAGE("bytes kept for backward: " << kept[0] << " without, " << kept[1] << " with");
    CHECK(kept[1] * 4 < kept[0]);
}

TEST_CASE("tricks/checkpoint: a block that is not a function of its inputs, and bad arguments") {
    Tensor x = rand64({2, 3}, 6, -1, 1);
    int calls = 0;
    auto changing = [&calls](const std::vector<Tensor>& in) {
        ++calls;
        return calls == 1 ? sum(in[0]) : sum(in[0], 0);  // another shape when recomputed
    };
    Tensor y = tricks::checkpoint(changing, {x});
    CHECK_THROWS_WITH_AS(y.backward(), doctest::Contains("not a function of its inputs"),
                         StateError);
    CHECK_THROWS_AS(tricks::checkpoint(tricks::CheckpointFn{}, {x}), ValueError);
    CHECK_THROWS_AS(tricks::checkpoint([](const auto& in) { return in[0]; }, {x}, {nullptr}),
                    ValueError);
    CHECK_THROWS_AS(autograd::backward_within(x, x), StateError);  // outside a backward pass
}

TEST_CASE("tricks/checkpoint: without an input that requires grad the block runs as it is") {
    Tensor w = rand64({3, 3}, 7, -1, 1);
    Tensor x = Tensor::ones({2, 3}, DType::F64);  // no requires_grad
    auto block = [&w](const std::vector<Tensor>& in) { return matmul(in[0], w); };
    sum(tricks::checkpoint(block, {x})).backward();
    const Tensor via = w.grad().clone();
    w.set_grad(Tensor());
    sum(block({x})).backward();
    CHECK(bitwise_equal(w.grad(), via));
}

TEST_CASE("tricks/checkpoint: hooks fire once per parameter, callbacks at the end of the pass") {
    // DistributedDataParallel's reducer relies on both: a bucket launches from a parameter's
    // post-accumulate hook, and the callback it queues waits for every bucket once the whole
    // backward pass is done, not when a checkpointed layer's recomputation is.
    nn::BertForSequenceClassification model(config(true));
    const auto params = model.named_parameters();
    std::vector<int> fired(params.size(), 0);
    int hooks_seen = 0, callbacks = 0, hooks_before_first_callback = -1;
    for (size_t i = 0; i < params.size(); ++i)
        autograd::add_post_accumulate_hook(params[i].second, [&, i](const Tensor&) {
            ++fired[i];
            ++hooks_seen;
            autograd::queue_callback([&] {
                if (callbacks++ == 0) hooks_before_first_callback = hooks_seen;
            });
        });
    const Batch b = make_batch(3, 8, 12);
    manual_seed(1);
    cross_entropy(model.forward(b.ids, b.mask), b.labels).backward();
    for (size_t i = 0; i < params.size(); ++i) {
        CAPTURE(params[i].first);
        CHECK(fired[i] == 1);
    }
    CHECK(callbacks == static_cast<int>(params.size()));
    CHECK(hooks_before_first_callback == static_cast<int>(params.size()));
}

TEST_CASE(
    "tricks/checkpoint: every adversarial trick, with AMP f16, accumulation and EMA, unchanged") {
    // Checkpointing is invisible to the tricks: for none, FGM, PGD, FreeLB and AWP, alone and
    // with f16 autocast + loss scaling + 2 accumulation micro-batches + EMA, two train_steps give
    // bitwise the same weights (and EMA shadow) with and without it.
    const char* attacks[] = {"none", "fgm", "pgd", "freelb", "awp"};
    for (const char* attack : attacks)
        for (bool heavy : {false, true}) {
            CAPTURE(attack);
            CAPTURE(heavy);
            Pair m;
            const Tensor initial = m.plain.classifier->weight.detach().clone();
            std::vector<StateDict> after;
            nn::BertForSequenceClassification* models[2] = {&m.plain, &m.ckpt};
            for (auto* model : models) {
                manual_seed(31);
                optim::AdamW opt(model->parameters(), {.lr = 1e-2});
                const tricks::ParamFilter word{.contains = "word_embeddings"};
                tricks::FGM fgm(*model, {.epsilon = 1.0, .filter = word});
                tricks::PGD pgd(*model, {.epsilon = 1.0, .alpha = 0.3, .steps = 2, .filter = word});
                tricks::FreeLB freelb(*model->bert->embeddings->word_embeddings,
                                      {.steps = 2, .seed = 5});
                tricks::AWP awp(*model, {.adv_lr = 0.5, .adv_eps = 0.01});
                amp::GradScaler scaler;
                tricks::EMA ema(*model, {.decay = 0.9});
                const std::string a = attack;
                tricks::TrainStepConfig step{.optimizer = &opt,
                                             .fgm = a == "fgm" ? &fgm : nullptr,
                                             .pgd = a == "pgd" ? &pgd : nullptr,
                                             .awp = a == "awp" ? &awp : nullptr,
                                             .freelb = a == "freelb" ? &freelb : nullptr};
                if (heavy) {
                    step.autocast = DType::F16;
                    step.scaler = &scaler;
                    step.accum_steps = 2;
                    step.ema = &ema;
                }
                for (uint64_t s = 0; s < 2; ++s) {
                    const Batch b = make_batch(4, 9, 50 + s);
                    tricks::train_step(step, 4, [&](int64_t begin, int64_t end) {
                        return cross_entropy(model->forward(slice(b.ids, 0, begin, end),
                                                            slice(b.mask, 0, begin, end)),
                                             slice(b.labels, 0, begin, end));
                    });
                }
                StateDict state = model->state_dict();
                if (heavy)
                    for (const auto& [name, t] : ema.state_dict().tensors)
                        state.tensors["ema." + name] = t;
                for (auto& [name, t] : state.tensors)
                    t = t.detach().clone();
                after.push_back(std::move(state));
            }
            CHECK_FALSE(bitwise_equal(after[0].tensors.at("classifier.weight"), initial));
            REQUIRE(after[0].tensors.size() == after[1].tensors.size());
            for (const auto& [name, t] : after[0].tensors) {
                CAPTURE(name);
                CHECK(bitwise_equal(t, after[1].tensors.at(name)));
            }
        }
}
