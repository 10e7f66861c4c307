// tests/tricks/test_composition.cpp — the tricks compose: every combination of
// {none, FGM, PGD} x EMA x SWA x AMP-f16 x accumulation (48) trains the tiny model through
// tricks::train_step, and the invariants hold; plus FreeLB and AWP, the attacks at strength 0
// (the seed's objective: twice the clean gradient for FGM and PGD, the clean one for AWP and
// FreeLB, bitwise), every attack's restore checked right after the gradient half (with and
// without AMP, accumulation and an overflow), accumulation = big batch, and skipped steps that
// skip everything.
#include <doctest/doctest.h>

#include <cmath>

#include "optim/adam.h"
#include "optim/lr_scheduler.h"
#include "tests/support/compare.h"
#include "tests/support/tiny_model.h"
#include "tests/support/token_model.h"
#include "tricks/amp.h"
#include "tricks/awp.h"
#include "tricks/ema.h"
#include "tricks/fgm.h"
#include "tricks/freelb.h"
#include "tricks/pgd.h"
#include "tricks/swa.h"
#include "tricks/train_step.h"

using namespace minidl;
using namespace minidl::test;

namespace {

// A fixed, learnable task: 16 bags of ids over a vocabulary of 20; label 1 iff the bag holds more
// ids >= 10 than < 10.
struct Task {
    std::vector<std::vector<int64_t>> bags;
    std::vector<int64_t> labels;
    Task() {
        Generator g(99);
        for (int i = 0; i < 16; ++i) {
            const int64_t len = 2 + g.randint(5);
            std::vector<int64_t> bag;
            int high = 0;
            for (int64_t j = 0; j < len; ++j) {
                bag.push_back(g.randint(20));
                high += bag.back() >= 10;
            }
            bags.push_back(bag);
            labels.push_back(2 * high > len ? 1 : 0);
        }
    }
    // The mean loss of samples [begin, end).
    Tensor loss(TinyModel& net, int64_t begin, int64_t end) const {
        std::vector<int64_t> ids, offsets, y;
        for (int64_t i = begin; i < end; ++i) {
            offsets.push_back(static_cast<int64_t>(ids.size()));
            ids.insert(ids.end(), bags[i].begin(), bags[i].end());
            y.push_back(labels[i]);
        }
        const int64_t n = end - begin;
        return cross_entropy(
            net.forward(Tensor::from_vector(ids, {static_cast<int64_t>(ids.size())}),
                        Tensor::from_vector(offsets, {n})),
            Tensor::from_vector(y, {n}));
    }
};

enum class Adversary { None, FGM, PGD, FreeLB, AWP };

struct Combo {
    Adversary adversary = Adversary::None;
    bool ema = false, swa = false, amp = false;
    int64_t accum = 1;
    std::string str() const {
        const char* adv[] = {"none", "fgm", "pgd", "freelb", "awp"};
        return std::string(adv[static_cast<int>(adversary)]) + (ema ? "+ema" : "") +
               (swa ? "+swa" : "") + (amp ? "+amp_f16" : "") +
               (accum > 1 ? "+accum" + std::to_string(accum) : "");
    }
};

struct RunResult {
    std::vector<double> losses;
    std::vector<Tensor> weights;
    int64_t steps_taken = 0, ema_updates = 0, swa_averaged = 0;
    bool attacks_restored = true;
    double final_lr = 0;
};

// The model, the optimizer, every trick and the step configuration of one combination.
struct Rig {
    int seeded = (manual_seed(5), 0);  // before the model draws its weights
    TinyModel net;
    Task task;
    optim::Adam opt;
    tricks::FGM fgm;
    tricks::PGD pgd;
    tricks::FreeLB freelb;
    tricks::AWP awp;
    tricks::EMA ema;
    tricks::AveragedModel swa;
    amp::GradScaler scaler;
    optim::StepLR sched;
    tricks::TrainStepConfig cfg;

    // zero_attacks: every attack at strength 0 (FGM epsilon, PGD alpha, AWP adv_lr, FreeLB
    // init_mag and adv_lr).
    Rig(const Combo& combo, bool zero_attacks)
        : opt(net.parameters(), {.lr = 0.05}),
          fgm(net, {.epsilon = zero_attacks ? 0.0 : 0.5}),
          pgd(net, {.epsilon = 0.5, .alpha = zero_attacks ? 0.0 : 0.2, .steps = 3}),
          freelb(*net.embedding, {.steps = 2,
                                  .adv_lr = zero_attacks ? 0.0 : 0.1,
                                  .init_mag = zero_attacks ? 0.0 : 0.3}),
          awp(net, {.adv_lr = zero_attacks ? 0.0 : 0.5, .adv_eps = 0.01}),
          ema(net, {.decay = 0.9, .optimizer = &opt}),
          swa(net, {}, &opt),
          scaler({.init_scale = 1024.0}),
          sched(opt, 5, 0.5) {
        cfg.optimizer = &opt;
        cfg.fgm = combo.adversary == Adversary::FGM ? &fgm : nullptr;
        cfg.pgd = combo.adversary == Adversary::PGD ? &pgd : nullptr;
        cfg.freelb = combo.adversary == Adversary::FreeLB ? &freelb : nullptr;
        cfg.awp = combo.adversary == Adversary::AWP ? &awp : nullptr;
        cfg.ema = combo.ema ? &ema : nullptr;
        cfg.scheduler = &sched;
        cfg.accum_steps = combo.accum;
        if (combo.amp) {
            cfg.autocast = DType::F16;
            cfg.scaler = &scaler;
        }
    }
};

// Trains `steps` steps of the whole task (batch 16) with the combination; one SWA update per
// step from step 4 on. With overflow_step >= 0 that step's loss is multiplied by 1e30: under f16
// autocast its gradients overflow. loss_scale multiplies every loss (2: twice the gradient).
RunResult run(const Combo& combo, int steps, int overflow_step = -1, bool zero_attacks = false,
              double loss_scale = 1.0) {
    Rig rig(combo, zero_attacks);
    RunResult r;
    for (int s = 0; s < steps; ++s) {
        const Tensor emb_before = rig.net.embedding->weight.clone();
        const int64_t steps_before = rig.opt.step_count();
        const tricks::StepResult out = tricks::train_step(rig.cfg, 16, [&](int64_t b, int64_t e) {
            const Tensor loss = rig.task.loss(rig.net, b, e);
            if (s == overflow_step) return loss * 1e30;
            return loss_scale == 1.0 ? loss : loss * loss_scale;
        });
        r.losses.push_back(out.loss);
        if (!out.stepped) {
            // A skipped step advances nothing and leaves the weights as they were.
            r.attacks_restored = r.attacks_restored && rig.opt.step_count() == steps_before &&
                                 bitwise_equal(rig.net.embedding->weight, emb_before);
        }
        if (combo.swa && s >= 4) rig.swa.update_parameters(rig.net);
    }
    r.steps_taken = rig.opt.step_count();
    r.ema_updates = rig.ema.num_updates();
    r.swa_averaged = rig.swa.n_averaged();
    r.final_lr = rig.opt.param_groups()[0].lr;
    for (const Tensor& p : rig.net.parameters())
        r.weights.push_back(p.clone());
    return r;
}

}  // namespace

TEST_CASE("tricks/composition: all 48 combinations train and keep their invariants") {
    int combos = 0;
    for (Adversary adv : {Adversary::None, Adversary::FGM, Adversary::PGD})
        for (bool ema : {false, true})
            for (bool swa : {false, true})
                for (bool amp : {false, true})
                    for (int64_t accum : {1, 2}) {
                        const Combo combo{adv, ema, swa, amp, accum};
                        CAPTURE(combo.str());
                        const int steps = 12;
                        const RunResult r = run(combo, steps);
                        ++combos;
                        for (double l : r.losses)
                            CHECK(std::isfinite(l));
                        CHECK(r.losses.back() < r.losses.front());  // it learns
                        CHECK(r.attacks_restored);
                        // Every stepped step updated EMA once; SWA once per step from step 4.
                        CHECK(r.ema_updates == (ema ? r.steps_taken : 0));
                        if (swa) CHECK(r.swa_averaged == steps - 4);
                        if (!amp) CHECK(r.steps_taken == steps);
                        if (amp) CHECK(r.steps_taken >= steps - 2);  // the scale may back off
                    }
    CHECK(combos == 48);
}

TEST_CASE("tricks/composition: FreeLB and AWP train through train_step too") {
    for (Adversary adv : {Adversary::FreeLB, Adversary::AWP})
        for (bool amp : {false, true})
            for (int64_t accum : {1, 2}) {
                const Combo combo{adv, true, true, amp, accum};
                CAPTURE(combo.str());
                const RunResult r = run(combo, 12);
                for (double l : r.losses)
                    CHECK(std::isfinite(l));
                CHECK(r.losses.back() < r.losses.front());
                CHECK(r.attacks_restored);
            }
}

TEST_CASE(
    "tricks/composition: at strength 0 the adversarial passes still run (the seed's "
    "objective): FGM and PGD train on twice the clean gradient, AWP and FreeLB on it") {
    const RunResult plain = run({Adversary::None}, 8);
    const RunResult doubled = run({Adversary::None}, 8, -1, false, /*loss_scale=*/2.0);
    // Adam is nearly invariant to the gradient's scale: the doubled run must differ somewhere,
    // or the comparisons below could not tell the two objectives apart.
    bool differ = false;
    for (size_t i = 0; i < plain.weights.size(); ++i)
        differ = differ || !bitwise_equal(plain.weights[i], doubled.weights[i]);
    REQUIRE(differ);
    for (Adversary adv : {Adversary::FGM, Adversary::PGD, Adversary::AWP, Adversary::FreeLB}) {
        const Combo combo{adv};
        CAPTURE(combo.str());
        const RunResult zero = run(combo, 8, -1, /*zero_attacks=*/true);
        const bool twice = adv == Adversary::FGM || adv == Adversary::PGD;
        const RunResult& expected = twice ? doubled : plain;
        for (size_t i = 0; i < plain.weights.size(); ++i) {
            if (adv == Adversary::FreeLB)  // K passes of loss / K: equal up to rounding
                check_close(zero.weights[i], expected.weights[i], 1e-5, 1e-7, "FreeLB at 0");
            else
                CHECK(bitwise_equal(zero.weights[i], expected.weights[i]));
        }
    }
}

TEST_CASE(
    "tricks/composition: every attack restores what it moved, checked after the gradient "
    "half") {
    for (Adversary adv : {Adversary::FGM, Adversary::PGD, Adversary::AWP, Adversary::FreeLB})
        for (bool amp : {false, true})
            for (int64_t accum : {1, 2})
                for (bool overflow : {false, true}) {
                    if (overflow && !amp) continue;
                    const Combo combo{adv, false, false, amp, accum};
                    CAPTURE(combo.str());
                    CAPTURE(overflow);
                    Rig rig(combo, false);
                    // A first step, so that the attack starts from trained weights.
                    tricks::train_step(rig.cfg, 16, [&](int64_t b, int64_t e) {
                        return rig.task.loss(rig.net, b, e);
                    });
                    const std::vector<Tensor> before = weights(rig.net);
                    const Tensor clean_out = rig.net.embedding->forward(
                        Tensor::from_vector(std::vector<int64_t>{1, 2, 3}, {3}),
                        Tensor::from_vector(std::vector<int64_t>{0}, {1}));
                    int calls = 0, moved_calls = 0;
                    rig.opt.zero_grad();
                    const tricks::StepResult r =
                        tricks::accumulate_gradients(rig.cfg, 16, [&](int64_t b, int64_t e) {
                            ++calls;
                            moved_calls += !all_bitwise_equal(weights(rig.net), before);
                            const Tensor loss = rig.task.loss(rig.net, b, e);
                            return overflow ? loss * 1e30 : loss;
                        });
                    // The weight attacks moved the weights for their adversarial passes (unless
                    // the gradient overflowed, when nothing may move) ...
                    if (adv != Adversary::FreeLB)
                        CHECK(moved_calls == (overflow ? 0 : calls - accum));
                    CHECK(r.overflow == overflow);
                    // ... and put them back bitwise; FreeLB's hook is gone.
                    CHECK(all_bitwise_equal(weights(rig.net), before));
                    const Tensor out = rig.net.embedding->forward(
                        Tensor::from_vector(std::vector<int64_t>{1, 2, 3}, {3}),
                        Tensor::from_vector(std::vector<int64_t>{0}, {1}));
                    CHECK(bitwise_equal(out, clean_out));
                }
}

TEST_CASE("tricks/composition: accumulation gives the big batch's loss and, plain, its weights") {
    for (Adversary adv : {Adversary::None, Adversary::FGM, Adversary::PGD, Adversary::AWP}) {
        const Combo big{adv}, split{adv, false, false, false, 2};
        CAPTURE(big.str());
        const RunResult a = run(big, 6), b = run(split, 6);
        // The first step's loss (before any update) is the big batch's mean loss exactly: the
        // micro-batch losses weighted by their shares.
        check_close({b.losses[0]}, {a.losses[0]}, 1e-6, 1e-7, "first-step loss");
        // Plain steps give the big batch's weights (not bitwise: the micro-batch sums are added
        // in another order). With an attack each micro-batch follows its own gradient, which
        // differs from the big batch's direction by design (docs/grad_accum.md).
        if (adv == Adversary::None)
            for (size_t i = 0; i < a.weights.size(); ++i)
                check_close(b.weights[i], a.weights[i], 1e-4, 1e-6, "accumulated = big batch");
    }
}

TEST_CASE("tricks/composition: an overflow skips the optimizer, EMA, SWA and the schedule") {
    for (Adversary adv : {Adversary::None, Adversary::FGM, Adversary::PGD}) {
        const Combo combo{adv, true, true, true, 2};
        CAPTURE(combo.str());
        const RunResult clean = run(combo, 7);
        const RunResult r = run(combo, 8, /*overflow_step=*/5);
        CHECK(r.attacks_restored);  // the skipped step left the weights alone
        CHECK(r.steps_taken == 7);
        CHECK(r.ema_updates == 7);
        CHECK(r.swa_averaged == 3);           // steps 4..7, one of them skipped
        CHECK(r.final_lr == clean.final_lr);  // the schedule saw 7 steps, not 8
    }
}

TEST_CASE("tricks/composition: AMP with autocast off and a disabled scaler is plain training") {
    // The same run through train_step with a GradScaler{enabled = false} and no autocast dtype.
    auto train = [](bool with_disabled_amp) {
        manual_seed(5);
        TinyModel net;
        const Task task;
        optim::Adam opt(net.parameters(), {.lr = 0.05});
        amp::GradScaler off({.enabled = false});
        tricks::TrainStepConfig cfg;
        cfg.optimizer = &opt;
        if (with_disabled_amp) cfg.scaler = &off;
        for (int s = 0; s < 6; ++s)
            tricks::train_step(cfg, 16, [&](int64_t b, int64_t e) { return task.loss(net, b, e); });
        std::vector<Tensor> w;
        for (const Tensor& p : net.parameters())
            w.push_back(p.clone());
        return w;
    };
    const std::vector<Tensor> plain = train(false), amp_off = train(true);
    for (size_t i = 0; i < plain.size(); ++i)
        CHECK(bitwise_equal(plain[i], amp_off[i]));
}
