// tests/dp/dp_support.h — what the data-parallel tests share (CPU suite, MPI programs, GPU
// suite): a small learnable task for tests/support/tiny_model.h's model, the single-process
// reference run through tricks::train_step, and the comparisons.
//
// The equivalence rule (PyTorch's DDP tests): R replicas/ranks each training on 1/R of every
// batch give, after every step, the weights of one process on the whole batch — within f32
// tolerance (rtol 1e-5, atol 1e-7: the gradient sums are added in another order), and BITWISE
// equal to one process accumulating the same shards as micro-batches (accum_steps = R), where
// the arithmetic is the same operation for operation: shard gradients summed in shard order
// (and, for DDP's average of R = 2 mean-loss gradients, scaled by 1/2 — exact in floating point).
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "core/rng.h"
#include "ops/ops.h"
#include "optim/adam.h"
#include "tests/support/compare.h"
#include "tests/support/tiny_model.h"
#include "tricks/amp.h"
#include "tricks/ema.h"
#include "tricks/fgm.h"
#include "tricks/pgd.h"
#include "tricks/swa.h"
#include "tricks/train_step.h"

namespace minidl::test {

// Bags of 2..6 ids over a vocabulary of 20; label 1 iff the bag holds more ids >= 10 than < 10.
struct DPTask {
    explicit DPTask(int64_t samples = 80, uint64_t seed = 99) {
        Generator g(seed);
        for (int64_t i = 0; i < samples; ++i) {
            const int64_t len = 2 + g.randint(5);
            std::vector<int64_t> bag;
            int64_t high = 0;
            for (int64_t j = 0; j < len; ++j) {
                bag.push_back(g.randint(20));
                high += bag.back() >= 10;
            }
            bags.push_back(bag);
            labels.push_back(2 * high > len ? 1 : 0);
        }
    }
    // The mean cross-entropy of samples [first, last), computed on `device`.
    Tensor loss(TinyModel& net, int64_t first, int64_t last, Device device = Device::cpu()) const {
        std::vector<int64_t> ids, offsets, y;
        for (int64_t i = first; i < last; ++i) {
            offsets.push_back(static_cast<int64_t>(ids.size()));
            ids.insert(ids.end(), bags[static_cast<size_t>(i)].begin(),
                       bags[static_cast<size_t>(i)].end());
            y.push_back(labels[static_cast<size_t>(i)]);
        }
        const int64_t n = last - first;
        const Tensor logits =
            net.forward(Tensor::from_vector(ids, {static_cast<int64_t>(ids.size())}).to(device),
                        Tensor::from_vector(offsets, {n}).to(device));
        return cross_entropy(logits, Tensor::from_vector(y, {n}).to(device));
    }
    std::vector<std::vector<int64_t>> bags;
    std::vector<int64_t> labels;
};

struct RunOptions {
    int steps = 5;
    int64_t batch = 16;  // the global batch: step s trains on samples [s * batch, (s + 1) * batch)
    int64_t accum = 1;
    double lr = 0.05;
    double fgm = 0.0;  // FGM epsilon (0: off)
    double pgd = 0.0;  // PGD epsilon (0: off), alpha epsilon / 2, 3 ascent steps
    bool ema = false;  // EMA(0.9) bound to the optimizer
    bool swa = false;  // AveragedModel bound to the optimizer, updated after every step
    bool amp = false;  // f16 autocast + GradScaler(1024)
    // With amp: step `inf_step`'s loss is multiplied by 1e30 (its f16 gradients overflow) on
    // `inf_rank` only (-1: everywhere).
    int inf_step = -1;
    int inf_rank = -1;
    bool inject_nan = false;  // multiply that loss by NaN instead (any precision)
    uint64_t init_seed = 5;
};

inline std::vector<Tensor> snapshot(const nn::Module& m) {
    std::vector<Tensor> out;
    NoGradGuard no_grad;
    for (const Tensor& p : m.parameters())
        out.push_back(p.detach().to(Device::cpu()).clone());
    return out;
}

inline tricks::PGDOptions pgd_options(const RunOptions& o) {
    return {.epsilon = o.pgd, .alpha = o.pgd / 2};
}

// Weights after every step; EMA shadows and the SWA average after the last one (when on); step
// count and scale.
struct Trajectory {
    std::vector<std::vector<Tensor>> weights;
    std::vector<double> losses;
    std::vector<Tensor> ema;
    std::vector<Tensor> swa;
    int64_t swa_averaged = 0;
    int64_t steps_taken = 0;
    double final_scale = 0;
};

// The loss of samples [first, last), times 1e30 where the options inject an overflow.
inline Tensor task_loss(const DPTask& task, TinyModel& net, int64_t first, int64_t last,
                        const RunOptions& o, int step, int rank, Device device = Device::cpu()) {
    const Tensor loss = task.loss(net, first, last, device);
    const bool inject = step == o.inf_step && (o.inf_rank < 0 || o.inf_rank == rank);
    if (!inject) return loss;
    return loss * (o.inject_nan ? std::numeric_limits<double>::quiet_NaN() : 1e30);
}

// One process, the whole batch, tricks::train_step (accum micro-batches when o.accum > 1).
inline Trajectory reference_run(const DPTask& task, const RunOptions& o,
                                Device device = Device::cpu()) {
    manual_seed(o.init_seed);
    TinyModel net;
    net.to(device);
    optim::Adam opt(net.parameters(), {.lr = o.lr});
    tricks::FGM fgm(net, {.epsilon = o.fgm});
    tricks::PGD pgd(net, pgd_options(o));
    tricks::EMA ema(net, {.decay = 0.9, .optimizer = &opt});
    tricks::AveragedModel swa(net, {}, &opt);
    amp::GradScaler scaler({.init_scale = 1024.0});
    tricks::TrainStepConfig cfg;
    cfg.optimizer = &opt;
    cfg.accum_steps = o.accum;
    if (o.fgm > 0) cfg.fgm = &fgm;
    if (o.pgd > 0) cfg.pgd = &pgd;
    if (o.ema) cfg.ema = &ema;
    if (o.amp) {
        cfg.autocast = DType::F16;
        cfg.scaler = &scaler;
    }
    Trajectory t;
    for (int s = 0; s < o.steps; ++s) {
        const int64_t base = s * o.batch;
        // Micro-batch j of the reference holds the samples that replica j holds in the parallel
        // runs; an injected overflow lands in the micro-batches of the chosen rank.
        const auto r = tricks::train_step(cfg, o.batch, [&](int64_t b, int64_t e) {
            const int rank = o.accum > 1 ? static_cast<int>(b * o.accum / o.batch) : 0;
            return task_loss(task, net, base + b, base + e, o, s, rank, device);
        });
        t.losses.push_back(r.loss);
        t.weights.push_back(snapshot(net));
        if (o.swa) swa.update_parameters(net);
    }
    if (o.ema)
        for (const auto& [name, shadow] : ema.shadows())
            t.ema.push_back(shadow.to(Device::cpu()).clone());
    if (o.swa) {
        t.swa = snapshot(swa.module());
        t.swa_averaged = swa.n_averaged();
    }
    t.steps_taken = opt.step_count();
    t.final_scale = scaler.get_scale();
    return t;
}

inline bool all_bitwise(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
        if (!bitwise_equal(a[i], b[i])) return false;
    return true;
}

inline void check_all_close(const std::vector<Tensor>& actual, const std::vector<Tensor>& expected,
                            double rtol, double atol, const std::string& what) {
    REQUIRE(actual.size() == expected.size());
    for (size_t i = 0; i < actual.size(); ++i)
        check_close(actual[i], expected[i], rtol, atol, what + " tensor " + std::to_string(i));
}

}  // namespace minidl::test
