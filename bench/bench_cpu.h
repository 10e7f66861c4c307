// bench/bench_cpu.h — the benchmark sections of bench_kernels (see bench_kernels.cpp for what
// each one measures and how). Each returns its figures as JSON objects; `scale` shortens the
// timed loops (--quick: 0.25).
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>
#include "core/device.h"
#include "core/dtype.h"

namespace bench {

// bench_cpu.cpp
nlohmann::json cpu_peak(int threads, double scale);
nlohmann::json cpu_gemm(int64_t n, int threads, double scale);
std::vector<nlohmann::json> cpu_triad(int threads, double scale);
std::vector<nlohmann::json> cpu_adam(int threads, double scale);
std::vector<nlohmann::json> cpu_overhead(int threads, double scale);
// Adam's step time early and late in 1000 zero-gradient steps (moments going subnormal).
nlohmann::json cpu_denormal(int threads);

// bench_averaging.cpp: EMA::update and AveragedModel::update_parameters (and the three-op
// average it replaced) on the example model's parameters, in GB/s.
std::vector<nlohmann::json> cpu_averaging(int threads, double scale);

// bench_step.cpp: the example's training step on `device` ("cpu", "cuda", "cuda:N").
nlohmann::json example_step(const std::string& device, int threads, double scale);
// The same step under the non-finite checks: with grads_all_finite before Adam (the text
// classifier's check, core/finite.h), and under anomaly mode (core/anomaly.h).
std::vector<nlohmann::json> example_step_checks(const std::string& device, int threads,
                                                double scale);

// bench_transformer.cpp: attention forward + backward (fused and composite) at L = 128 and 512;
// BERT-Tiny's peak allocator bytes with and without activation checkpointing.
std::vector<nlohmann::json> cpu_attention(int threads, double scale);
// The same rows on any device and dtype (the GPU's: F32 and BF16, after a synchronisation).
std::vector<nlohmann::json> attention_rows(minidl::Device device, minidl::DType dtype, int threads,
                                           double scale);
nlohmann::json cpu_checkpoint_memory(int threads);

// bench_gpu.cpp: every GPU section (`only` filters as on the CPU: gemm, copy, adam, step).
nlohmann::json run_gpu(const std::string& device, const std::string& only, bool quick);

}  // namespace bench
