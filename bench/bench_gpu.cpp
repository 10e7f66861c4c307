// bench/bench_gpu.cpp — the GPU sections of bench_kernels (--device cuda), for the run on a
// real GPU (scripts/gpu_check.sh); bench/torch_gpu_bench.py measures the same with PyTorch.
//
//   gemm   C = A B at M = N = K = 4096 through minidl's matmul op (cuBLAS): F32 (full precision,
//          CUBLAS_COMPUTE_32F, as torch.matmul with allow_tf32 = False, PyTorch's default),
//          TF32 (set_allow_tf32(true); torch: allow_tf32 = True), F16 and BF16 (tensor cores,
//          F32 accumulation). TFLOP/s = 2 * 4096^3 / t.
//   copy   dst.copy_(src) of 256 MiB on the device: GB/s = 2 * bytes / t (read + write), the
//          bandwidth the card actually delivers, which the Adam step is measured against.
//   adam   one optim::Adam step on a 27,769 x 64 F32 table with a dense gradient: GB/s =
//          28 bytes per element / t (reads p, g, m, v; writes p, m, v). Its 50 MB stay in an
//          H200's 60 MB L2, so the same step on a 65,536 x 1,024 table (1.9 GB moved) is the
//          one to hold against the memory's bandwidth (adam_large).
//   step   the example model's step (bench_step.cpp) on the device.
//   amp    a GEMM-heavy training step, to measure what autocast buys: x [8192, 4096] ->
//          Linear(4096, 4096) -> ReLU -> Linear(4096, 4096) -> mean of squares, backward (no
//          optimizer: the step is the six GEMMs), in F32 (TF32 off), then under autocast F16 and
//          BF16 (matmuls on tensor cores, F32 weights and gradients). Reported as ms per step and
//          the speed-up over F32.
//   attention  scaled_dot_product_attention forward + backward (bench_transformer.cpp's shapes:
//          B = 32, 2 heads, D = 64, L = 128 and 512, padded keys masked, dropout 0.1), the fused
//          kernels (ops/cuda/attention.cu) and the composite, in F32 and BF16.
// Every call is followed by a device synchronisation inside the timed region (bench_util.h);
// each section runs for about a second, so the whole GPU run takes a few seconds.
#include <iostream>

#include "bench/bench_cpu.h"
#include "bench/bench_util.h"
#include "core/autograd.h"
#include "core/backend.h"
#include "core/determinism.h"
#include "core/kernels.h"
#include "nn/linear.h"
#include "ops/ops.h"
#include "optim/adam.h"
#include "tricks/amp.h"

namespace bench {

using minidl::Device;
using minidl::DType;
using minidl::Tensor;
using nlohmann::json;

namespace {

bool wants(const std::string& only, const std::string& section) {
    return only.empty() || ("," + only + ",").find("," + section + ",") != std::string::npos;
}

json gpu_gemm(Device device, const char* name, DType dtype, bool tf32, double scale) {
    minidl::NoGradGuard no_grad;
    const bool saved_tf32 = minidl::allow_tf32();
    minidl::set_allow_tf32(tf32);
    constexpr int64_t n = 4096;
    minidl::Generator gen(1);
    const Tensor a = Tensor::randn({n, n}, &gen, DType::F32, device).to(dtype);
    const Tensor b = Tensor::randn({n, n}, &gen, DType::F32, device).to(dtype);
    auto sync = [&] { minidl::kernels_for(device).synchronize(); };
    const Timing t =
        time_calls([&] { Tensor c = minidl::matmul(a, b); }, 0.5 * scale, 10, 400, 3, sync);
    minidl::set_allow_tf32(saved_tf32);
    const double flop = 2.0 * static_cast<double>(n) * n * n;
    const json j = {{"name", name},
                    {"n", n},
                    {"ms", 1e3 * t.median_s},
                    {"tflops", flop / t.median_s / 1e12},
                    {"best_tflops", flop / t.min_s / 1e12},
                    {"reps", t.reps}};
    std::cerr << "gemm " << name << " 4096^3: " << j["tflops"] << " TFLOP/s\n";
    return j;
}

json gpu_copy(Device device, double scale) {
    minidl::NoGradGuard no_grad;
    constexpr int64_t n = int64_t{64} << 20;  // 64 Mi floats = 256 MiB
    const Tensor src = Tensor::ones({n}, DType::F32, device);
    Tensor dst = Tensor::empty({n}, DType::F32, device);
    auto sync = [&] { minidl::kernels_for(device).synchronize(); };
    const Timing t = time_calls([&] { dst.copy_(src); }, 0.5 * scale, 10, 1000, 3, sync);
    const double bytes = 2.0 * 4.0 * static_cast<double>(n);
    const json j = {{"name", "device_copy"},
                    {"bytes", bytes},
                    {"ms", 1e3 * t.median_s},
                    {"gb_per_s", bytes / t.median_s / 1e9},
                    {"best_gb_per_s", bytes / t.min_s / 1e9}};
    std::cerr << "device copy 256 MiB: " << j["gb_per_s"] << " GB/s\n";
    return j;
}

json gpu_adam(Device device, int64_t rows, int64_t cols, const std::string& name, double scale) {
    minidl::NoGradGuard no_grad;
    minidl::Generator gen(2);
    Tensor p = Tensor::randn({rows, cols}, &gen, DType::F32, device);
    p.set_requires_grad();
    p.set_grad(Tensor::randn({rows, cols}, &gen, DType::F32, device, 0.0, 0.01));
    minidl::optim::Adam opt({p}, minidl::optim::AdamOptions{.lr = 1e-3});
    auto sync = [&] { minidl::kernels_for(device).synchronize(); };
    const Timing t = time_calls([&] { opt.step(); }, 0.5 * scale, 20, 5000, 3, sync);
    const double bytes = 28.0 * static_cast<double>(rows * cols);
    const json j = {{"name", name},
                    {"numel", rows * cols},
                    {"bytes", bytes},
                    {"ms", 1e3 * t.median_s},
                    {"gb_per_s", bytes / t.median_s / 1e9},
                    {"best_gb_per_s", bytes / t.min_s / 1e9}};
    std::cerr << "adam " << rows << " x " << cols << ": " << j["ms"] << " ms, " << j["gb_per_s"]
              << " GB/s\n";
    return j;
}

// One forward + backward of the two-layer MLP; `low` is the autocast dtype, F32 for none.
json gpu_amp_step(Device device, const char* name, DType low, double scale) {
    constexpr int64_t batch = 8192, width = 4096;
    minidl::manual_seed(3);
    minidl::nn::Linear fc1(width, width), fc2(width, width);
    fc1.to(device);
    fc2.to(device);
    minidl::Generator gen(4);
    const Tensor x = Tensor::randn({batch, width}, &gen, DType::F32, device);
    const bool saved_tf32 = minidl::allow_tf32();
    minidl::set_allow_tf32(false);
    auto step = [&] {
        fc1.zero_grad();
        fc2.zero_grad();
        Tensor loss;
        {
            minidl::amp::Autocast autocast(low, low != DType::F32);
            const Tensor y = fc2.forward(minidl::relu(fc1.forward(x)));
            loss = minidl::mean(minidl::mul(y, y));
        }
        loss.backward();
    };
    auto sync = [&] { minidl::kernels_for(device).synchronize(); };
    const Timing t = time_calls(step, 1.0 * scale, 5, 200, 2, sync);
    minidl::set_allow_tf32(saved_tf32);
    const double flop = 6.0 * 2.0 * static_cast<double>(batch) * width * width;
    const json j = {
        {"name", name},           {"batch", batch},           {"width", width},
        {"ms", 1e3 * t.median_s}, {"best_ms", 1e3 * t.min_s}, {"tflops", flop / t.median_s / 1e12}};
    std::cerr << "amp mlp step " << name << ": " << j["ms"] << " ms\n";
    return j;
}

}  // namespace

json run_gpu(const std::string& device_name, const std::string& only, bool quick) {
    const Device device = Device::parse(device_name);
    const int count = minidl::cuda::device_count();
    if (!minidl::cuda::built_with_cuda() || device.index >= count)
        throw std::runtime_error("--device " + device_name + ": no usable CUDA device (built " +
                                 (minidl::cuda::built_with_cuda() ? "with" : "without") +
                                 " CUDA, " + std::to_string(count) + " device(s))");
    const double scale = quick ? 0.25 : 1.0;
    json report = {{"framework", "minidl"},
                   {"device", device.str()},
                   {"device_name", minidl::cuda::device_name(device.index)}};
    if (wants(only, "gemm")) {
        report["gemm"].push_back(gpu_gemm(device, "fp32", DType::F32, false, scale));
        report["gemm"].push_back(gpu_gemm(device, "tf32", DType::F32, true, scale));
        report["gemm"].push_back(gpu_gemm(device, "fp16", DType::F16, false, scale));
        report["gemm"].push_back(gpu_gemm(device, "bf16", DType::BF16, false, scale));
    }
    if (wants(only, "copy")) report["copy"] = gpu_copy(device, scale);
    if (wants(only, "adam")) {
        report["adam"] = gpu_adam(device, ExampleBatch::kVocab, ExampleBatch::kDim,
                                  "adam_dense_28k_x_64", scale);
        report["adam_large"] = gpu_adam(device, 65536, 1024, "adam_dense_64m", scale);
    }
    if (wants(only, "step")) report["step"] = example_step(device.str(), 0, scale);
    if (wants(only, "attention"))
        for (DType dtype : {DType::F32, DType::BF16})
            for (const json& row : attention_rows(device, dtype, 0, scale))
                report["attention"].push_back(row);
    if (wants(only, "amp")) {
        report["amp"].push_back(gpu_amp_step(device, "fp32", DType::F32, scale));
        report["amp"].push_back(gpu_amp_step(device, "fp16", DType::F16, scale));
        report["amp"].push_back(gpu_amp_step(device, "bf16", DType::BF16, scale));
    }
    return report;
}

}  // namespace bench
