// tests/examples/test_text_classifier_transformer.cpp — text_classifier --model transformer: the
// vocabulary with BERT's specials, the [CLS] ... [SEP] sequences and their padded batches, the
// trainer against the fine-tuning recipe written out with the library's parts (each checked
// against PyTorch in tests/nn/test_bert*.cpp), checkpointing, resume, config.json and predict.
// The PyTorch side of the saved files: tests/examples/test_text_classifier_transformer_interop.py.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/rng.h"
#include "core/safetensors.h"
#include "examples/text_classifier/evaluate.h"
#include "examples/text_classifier/io.h"
#include "examples/text_classifier/report.h"
#include "examples/text_classifier/train.h"
#include "nn/bert.h"
#include "ops/loss.h"
#include "optim/adamw.h"
#include "optim/clip.h"
#include "optim/lr_scheduler.h"
#include "tests/examples/test_text_classifier_support.h"
#include "tests/support/compare.h"
#include "tricks/freelb.h"

using namespace textclf;
using minidl::Tensor;
using textclf::test::TempDir;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr int64_t kMaxLen = 64;

// The sample's random split as the transformer reads it (--max-len 64), prepared once.
const PreparedData& transformer_data() {
    static const PreparedData data = [] {
        DataConfig d = textclf::test::sample_config();
        d.format = {.bert = true, .max_len = kMaxLen};
        return load_and_prepare(d);
    }();
    return data;
}

RunOptions transformer_run(const std::string& out_dir, int64_t epochs = 2) {
    RunOptions o = textclf::test::sample_run(out_dir, epochs);
    o.train.model = "transformer";
    o.train.lr = 1e-3;
    o.train.hidden = 32;  // small and quick; the shape logic is the same
    o.train.intermediate = 64;
    o.train.clip = 1.0;
    o.train.max_len = kMaxLen;
    o.data.format = {.bert = true, .max_len = kMaxLen};
    return o;
}

void check_same_tensors(const std::string& a, const std::string& b) {
    const minidl::StateDict x = minidl::load_safetensors(a), y = minidl::load_safetensors(b);
    REQUIRE(x.tensors.size() == y.tensors.size());
    for (const auto& [name, t] : x.tensors) {
        CAPTURE(name);
        REQUIRE(y.tensors.count(name) == 1);
        CHECK(minidl::test::bitwise_equal(t, y.tensors.at(name)));
    }
}

}  // namespace

TEST_CASE("examples/text_classifier transformer: a vocabulary with BERT's specials") {
    const Vocab v = Vocab::from_counts({{"b", 3}, {"a", 3}, {"c", 1}, {"d", 2}, {"e", 2}},
                                       {.max_size = 8, .specials = bert_specials()});
    CHECK(v.tokens() ==
          std::vector<std::string>{"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "d"});
    CHECK(v.is_bert());
    CHECK_FALSE(Vocab().is_bert());
    CHECK(v.encode_sequence({"a", "zz", "d"}, 8) == std::vector<int64_t>{2, 5, 1, 7, 3});
    CHECK(v.encode_sequence({"a", "zz", "d"}, 4) == std::vector<int64_t>{2, 5, 1, 3});
    CHECK(v.encode_sequence({}, 8) == std::vector<int64_t>{2, 3});  // an empty document
    CHECK(v.encode({}, InputFormat{.bert = true, .max_len = 2}) == std::vector<int64_t>{2, 3});
    CHECK_THROWS_AS(v.encode_sequence({"a"}, 1), minidl::ValueError);
    CHECK_THROWS_AS(Vocab().encode_sequence({"a"}, 8), minidl::ValueError);

    TempDir dir;
    v.save(dir.sub("vocab.txt"));
    CHECK(read_file(dir.sub("vocab.txt")) == "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na\nb\nd\n");
    CHECK(Vocab::load(dir.sub("vocab.txt")).tokens() == v.tokens());
    write_file_atomic(dir.sub("bad.txt"), "[PAD]\n[UNK]\n[CLS]\na\n");  // specials cut short
    CHECK_THROWS_AS(Vocab::load(dir.sub("bad.txt")), minidl::FormatError);
}

TEST_CASE("examples/text_classifier transformer: the sample's sequences follow the spec") {
    const PreparedData& t = transformer_data();
    const PreparedData& bag = textclf::test::sample_data();
    // The same counting rule: the bag's tokens after its two specials are the transformer's
    // after its five (neither is cut at 30,000 entries on the sample).
    REQUIRE(t.vocab.size() == bag.vocab.size() + 3);
    for (int64_t i = 2; i < bag.vocab.size(); ++i)
        REQUIRE(t.vocab.token(i + 3) == bag.vocab.token(i));
    const TokenizedCorpus& corpus = t.corpus->tokens;
    REQUIRE(t.train.size() == static_cast<int64_t>(t.split.train.size()));
    int64_t truncated = 0;
    for (int64_t r = 0; r < t.train.size(); ++r) {
        const int64_t begin = t.train.offsets[r], end = t.train.offsets[r + 1];
        const std::vector<std::string> tokens = corpus.doc_tokens(t.split.train[r]);
        const int64_t n = std::min<int64_t>(static_cast<int64_t>(tokens.size()), kMaxLen - 2);
        REQUIRE(end - begin == n + 2);
        CHECK(t.train.ids[begin] == Vocab::kCls);
        CHECK(t.train.ids[end - 1] == Vocab::kSep);
        for (int64_t i = 0; i < n; ++i)
            REQUIRE(t.train.ids[begin + 1 + i] == t.vocab.id(tokens[i]));
        truncated += static_cast<int64_t>(tokens.size()) > n;
    }
    CHECK(truncated > 0);  // the cut at max_len is exercised
}

TEST_CASE("examples/text_classifier transformer: padded batches and their micro-batches") {
    const PreparedData& t = transformer_data();
    // The shortest document between two others, so that the batch has padding.
    int64_t shortest = 0;
    for (int64_t r = 1; r < t.train.size(); ++r)
        if (t.train.offsets[r + 1] - t.train.offsets[r] <
            t.train.offsets[shortest + 1] - t.train.offsets[shortest])
            shortest = r;
    const std::vector<int64_t> rows = {shortest == 4 ? 5 : 4, shortest, shortest == 7 ? 8 : 7};
    ModelBatch mb;
    gather_batch(t.train, rows, minidl::Device::cpu(), mb, /*padded=*/true);
    int64_t longest = 0;
    for (int64_t r : rows)
        longest = std::max(longest, t.train.offsets[r + 1] - t.train.offsets[r]);
    REQUIRE(t.train.offsets[shortest + 1] - t.train.offsets[shortest] < longest);
    REQUIRE(mb.ids.shape() == minidl::Shape{3, longest});
    REQUIRE(mb.mask.shape() == minidl::Shape{3, longest});
    const auto ids = mb.ids.to_vector<int64_t>(), mask = mb.mask.to_vector<int64_t>();
    const auto labels = mb.labels.to_vector<int64_t>();
    for (int64_t b = 0; b < 3; ++b) {
        const int64_t begin = t.train.offsets[rows[b]], len = t.train.offsets[rows[b] + 1] - begin;
        CHECK(labels[b] == t.train.labels[rows[b]]);
        for (int64_t j = 0; j < longest; ++j) {
            CHECK(ids[b * longest + j] == (j < len ? t.train.ids[begin + j] : Vocab::kPad));
            CHECK(mask[b * longest + j] == (j < len ? 1 : 0));
        }
    }
    // A micro-batch is a row range, the whole batch's padding kept.
    const ModelBatch::Slice s = mb.slice(1, 3);
    CHECK(s.ids.shape() == minidl::Shape{2, longest});
    CHECK(s.mask.to_vector<int64_t>() == std::vector<int64_t>(mask.begin() + longest, mask.end()));
    CHECK(s.labels.to_vector<int64_t>() == std::vector<int64_t>(labels.begin() + 1, labels.end()));
    CHECK(s.size() == 2);
}

TEST_CASE("examples/text_classifier transformer: the trainer is the fine-tuning recipe") {
    // The recipe written out with nn::BertForSequenceClassification (its names, init and
    // gradients: tests/nn/test_bert.cpp against PyTorch), AdamW with Hugging Face's two groups,
    // the warm-up schedule from lr 0 and clipping (tests/nn/test_bert_training.cpp against
    // PyTorch), on the trainer's batches in its order; and with FreeLB on the word embeddings'
    // output, each batch's token mask given (tests/tricks/test_freelb.cpp against the authors'
    // loop). One epoch, dropout on: every weight bitwise.
    for (const bool with_freelb : {false, true}) {
        CAPTURE(with_freelb);
        const PreparedData& data = transformer_data();
        TrainConfig c = transformer_run("").train;
        c.epochs = 1;
        c.warmup = 0.5;  // 6 steps: 3 of warm-up, the first at lr 0
        c.freelb = with_freelb;
        Trainer trainer(c, data);
        REQUIRE(trainer.run());

        const ModelConfig mc = model_config(c, data.vocab.size(), 2);
        minidl::manual_seed(c.seed);
        minidl::nn::BertForSequenceClassification model(mc.bert());
        std::vector<Tensor> decay, plain;
        for (const auto& [name, p] : model.named_parameters())
            (minidl::nn::takes_weight_decay(name) ? decay : plain).push_back(p);
        minidl::optim::AdamW opt(
            {{decay, std::nullopt, c.weight_decay}, {plain, std::nullopt, 0.0}},
            {.lr = c.lr, .weight_decay = c.weight_decay});
        minidl::optim::LinearWarmupDecay schedule(opt, {.warmup_steps = 3, .total_steps = 6});
        CHECK(opt.param_groups()[0].lr == 0.0);
        minidl::tricks::FreeLB freelb(*model.bert->embeddings->word_embeddings,
                                      {.steps = static_cast<int>(c.freelb_steps),
                                       .adv_lr = c.freelb_lr,
                                       .init_mag = c.freelb_init,
                                       .seed = c.seed});
        minidl::Generator order_gen(c.seed + kDataSeedOffset);
        const std::vector<int64_t> order = order_gen.randperm(data.train.size());
        model.train();
        for (int64_t start = 0; start < data.train.size(); start += c.batch) {
            const int64_t len = std::min(c.batch, data.train.size() - start);
            ModelBatch mb;
            gather_batch(data.train, std::span<const int64_t>(order).subspan(start, len),
                         minidl::Device::cpu(), mb, true);
            opt.zero_grad();
            auto loss = [&] {
                return minidl::cross_entropy(model.forward(mb.ids, mb.mask), mb.labels);
            };
            if (with_freelb) {
                freelb.set_token_mask(mb.mask);
                freelb.run(loss, [](const Tensor& l) { l.backward(); });
            } else {
                loss().backward();
            }
            minidl::optim::clip_grad_norm(opt.parameters(), c.clip);
            opt.step();
            schedule.step();
        }
        const auto ours = trainer.model().named_parameters(), theirs = model.named_parameters();
        REQUIRE(ours.size() == theirs.size());
        for (size_t i = 0; i < ours.size(); ++i) {
            CAPTURE(ours[i].first);
            REQUIRE(ours[i].first == theirs[i].first);
            CHECK(minidl::test::bitwise_equal(ours[i].second, theirs[i].second));
        }
        CHECK(trainer.history().at(0).lr == opt.param_groups()[0].lr);
    }
}

TEST_CASE("examples/text_classifier transformer: checkpointed activations train bitwise alike") {
    TempDir dir;
    RunOptions plain = transformer_run(dir.sub("plain"), 1);
    RunOptions ckpt = transformer_run(dir.sub("ckpt"), 1);
    ckpt.train.checkpoint_activations = true;
    const RunResult a = run_training(plain, &transformer_data());
    const RunResult b = run_training(ckpt, &transformer_data());
    check_same_tensors(dir.sub("plain/model.safetensors"), dir.sub("ckpt/model.safetensors"));
    CHECK(a.history.at(0).loss == b.history.at(0).loss);
    CHECK(b.summary["tricks"] == "clip(1)+checkpoint");
}

TEST_CASE("examples/text_classifier transformer: an interrupted run resumes bitwise") {
    struct Case {
        const char* name;
        std::function<void(TrainConfig&)> set;
    };
    const std::vector<Case> cases = {
        {"baseline", [](TrainConfig&) {}},
        {"fgm+ema+amp bf16+accum+checkpoint",
         [](TrainConfig& c) {
             c.fgm = 0.5;
             c.ema = 0.9;
             c.amp = "bf16";
             c.accum = 2;
             c.checkpoint_activations = true;
         }},
        {"freelb+swa",
         [](TrainConfig& c) {
             c.freelb = true;
             c.swa_start = 1;
         }},
    };
    for (const Case& cs : cases) {
        CAPTURE(cs.name);
        TempDir dir;
        RunOptions whole = transformer_run(dir.sub("whole"));
        cs.set(whole.train);
        REQUIRE_FALSE(run_training(whole, &transformer_data()).interrupted);
        RunOptions part = transformer_run(dir.sub("part"));
        cs.set(part.train);
        int calls = 0;
        part.should_stop = [&] { return ++calls > 4; };  // mid-epoch (6 steps per epoch)
        REQUIRE(run_training(part, &transformer_data()).interrupted);
        RunOptions resumed;
        resumed.resume_dir = dir.sub("part");
        resumed.progress = false;
        REQUIRE_FALSE(run_training(resumed, &transformer_data()).interrupted);
        check_same_tensors(dir.sub("whole/checkpoint.safetensors"),
                           dir.sub("part/checkpoint.safetensors"));
        check_same_tensors(dir.sub("whole/model.safetensors"), dir.sub("part/model.safetensors"));
    }
}

TEST_CASE("examples/text_classifier transformer: config.json and predict") {
    TempDir dir;
    const PreparedData& data = transformer_data();
    const RunResult r = run_training(transformer_run(dir.sub("m"), 2), &data);
    const BertConfigFile file = read_bert_config(dir.sub("m/config.json"));
    CHECK(file.config.kind == ModelKind::Transformer);
    CHECK(file.config.vocab == data.vocab.size());
    CHECK(file.config.hidden == 32);
    CHECK(file.config.intermediate == 64);
    CHECK(file.config.layers == 2);
    CHECK(file.config.heads == 2);
    CHECK(file.max_len == kMaxLen);
    CHECK(file.classes == std::vector<std::string>{"ham", "spam"});
    const json j = json::parse(read_file(dir.sub("m/config.json")));
    CHECK(j["model_type"] == "bert");
    CHECK(j["hidden_act"] == "gelu");
    CHECK(j["layer_norm_eps"] == 1e-12);
    CHECK(j["id2label"]["1"] == "spam");

    // predict tells the models apart by config.json and reproduces the evaluation's logits.
    const Predictor predictor(dir.sub("m"));
    std::vector<std::string> texts;
    for (int64_t d : data.split.test)
        texts.push_back(data.corpus->data.texts[d]);
    const auto preds = predictor.predict(texts);
    int64_t correct = 0;
    for (size_t i = 0; i < preds.size(); ++i)
        correct += preds[i].label == data.test.labels[i];
    CHECK(static_cast<double>(correct) / static_cast<double>(preds.size()) ==
          r.summary["test_accuracy"].get<double>());
    CHECK(r.summary["model"] == "transformer");

    // A config.json of another model type is refused, naming it.
    json other = j;
    other["model_type"] = "gpt2";
    write_file_atomic(dir.sub("m/config.json"), other.dump());
    CHECK_THROWS_WITH_AS(Predictor(dir.sub("m")), doctest::Contains("model_type"),
                         minidl::FormatError);
    json missing = j;
    missing.erase("num_hidden_layers");
    write_file_atomic(dir.sub("m/config.json"), missing.dump());
    CHECK_THROWS_WITH_AS(Predictor(dir.sub("m")), doctest::Contains("num_hidden_layers"),
                         minidl::FormatError);
    // The bag model's folder has no config.json, and a transformer run's leftover is removed.
    RunOptions bag = textclf::test::sample_run(dir.sub("m"), 1);
    run_training(bag, &textclf::test::sample_data());
    CHECK_FALSE(fs::exists(dir.path / "m" / "config.json"));
    CHECK(Predictor(dir.sub("m")).predict(texts.front()).probabilities.size() == 2);
}

TEST_CASE("examples/text_classifier transformer: bad settings fail naming the flag") {
    auto refused = [](std::function<void(TrainConfig&)> set, const char* needle) {
        TrainConfig c = transformer_run("").train;
        set(c);
        CAPTURE(needle);
        CHECK_THROWS_WITH_AS(validate(c), doctest::Contains(needle), minidl::ValueError);
    };
    refused([](TrainConfig& c) { c.max_len = 513; }, "--max-len");
    refused([](TrainConfig& c) { c.max_len = 1; }, "--max-len");
    refused([](TrainConfig& c) { c.heads = 3; }, "--heads");
    refused([](TrainConfig& c) { c.warmup = 1.5; }, "--warmup");
    refused([](TrainConfig& c) { c.model = "lstm"; }, "--model");
    refused(
        [](TrainConfig& c) {
            c.model = "bag";
            c.checkpoint_activations = true;
        },
        "--checkpoint-activations");
    // Data prepared for the other model, or another --max-len.
    TrainConfig c = transformer_run("").train;
    CHECK_THROWS_WITH_AS(Trainer(c, textclf::test::sample_data()),
                         doctest::Contains("--model transformer"), minidl::ValueError);
    c.max_len = 32;
    CHECK_THROWS_WITH_AS(Trainer(c, transformer_data()), doctest::Contains("--max-len"),
                         minidl::ValueError);
}

TEST_CASE("examples/text_classifier transformer: compare runs it with the robustness report") {
    TempDir dir;
    CompareOptions o;
    o.base = transformer_run("", 1).train;
    o.data = textclf::test::sample_config();
    o.seeds = 1;
    o.tricks = {"baseline", "freelb"};
    o.splits = {SplitKind::Random};
    o.robust.draws = 1;
    o.robust.batch = 64;
    o.out_dir = dir.sub("cmp");
    std::ostringstream log;
    const CompareResult r = run_compare(o, log);
    write_report(r, o.out_dir);
    REQUIRE(r.runs.size() == 2);
    for (const auto& run : r.runs) {
        CHECK(run.result.summary["model"] == "transformer");
        CHECK(run.result.summary.contains("attack_accuracy"));
        // The attack at epsilon 0 is the clean evaluation.
        CHECK(run.result.summary["attack_accuracy"]["0"] == run.result.summary["test_accuracy"]);
    }
    CHECK(read_file(dir.sub("cmp/report.md")).find("Transformer (BERT-Tiny)") != std::string::npos);
}
