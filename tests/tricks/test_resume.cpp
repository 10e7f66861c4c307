// tests/tricks/test_resume.cpp — checkpointing every trick: a run interrupted after 5 steps and
// resumed from its saved state (model, optimizer, schedule, EMA shadow, SWA average and count,
// loss-scaler state, generators) ends BITWISE equal to the uninterrupted 10-step run, for each
// adversarial trick with EMA, SWA, AMP-f16 and accumulation on.
#include <doctest/doctest.h>

#include "optim/adam.h"
#include "optim/lr_scheduler.h"
#include "tests/support/compare.h"
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

enum class Adversary { None, FGM, PGD, FreeLB, AWP };

// A snapshot whose tensors do not alias live state (state_dict()s alias it, as PyTorch's do).
StateDict snapshot(const StateDict& live) {
    StateDict s;
    s.metadata = live.metadata;
    for (const auto& [k, v] : live.tensors) s.tensors[k] = v.clone();
    return s;
}

void save_generator(StateDict& sd, const std::string& key, const Generator& g) {
    const Generator::State st = g.state();
    sd.metadata[key + ".seed"] = std::to_string(st.seed);
    sd.metadata[key + ".offset"] = std::to_string(st.offset);
}
void load_generator(const StateDict& sd, const std::string& key, Generator& g) {
    g.set_state({std::stoull(sd.meta(key + ".seed")), std::stoull(sd.meta(key + ".offset"))});
}

// Everything a training run is made of, built the same way every time.
struct Run {
    TinyModel net;
    optim::Adam opt{net.parameters(), {.lr = 0.05}};
    tricks::FGM fgm{net, {.epsilon = 0.5}};
    tricks::PGD pgd{net, {.epsilon = 0.5, .alpha = 0.2, .steps = 2}};
    tricks::FreeLB freelb{*net.embedding, {.steps = 2, .init_mag = 0.3, .seed = 3}};
    tricks::AWP awp{net, {.adv_lr = 0.5}};
    tricks::EMA ema{net, {.decay = 0.9, .optimizer = &opt}};
    tricks::AveragedModel swa{net, {}, &opt};
    amp::GradScaler scaler{{.init_scale = 1024.0, .growth_interval = 3}};
    optim::StepLR sched{opt, 3, 0.5};
    tricks::TrainStepConfig cfg;
    Generator data_gen{17};  // draws each step's batch

    explicit Run(Adversary adv) {
        cfg.optimizer = &opt;
        cfg.fgm = adv == Adversary::FGM ? &fgm : nullptr;
        cfg.pgd = adv == Adversary::PGD ? &pgd : nullptr;
        cfg.freelb = adv == Adversary::FreeLB ? &freelb : nullptr;
        cfg.awp = adv == Adversary::AWP ? &awp : nullptr;
        cfg.ema = &ema;
        cfg.scheduler = &sched;
        cfg.autocast = DType::F16;
        cfg.scaler = &scaler;
        cfg.accum_steps = 2;
    }

    void train(int steps) {
        for (int s = 0; s < steps; ++s) {
            // A fresh random batch of 6 bags (the data position lives in data_gen's state).
            std::vector<int64_t> ids, offsets, labels;
            for (int b = 0; b < 6; ++b) {
                offsets.push_back(static_cast<int64_t>(ids.size()));
                const int64_t len = 1 + data_gen.randint(4);
                for (int64_t j = 0; j < len; ++j) ids.push_back(data_gen.randint(20));
                labels.push_back(data_gen.randint(2));
            }
            const Tensor tids = Tensor::from_vector(ids, {static_cast<int64_t>(ids.size())});
            tricks::train_step(cfg, 6, [&](int64_t b, int64_t e) {
                const int64_t start = offsets[b];
                const int64_t stop = e < 6 ? offsets[e] : static_cast<int64_t>(ids.size());
                std::vector<int64_t> off(offsets.begin() + b, offsets.begin() + e);
                for (auto& o : off) o -= start;
                std::vector<int64_t> y(labels.begin() + b, labels.begin() + e);
                return cross_entropy(net.forward(slice(tids, 0, start, stop),
                                                 Tensor::from_vector(off, {e - b})),
                                     Tensor::from_vector(y, {e - b}));
            });
            swa.update_parameters(net);
        }
    }

    StateDict save() const {
        StateDict sd;
        sd.merge(net.state_dict(), "model.");
        sd.merge(opt.state_dict(), "optimizer.");
        sd.merge(sched.state_dict(), "scheduler.");
        sd.merge(ema.state_dict(), "ema.");
        sd.merge(swa.state_dict(), "swa.");
        sd.merge(scaler.state_dict(), "scaler.");
        save_generator(sd, "rng.default", default_generator());
        save_generator(sd, "rng.data", data_gen);
        save_generator(sd, "rng.freelb", const_cast<tricks::FreeLB&>(freelb).generator());
        return snapshot(sd);
    }

    void load(const StateDict& sd) {
        net.load_state_dict(sd.sub("model."));
        opt.load_state_dict(sd.sub("optimizer."));
        sched.load_state_dict(sd.sub("scheduler."));
        ema.load_state_dict(sd.sub("ema."));
        swa.load_state_dict(sd.sub("swa."));
        scaler.load_state_dict(sd.sub("scaler."));
        load_generator(sd, "rng.default", default_generator());
        load_generator(sd, "rng.data", data_gen);
        load_generator(sd, "rng.freelb", freelb.generator());
    }
};

}  // namespace

TEST_CASE("tricks/resume: an interrupted run resumes bitwise, for every trick") {
    for (Adversary adv :
         {Adversary::None, Adversary::FGM, Adversary::PGD, Adversary::FreeLB, Adversary::AWP}) {
        CAPTURE(static_cast<int>(adv));
        manual_seed(1);
        Run whole(adv);
        whole.train(10);

        manual_seed(1);
        StateDict checkpoint;
        {
            Run first(adv);
            first.train(5);
            checkpoint = first.save();
        }
        manual_seed(12345);  // the resumed process starts from another state
        Run resumed(adv);
        resumed.load(checkpoint);
        resumed.train(5);

        const StateDict a = whole.save(), b = resumed.save();
        CHECK(a.tensors.size() == b.tensors.size());
        for (const auto& [name, t] : a.tensors) {
            CAPTURE(name);
            CHECK(bitwise_equal(t, b.at(name)));
        }
        CHECK(a.metadata == b.metadata);
        CHECK(whole.opt.step_count() == resumed.opt.step_count());
    }
}
