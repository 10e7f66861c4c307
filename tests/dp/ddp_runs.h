// tests/dp/ddp_runs.h — one rank's training run under DistributedDataParallel, driven in each of
// the ways distributed.h offers; shared by the thread-rank tests (test_distributed.cpp),
// the MPI programs (mpi_tests.cpp) and the GPU suite.
#pragma once

#include <cmath>
#include <memory>

#include "core/comm.h"
#include "core/finite.h"
#include "tests/dp/dp_support.h"
#include "tricks/distributed.h"
#include "tricks/grad_accum.h"

namespace minidl::test {

enum class DDPMode {
    TrainStep,      // ddp.train_step (per-rank attacks, one averaging per step)
    Halves,         // its two halves: ddp.reduce_gradients, then tricks::apply_gradients
    SkipNonFinite,  // the halves with a check between: a non-finite loss or gradient skips
    SyncHook,       // tricks::train_step with cfg.sync_hook = ddp.sync_hook()
    Backward,       // the hand-written loop: no_sync() micro-steps, backward(), optimizer.step()
};

struct DDPRank {
    Trajectory trajectory;
    bool identical_after_construction = false;
    bool identical_every_step = true;
    int buckets = 0;
    int launched_during_backward = 0;
};

// Rank comm->rank() of comm->world_size(): trains `net` on its 1/N of every batch of `o` (o.batch
// must be a multiple of N). Collective: every rank calls it at the same time.
inline DDPRank ddp_rank_run(const DPTask& task, const RunOptions& o, TinyModel& net,
                            std::shared_ptr<Communicator> comm, DDPMode mode,
                            tricks::DDPOptions options = {}, Device device = Device::cpu()) {
    const int rank = comm->rank(), world = comm->world_size();
    const int64_t per_rank = o.batch / world;
    REQUIRE(per_rank * world == o.batch);
    net.to(device);
    tricks::DistributedDataParallel ddp(net, comm, options);
    DDPRank out;
    out.identical_after_construction = ddp.replicas_identical();
    out.buckets = static_cast<int>(ddp.buckets().size());

    optim::Adam opt(net.parameters(), {.lr = o.lr});
    tricks::FGM fgm(net, {.epsilon = o.fgm});
    tricks::EMA ema(net, {.decay = 0.9, .optimizer = &opt});
    amp::GradScaler scaler({.init_scale = 1024.0});
    tricks::TrainStepConfig cfg;
    cfg.optimizer = &opt;
    cfg.accum_steps = o.accum;
    if (o.fgm > 0) cfg.fgm = &fgm;
    if (o.ema) cfg.ema = &ema;
    if (o.amp) {
        cfg.autocast = DType::F16;
        cfg.scaler = &scaler;
    }
    if (mode == DDPMode::SyncHook) cfg.sync_hook = ddp.sync_hook();

    for (int s = 0; s < o.steps; ++s) {
        const int64_t base = s * o.batch + rank * per_rank;  // this rank's shard of batch s
        auto loss_fn = [&](int64_t b, int64_t e) {
            return task_loss(task, net, base + b, base + e, o, s, rank, device);
        };
        double loss = 0;
        if (mode == DDPMode::TrainStep) {
            loss = ddp.train_step(cfg, per_rank, loss_fn).loss;
        } else if (mode == DDPMode::SkipNonFinite) {
            const tricks::StepResult r = ddp.reduce_gradients(cfg, per_rank, loss_fn);
            loss = r.loss;
            if (std::isfinite(r.loss) && grads_all_finite(opt.parameters()))
                tricks::apply_gradients(cfg, r);
            else
                opt.zero_grad();
        } else if (mode == DDPMode::Halves) {
            loss = tricks::apply_gradients(cfg, ddp.reduce_gradients(cfg, per_rank, loss_fn)).loss;
        } else if (mode == DDPMode::SyncHook) {
            loss = tricks::train_step(cfg, per_rank, loss_fn).loss;
        } else {
            opt.zero_grad();
            for (const tricks::MicroBatch& mb : tricks::GradAccumulator(o.accum).plan(per_rank)) {
                const Tensor weighted =
                    tricks::GradAccumulator::weight_loss(loss_fn(mb.begin, mb.end), mb);
                loss += weighted.item();
                if (mb.last) {
                    weighted.backward();  // averages the gradients over the ranks
                } else {
                    auto local = ddp.no_sync();
                    weighted.backward();
                }
            }
            opt.step();
        }
        out.trajectory.losses.push_back(loss);
        out.trajectory.weights.push_back(snapshot(net));
        out.identical_every_step = ddp.replicas_identical() && out.identical_every_step;
    }
    out.launched_during_backward = ddp.launched_during_backward();
    if (o.ema)
        for (const auto& [name, shadow] : ema.shadows())
            out.trajectory.ema.push_back(shadow.to(Device::cpu()).clone());
    out.trajectory.steps_taken = opt.step_count();
    out.trajectory.final_scale = scaler.get_scale();
    return out;
}

}  // namespace minidl::test
