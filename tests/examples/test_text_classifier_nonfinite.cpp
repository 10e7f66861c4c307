// tests/examples/test_text_classifier_nonfinite.cpp — a non-finite loss or gradient in the
// text_classifier's training (train.h): --on-nonfinite stop ends the run naming the epoch and the
// global step, before the optimizer step and without touching the last checkpoint; skip leaves
// weights, Adam moments and the EMA shadow bitwise as they were, counts the batch and reports it;
// no checkpoint or model file is ever written with a NaN/inf tensor. The NaN is injected through
// TrainHooks::map_loss (a NaN loss, or a finite loss whose gradient is NaN).
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "core/finite.h"
#include "core/safetensors.h"
#include "examples/text_classifier/checkpoint.h"
#include "examples/text_classifier/io.h"
#include "examples/text_classifier/run.h"
#include "ops/elementwise.h"
#include "tests/examples/test_text_classifier_support.h"
#include "tests/support/compare.h"

using namespace textclf;
using namespace textclf::test;
using minidl::Tensor;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// A map_loss that leaves the loss alone except at the listed calls (1-based): there it returns
// NaN (kind "loss"), or the loss plus sqrt(0 * loss), whose value is the loss and whose gradient
// is NaN (sqrt's derivative at 0 is infinite, times 0) (kind "gradient").
// Replica threads call it concurrently: the counter is atomic.
std::function<Tensor(const Tensor&)> inject(std::vector<int> at, std::string kind) {
    auto calls = std::make_shared<std::atomic<int>>(0);
    return [at, kind, calls](const Tensor& loss) {
        const int call = ++*calls;
        if (std::find(at.begin(), at.end(), call) == at.end()) return loss;
        if (kind == "loss") return loss * std::nan("");
        return loss + minidl::sqrt(loss * 0.0);
    };
}

// Every tensor of the state, cloned (state_dict() aliases the live tensors).
std::map<std::string, Tensor> snapshot(const Trainer& t) {
    std::map<std::string, Tensor> out;
    for (const auto& [name, tensor] : t.state_dict().tensors)
        out[name] = tensor.detach().clone();
    return out;
}

}  // namespace

TEST_CASE(
    "examples/text_classifier: a non-finite loss or gradient stops training naming the step") {
    for (const char* kind : {"loss", "gradient"}) {
        CAPTURE(kind);
        TrainConfig c;
        c.epochs = 2;
        c.lr = 1e-2;
        Trainer t(c, sample_data());
        TrainHooks hooks;
        hooks.map_loss = inject({3}, kind);
        std::map<std::string, Tensor> before;
        hooks.should_stop = [&] {
            if (t.global_step() == 2) before = snapshot(t);  // just before the bad step
            return false;
        };
        std::string message;
        try {
            t.run(hooks);
        } catch (const minidl::NonFiniteError& e) {
            message = e.what();
        }
        CAPTURE(message);
        CHECK(message.find(std::string("non-finite ") + kind) != std::string::npos);
        CHECK(message.find("at epoch 1, global step 3 (batch 3 of ") != std::string::npos);
        // Stopped before the optimizer step: the weights and moments are those after step 2.
        for (const auto& [name, tensor] : t.state_dict().tensors) {
            CAPTURE(name);
            CHECK(minidl::test::bitwise_equal(tensor, before.at(name)));
        }
    }
}

TEST_CASE("examples/text_classifier: --on-nonfinite skip leaves the bad batch out, bitwise") {
    TrainConfig c;
    c.epochs = 2;
    c.lr = 1e-2;
    c.ema = 0.9;
    c.swa_start = 1;
    c.on_nonfinite = "skip";
    Trainer t(c, sample_data());
    TrainHooks hooks;
    hooks.map_loss = inject({3, 5}, "gradient");
    std::map<std::string, Tensor> before, after;
    std::map<std::string, std::string> meta_before, meta_after;
    hooks.should_stop = [&] {
        if (t.global_step() == 4) {  // just before the bad step 5 (the batch after step 4)
            before = snapshot(t);
            meta_before = t.state_dict().metadata;
        }
        if (t.global_step() == 5) {
            after = snapshot(t);
            meta_after = t.state_dict().metadata;
        }
        return false;
    };
    REQUIRE(t.run(hooks));
    REQUIRE(!before.empty());
    REQUIRE(!after.empty());
    // Weights, Adam moments, the EMA shadow and the SWA average: all exactly as before it.
    for (const auto& [name, tensor] : before) {
        CAPTURE(name);
        CHECK(minidl::test::bitwise_equal(tensor, after.at(name)));
    }
    // Adam's step count and the EMA/SWA counters did not advance either.
    for (const auto& [key, value] : meta_before)
        if (key.rfind("optimizer.", 0) == 0 || key.rfind("ema.", 0) == 0 ||
            key.rfind("swa", 0) == 0) {
            CAPTURE(key);
            CHECK(meta_after.at(key) == value);
        }
    CHECK(meta_after.at("position.global_step") == "5");
    const EpochRecord& e1 = t.history().at(0);
    CHECK(e1.nonfinite_skipped == 2);
    CHECK(e1.skipped_steps == 2);
    CHECK(std::isfinite(e1.loss));
    CHECK(t.history().at(1).nonfinite_skipped == 0);
    for (const auto& [name, tensor] : t.state_dict().tensors) {
        CAPTURE(name);
        CHECK(minidl::all_finite(tensor));
    }
}

TEST_CASE("examples/text_classifier: the skip count is in the summary and run.json") {
    TempDir dir;
    RunOptions o = sample_run(dir.sub("run"), 2);
    o.train.on_nonfinite = "skip";
    o.map_loss = inject({2, 4, 11}, "loss");
    const RunResult r = run_training(o, &sample_data());
    CHECK(r.summary["nonfinite_skipped"] == 3);
    CHECK(r.summary["on_nonfinite"] == "skip");
    const json record = json::parse(read_file(dir.sub("run/run.json")));
    CHECK(record["summary"]["nonfinite_skipped"] == 3);
    CHECK(record["config"]["on_nonfinite"] == "skip");
    int64_t per_epoch = 0;
    for (const auto& e : record["epochs"])
        per_epoch += e["nonfinite_skipped"].get<int64_t>();
    CHECK(per_epoch == 3);
    CHECK(std::isfinite(r.summary["test_loss"].get<double>()));
    // The published files hold only finite tensors.
    for (const char* file : {"run/model.safetensors", "run/checkpoint.safetensors"})
        for (const auto& [name, tensor] : minidl::load_safetensors(dir.sub(file)).tensors) {
            CAPTURE(name);
            CHECK(minidl::all_finite(tensor));
        }
}

TEST_CASE("examples/text_classifier: a stopped run keeps its last good checkpoint") {
    TempDir dir;
    RunOptions o = sample_run(dir.sub("run"), 3);
    auto calls = std::make_shared<std::atomic<int>>(0);
    // Count the steps of one epoch first, then inject into the second epoch.
    {
        RunOptions count = sample_run("", 1);
        count.map_loss = [calls](const Tensor& l) {
            ++*calls;
            return l;
        };
        run_training(count, &sample_data());
    }
    const int steps_per_epoch = *calls;
    o.map_loss = inject({steps_per_epoch + 2}, "loss");
    const std::string where = "at epoch 2, global step " + std::to_string(steps_per_epoch + 2);
    CHECK_THROWS_WITH_AS(run_training(o, &sample_data()), doctest::Contains(where.c_str()),
                         minidl::NonFiniteError);
    const Checkpoint ckpt = load_checkpoint(dir.sub("run/checkpoint.safetensors"));
    CHECK(ckpt.state.meta("position.epoch") == "1");
    for (const auto& [name, tensor] : ckpt.state.tensors)
        CHECK(minidl::all_finite(tensor));
    CHECK_FALSE(fs::exists(dir.sub("run/model.safetensors")));
}

TEST_CASE("examples/text_classifier: NaN weights are never written to a checkpoint or model") {
    TempDir dir;
    TrainConfig c;
    c.epochs = 1;
    Trainer t(c, sample_data());
    const std::string ckpt = dir.sub("checkpoint.safetensors"),
                      weights = dir.sub("model.safetensors");
    save_checkpoint(ckpt, t, json::object());
    save_weights(t.model(), weights);
    const std::string ckpt_bytes = read_file(ckpt), weights_bytes = read_file(weights);
    dynamic_cast<BagClassifier&>(t.model()).fc1->weight.raw<float>()[5] = std::nanf("");
    CHECK_THROWS_WITH_AS(save_checkpoint(ckpt, t, json::object()),
                         doctest::Contains("tensor 'model.fc1.weight' [64, 64] holds 1 NaN"),
                         minidl::NonFiniteError);
    CHECK_THROWS_WITH_AS(save_weights(t.model(), weights),
                         doctest::Contains("tensor 'fc1.weight' [64, 64] holds 1 NaN"),
                         minidl::NonFiniteError);
    // The files already there are untouched, and no temporary file is left beside them.
    CHECK(read_file(ckpt) == ckpt_bytes);
    CHECK(read_file(weights) == weights_bytes);
    CHECK(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()) == 2);
}

TEST_CASE("examples/text_classifier: --on-nonfinite values and combinations are validated") {
    TrainConfig c;
    c.on_nonfinite = "ignore";
    CHECK_THROWS_WITH_AS(validate(c), doctest::Contains("stop or skip"), minidl::ValueError);
    c.on_nonfinite = "skip";
    CHECK_NOTHROW(validate(c));
    c.replicas = 2;  // data parallelism checks the reduced gradient: both policies work there
    CHECK_NOTHROW(validate(c));
    c.replicas = 1;
    c.distributed = true;
    CHECK_NOTHROW(validate(c));
    // The policy is not part of the trajectory: a run resumes under the other one.
    TrainConfig stop;
    stop.epochs = 1;
    Trainer a(stop, sample_data());
    TrainConfig skip = stop;
    skip.on_nonfinite = "skip";
    Trainer b(skip, sample_data());
    CHECK_NOTHROW(b.load_state_dict(a.state_dict()));
}

TEST_CASE("examples/text_classifier: with replicas a non-finite step stops before the update") {
    TrainConfig c;
    c.epochs = 1;
    c.replicas = 2;
    Trainer t(c, sample_data());
    TrainHooks hooks;
    hooks.map_loss = inject({5}, "loss");  // replica calls: one of step 3's two
    std::map<std::string, Tensor> before;
    hooks.should_stop = [&] {
        if (t.global_step() == 2) before = snapshot(t);
        return false;
    };
    CHECK_THROWS_WITH_AS(t.run(hooks), doctest::Contains("non-finite loss (NaN) at epoch 1"),
                         minidl::NonFiniteError);
    for (const auto& [name, tensor] : t.state_dict().tensors) {
        CAPTURE(name);
        CHECK(minidl::test::bitwise_equal(tensor, before.at(name)));
    }
}

TEST_CASE("examples/text_classifier: with replicas --on-nonfinite skip leaves the batch out") {
    // --replicas 2 is bitwise --accum 2 (the replicas' gradients are summed in shard order), so
    // with the same batch skipped the two runs must still end bitwise equal: a replica that had
    // stepped, or kept another weight, would make them differ from step 3 on.
    TrainConfig c;
    c.epochs = 1;
    c.lr = 1e-2;
    c.ema = 0.9;
    c.on_nonfinite = "skip";
    TrainConfig accum = c, replicas = c;
    accum.accum = 2;
    replicas.replicas = 2;
    Trainer a(accum, sample_data()), b(replicas, sample_data());
    TrainHooks ha, hb;
    // The 5th loss is one of step 3's two micro-batches (or replicas); its gradient is NaN.
    ha.map_loss = inject({5}, "gradient");
    hb.map_loss = inject({5}, "gradient");
    std::map<std::string, Tensor> before, after;
    hb.should_stop = [&] {
        if (b.global_step() == 2) before = snapshot(b);
        if (b.global_step() == 3) after = snapshot(b);
        return false;
    };
    REQUIRE(a.run(ha));
    REQUIRE(b.run(hb));
    REQUIRE(!after.empty());
    for (const auto& [name, tensor] : before) {
        CAPTURE(name);
        CHECK(minidl::test::bitwise_equal(tensor, after.at(name)));
    }
    CHECK(a.history().at(0).nonfinite_skipped == 1);
    CHECK(b.history().at(0).nonfinite_skipped == 1);
    const auto final_a = a.state_dict().tensors, final_b = b.state_dict().tensors;
    REQUIRE(final_a.size() == final_b.size());
    for (const auto& [name, tensor] : final_b) {
        CAPTURE(name);
        CHECK(minidl::all_finite(tensor));
        CHECK(minidl::test::bitwise_equal(tensor, final_a.at(name)));
    }
}

#ifdef TEXTCLF_BINARY
namespace {

// Runs the program with `args`; returns its exit status and what it wrote to stderr.
std::pair<int, std::string> run_binary(const std::vector<std::string>& args,
                                       const std::string& err_file) {
    std::fflush(nullptr);  // the child must not repeat what this process has buffered
    const pid_t pid = ::fork();
    if (pid == 0) {
        if (!std::freopen("/dev/null", "w", stdout) || !std::freopen(err_file.c_str(), "w", stderr))
            ::_exit(126);
        std::vector<char*> argv{const_cast<char*>(TEXTCLF_BINARY)};
        for (const auto& a : args)
            argv.push_back(const_cast<char*>(a.c_str()));
        argv.push_back(nullptr);
        ::execv(TEXTCLF_BINARY, argv.data());
        ::_exit(127);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), read_file(err_file)};
}

}  // namespace

TEST_CASE("examples/text_classifier: the binary stops on a non-finite loss with status 1") {
    TempDir dir;
    const std::vector<std::string> common = {
        "--data", default_sample_path(), "--quiet", "--threads", "1", "--epochs", "2"};
    // Adam at lr 1e38 overflows the weights in its first step: the second step's loss is NaN.
    auto args = [&](const std::string& out, std::vector<std::string> more) {
        std::vector<std::string> a = common;
        a.insert(a.end(), {"--lr", "1e38", "--out", dir.sub(out)});
        a.insert(a.end(), more.begin(), more.end());
        return a;
    };
    const auto [stop_status, stop_err] = run_binary(args("stop", {}), dir.sub("stop.err"));
    CAPTURE(stop_err);
    CHECK(stop_status == 1);
    CHECK(stop_err.find("non-finite loss (NaN) at epoch 1, global step 2") != std::string::npos);
    CHECK_FALSE(fs::exists(dir.sub("stop/checkpoint.safetensors")));
    CHECK_FALSE(fs::exists(dir.sub("stop/model.safetensors")));
    // Skipping cannot save a model whose weights the optimizer itself overflowed: the checkpoint
    // writer refuses, naming the tensor, and nothing is written.
    const auto [skip_status, skip_err] =
        run_binary(args("skip", {"--on-nonfinite", "skip"}), dir.sub("skip.err"));
    CAPTURE(skip_err);
    CHECK(skip_status == 1);
    CHECK(skip_err.find("tensor 'model.embedding.weight'") != std::string::npos);
    CHECK(skip_err.find("refusing to write it") != std::string::npos);
    CHECK_FALSE(fs::exists(dir.sub("skip/checkpoint.safetensors")));
    // A bad value is a command-line error.
    CHECK(run_binary({"--on-nonfinite", "ignore"}, dir.sub("bad.err")).first == 2);
}
#endif
