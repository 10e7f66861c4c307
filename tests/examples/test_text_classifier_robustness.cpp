// tests/examples/test_text_classifier_robustness.cpp — the robustness report's measurements and
// its files: metrics by hand, the attack against its derivation (a per-token step on the
// embedding table), the three "zero" identities (epsilon 0 = clean, p 0 = clean, sigma 0 = no
// loss increase), the one-character edits, and the report written by compare.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "core/autograd.h"
#include "examples/text_classifier/io.h"
#include "examples/text_classifier/report.h"
#include "examples/text_classifier/robustness.h"
#include "ops/loss.h"
#include "ops/reduce.h"
#include "tests/examples/test_text_classifier_support.h"
#include "tests/support/compare.h"

using namespace textclf;
using namespace textclf::test;
using minidl::Tensor;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// A model trained briefly on the sample (shared by the cases below).
TextClassifier& trained_model() {
    static std::shared_ptr<TextClassifier> model = [] {
        TrainConfig c;
        c.epochs = 3;
        c.lr = 1e-2;
        Trainer t(c, sample_data());
        t.run();
        return t.evaluation_model();
    }();
    return *model;
}

const DocTensors& test_docs() {
    static const DocTensors d = to_doc_tensors(sample_data().test, minidl::Device::cpu(), 2);
    return d;
}

// Optimal string alignment distance (edits: insert, delete, substitute, adjacent swap).
int64_t osa_distance(const std::string& a, const std::string& b) {
    const size_t n = a.size(), m = b.size();
    std::vector<std::vector<int64_t>> d(n + 1, std::vector<int64_t>(m + 1));
    for (size_t i = 0; i <= n; ++i)
        d[i][0] = static_cast<int64_t>(i);
    for (size_t j = 0; j <= m; ++j)
        d[0][j] = static_cast<int64_t>(j);
    for (size_t i = 1; i <= n; ++i)
        for (size_t j = 1; j <= m; ++j) {
            d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1,
                                d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
        }
    return d[n][m];
}

}  // namespace

TEST_CASE("examples/text_classifier: accuracy and macro-F1 match a hand count") {
    // preds 0 1 1 0 0, gold 0 1 0 0 1: class 0 tp 2 fp 1 fn 1 -> F1 4/6; class 1 tp 1 fp 1 fn 1
    // -> F1 2/4. Accuracy 3/5, macro-F1 (2/3 + 1/2) / 2 = 7/12.
    const std::vector<int64_t> pred = {0, 1, 1, 0, 0}, gold = {0, 1, 0, 0, 1};
    const Metrics m = classification_metrics(pred, gold, 2);
    CHECK(m.accuracy == doctest::Approx(0.6).epsilon(1e-12));
    CHECK(m.macro_f1 == doctest::Approx(7.0 / 12.0).epsilon(1e-12));
    // A class never predicted correctly contributes F1 = 0 (as the PyTorch script counts it).
    const Metrics z =
        classification_metrics(std::vector<int64_t>{0, 0}, std::vector<int64_t>{1, 1}, 2);
    CHECK(z.accuracy == 0.0);
    CHECK(z.macro_f1 == 0.0);
}

TEST_CASE("examples/text_classifier: the attack with epsilon 0 is the clean model") {
    TextClassifier& model = trained_model();
    const std::vector<double> eps = {0.0, 2.0};
    const std::vector<Tensor> attacked = attack_logits(model, test_docs(), eps, 40);
    const Tensor clean = predict_logits(model, test_docs(), 40);
    CHECK(minidl::test::bitwise_equal(attacked[0], clean));
    const auto acc = attack_accuracy(model, test_docs(), eps);
    CHECK(acc[0].second == evaluate(model, test_docs()).accuracy);
    // The attack pushes the loss up: epsilon 2 loses accuracy or at least costs loss.
    CHECK(acc[1].second <= acc[0].second);
    CHECK_FALSE(
        dynamic_cast<BagClassifier&>(model).embedding->has_output_hook());  // removed afterwards
}

TEST_CASE("examples/text_classifier: the bag shift equals a normalised step on the tokens") {
    // robustness.h: one normalised gradient step of radius eps on a document's n token
    // embeddings moves its mean bag by eps g / (sqrt(n) ||g||). Checked against the step taken
    // on the embedding TABLE (FGM-style: E += eps dL/dE / ||dL/dE||), which is the same thing for
    // a document whose tokens are distinct (each row is used once).
    TextClassifier& model = trained_model();
    const std::vector<int64_t> ids = {5, 17, 42, 3, 99, 250};
    const Tensor tids = Tensor::from_vector(ids, {6});
    const Tensor offsets = Tensor::from_vector(std::vector<int64_t>{0}, {1});
    const Tensor label = Tensor::from_vector(std::vector<int64_t>{1}, {1});
    const double eps = 1.5;

    EncodedDocs one;
    one.ids = ids;
    one.offsets = {0, 6};
    one.labels = {1};
    const DocTensors docs = to_doc_tensors(one, minidl::Device::cpu(), 2);
    const std::vector<double> eps_list = {eps};
    const Tensor via_hook = attack_logits(model, docs, eps_list)[0];

    auto copy = std::dynamic_pointer_cast<BagClassifier>(model.clone());
    REQUIRE(copy != nullptr);
    copy->zero_grad();
    minidl::cross_entropy(copy->forward(tids, offsets), label,
                          {.reduction = minidl::Reduction::Sum})
        .backward();
    Tensor g = copy->embedding->weight.grad();
    const double norm = minidl::global_l2_norm({g});
    REQUIRE(norm > 0);
    {
        minidl::NoGradGuard no_grad;
        Tensor(copy->embedding->weight).add_(g, eps / norm);
    }
    minidl::NoGradGuard no_grad;
    const Tensor via_table = copy->forward(tids, offsets);
    minidl::test::check_close(via_hook, via_table, 1e-5, 1e-5, "attacked logits");
}

TEST_CASE("examples/text_classifier: one-character edits") {
    minidl::Generator gen(7);
    std::set<int64_t> length_changes;
    for (int i = 0; i < 400; ++i) {
        const std::string tok = i % 3 == 0 ? "a" : "spam2023";
        const std::string e = edit_token(tok, gen);
        CAPTURE(tok);
        CAPTURE(e);
        CHECK(osa_distance(tok, e) <= 1);
        for (char ch : e)
            CHECK(((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9')));
        length_changes.insert(static_cast<int64_t>(e.size()) - static_cast<int64_t>(tok.size()));
    }
    // Inserts (+1), deletes (-1) and same-length edits (substitute, swap) all occur.
    CHECK(length_changes == std::set<int64_t>{-1, 0, 1});
    // Substitution never keeps the character: a 1-character token always changes or vanishes.
    for (int i = 0; i < 100; ++i)
        CHECK(edit_token("x", gen) != "x");
}

TEST_CASE(
    "examples/text_classifier: noise with p 0 is the clean test set and p 1 edits every token") {
    const PreparedData& data = sample_data();
    const std::vector<int64_t>& labels = data.corpus->data.labels;
    const EncodedDocs clean =
        noisy_docs(data.corpus->tokens, data.vocab, data.split.test, labels, 0.0, 3);
    CHECK(clean.ids == data.test.ids);
    CHECK(clean.offsets == data.test.offsets);
    CHECK(clean.labels == data.test.labels);
    CHECK(noisy_accuracy(trained_model(), data, 0.0, 3) ==
          evaluate(trained_model(), test_docs()).accuracy);

    const EncodedDocs all =
        noisy_docs(data.corpus->tokens, data.vocab, data.split.test, labels, 1.0, 3);
    // Most edited tokens are unknown words; known ones survive only by chance.
    int64_t unk = 0;
    for (int64_t id : all.ids)
        unk += id == Vocab::kUnk;
    CHECK(static_cast<double>(unk) > 0.5 * static_cast<double>(all.ids.size()));
    // Seeded: the same seed gives the same noise, another seed another.
    const EncodedDocs again =
        noisy_docs(data.corpus->tokens, data.vocab, data.split.test, labels, 0.3, 3);
    const EncodedDocs other =
        noisy_docs(data.corpus->tokens, data.vocab, data.split.test, labels, 0.3, 4);
    CHECK(again.ids ==
          noisy_docs(data.corpus->tokens, data.vocab, data.split.test, labels, 0.3, 3).ids);
    CHECK(again.ids != other.ids);
}

TEST_CASE("examples/text_classifier: flatness with sigma 0 is 0, and grows with sigma") {
    TextClassifier& model = trained_model();
    CHECK(flatness(model, test_docs(), 0.0, 2, 1) == 0.0);
    const double small = flatness(model, test_docs(), 0.05, 3, 1);
    const double large = flatness(model, test_docs(), 0.5, 3, 1);
    CHECK(large > small);
    CHECK(large > 0.0);
}

TEST_CASE("examples/text_classifier: compare writes the table, the HTML page and every run") {
    TempDir dir;
    CompareOptions o;
    o.base.epochs = 2;
    o.base.lr = 1e-2;
    o.data = sample_config();
    o.seeds = 2;
    o.tricks = {"baseline", "fgm", "swa"};
    o.robust.draws = 1;
    o.out_dir = dir.sub("cmp");
    std::ostringstream log;
    const CompareResult r = run_compare(o, log);
    write_report(r, o.out_dir);
    CHECK(r.runs.size() == 3 * 2 * 2);
    CHECK(r.splits == std::vector<std::string>{"random", "temporal"});
    const std::string md = read_file(dir.sub("cmp/report.md"));
    CHECK(md.find("| trick | accuracy % (random) |") != std::string::npos);
    CHECK(md.find("| swa |") != std::string::npos);
    CHECK(md.find("Offline sample") != std::string::npos);
    const std::string html = read_file(dir.sub("cmp/report.html"));
    CHECK(html.find("<svg") != std::string::npos);
    CHECK(html.find("<polyline") != std::string::npos);
    // Self-contained: no script, no external resource.
    CHECK(html.find("<script") == std::string::npos);
    CHECK(html.find("src=") == std::string::npos);
    CHECK(html.find("href=") == std::string::npos);
    const json j = json::parse(read_file(dir.sub("cmp/compare.json")));
    CHECK(j["runs"].size() == 12);
    for (const char* run : {"baseline-random-s0", "fgm-temporal-s1", "swa-random-s1"})
        CHECK(fs::exists(dir.path / "cmp" / "runs" / run / "run.json"));
    // The baseline's time ratio is 1 by construction; the table has one row per trick.
    const TableData t = build_table(r);
    REQUIRE(t.rows.size() == 3);
    CHECK(t.rows[0].back().rfind("1.00", 0) == 0);
    // Without the baseline's runs the time column has nothing to relate to: a dash, not 0.00.
    CompareResult no_baseline = r;
    no_baseline.tricks = {"fgm", "swa"};
    std::erase_if(no_baseline.runs, [](const CompareRun& run) { return run.trick == "baseline"; });
    const TableData u = build_table(no_baseline);
    REQUIRE(u.rows.size() == 2);
    CHECK(u.rows[0].back() == "—");
    CHECK(u.rows[1][1] == t.rows[2][1]);  // the other columns as before
}

TEST_CASE("examples/text_classifier: compare's trick list (each name's flags, amp f16 and bf16)") {
    const std::vector<std::string> all = parse_trick_list("all");
    CHECK(all == std::vector<std::string>{"baseline", "fgm", "pgd", "freelb", "awp", "ema", "swa",
                                          "amp", "bf16", "accum"});
    CHECK(parse_trick_list("bf16,baseline") == std::vector<std::string>{"bf16", "baseline"});
    for (const TrickSpec& t : compare_tricks(5)) {
        TrainConfig c;
        t.apply(c);
        CAPTURE(t.name);
        if (t.name == "amp") CHECK(c.amp == "f16");
        if (t.name == "bf16") CHECK(c.amp == "bf16");
        if (t.name == "swa") CHECK(c.swa_start == 3);
        if (t.name != "amp" && t.name != "bf16") CHECK(c.amp == TrainConfig{}.amp);
    }
    CHECK_THROWS_WITH_AS(parse_trick_list("bf16,bf16"), doctest::Contains("'bf16' given twice"),
                         minidl::ValueError);
    CHECK_THROWS_WITH_AS(
        parse_trick_list("fp8"),
        doctest::Contains("unknown trick 'fp8' (known: baseline, fgm, pgd, freelb, "
                          "awp, ema, swa, amp, bf16, accum, or all)"),
        minidl::ValueError);
}
