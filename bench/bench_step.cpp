// bench/bench_step.cpp — the example model's training step on a synthetic batch, on any device.
//
// Model and optimiser of examples/text_classifier (built here from nn modules so the bench does
// not depend on the example): EmbeddingBag(V, 64, mean) -> Linear(64, 64) -> ReLU ->
// Linear(64, 2), cross-entropy, Adam(lr 1e-3). One step = zero_grad, forward, backward, Adam —
// what the example's loop does per batch, without the batching of the data. The batch is
// bench_util.h's ExampleBatch (the same ids as bench/torch_micro.py and torch_gpu_bench.py).
// Timed in chunks of kChunk steps ending with a device synchronisation; ms per step = the
// median chunk time / kChunk. The checks rows time the same step with grads_all_finite before
// Adam (what examples/text_classifier does without a loss scaler) and under AnomalyMode.
#include <iostream>

#include "bench/bench_cpu.h"
#include "bench/bench_util.h"
#include "core/anomaly.h"
#include "core/backend.h"
#include "core/finite.h"
#include "core/kernels.h"
#include "core/row_grad.h"
#include "nn/embedding.h"
#include "nn/linear.h"
#include "ops/ops.h"
#include "optim/adam.h"

namespace bench {

using minidl::Device;
using minidl::DType;
using minidl::Tensor;

namespace {

enum class Check { None, FiniteGrads, Anomaly };

nlohmann::json time_example_step(const std::string& device_name, int threads, double scale,
                                 const char* name, Check check) {
    const Device device = Device::parse(device_name);
    constexpr int64_t V = ExampleBatch::kVocab, C = ExampleBatch::kDim;
    constexpr int64_t H = ExampleBatch::kHidden, K = ExampleBatch::kClasses;
    minidl::manual_seed(0);
    minidl::nn::EmbeddingBag embedding(V, C, minidl::BagMode::Mean);
    minidl::nn::Linear fc1(C, H), fc2(H, K);
    embedding.to(device);
    fc1.to(device);
    fc2.to(device);
    std::vector<Tensor> params = {embedding.weight};
    for (const Tensor& p : fc1.parameters())
        params.push_back(p);
    for (const Tensor& p : fc2.parameters())
        params.push_back(p);
    minidl::optim::Adam opt(params, minidl::optim::AdamOptions{.lr = 1e-3});

    const ExampleBatch batch;
    const auto L = static_cast<int64_t>(batch.ids.size());
    const Tensor ids = Tensor::from_vector(batch.ids, {L}, DType::I64, device);
    const Tensor offsets = Tensor::from_vector(
        batch.offsets, {static_cast<int64_t>(batch.offsets.size())}, DType::I64, device);
    const Tensor labels = Tensor::from_vector(
        batch.labels, {static_cast<int64_t>(batch.labels.size())}, DType::I64, device);

    minidl::AnomalyMode anomaly(check == Check::Anomaly);
    bool all_finite = true;
    auto step = [&] {
        opt.zero_grad();
        const Tensor logits = fc2.forward(minidl::relu(fc1.forward(embedding(ids, offsets))));
        minidl::cross_entropy(logits, labels).backward();
        if (check == Check::FiniteGrads)
            all_finite = all_finite && minidl::grads_all_finite(params);
        opt.step();
    };
    auto sync = [&] { minidl::kernels_for(device).synchronize(); };
    const int chunk = device.is_cuda() ? 50 : 10;
    const Timing t = time_calls(
        [&] {
            for (int i = 0; i < chunk; ++i)
                step();
        },
        (device.is_cuda() ? 1.0 : 1.5) * scale, 5, 200, 2, sync);
    const double ms = 1e3 * t.median_s / chunk;
    if (!all_finite) std::cerr << name << ": a gradient was not finite\n";
    const nlohmann::json j = {{"name", name},
                              {"device", device.str()},
                              {"threads", threads},
                              {"ids_per_batch", L},
                              {"row_sparse_grads", minidl::row_sparse_grads()},
                              {"ms", ms},
                              {"best_ms", 1e3 * t.min_s / chunk},
                              {"steps_per_s", 1e3 / ms}};
    std::cerr << name << " " << device.str() << " threads=" << threads << ": " << ms << " ms\n";
    return j;
}

}  // namespace

nlohmann::json example_step(const std::string& device_name, int threads, double scale) {
    return time_example_step(device_name, threads, scale, "example_step", Check::None);
}

std::vector<nlohmann::json> example_step_checks(const std::string& device_name, int threads,
                                                double scale) {
    return {time_example_step(device_name, threads, scale, "example_step_finite_check",
                              Check::FiniteGrads),
            time_example_step(device_name, threads, scale, "example_step_anomaly", Check::Anomaly)};
}

}  // namespace bench
