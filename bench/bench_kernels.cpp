// bench/bench_kernels.cpp — micro-benchmarks of minidl's kernels, with a JSON report
// (bench/torch_micro.py measures the same things in PyTorch; bench/compare_pytorch.sh runs both).
//
//   bench_kernels [--device cpu|cuda] [--threads 1,2] [--sizes 256,512,1024,2048]
//                 [--only peak,gemm,triad,adam,averaging,overhead,denormal,step,checks,
//                         attention,checkpoint] [--quick]
//                 [--json FILE]
//
// CPU sections (each at every thread count of --threads):
//   peak      the machine's F32 peak, measured: 16 independent chains of vector FMAs (the widest
//             vector the build targets) per thread; FLOP/s = chains x lanes x 2 x iterations / s.
//             The clock the core actually ran at is peak / (FMA pipes x lanes x 2), printed with
//             the pipe count assumed (2 on AMD Zen and Intel server cores).
//   gemm      C = A B through minidl's matmul op, F32 square n x n x n: GFLOP/s = 2 n^3 / t.
//   triad     a = b + s c over three arrays (STREAM's triad): bytes = 3 x 4 x n / t, once with a
//             working set far larger than the last-level cache (DRAM) and once with the Adam
//             step's working set (the L3-resident case the Adam step is in).
//   adam      one optim::Adam step on a 27,769 x 64 F32 table (the example's embedding):
//             dense gradient (reads p, g, m, v and writes p, m, v: 28 bytes per element) and the
//             row-sparse gradient an embedding backward leaves (ops/embedding.h: only the
//             touched rows' gradients are read; 24 bytes per untouched element).
//   averaging EMA::update and SWA's AveragedModel::update_parameters on the example model's
//             1.78 M parameters (12 bytes per element each), and the three-op average SWA ran
//             before its one-pass kernel (bench_averaging.cpp).
//   overhead  per-op cost for tiny tensors: a + b of two [4] tensors (no grad), and a small
//             linear forward + backward (x [4, 16], w [16, 16] + bias, sum, backward).
//   denormal  (only when named in --only) Adam on the 27,769 x 64 table for 1000 steps with a
//             zero gradient after one random one: the median step time of steps 1-100 against
//             steps 801-900, where the first moments pass through the subnormal range.
//   step      the example model's training step on a synthetic batch (bench_util.h):
//             zero_grad, EmbeddingBag(mean) -> Linear -> ReLU -> Linear, cross-entropy,
//             backward, Adam.
//   checks    that step again with the non-finite checks: grads_all_finite before Adam
//             (example_step_finite_check) and under AnomalyMode (example_step_anomaly); compare
//             with the step row of the same run.
//   attention scaled_dot_product_attention forward + backward, fused and composite, B = 32,
//             2 heads, D = 64, L = 128 and 512, padded lengths in [L/2, L], dropout 0.1
//             (bench_transformer.cpp).
//   checkpoint (only when named in --only, and alone: it reads the allocator's peak counter)
//             BERT-Tiny's peak bytes for one training forward + backward at B = 32, L = 512,
//             with and without gradient_checkpointing.
// --device cuda (bench_gpu.cpp): GEMM TFLOP/s at 4096^3 in F32 (also TF32), F16 and BF16, the
// fused Adam step in GB/s against a device-to-device copy, the example step, and a GEMM-heavy
// MLP step in F32 and under autocast F16/BF16 (sections gemm, copy, adam, step, amp).
//
// Output: a human-readable table on stderr and one JSON document on stdout (or in --json FILE).
#include <immintrin.h>

#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "bench/bench_cpu.h"
#include "bench/bench_util.h"
#include "core/parallel.h"

namespace {

using nlohmann::json;

std::vector<int64_t> parse_list(const std::string& text) {
    std::vector<int64_t> out;
    std::stringstream ss(text);
    std::string item;
    while (std::getline(ss, item, ','))
        if (!item.empty()) out.push_back(std::stoll(item));
    return out;
}

bool wants(const std::string& only, const std::string& section) {
    if (only.empty()) return true;
    return ("," + only + ",").find("," + section + ",") != std::string::npos;
}

}  // namespace

int main(int argc, char** argv) {
    std::string device = "cpu", only, json_path;
    std::vector<int64_t> threads = {1, 2}, sizes = {256, 512, 1024, 2048};
    bool quick = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) {
                std::cerr << "bench_kernels: " << a << " needs a value\n";
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "--device") {
            device = value();
        } else if (a == "--threads") {
            threads = parse_list(value());
        } else if (a == "--sizes") {
            sizes = parse_list(value());
        } else if (a == "--only") {
            only = value();
        } else if (a == "--json") {
            json_path = value();
        } else if (a == "--quick") {
            quick = true;
        } else {
            std::cerr << "usage: bench_kernels [--device cpu|cuda] [--threads 1,2] "
                         "[--sizes 256,512,1024,2048] [--only "
                         "peak,gemm,triad,adam,averaging,overhead,denormal,step,checks,attention,"
                         "checkpoint] "
                         "[--quick] [--json FILE]\n";
            return a == "--help" || a == "-h" ? 0 : 2;
        }
    }

    json report;
    try {
        if (device == "cuda" || device.rfind("cuda:", 0) == 0) {
            report = bench::run_gpu(device, only, quick);
        } else {
            report = {
                {"framework", "minidl"}, {"device", "cpu"}, {"gemm_backend", MINIDL_BENCH_GEMM}};
            const double scale = quick ? 0.25 : 1.0;
            for (int64_t t : threads) {
                minidl::set_num_threads(static_cast<int>(t));
                const int nt = static_cast<int>(t);
                if (wants(only, "peak")) report["peak"].push_back(bench::cpu_peak(nt, scale));
                if (wants(only, "gemm"))
                    for (int64_t n : sizes)
                        report["gemm"].push_back(bench::cpu_gemm(n, nt, scale));
                if (wants(only, "triad"))
                    for (json& j : bench::cpu_triad(nt, scale))
                        report["triad"].push_back(j);
                if (wants(only, "adam"))
                    for (json& j : bench::cpu_adam(nt, scale))
                        report["adam"].push_back(j);
                if (wants(only, "averaging"))
                    for (json& j : bench::cpu_averaging(nt, scale))
                        report["averaging"].push_back(j);
                if (wants(only, "overhead"))
                    for (json& j : bench::cpu_overhead(nt, scale))
                        report["overhead"].push_back(j);
                if (!only.empty() && wants(only, "denormal"))  // ~1000 steps: on request
                    report["denormal"].push_back(bench::cpu_denormal(nt));
                if (wants(only, "step"))
                    report["step"].push_back(bench::example_step("cpu", nt, scale));
                if (wants(only, "checks"))
                    for (json& j : bench::example_step_checks("cpu", nt, scale))
                        report["checks"].push_back(j);
                if (wants(only, "attention"))
                    for (json& j : bench::cpu_attention(nt, scale))
                        report["attention"].push_back(j);
                if (!only.empty() && wants(only, "checkpoint"))  // reads the peak: on request
                    report["checkpoint"].push_back(bench::cpu_checkpoint_memory(nt));
            }
        }
    } catch (const std::exception& e) {
        std::cerr << "bench_kernels: " << e.what() << "\n";
        return 1;
    }
    const std::string text = report.dump(1);
    if (json_path.empty()) {
        std::cout << text << "\n";
    } else {
        std::ofstream(json_path) << text << "\n";
    }
    return 0;
}
