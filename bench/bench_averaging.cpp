// bench/bench_averaging.cpp — the weight-averaging tricks' per-update cost on the example
// model's parameters, in GB/s against the triad rows of the same run.
//
// Model: examples/text_classifier's bag model built from nn modules (as bench_step.cpp):
// EmbeddingBag(27,769, 64) -> Linear(64, 64) -> Linear(64, 2), 1,781,506 F32 parameters (7.1 MB).
//   ema            tricks::EMA::update():  shadow = d shadow + (1 - d) p  (one pass per tensor:
//                  reads p and the shadow, writes the shadow: 12 bytes per element)
//   swa            tricks::AveragedModel::update_parameters(): avg += (p - avg) / (n + 1) (one
//                  pass per tensor through Kernels::swa_update: 12 bytes per element)
//   swa_three_ops  the same average as sub, div and add plus a copy into the average (what
//                  AveragedModel ran before swa_update): the same 12 bytes of work, reported in
//                  the same units, so that the two rows compare time for the same result
// bench/torch_micro.py --only averaging times the write-up's EMA class and PyTorch's
// AveragedModel on the same model.
#include <iostream>

#include "bench/bench_cpu.h"
#include "bench/bench_util.h"
#include "core/autograd.h"
#include "nn/embedding.h"
#include "nn/linear.h"
#include "ops/ops.h"
#include "tricks/ema.h"
#include "tricks/swa.h"

namespace bench {

using minidl::Tensor;
using nlohmann::json;

namespace {

struct BagModel : minidl::nn::Cloneable<BagModel> {
    BagModel() { reset(); }
    void reset() override {
        constexpr int64_t V = ExampleBatch::kVocab, C = ExampleBatch::kDim;
        constexpr int64_t H = ExampleBatch::kHidden, K = ExampleBatch::kClasses;
        embedding = register_module(
            "embedding", std::make_shared<minidl::nn::EmbeddingBag>(V, C, minidl::BagMode::Mean));
        fc1 = register_module("fc1", std::make_shared<minidl::nn::Linear>(C, H));
        fc2 = register_module("fc2", std::make_shared<minidl::nn::Linear>(H, K));
    }
    std::shared_ptr<minidl::nn::EmbeddingBag> embedding;
    std::shared_ptr<minidl::nn::Linear> fc1, fc2;
};

json row(const char* name, int threads, int64_t numel, const Timing& t) {
    const double bytes = 12.0 * static_cast<double>(numel);
    json j = {{"name", name},
              {"threads", threads},
              {"numel", numel},
              {"ms", 1e3 * t.median_s},
              {"bytes", bytes},
              {"gb_per_s", bytes / t.median_s / 1e9},
              {"best_gb_per_s", bytes / t.min_s / 1e9}};
    std::cerr << "averaging " << name << " threads=" << threads << ": " << 1e3 * t.median_s
              << " ms, " << j["gb_per_s"] << " GB/s\n";
    return j;
}

}  // namespace

std::vector<json> cpu_averaging(int threads, double scale) {
    minidl::manual_seed(3);
    BagModel model;
    int64_t numel = 0;
    for (const Tensor& p : model.parameters())
        numel += p.numel();
    std::vector<json> out;

    minidl::tricks::EMA ema(model, {.decay = 0.999});
    out.push_back(
        row("ema", threads, numel, time_calls([&] { ema.update(); }, 0.5 * scale, 10, 5000)));

    minidl::tricks::AveragedModel swa(model);
    swa.update_parameters(model);  // the first update copies; the timed ones average
    out.push_back(row("swa", threads, numel,
                      time_calls([&] { swa.update_parameters(model); }, 0.5 * scale, 10, 5000)));

    const auto mine = swa.module().parameters();
    const auto theirs = model.parameters();
    int64_t n_averaged = swa.n_averaged();
    auto three_ops = [&] {
        minidl::NoGradGuard no_grad;
        for (size_t i = 0; i < mine.size(); ++i) {
            Tensor avg = mine[i];
            avg.copy_(avg + (theirs[i] - avg) / static_cast<double>(n_averaged + 1));
        }
        ++n_averaged;
    };
    out.push_back(
        row("swa_three_ops", threads, numel, time_calls(three_ops, 0.5 * scale, 10, 5000)));
    return out;
}

}  // namespace bench
