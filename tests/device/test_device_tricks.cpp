// tests/device/test_device_tricks.cpp — the tricks on test_device(), through tricks::train_step:
// the end-to-end PyTorch trajectories (plain Adam, FGM, EMA, accumulation, FGM with accumulation),
// AMP in F16 and BF16 against the F32 run, every adversarial trick composed with EMA, SWA, AMP and
// accumulation, and bitwise repeatability in deterministic mode.
//
// Tolerances: trajectories rtol 1e-4 / atol 1e-6, as on the CPU (six f32 steps through every
// layer; on a GPU cuBLAS sums in another order than Eigen, a few ulps per product). AMP runs
// against the F32 run: the weights' movement over 6 steps within 2 % (F16) or 10 % (BF16) in
// relative L2 norm per tensor (the products are rounded to 11 or 8 significant bits).
#include <doctest/doctest.h>

#include <cmath>

#include "core/determinism.h"
#include "optim/adam.h"
#include "tests/support/compare.h"
#include "tests/support/device.h"
#include "tests/support/tiny_model.h"
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

// The samples (bags) of several fixture batches joined into one batch, with a loss over any
// contiguous range of them on `device`.
struct BagBatch {
    std::vector<std::vector<int64_t>> bags;
    std::vector<int64_t> labels;

    static BagBatch join(const std::vector<FixtureBatch>& batches) {
        BagBatch out;
        for (const FixtureBatch& b : batches) {
            const std::vector<int64_t> ids = b.ids.to_vector<int64_t>();
            const std::vector<int64_t> off = b.offsets.to_vector<int64_t>();
            const std::vector<int64_t> y = b.labels.to_vector<int64_t>();
            for (size_t i = 0; i < off.size(); ++i) {
                const size_t end = i + 1 < off.size() ? off[i + 1] : ids.size();
                out.bags.emplace_back(ids.begin() + off[i], ids.begin() + end);
                out.labels.push_back(y[i]);
            }
        }
        return out;
    }

    Tensor loss(TinyModel& net, int64_t begin, int64_t end, Device device) const {
        std::vector<int64_t> ids, offsets, y;
        for (int64_t i = begin; i < end; ++i) {
            offsets.push_back(static_cast<int64_t>(ids.size()));
            ids.insert(ids.end(), bags[i].begin(), bags[i].end());
            y.push_back(labels[i]);
        }
        const int64_t n = end - begin;
        return cross_entropy(
            net.forward(
                Tensor::from_vector(ids, {static_cast<int64_t>(ids.size())}, DType::I64, device),
                Tensor::from_vector(offsets, {n}, DType::I64, device)),
            Tensor::from_vector(y, {n}, DType::I64, device));
    }
};

// Runs a fixture's protocol on `device` through train_step; returns the max relative error
// against the fixture's losses (mean per step), final weights and EMA shadow.
double check_e2e(const std::string& name, Device device) {
    const json fx = load_fixture(name);
    TinyModel net;
    load_init(net, fx);
    net.to(device);
    optim::Adam opt(net.parameters(), {.lr = fx.at("lr")});
    const int64_t accum = fx.at("accumulation_steps");
    std::unique_ptr<tricks::FGM> fgm;
    if (!fx.at("fgm_epsilon").is_null())
        fgm =
            std::make_unique<tricks::FGM>(net, tricks::FGMOptions{.epsilon = fx.at("fgm_epsilon")});
    std::unique_ptr<tricks::EMA> ema;
    if (!fx.at("ema_decay").is_null())
        ema = std::make_unique<tricks::EMA>(
            net, tricks::EMAOptions{.decay = fx.at("ema_decay"), .optimizer = &opt});
    tricks::TrainStepConfig cfg{.optimizer = &opt, .fgm = fgm.get()};
    cfg.ema = ema.get();
    cfg.accum_steps = accum;

    const std::vector<FixtureBatch> batches = load_batches(fx);
    const std::vector<double> fixture_losses = fx.at("losses").get<std::vector<double>>();
    std::vector<double> losses, expected;
    for (size_t step = 0; step * accum < batches.size(); ++step) {
        const std::vector<FixtureBatch> group(batches.begin() + step * accum,
                                              batches.begin() + (step + 1) * accum);
        const BagBatch batch = BagBatch::join(group);
        const tricks::StepResult r =
            tricks::train_step(cfg, static_cast<int64_t>(batch.labels.size()),
                               [&](int64_t b, int64_t e) { return batch.loss(net, b, e, device); });
        CHECK(r.stepped);
        losses.push_back(r.loss);
        double mean = 0;  // the micro-batches have equal sizes: the step's loss is their mean
        for (int64_t j = 0; j < accum; ++j)
            mean += fixture_losses[step * accum + j] / accum;
        expected.push_back(mean);
    }
    double err = check_close(losses, expected, 1e-4, 1e-6, name + " losses");
    const StateDict final_state = net.state_dict();
    for (const auto& [k, t] : fx.at("final").items())
        err = std::max(err, check_close(final_state.at(k).to(Device::cpu()), values_from_json(t),
                                        1e-4, 1e-6, name + " final " + k));
    if (ema)
        for (const auto& [k, t] : fx.at("ema_shadow").items())
            err = std::max(err, check_close(ema->shadow(k).to(Device::cpu()), values_from_json(t),
                                            1e-4, 1e-6, name + " shadow " + k));
    return err;
}

// A small random task on `device`: `steps` train_steps of batch 12 with the given tricks; returns
// the final weights on the host.
struct ComboRun {
    std::vector<Tensor> initial, weights;
    std::vector<double> losses;
    int64_t steps = 0, ema_updates = 0, swa_n = 0;
};

ComboRun run_combo(Device device, const std::string& adversary, std::optional<DType> amp,
                   int64_t accum, int steps) {
    manual_seed(21);
    TinyModel net;
    net.to(device);
    ComboRun out;
    for (const Tensor& p : net.parameters())
        out.initial.push_back(p.to(Device::cpu()).clone());
    optim::Adam opt(net.parameters(), {.lr = 0.02});
    tricks::FGM fgm(net, {.epsilon = 0.5});
    tricks::PGD pgd(net, {.epsilon = 0.5, .alpha = 0.2, .steps = 2});
    tricks::FreeLB freelb(*net.embedding, {.steps = 2, .init_mag = 0.3});
    tricks::AWP awp(net, {.adv_lr = 0.5});
    tricks::EMA ema(net, {.decay = 0.9, .optimizer = &opt});
    tricks::AveragedModel swa(net, {}, &opt);
    amp::GradScaler scaler({.init_scale = 1024.0, .enabled = amp == DType::F16});
    tricks::TrainStepConfig cfg;
    cfg.optimizer = &opt;
    cfg.fgm = adversary == "fgm" ? &fgm : nullptr;
    cfg.pgd = adversary == "pgd" ? &pgd : nullptr;
    cfg.freelb = adversary == "freelb" ? &freelb : nullptr;
    cfg.awp = adversary == "awp" ? &awp : nullptr;
    cfg.ema = &ema;
    cfg.autocast = amp;
    cfg.scaler = amp == DType::F16 ? &scaler : nullptr;
    cfg.accum_steps = accum;

    Generator data(4);
    BagBatch batch;
    for (int i = 0; i < 12; ++i) {
        std::vector<int64_t> bag;
        const int64_t len = 1 + data.randint(6);
        int64_t high = 0;
        for (int64_t j = 0; j < len; ++j) {
            bag.push_back(data.randint(20));
            high += bag.back() >= 10;
        }
        batch.bags.push_back(bag);
        batch.labels.push_back(2 * high > len ? 1 : 0);
    }
    for (int s = 0; s < steps; ++s) {
        const tricks::StepResult r = tricks::train_step(
            cfg, 12, [&](int64_t b, int64_t e) { return batch.loss(net, b, e, device); });
        out.losses.push_back(r.loss);
        swa.update_parameters(net);
    }
    out.steps = opt.step_count();
    out.ema_updates = ema.num_updates();
    out.swa_n = swa.n_averaged();
    for (const Tensor& p : net.parameters())
        out.weights.push_back(p.to(Device::cpu()));
    return out;
}

}  // namespace

TEST_CASE("device/tricks: the end-to-end PyTorch trajectories hold through train_step") {
    const Device device = test_device();
    for (const char* name : {"e2e_adam", "e2e_adam_fgm", "e2e_adam_ema0.9", "e2e_adam_accum2",
                             "e2e_adam_fgm_accum2"}) {
        SUBCASE(name) {
            const double err = check_e2e(name, device);
            MESSAGE(std::string(name) << " on " << device.str() << ": max relative error " << err);
        }
    }
}

TEST_CASE("device/tricks: AMP f16 and bf16 runs move the weights as the f32 run does") {
    const Device device = test_device();
    const ComboRun f32 = run_combo(device, "none", std::nullopt, 1, 6);
    // What is compared is the training's movement w_final - w_initial, tensor by tensor, as a
    // relative L2 error ||d_amp - d_f32|| / ||d_f32||: a run that did not train at all scores 1,
    // far outside the bound (comparing the weights themselves would pass it, since 6 small Adam
    // steps move them by less than a 16-bit tolerance on their size).
    for (DType dt : {DType::F16, DType::BF16}) {
        CAPTURE(dt);
        const ComboRun low = run_combo(device, "none", dt, 1, 6);
        CHECK(low.steps == 6);
        const double bound = dt == DType::F16 ? 0.02 : 0.1;
        double worst = 0;
        for (size_t i = 0; i < f32.weights.size(); ++i) {
            const Tensor d32 = f32.weights[i] - f32.initial[i];
            const Tensor dlow = low.weights[i] - low.initial[i];
            REQUIRE(global_l2_norm({d32}) > 0);
            const double rel = global_l2_norm({dlow - d32}) / global_l2_norm({d32});
            worst = std::max(worst, rel);
            CHECK_MESSAGE(rel < bound, "parameter ", i, ": relative movement error ", rel);
        }
        MESSAGE("AMP " << std::string(dtype_name(dt)) << " vs f32 on " << device.str()
                       << ": worst relative movement error " << worst);
    }
}

TEST_CASE("device/tricks: every adversary composes with EMA, SWA, AMP and accumulation") {
    const Device device = test_device();
    for (const char* adv : {"none", "fgm", "pgd", "freelb", "awp"})
        for (std::optional<DType> amp : {std::optional<DType>{}, std::optional<DType>{DType::F16},
                                         std::optional<DType>{DType::BF16}})
            for (int64_t accum : {1, 3}) {
                CAPTURE(adv);
                CAPTURE(accum);
                CAPTURE(amp.has_value() ? static_cast<int>(*amp) : -1);
                const ComboRun r = run_combo(device, adv, amp, accum, 10);
                for (double l : r.losses)
                    CHECK(std::isfinite(l));
                CHECK(r.losses.back() < r.losses.front());
                CHECK(r.ema_updates == r.steps);
                CHECK(r.swa_n == r.steps);
            }
}

TEST_CASE("device/tricks: the same run twice in deterministic mode is bitwise identical") {
    const Device device = test_device();
    DeterministicGuard deterministic(true);
    const ComboRun a = run_combo(device, "fgm", DType::F16, 3, 5);
    const ComboRun b = run_combo(device, "fgm", DType::F16, 3, 5);
    for (size_t i = 0; i < a.weights.size(); ++i)
        CHECK(bitwise_equal(a.weights[i], b.weights[i]));
    CHECK(a.losses == b.losses);
}
