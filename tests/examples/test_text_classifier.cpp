// tests/examples/test_text_classifier.cpp — the text_classifier program on the committed offline
// sample (no network): it learns, its --json summary has the documented fields, the same seed
// gives the same figures, an interrupted run resumes bitwise (for every trick family), a saved
// model predicts what the evaluation measured, checkpoints are validated, and the binary itself
// answers --json and Ctrl-C as documented.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/backend.h"
#include "core/check.h"
#include "core/safetensors.h"
#include "examples/text_classifier/checkpoint.h"
#include "examples/text_classifier/io.h"
#include "examples/text_classifier/run.h"
#include "tests/examples/test_text_classifier_support.h"
#include "tests/support/compare.h"

using namespace textclf;
using namespace textclf::test;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// Every tensor of two safetensors files holds the same bytes.
void check_same_tensors(const std::string& a, const std::string& b) {
    const minidl::StateDict x = minidl::load_safetensors(a), y = minidl::load_safetensors(b);
    REQUIRE(x.tensors.size() == y.tensors.size());
    for (const auto& [name, t] : x.tensors) {
        CAPTURE(name);
        REQUIRE(y.contains(name));
        CHECK(minidl::test::bitwise_equal(t, y.at(name)));
    }
}

// The summary without the fields that measure time or memory.
json figures(json s) {
    for (const char* k : {"train_s", "epoch_s", "data_s", "step_ms", "train_samples_per_s",
                          "peak_rss_mb", "startup_s", "robustness_s"})
        s.erase(k);
    return s;
}

}  // namespace

TEST_CASE("examples/text_classifier: training on the sample learns well above the majority") {
    const PreparedData& data = sample_data();
    RunOptions o = sample_run("", 10);
    const RunResult r = run_training(o, &data);
    const int64_t spam = std::count(data.test.labels.begin(), data.test.labels.end(), 1);
    const double majority =
        static_cast<double>(std::max(spam, data.test.size() - spam)) / data.test.size();
    const double acc = r.summary["test_accuracy"].get<double>();
    CAPTURE(majority);
    CAPTURE(acc);
    CHECK(acc >= majority + 0.25);
    // The training loss fell.
    REQUIRE(r.history.size() == 10);
    CHECK(r.history.back().loss < 0.5 * r.history.front().loss);
}

TEST_CASE("examples/text_classifier: the summary line has every documented field") {
    TempDir dir;
    RunOptions o = sample_run(dir.sub("run"), 2);
    o.robustness = true;
    o.robust.draws = 2;
    const RunResult r = run_training(o, &sample_data());
    const json& s = r.summary;
    for (const char* k :
         {"train_docs", "test_docs", "vocab", "epochs", "batch", "threads", "train_s",
          "train_samples_per_s", "test_accuracy", "test_macro_f1", "data_s", "peak_rss_mb",
          "attack_accuracy", "noisy_accuracy", "flatness"}) {
        CAPTURE(k);
        CHECK(s.contains(k));
    }
    CHECK(s["train_docs"] == 192);
    CHECK(s["test_docs"] == 96);
    CHECK(s["vocab"] == 3546);  // text_pipeline_reference.py --sample, as test_text_data.cpp
    CHECK(s["epochs"] == 2);
    CHECK(s["attack_accuracy"].size() == o.robust.epsilons.size());
    CHECK(s["attack_accuracy"].contains("0"));
    CHECK(s["attack_accuracy"]["0"] == s["test_accuracy"]);  // epsilon 0 is the clean model
    CHECK(s["noisy_accuracy"].size() == o.robust.noise.size());
    // The outputs: weights, vocabulary, run record, checkpoint.
    for (const char* f : {"model.safetensors", "vocab.txt", "run.json", "checkpoint.safetensors"})
        CHECK(fs::exists(dir.path / "run" / f));
    const json record = json::parse(read_file(dir.sub("run/run.json")));
    CHECK(record["epochs"].size() == 2);
    CHECK(record["summary"]["test_accuracy"] == s["test_accuracy"]);
    CHECK(record["data"]["classes"] == json({"ham", "spam"}));
    CHECK(!record["loss_curve"].empty());
}

TEST_CASE("examples/text_classifier: the same seed gives the same figures") {
    RunOptions o = sample_run("", 2);
    o.train.fgm = 0.5;
    o.robustness = true;
    o.robust.draws = 2;
    const json a = figures(run_training(o, &sample_data()).summary);
    const json b = figures(run_training(o, &sample_data()).summary);
    CHECK(a == b);
    o.train.seed = 1;
    const json c = figures(run_training(o, &sample_data()).summary);
    CHECK(c["test_loss"] != a["test_loss"]);  // and the seed does matter
}

TEST_CASE("examples/text_classifier: an interrupted run resumes bitwise") {
    struct Case {
        const char* name;
        std::function<void(TrainConfig&)> set;
    };
    const std::vector<Case> cases = {
        {"baseline", [](TrainConfig&) {}},
        {"fgm+ema+swa+amp f16+accum+clip",
         [](TrainConfig& c) {
             c.fgm = 0.5;
             c.ema = 0.9;
             c.ema_warmup = true;
             c.swa_start = 2;
             c.swa_lr = 5e-3;
             c.amp = "f16";
             c.accum = 2;
             c.clip = 1.0;
         }},
        {"pgd", [](TrainConfig& c) { c.pgd = true; }},
        {"freelb", [](TrainConfig& c) { c.freelb = true; }},
        {"awp+bf16",
         [](TrainConfig& c) {
             c.awp = true;
             c.amp = "bf16";
         }},
        // Every replica's FreeLB draws from its own generator: each one is in the checkpoint.
        {"freelb on 2 replicas",
         [](TrainConfig& c) {
             c.freelb = true;
             c.replicas = 2;
         }},
    };
    // 192 training documents in batches of 32: 6 steps per epoch, 18 in 3 epochs. Stopping
    // after 8 steps is mid-epoch; after 12, at an epoch boundary.
    for (const Case& cs : cases) {
        for (int stop_after : {8, 12}) {
            CAPTURE(cs.name);
            CAPTURE(stop_after);
            TempDir dir;
            RunOptions whole = sample_run(dir.sub("whole"));
            cs.set(whole.train);
            const RunResult w = run_training(whole, &sample_data());
            REQUIRE_FALSE(w.interrupted);

            RunOptions part = sample_run(dir.sub("part"));
            cs.set(part.train);
            int calls = 0;
            part.should_stop = [&] { return ++calls > stop_after; };
            const RunResult p = run_training(part, &sample_data());
            REQUIRE(p.interrupted);
            CHECK_FALSE(fs::exists(dir.path / "part" / "model.safetensors"));

            RunOptions resumed;
            resumed.resume_dir = dir.sub("part");
            resumed.progress = false;
            const RunResult r = run_training(resumed, &sample_data());
            REQUIRE_FALSE(r.interrupted);
            check_same_tensors(dir.sub("whole/checkpoint.safetensors"),
                               dir.sub("part/checkpoint.safetensors"));
            check_same_tensors(dir.sub("whole/model.safetensors"),
                               dir.sub("part/model.safetensors"));
            CHECK(figures(w.summary) == figures(r.summary));
            REQUIRE(w.history.size() == r.history.size());
            for (size_t e = 0; e < w.history.size(); ++e)
                CHECK(w.history[e].loss == r.history[e].loss);
            CHECK(w.loss_curve == r.loss_curve);
        }
    }
}

TEST_CASE("examples/text_classifier: predict with a saved model reproduces the evaluation") {
    TempDir dir;
    const PreparedData& data = sample_data();
    const RunResult r = run_training(sample_run(dir.sub("m"), 5), &data);
    const Predictor predictor(dir.sub("m"));
    CHECK(predictor.classes() == std::vector<std::string>{"ham", "spam"});
    CHECK(predictor.vocab().size() == data.vocab.size());
    std::vector<std::string> texts;
    for (int64_t d : data.split.test)
        texts.push_back(data.corpus->data.texts[d]);
    const auto preds = predictor.predict(texts);
    int64_t correct = 0;
    for (size_t i = 0; i < preds.size(); ++i) {
        correct += preds[i].label == data.test.labels[i];
        double total = 0;
        for (double p : preds[i].probabilities)
            total += p;
        CHECK(std::abs(total - 1.0) < 1e-9);
    }
    CHECK(static_cast<double>(correct) / static_cast<double>(preds.size()) ==
          r.summary["test_accuracy"].get<double>());
    // A model folder without run.json is refused with its path.
    fs::remove(dir.path / "m" / "run.json");
    CHECK_THROWS_AS(Predictor(dir.sub("m")), minidl::Error);
}

TEST_CASE("examples/text_classifier: checkpoints are validated before use") {
    TempDir dir;
    run_training(sample_run(dir.sub("a"), 1), &sample_data());
    const std::string path = dir.sub("a/checkpoint.safetensors");
    const Checkpoint c = load_checkpoint(path);
    CHECK(c.config.epochs == 1);
    CHECK(c.run_info["vocab"] == 3546);
    SUBCASE("another version is refused") {
        minidl::StateDict sd = minidl::load_safetensors(path);
        sd.metadata["version"] = "99";
        minidl::save_safetensors(path, sd);
        CHECK_THROWS_WITH_AS(load_checkpoint(path), doctest::Contains("version 99"),
                             minidl::FormatError);
    }
    SUBCASE("a weights-only file is not a checkpoint") {
        CHECK_THROWS_AS(load_checkpoint(dir.sub("a/model.safetensors")), minidl::FormatError);
    }
    SUBCASE("a checkpoint of another configuration does not load into a trainer") {
        TrainConfig other = c.config;
        other.lr = 0.5;
        Trainer t(other, sample_data());
        CHECK_THROWS_AS(t.load_state_dict(c.state), minidl::StateError);
    }
}

TEST_CASE("examples/text_classifier: bad flags and devices fail with a clear message") {
    TrainConfig c;
    c.fgm = 1.0;
    c.pgd = true;
    CHECK_THROWS_WITH_AS(validate(c), doctest::Contains("choose one"), minidl::ValueError);
    c = TrainConfig{};
    c.accum = 64;
    CHECK_THROWS_AS(validate(c), minidl::ValueError);
    c = TrainConfig{};
    c.amp = "f8";
    CHECK_THROWS_AS(validate(c), minidl::ValueError);
    if (!minidl::cuda::is_available()) CHECK_THROWS_AS(resolve_device("cuda"), minidl::DeviceError);
    CHECK(resolve_device("cpu").is_cpu());
}

#ifdef TEXTCLF_BINARY
namespace {

// Runs the program with `args` (stdout to `out_file`), returns the child's pid.
pid_t spawn(const std::vector<std::string>& args, const std::string& out_file) {
    const pid_t pid = ::fork();
    if (pid == 0) {
        std::FILE* f = std::freopen(out_file.c_str(), "w", stdout);
        std::freopen("/dev/null", "w", stderr);
        (void)f;
        std::vector<char*> argv;
        for (const auto& a : args)
            argv.push_back(const_cast<char*>(a.c_str()));
        argv.push_back(nullptr);
        ::execv(TEXTCLF_BINARY, argv.data());
        ::_exit(127);
    }
    return pid;
}

int wait_exit(pid_t pid) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace

TEST_CASE("examples/text_classifier: the binary prints one JSON line and stops cleanly on Ctrl-C") {
    TempDir dir;
    const std::string sample = default_sample_path();
    const pid_t a = spawn({TEXTCLF_BINARY, "--data", sample, "--out", dir.sub("a"), "--json",
                           "--quiet", "--epochs", "2", "--threads", "1"},
                          dir.sub("a.out"));
    REQUIRE(wait_exit(a) == 0);
    const std::string out = read_file(dir.sub("a.out"));
    const json s = json::parse(out);  // exactly one JSON document
    CHECK(s["epochs"] == 2);
    CHECK(s["threads"] == 1);
    CHECK(s.contains("startup_s"));

    // A long run, interrupted: exit status 130 and a loadable checkpoint.
    const pid_t b = spawn({TEXTCLF_BINARY, "--data", sample, "--out", dir.sub("b"), "--quiet",
                           "--epochs", "100000", "--threads", "1"},
                          dir.sub("b.out"));
    const fs::path ckpt = dir.path / "b" / "checkpoint.safetensors";
    // Wait for the first epoch's checkpoint: the run is then surely training.
    for (int i = 0; i < 200 && !fs::exists(ckpt); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ::kill(b, SIGINT);
    CHECK(wait_exit(b) == 130);
    const Checkpoint c = load_checkpoint(ckpt.string());
    CHECK(c.config.epochs == 100000);
}
#endif
