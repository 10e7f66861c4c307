// bench/bench_cpu.cpp — the CPU sections of bench_kernels: measured peak, GEMM, triad
// bandwidth, the Adam step, per-op overhead (what each measures: bench_kernels.cpp).
#include <immintrin.h>

#include <algorithm>
#include <iostream>
#include <memory>
#include <thread>

#include "bench/bench_cpu.h"
#include "bench/bench_util.h"
#include "core/autograd.h"
#include "core/parallel.h"
#include "core/row_grad.h"
#include "core/tensor.h"
#include "ops/ops.h"
#include "optim/adam.h"

#if defined(MINIDL_BENCH_OPENBLAS)
// OpenBLAS, which the library links for its GEMM (MINIDL_GEMM_BACKEND): the Fortran sgemm and
// the pool size (declared here: cblas.h's location differs between Debian's OpenBLAS variants).
extern "C" void sgemm_(const char* transa, const char* transb, const int* m, const int* n,
                       const int* k, const float* alpha, const float* a, const int* lda,
                       const float* b, const int* ldb, const float* beta, float* c, const int* ldc);
extern "C" void openblas_set_num_threads(int n);
#endif

namespace bench {

using minidl::Tensor;
using nlohmann::json;

namespace {

// ---- peak: independent FMA chains ----------------------------------------------------------

constexpr int kChains = 16;  // > FMA latency (4) x pipes (2): enough to keep both pipes busy

// Runs `iters` rounds of kChains vector FMAs and returns a value that depends on all of them
// (so the loop is not optimised away). Lanes: 16 with AVX-512, 8 with AVX2 + FMA.
template <int kLanes>
float fma_chains(int64_t iters) {
    static_assert(kLanes == 8 || kLanes == 16);
    float out = 0;
    if constexpr (kLanes == 16) {
#if defined(__AVX512F__)
        __m512 acc[kChains];
        for (int j = 0; j < kChains; ++j)
            acc[j] = _mm512_set1_ps(static_cast<float>(j));
        const __m512 mul = _mm512_set1_ps(0.9999999f), add = _mm512_set1_ps(1e-7f);
        for (int64_t i = 0; i < iters; ++i)
            for (int j = 0; j < kChains; ++j)
                acc[j] = _mm512_fmadd_ps(acc[j], mul, add);
        alignas(64) float lanes[16];
        for (int j = 0; j < kChains; ++j) {
            _mm512_store_ps(lanes, acc[j]);
            for (float l : lanes)
                out += l;
        }
#else
        (void)iters;
#endif
    } else {
#if defined(__FMA__)
        __m256 acc[kChains];
        for (int j = 0; j < kChains; ++j)
            acc[j] = _mm256_set1_ps(static_cast<float>(j));
        const __m256 mul = _mm256_set1_ps(0.9999999f), add = _mm256_set1_ps(1e-7f);
        for (int64_t i = 0; i < iters; ++i)
            for (int j = 0; j < kChains; ++j)
                acc[j] = _mm256_fmadd_ps(acc[j], mul, add);
        alignas(32) float lanes[8];
        for (int j = 0; j < kChains; ++j) {
            _mm256_store_ps(lanes, acc[j]);
            for (float l : lanes)
                out += l;
        }
#else
        (void)iters;
#endif
    }
    return out;
}

// GFLOP/s of `threads` threads each running the FMA chains; median of 5 runs.
template <int kLanes>
double fma_gflops(int threads, int64_t iters) {
    std::vector<double> runs;
    volatile float sink = 0;
    for (int r = 0; r < 5; ++r) {
        std::vector<float> res(static_cast<size_t>(threads));
        const auto t0 = Clock::now();
        std::vector<std::thread> pool;
        for (int t = 1; t < threads; ++t)
            pool.emplace_back([&, t] { res[t] = fma_chains<kLanes>(iters); });
        res[0] = fma_chains<kLanes>(iters);
        for (auto& th : pool)
            th.join();
        const double s = seconds_since(t0);
        for (float v : res)
            sink = sink + v;
        runs.push_back(2.0 * kLanes * kChains * static_cast<double>(iters) * threads / s / 1e9);
    }
    std::sort(runs.begin(), runs.end());
    return runs[runs.size() / 2];
}

// ---- triad ---------------------------------------------------------------------------------

struct AlignedFloats {
    std::unique_ptr<float, decltype(&std::free)> ptr{nullptr, &std::free};
    explicit AlignedFloats(int64_t n)
        : ptr(static_cast<float*>(std::aligned_alloc(64, static_cast<size_t>(n) * 4 + 64)),
              &std::free) {}
    float* get() const { return ptr.get(); }
};

// a[i] = b[i] + s c[i] for i in [begin, end) (restrict: the loop vectorises without checks).
void triad_range(float* __restrict a, const float* __restrict b, const float* __restrict c, float s,
                 int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
        a[i] = b[i] + s * c[i];
}

json triad(int64_t n, const char* name, int threads, double scale) {
    AlignedFloats a(n), b(n), c(n);
    float* __restrict pa = a.get();
    const float* __restrict pb = b.get();
    const float* __restrict pc = c.get();
    // First touch in parallel, as the timed loop will touch them.
    minidl::parallel_for(n, 1 << 16, [&](int64_t s, int64_t e) {
        for (int64_t i = s; i < e; ++i) {
            pa[i] = 0.0f;
            b.get()[i] = 1.0f;
            c.get()[i] = 2.0f;
        }
    });
    const float s = 0.5f;
    const Timing t = time_calls(
        [&] {
            minidl::parallel_for(
                n, 1 << 16, [&](int64_t s0, int64_t e0) { triad_range(pa, pb, pc, s, s0, e0); });
        },
        0.5 * scale, 5, 2000);
    const double bytes = 3.0 * 4.0 * static_cast<double>(n);
    const json j = {{"name", name},
                    {"threads", threads},
                    {"n", n},
                    {"working_set_mb", bytes / 1e6},
                    {"ms", 1e3 * t.median_s},
                    {"gb_per_s", bytes / t.median_s / 1e9},
                    {"best_gb_per_s", bytes / t.min_s / 1e9}};
    std::cerr << "triad " << name << " threads=" << threads << ": " << j["gb_per_s"] << " GB/s\n";
    return j;
}

}  // namespace

json cpu_peak(int threads, double scale) {
    const auto iters = static_cast<int64_t>(2e7 * scale);
    const double avx2 = fma_gflops<8>(threads, iters);
#if defined(__AVX512F__)
    const double avx512 = fma_gflops<16>(threads, iters / 2);
#else
    const double avx512 = 0;
#endif
    const double best = std::max(avx2, avx512);
    // 2 FMA pipes of 256 bits per core (Zen 2-4; Zen 4 runs a 512-bit FMA as two halves):
    // 2 pipes x 8 lanes x 2 FLOP = 32 FLOP per cycle per core.
    const double clock_ghz = best / threads / 32.0;
    const json j = {{"threads", threads},           {"fma256_gflops", avx2},
                    {"fma512_gflops", avx512},      {"peak_gflops", best},
                    {"flop_per_cycle_assumed", 32}, {"implied_clock_ghz", clock_ghz}};
    std::cerr << "peak threads=" << threads << ": " << best << " GFLOP/s (AVX2 " << avx2
              << ", AVX-512 " << avx512 << "), implied clock " << clock_ghz << " GHz\n";
    return j;
}

json cpu_gemm(int64_t n, int threads, double scale) {
    minidl::NoGradGuard no_grad;
    minidl::Generator gen(1);
    const Tensor a = Tensor::randn({n, n}, &gen), b = Tensor::randn({n, n}, &gen);
    const double flop = 2.0 * static_cast<double>(n) * static_cast<double>(n) * n;
#if defined(MINIDL_BENCH_OPENBLAS)
    // Interleaved with OpenBLAS's sgemm called directly on `threads` of its own threads — what
    // torch.mm runs here — call by call, so both see the same machine: on a shared 2-core box
    // separate runs seconds apart differ by more than the gap being measured. Run with
    // OPENBLAS_THREAD_TIMEOUT=4 (compare_pytorch.sh does): otherwise OpenBLAS's worker keeps
    // spinning after the direct call and takes a core from the minidl call that follows (at
    // n = 512 on 2 threads: 97 instead of 186 GFLOP/s).
    Tensor c = Tensor::empty({n, n});
    const int ni = static_cast<int>(n);
    const float one = 1.0f, zero = 0.0f;
    std::vector<double> tm, tb;
    double total = 0;
    for (int rep = -2; rep < 500 && (rep < 3 || total < 1.2 * scale); ++rep) {
        auto t0 = Clock::now();
        Tensor cm = minidl::matmul(a, b);
        const double dm = seconds_since(t0);
        openblas_set_num_threads(threads);
        t0 = Clock::now();
        // Row-major C = A B is column-major C^T = B^T A^T.
        sgemm_("N", "N", &ni, &ni, &ni, &one, b.raw<float>(), &ni, a.raw<float>(), &ni, &zero,
               c.raw<float>(), &ni);
        const double db = seconds_since(t0);
        openblas_set_num_threads(1);  // as minidl's GEMM keeps it (ops/cpu/matmul_cpu.cpp)
        if (rep < 0) continue;        // warm-up
        tm.push_back(dm);
        tb.push_back(db);
        total += dm + db;
    }
    auto median = [](std::vector<double> v) {
        std::sort(v.begin(), v.end());
        return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
    };
    Timing t;
    t.median_s = median(tm);
    t.min_s = *std::min_element(tm.begin(), tm.end());
    t.reps = static_cast<int>(tm.size());
    const double blas_s = median(tb);
#else
    const Timing t = time_calls([&] { Tensor c = minidl::matmul(a, b); }, 0.6 * scale, 3, 500);
#endif
    json j = {{"n", n},
              {"threads", threads},
              {"ms", 1e3 * t.median_s},
              {"gflops", flop / t.median_s / 1e9},
              {"best_gflops", flop / t.min_s / 1e9},
              {"reps", t.reps}};
#if defined(MINIDL_BENCH_OPENBLAS)
    j["openblas_direct_gflops"] = flop / blas_s / 1e9;
    j["vs_openblas_direct"] = blas_s / t.median_s;
#endif
    std::cerr << "gemm n=" << n << " threads=" << threads << ": " << j["gflops"] << " GFLOP/s";
#if defined(MINIDL_BENCH_OPENBLAS)
    std::cerr << " (OpenBLAS direct, interleaved: " << j["openblas_direct_gflops"] << ")";
#endif
    std::cerr << "\n";
    return j;
}

std::vector<json> cpu_triad(int threads, double scale) {
    // DRAM: 3 x 128 MiB. "adam_working_set": 3 arrays holding as many bytes as the Adam step's
    // p, g, m, v (4 x 27,769 x 64 floats = 28.4 MB), i.e. what the last-level cache can serve.
    // "averaging_working_set": as many bytes as an EMA or SWA update's two arrays over the
    // example model's 1,781,506 parameters (14.3 MB; bench_averaging.cpp).
    const int64_t adam_bytes = 4 * 27769 * 64 * 4;
    const int64_t averaging_bytes = 2 * 1781506 * 4;
    return {triad(int64_t{32} << 20, "dram", threads, scale),
            triad(adam_bytes / 12, "adam_working_set", threads, scale),
            triad(averaging_bytes / 12, "averaging_working_set", threads, scale)};
}

std::vector<json> cpu_adam(int threads, double scale) {
    minidl::NoGradGuard no_grad;
    constexpr int64_t V = ExampleBatch::kVocab, C = ExampleBatch::kDim;
    minidl::Generator gen(2);
    Tensor p = Tensor::randn({V, C}, &gen);
    p.set_requires_grad();
    minidl::optim::Adam opt({p}, minidl::optim::AdamOptions{.lr = 1e-3});
    std::vector<json> out;

    // Dense: a full random gradient, as after a dense backward.
    p.set_grad(Tensor::randn({V, C}, &gen, minidl::DType::F32, minidl::Device::cpu(), 0.0, 0.01));
    const Timing dense = time_calls([&] { opt.step(); }, 0.5 * scale, 10, 5000);
    const double bytes = 28.0 * static_cast<double>(V * C);
    out.push_back({{"name", "dense"},
                   {"threads", threads},
                   {"numel", V * C},
                   {"ms", 1e3 * dense.median_s},
                   {"bytes", bytes},
                   {"gb_per_s", bytes / dense.median_s / 1e9},
                   {"best_gb_per_s", bytes / dense.min_s / 1e9}});
    std::cerr << "adam dense threads=" << threads << ": " << 1e3 * dense.median_s << " ms, "
              << out.back()["gb_per_s"] << " GB/s\n";

    // The gradient an embedding-bag backward leaves for the example batch: row-sparse where the
    // engine keeps it so (only touched rows are stored; the others are exactly zero).
    p.set_grad(Tensor());
    const ExampleBatch batch;
    const auto L = static_cast<int64_t>(batch.ids.size());
    const Tensor ids = Tensor::from_vector(batch.ids, {L});
    const Tensor offsets =
        Tensor::from_vector(batch.offsets, {static_cast<int64_t>(batch.offsets.size())});
    {
        minidl::EnableGradGuard grad_on;
        minidl::sum(minidl::embedding_bag(p, ids, offsets, minidl::BagMode::Mean)).backward();
    }
    const minidl::RowGrad* rows = minidl::row_grad(p);
    const int64_t touched = rows ? rows->rows.numel() : V;  // V: the dense path (switched off)
    const Timing sparse = time_calls([&] { opt.step(); }, 0.5 * scale, 10, 5000);
    const double sparse_bytes =
        24.0 * static_cast<double>(V * C) + 4.0 * static_cast<double>(touched * C);
    out.push_back({{"name", "row_sparse"},
                   {"threads", threads},
                   {"numel", V * C},
                   {"touched_rows", touched},
                   {"ms", 1e3 * sparse.median_s},
                   {"bytes", sparse_bytes},
                   {"gb_per_s", sparse_bytes / sparse.median_s / 1e9},
                   {"best_gb_per_s", sparse_bytes / sparse.min_s / 1e9}});
    std::cerr << "adam row-sparse (" << touched << " rows) threads=" << threads << ": "
              << 1e3 * sparse.median_s << " ms\n";
    return out;
}

json cpu_denormal(int threads) {
    // One Adam step with a random gradient (moments ~1e-3 and ~1e-7), then zero gradients: m
    // decays by beta1 = 0.9 a step and passes through the subnormal range (below 1.18e-38) at
    // steps ~780-950 — what the moments of rarely-seen embedding rows do over a long run. With
    // flush-to-zero (ops/cpu/optim_cpu.cpp) the late steps cost what the early ones do; without
    // it, every subnormal operand or result takes a slow microcode path.
    minidl::NoGradGuard no_grad;
    constexpr int64_t V = ExampleBatch::kVocab, C = ExampleBatch::kDim;
    minidl::Generator gen(4);
    Tensor p = Tensor::randn({V, C}, &gen);
    p.set_requires_grad();
    minidl::optim::Adam opt({p}, minidl::optim::AdamOptions{.lr = 1e-3});
    p.set_grad(Tensor::randn({V, C}, &gen, minidl::DType::F32, minidl::Device::cpu(), 0.0, 0.01));
    opt.step();
    p.set_grad(Tensor::zeros({V, C}));
    std::vector<double> t;
    for (int i = 0; i < 1000; ++i) {
        const auto t0 = Clock::now();
        opt.step();
        t.push_back(seconds_since(t0));
    }
    auto window_median = [&](int begin, int end) {
        std::vector<double> w(t.begin() + begin, t.begin() + end);
        std::sort(w.begin(), w.end());
        return w[w.size() / 2];
    };
    const double early = window_median(0, 100), late = window_median(800, 900);
    const json j = {{"name", "adam_zero_grad_1000_steps"},
                    {"threads", threads},
                    {"early_ms", 1e3 * early},
                    {"late_ms", 1e3 * late},
                    {"late_over_early", late / early}};
    std::cerr << "denormal threads=" << threads << ": steps 1-100 " << 1e3 * early
              << " ms, steps 801-900 " << 1e3 * late << " ms\n";
    return j;
}

std::vector<json> cpu_overhead(int threads, double scale) {
    std::vector<json> out;
    const auto iters = static_cast<int>(20000 * scale) + 100;
    {
        minidl::NoGradGuard no_grad;
        const Tensor a = Tensor::ones({4}), b = Tensor::ones({4});
        const Timing t = time_calls(
            [&] {
                for (int i = 0; i < iters; ++i) {
                    Tensor c = a + b;
                }
            },
            0.3 * scale, 5, 200, 1);
        out.push_back({{"name", "add_4"}, {"threads", threads}, {"us", 1e6 * t.median_s / iters}});
    }
    {
        minidl::Generator gen(3);
        const Tensor x = Tensor::randn({4, 16}, &gen);
        Tensor w = Tensor::randn({16, 16}, &gen), bias = Tensor::randn({16}, &gen);
        w.set_requires_grad();
        bias.set_requires_grad();
        const int n = iters / 10;
        const Timing t = time_calls(
            [&] {
                for (int i = 0; i < n; ++i)
                    minidl::sum(minidl::linear(x, w, bias)).backward();
            },
            0.3 * scale, 5, 200, 1);
        out.push_back({{"name", "linear_fwd_bwd_4x16x16"},
                       {"threads", threads},
                       {"us", 1e6 * t.median_s / n}});
    }
    for (const json& j : out)
        std::cerr << "overhead " << j["name"] << " threads=" << threads << ": " << j["us"]
                  << " us\n";
    return out;
}

}  // namespace bench
