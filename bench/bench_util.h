// bench/bench_util.h — timing and reporting helpers shared by the benchmark programs.
//
// Every figure is a median: a benchmark runs its body `reps` times (after warm-up calls), each
// call timed with the steady clock, and reports the median time per call (noise on a shared
// machine is one-sided — it only ever makes a call slower — so the median is a better estimate
// than the mean, and the minimum is reported beside it). On a GPU the body ends with a device
// synchronisation, so the wall clock covers the work queued by the call.
//
// The synthetic batch of the example (ExampleBatch) is drawn with splitmix64 from a fixed seed:
// bench/torch_gpu_bench.py and bench/torch_micro.py draw the same ids with the same generator,
// so minidl and PyTorch train on identical batches.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace bench {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

struct Timing {
    double median_s = 0;  // per call
    double min_s = 0;
    int reps = 0;
};

// Times fn(): `warmup` untimed calls, then calls until both `min_reps` calls and `min_total_s`
// seconds are done (at most `max_reps`). `sync` runs after each call inside the timed region.
inline Timing time_calls(const std::function<void()>& fn, double min_total_s, int min_reps,
                         int max_reps, int warmup = 2,
                         const std::function<void()>& sync = nullptr) {
    for (int i = 0; i < warmup; ++i) {
        fn();
        if (sync) sync();
    }
    std::vector<double> t;
    double total = 0;
    while (static_cast<int>(t.size()) < max_reps &&
           (static_cast<int>(t.size()) < min_reps || total < min_total_s)) {
        const auto t0 = Clock::now();
        fn();
        if (sync) sync();
        t.push_back(seconds_since(t0));
        total += t.back();
    }
    std::sort(t.begin(), t.end());
    Timing out;
    out.reps = static_cast<int>(t.size());
    out.min_s = t.front();
    out.median_s = t.size() % 2 ? t[t.size() / 2] : 0.5 * (t[t.size() / 2 - 1] + t[t.size() / 2]);
    return out;
}

// splitmix64 (Steele, Lea & Flood 2014): the generator bench/torch_*.py reimplement.
struct SplitMix64 {
    uint64_t state;
    explicit SplitMix64(uint64_t seed) : state(seed) {}
    uint64_t next() {
        uint64_t z = (state += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    // Uniform in [0, 1) with 53 bits.
    double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
};

// The example's shapes: V = 27,769 (the random split's vocabulary), C = 64, 32 bags of 200..400
// ids. Ids are log-uniform over [1, V) (id = floor(V^u), a Zipf-like spread: frequent words
// repeat within a batch, most rows of the table are untouched), labels alternate.
struct ExampleBatch {
    static constexpr int64_t kVocab = 27769, kDim = 64, kHidden = 64, kClasses = 2, kBags = 32;
    std::vector<int64_t> ids, offsets, labels;

    explicit ExampleBatch(uint64_t seed = 7) {
        SplitMix64 rng(seed);
        for (int64_t b = 0; b < kBags; ++b) {
            offsets.push_back(static_cast<int64_t>(ids.size()));
            const int64_t len = 200 + static_cast<int64_t>(rng.next() % 201);
            for (int64_t i = 0; i < len; ++i) {
                const double u = rng.uniform();
                const auto id = static_cast<int64_t>(std::pow(static_cast<double>(kVocab), u));
                ids.push_back(std::min<int64_t>(kVocab - 1, std::max<int64_t>(1, id)));
            }
            labels.push_back(b % 2);
        }
    }
};

}  // namespace bench
