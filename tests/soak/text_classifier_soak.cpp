// tests/soak/text_classifier_soak.cpp — a bounded long run of the text classifier's training loop,
// failing if its memory grows.
//
// Four phases in one process, one per adversarial trick (FGM, PGD, FreeLB, AWP), each with EMA,
// SWA (averaging after every epoch from the first), AMP bf16 and 2-way accumulation, on the
// committed offline sample (192 training documents, batch 32: 6 steps, one test evaluation and
// one SWA update per epoch). Each phase is a fresh Trainer run for the whole epochs that make at
// least --steps-per-trick optimizer steps (5,000: 834 epochs, 5,004 steps). About every
// --report-every steps (at the first epoch start after each multiple, so that every report sees
// the same live tensors) it prints the process's resident set (VmRSS, /proc/self/statm) and the
// CPU caching allocator's counters (core/allocator.h: bytes in use, of which the parameters'
// gradients, bytes reserved, blocks held from the system = system allocs - system frees, cache
// hits). Between phases the allocator's
// cache is emptied, so that each phase's figures are its own.
//
// The rule. A phase's first report ends its warm-up (the caching allocator has met the sizes of
// the loop); at every later report of the phase
//   - the allocator's bytes in use, the parameters' gradients set aside, are exactly the warm-up
//     report's: the loop keeps the same tensors from epoch to epoch (the gradients of the last
//     step live until the next step's zero_grad, and the embedding table's is row-sparse, sized
//     by the distinct tokens of the last batch: core/row_grad.h);
//   - the allocator's bytes reserved are within --cache-slack-mb (2) of the warm-up report's (a
//     rare long batch may still bring a bigger size bin; the largest batch bounds that);
//   - RSS is within --rss-slack-mb (4) of the warm-up report's;
// once the phase's Trainer is destroyed, the allocator's bytes in use are back to what they were
// before it was made (nothing of it outlives it: no autograd graph kept alive by a cycle, no trick
// holding a tensor); and over the whole soak, the memory outside the allocator (RSS - bytes
// reserved: the heap of std containers, the per-epoch history, code and libraries) at every report
// is within --rss-slack-mb of its value at the first report at or after step 2 x --report-every.
// Exit status 0 when all of that holds, 1 otherwise (each broken rule printed), 2 for bad flags.
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <string>
#include <vector>

#include "core/allocator.h"
#include "core/parallel.h"
#include "core/row_grad.h"
#include "core/storage.h"
#include "examples/text_classifier/corpus.h"
#include "examples/text_classifier/dataset.h"
#include "examples/text_classifier/train.h"

namespace {

using textclf::TrainConfig;

struct Options {
    int64_t steps_per_trick = 5000;
    int64_t report_every = 1000;
    int threads = 2;
    double rss_slack_mb = 4.0;
    double cache_slack_mb = 2.0;
};

struct Sample {
    int64_t step = 0;  // over the whole soak
    double seconds = 0;
    double rss_mb = 0;
    minidl::AllocatorStats alloc;
    size_t gradient_bytes = 0;  // of alloc.bytes_in_use
    uint64_t blocks() const { return alloc.system_allocs - alloc.system_frees; }
    size_t in_use_without_gradients() const { return alloc.bytes_in_use - gradient_bytes; }
    double outside_allocator_mb() const { return rss_mb - mb(alloc.bytes_reserved); }
    static double mb(size_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0); }
};

const auto g_start = std::chrono::steady_clock::now();

double rss_mb() {
    std::ifstream statm("/proc/self/statm");
    uint64_t size_pages = 0, resident_pages = 0;
    statm >> size_pages >> resident_pages;
    return static_cast<double>(resident_pages) * static_cast<double>(::sysconf(_SC_PAGESIZE)) /
           (1024.0 * 1024.0);
}

// The allocator bytes that the parameters' gradients hold, binned as the allocator counts them.
size_t gradient_bytes(const minidl::nn::Module* model) {
    if (model == nullptr) return 0;
    size_t total = 0;
    auto add = [&](const minidl::Tensor& t) {
        if (t.defined() && t.storage() && t.storage()->nbytes() > 0)
            total += minidl::cpu_allocator().bin_size(t.storage()->nbytes());
    };
    for (const minidl::Tensor& p : model->parameters()) {
        if (const minidl::RowGrad* g = minidl::row_grad(p)) {  // p.grad() would densify it
            add(g->rows);
            add(g->values);
        } else {
            add(p.grad());
        }
    }
    return total;
}

Sample sample(int64_t step, const minidl::nn::Module* model = nullptr) {
    return {step, std::chrono::duration<double>(std::chrono::steady_clock::now() - g_start).count(),
            rss_mb(), minidl::cpu_allocator().stats(), gradient_bytes(model)};
}

void print(const char* phase, const Sample& s) {
    std::printf(
        "%-6s step %6lld %6.1f s  RSS %5.1f MB (outside the allocator %4.1f)  allocator: "
        "in use %7zu B (gradients %6zu B), reserved %8zu B, blocks %3llu, cache hits "
        "%7llu\n",
        phase, static_cast<long long>(s.step), s.seconds, s.rss_mb, s.outside_allocator_mb(),
        s.alloc.bytes_in_use, s.gradient_bytes, s.alloc.bytes_reserved,
        static_cast<unsigned long long>(s.blocks()),
        static_cast<unsigned long long>(s.alloc.cache_hits));
    std::fflush(stdout);
}

struct Phase {
    const char* name;
    void (*set)(TrainConfig&);
};

// Runs one phase; returns the number of broken rules (each printed).
int run_phase(const Phase& phase, const textclf::PreparedData& data, const Options& opt,
              int64_t first_step, int64_t& steps_done, std::vector<Sample>& all_reports) {
    int broken = 0;
    auto fail = [&](const std::string& what) {
        std::printf("FAIL %s: %s\n", phase.name, what.c_str());
        ++broken;
    };
    const int64_t in_use_before =
        static_cast<int64_t>(minidl::cpu_allocator().stats().bytes_in_use);
    {
        TrainConfig c;
        c.lr = 1e-3;
        c.ema = 0.999;
        c.swa_start = 1;
        c.amp = "bf16";
        c.accum = 2;
        phase.set(c);
        const int64_t steps_per_epoch = (data.train.size() + c.batch - 1) / c.batch;
        c.epochs = (opt.steps_per_trick + steps_per_epoch - 1) / steps_per_epoch;
        textclf::Trainer trainer(c, data);

        std::vector<Sample> reports;
        int64_t next_report = opt.report_every;
        // At epoch starts only, so that every report sees the same live tensors (mid-epoch the
        // last batch is still held).
        auto report = [&] {
            const int64_t done = trainer.global_step();
            if (done % steps_per_epoch != 0 || done < next_report) return;
            reports.push_back(sample(first_step + done, &trainer.model()));
            print(phase.name, reports.back());
            while (next_report <= done)
                next_report += opt.report_every;
        };
        textclf::TrainHooks hooks;
        hooks.should_stop = [&] {
            report();
            return false;
        };
        trainer.run(hooks);
        report();  // the last epoch's end (no step follows it to poll)
        if (trainer.global_step() != c.epochs * steps_per_epoch)
            fail("ran " + std::to_string(trainer.global_step()) + " steps, not " +
                 std::to_string(c.epochs * steps_per_epoch));
        steps_done = trainer.global_step();
        // The warm-up report and every later one.
        for (size_t i = 1; i < reports.size(); ++i) {
            const Sample &w = reports.front(), &s = reports[i];
            const std::string at = "at step " + std::to_string(s.step) + " (warm-up report: step " +
                                   std::to_string(w.step) + "): ";
            if (s.in_use_without_gradients() != w.in_use_without_gradients())
                fail(at + "allocator bytes in use, gradients aside, " +
                     std::to_string(s.in_use_without_gradients()) + ", against " +
                     std::to_string(w.in_use_without_gradients()));
            if (Sample::mb(s.alloc.bytes_reserved) >
                Sample::mb(w.alloc.bytes_reserved) + opt.cache_slack_mb)
                fail(at + "allocator bytes reserved " + std::to_string(s.alloc.bytes_reserved) +
                     ", more than " + std::to_string(opt.cache_slack_mb) + " MB above " +
                     std::to_string(w.alloc.bytes_reserved));
            if (s.rss_mb > w.rss_mb + opt.rss_slack_mb)
                fail(at + "RSS " + std::to_string(s.rss_mb) + " MB, more than " +
                     std::to_string(opt.rss_slack_mb) + " MB above " + std::to_string(w.rss_mb));
        }
        if (reports.size() < 2) fail("fewer than two reports: nothing was compared");
        all_reports.insert(all_reports.end(), reports.begin(), reports.end());
    }
    const int64_t in_use_after = static_cast<int64_t>(minidl::cpu_allocator().stats().bytes_in_use);
    if (in_use_after != in_use_before)
        fail("after the trainer is gone the allocator still has " +
             std::to_string(in_use_after - in_use_before) + " bytes in use that it did not have " +
             "before it was made");
    return broken;
}

int64_t parse_int(const char* flag, const char* value) {
    char* end = nullptr;
    const long long v = std::strtoll(value, &end, 10);
    if (end == value || *end != '\0' || v < 1) {
        std::fprintf(stderr, "text_classifier_soak: %s needs a positive integer, got '%s'\n", flag,
                     value);
        std::exit(2);
    }
    return v;
}

}  // namespace

int main(int argc, char** argv) {
    Options opt;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (i + 1 >= argc) {
            std::fprintf(stderr,
                         "usage: text_classifier_soak [--steps-per-trick N] [--report-every N] "
                         "[--threads T] [--rss-slack-mb MB] [--cache-slack-mb MB]\n");
            return 2;
        }
        const char* v = argv[++i];
        if (a == "--steps-per-trick") {
            opt.steps_per_trick = parse_int(a.c_str(), v);
        } else if (a == "--report-every") {
            opt.report_every = parse_int(a.c_str(), v);
        } else if (a == "--threads") {
            opt.threads = static_cast<int>(parse_int(a.c_str(), v));
        } else if (a == "--rss-slack-mb") {
            opt.rss_slack_mb = static_cast<double>(parse_int(a.c_str(), v));
        } else if (a == "--cache-slack-mb") {
            opt.cache_slack_mb = static_cast<double>(parse_int(a.c_str(), v));
        } else {
            std::fprintf(stderr, "text_classifier_soak: unknown flag '%s'\n", a.c_str());
            return 2;
        }
    }
    try {
        minidl::set_num_threads(opt.threads);
        textclf::DataConfig dc;
        dc.data_dir = textclf::default_sample_path();
        const textclf::PreparedData data = textclf::load_and_prepare(dc);
        const Phase phases[] = {
            {"fgm", [](TrainConfig& c) { c.fgm = 1.0; }},
            {"pgd", [](TrainConfig& c) { c.pgd = true; }},
            {"freelb", [](TrainConfig& c) { c.freelb = true; }},
            {"awp", [](TrainConfig& c) { c.awp = true; }},
        };
        print("start", sample(0));
        int broken = 0;
        int64_t step = 0;
        std::vector<Sample> reports;
        for (const Phase& p : phases) {
            int64_t steps = 0;
            broken += run_phase(p, data, opt, step, steps, reports);
            step += steps;
            // The next phase starts from an empty cache: what it holds is its own.
            minidl::cpu_allocator().empty_cache();
        }
        print("end", sample(step));
        // Outside the allocator, over the whole soak, against the report at 2 x report_every.
        const Sample* base = nullptr;
        for (const Sample& r : reports)
            if (!base && r.step >= 2 * opt.report_every) base = &r;
        for (const Sample& r : reports) {
            if (!base || r.step <= base->step ||
                r.outside_allocator_mb() <= base->outside_allocator_mb() + opt.rss_slack_mb)
                continue;
            std::printf(
                "FAIL: at step %lld, RSS outside the allocator %.1f MB, more than %.1f MB "
                "above its %.1f MB at step %lld\n",
                static_cast<long long>(r.step), r.outside_allocator_mb(), opt.rss_slack_mb,
                base->outside_allocator_mb(), static_cast<long long>(base->step));
            ++broken;
        }
        if (!base) {
            std::printf("FAIL: no report at or after step %lld\n",
                        static_cast<long long>(2 * opt.report_every));
            ++broken;
        }
        std::printf("soak: %lld optimizer steps (%lld per trick) in %.0f s, %s\n",
                    static_cast<long long>(step), static_cast<long long>(step / 4),
                    sample(step).seconds,
                    broken == 0 ? "memory flat after the warm-up: passed" : "FAILED");
        return broken == 0 ? 0 : 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "text_classifier_soak: %s\n", e.what());
        return 1;
    }
}
