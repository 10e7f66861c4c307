// tests/dp/test_data_parallel.cpp — DataParallel (CPU replicas on threads, in-process
// communicator): the equivalence rule of dp_support.h after each of 5 steps, replicas bitwise
// identical after every step, odd batch sizes, accumulation, an overflow on one replica skipping
// the step, FGM and PGD inside each replica, EMA and SWA on the primary, and the errors.
#include <doctest/doctest.h>

#include <cmath>
#include <stdexcept>
#include <type_traits>

#include "tests/dp/dp_support.h"
#include "tests/support/token_model.h"
#include "tricks/awp.h"
#include "tricks/data_parallel.h"
#include "tricks/fgm.h"
#include "tricks/freelb.h"
#include "tricks/pgd.h"
#include "tricks/swa.h"

using namespace minidl;
using namespace minidl::test;

namespace {

struct DPRun {
    Trajectory trajectory;
    bool replicas_identical_every_step = true;
};

DPRun data_parallel_run(const DPTask& task, const RunOptions& o,
                        std::vector<Device> devices = {Device::cpu(), Device::cpu()}) {
    manual_seed(o.init_seed);
    TinyModel net;
    tricks::DataParallel dp(net, {.devices = devices});
    optim::Adam opt(net.parameters(), {.lr = o.lr});
    tricks::EMA ema(net, {.decay = 0.9, .optimizer = &opt});
    tricks::AveragedModel swa(net, {}, &opt);  // SWA of the primary, as EMA
    amp::GradScaler scaler({.init_scale = 1024.0});
    tricks::TrainStepConfig cfg;
    cfg.optimizer = &opt;
    cfg.accum_steps = o.accum;
    if (o.fgm > 0)
        cfg.fgm = dp.make_attack<tricks::FGM>(tricks::FGMOptions{.epsilon = o.fgm}).get();
    if (o.pgd > 0) cfg.pgd = dp.make_attack<tricks::PGD>(pgd_options(o)).get();
    if (o.ema) cfg.ema = &ema;
    if (o.amp) {
        cfg.autocast = DType::F16;
        cfg.scaler = &scaler;
    }
    DPRun run;
    for (int s = 0; s < o.steps; ++s) {
        const int64_t base = s * o.batch;
        const auto r = dp.train_step(cfg, o.batch, [&](int replica, int64_t b, int64_t e) {
            return task_loss(task, dp.replica<TinyModel>(replica), base + b, base + e, o, s,
                             replica, dp.device(replica));
        });
        run.trajectory.losses.push_back(r.loss);
        run.trajectory.weights.push_back(snapshot(net));
        run.replicas_identical_every_step =
            run.replicas_identical_every_step && dp.replicas_identical();
        if (o.swa) swa.update_parameters(net);
    }
    if (o.ema)
        for (const auto& [name, shadow] : ema.shadows())
            run.trajectory.ema.push_back(shadow.clone());
    if (o.swa) {
        run.trajectory.swa = snapshot(swa.module());
        run.trajectory.swa_averaged = swa.n_averaged();
    }
    run.trajectory.steps_taken = opt.step_count();
    run.trajectory.final_scale = scaler.get_scale();
    return run;
}

}  // namespace

TEST_CASE("dp/data_parallel: 2 replicas equal 1 process on the full batch after each of 5 steps") {
    const DPTask task;
    const RunOptions o;
    const DPRun dp = data_parallel_run(task, o);
    const Trajectory full = reference_run(task, o);
    RunOptions accum = o;
    accum.accum = 2;
    const Trajectory halves = reference_run(task, accum);
    CHECK(dp.replicas_identical_every_step);
    REQUIRE(dp.trajectory.weights.size() == 5);
    for (int s = 0; s < 5; ++s) {
        CAPTURE(s);
        // The replicas' gradients summed in replica order = the two halves accumulated.
        CHECK(all_bitwise(dp.trajectory.weights[s], halves.weights[s]));
        check_all_close(dp.trajectory.weights[s], full.weights[s], 1e-5, 1e-7, "vs full batch");
        CHECK(dp.trajectory.losses[s] == halves.losses[s]);
    }
    // The run learns (a test of the test: the weights move).
    CHECK_FALSE(all_bitwise(dp.trajectory.weights.front(), dp.trajectory.weights.back()));
}

TEST_CASE("dp/data_parallel: odd batches and 3 replicas weight each shard by its size") {
    const DPTask task;
    for (int replicas : {2, 3}) {
        for (int64_t batch : {15, 7}) {
            CAPTURE(replicas);
            CAPTURE(batch);
            RunOptions o;
            o.batch = batch;
            const DPRun dp =
                data_parallel_run(task, o, std::vector<Device>(replicas, Device::cpu()));
            RunOptions accum = o;
            accum.accum = replicas;  // the same split: sizes differ by one, the first ones larger
            const Trajectory shards = reference_run(task, accum);
            const Trajectory full = reference_run(task, o);
            CHECK(dp.replicas_identical_every_step);
            for (int s = 0; s < o.steps; ++s) {
                CHECK(all_bitwise(dp.trajectory.weights[s], shards.weights[s]));
                check_all_close(dp.trajectory.weights[s], full.weights[s], 1e-5, 1e-7,
                                "vs full batch");
            }
        }
    }
}

TEST_CASE("dp/data_parallel: accumulation inside the replicas equals the big batch") {
    const DPTask task;
    RunOptions o;
    o.accum = 2;  // each replica: 2 micro-batches of 4, no communication between them
    const DPRun dp = data_parallel_run(task, o);
    RunOptions quarters = o;
    quarters.accum = 4;
    const Trajectory full = reference_run(task, RunOptions{});
    const Trajectory q = reference_run(task, quarters);
    for (int s = 0; s < o.steps; ++s) {
        check_all_close(dp.trajectory.weights[s], full.weights[s], 1e-5, 1e-7, "vs full batch");
        check_all_close(dp.trajectory.weights[s], q.weights[s], 1e-5, 1e-7, "vs 4 micro-batches");
    }
    CHECK(dp.replicas_identical_every_step);
}

TEST_CASE("dp/data_parallel: an overflow on one replica skips the step on all (AMP)") {
    const DPTask task;
    RunOptions o;
    o.amp = true;
    o.ema = true;
    o.inf_step = 2;
    o.inf_rank = 1;  // replica 1 only
    const DPRun dp = data_parallel_run(task, o);
    RunOptions accum = o;
    accum.accum = 2;
    const Trajectory ref = reference_run(task, accum);
    CHECK(dp.trajectory.steps_taken == 4);  // step 2 skipped
    CHECK(dp.trajectory.final_scale == 512.0);
    CHECK(all_bitwise(dp.trajectory.weights[2], dp.trajectory.weights[1]));
    CHECK(dp.replicas_identical_every_step);
    for (int s = 0; s < o.steps; ++s)
        CHECK(all_bitwise(dp.trajectory.weights[s], ref.weights[s]));
    // EMA lives on the primary, bound to its optimizer: it skipped the step too.
    CHECK(all_bitwise(dp.trajectory.ema, ref.ema));
}

TEST_CASE("dp/data_parallel: FGM attacks each replica with its own gradient") {
    const DPTask task;
    RunOptions o;
    o.fgm = 0.5;
    o.ema = true;
    const DPRun dp = data_parallel_run(task, o);
    // Per-replica attacks are per-micro-batch attacks of accumulation over the same halves (not
    // bitwise: there the micro-batch gradient is grad - marked, here the replica's own).
    RunOptions accum = o;
    accum.accum = 2;
    const Trajectory ref = reference_run(task, accum);
    const Trajectory plain = data_parallel_run(task, RunOptions{}).trajectory;
    CHECK(dp.replicas_identical_every_step);
    for (int s = 0; s < o.steps; ++s)
        check_all_close(dp.trajectory.weights[s], ref.weights[s], 1e-5, 1e-7, "vs accumulation");
    check_all_close(dp.trajectory.ema, ref.ema, 1e-5, 1e-7, "EMA");
    CHECK_FALSE(all_bitwise(dp.trajectory.weights.back(), plain.weights.back()));  // FGM acted
}

TEST_CASE("dp/data_parallel: PGD attacks each replica with its own gradient") {
    const DPTask task;
    RunOptions o;
    o.pgd = 0.5;
    const DPRun dp = data_parallel_run(task, o);
    // As FGM: per-replica PGD is per-micro-batch PGD of accumulation over the same halves.
    RunOptions accum = o;
    accum.accum = 2;
    const Trajectory ref = reference_run(task, accum);
    const Trajectory plain = data_parallel_run(task, RunOptions{}).trajectory;
    CHECK(dp.replicas_identical_every_step);
    for (int s = 0; s < o.steps; ++s)
        check_all_close(dp.trajectory.weights[s], ref.weights[s], 1e-5, 1e-7, "vs accumulation");
    CHECK_FALSE(all_bitwise(dp.trajectory.weights.back(), plain.weights.back()));  // PGD acted
}

TEST_CASE(
    "dp/data_parallel: SWA averages the primary, a step skipped on one replica is not "
    "averaged") {
    const DPTask task;
    RunOptions o;
    o.swa = true;
    RunOptions accum = o;
    accum.accum = 2;
    SUBCASE("every step taken") {
        const DPRun dp = data_parallel_run(task, o);
        const Trajectory ref = reference_run(task, accum);
        CHECK(dp.trajectory.swa_averaged == 5);
        CHECK(all_bitwise(dp.trajectory.swa, ref.swa));
        // The average is not the last weights (a test of the test).
        CHECK_FALSE(all_bitwise(dp.trajectory.swa, dp.trajectory.weights.back()));
    }
    SUBCASE("an overflow on replica 1 at step 2 (AMP)") {
        o.amp = accum.amp = true;
        o.inf_step = accum.inf_step = 2;
        o.inf_rank = accum.inf_rank = 1;
        const DPRun dp = data_parallel_run(task, o);
        const Trajectory ref = reference_run(task, accum);
        CHECK(dp.trajectory.steps_taken == 4);
        CHECK(dp.trajectory.swa_averaged == 4);  // bound to the optimizer: the skip is not counted
        CHECK(all_bitwise(dp.trajectory.swa, ref.swa));
    }
}

TEST_CASE(
    "dp/data_parallel: each replica's attack restores its weights, and the reduced "
    "gradients agree with accumulation") {
    const DPTask task;
    for (const std::string attack : {"fgm", "pgd", "awp", "freelb"}) {
        CAPTURE(attack);
        const std::string name = attack;
        // The attack of one model, for the replicas and for the 1-process reference alike.
        // FreeLB starts at delta_0 = 0 (init_mag 0) so that no random draw differs between the
        // two arrangements.
        auto configure = [&](tricks::TrainStepConfig& cfg, auto&& make) {
            if (name == "fgm") cfg.fgm = make(tricks::FGMOptions{.epsilon = 0.5}, cfg.fgm);
            if (name == "pgd")
                cfg.pgd = make(tricks::PGDOptions{.epsilon = 0.5, .alpha = 0.2}, cfg.pgd);
            if (name == "awp") cfg.awp = make(tricks::AWPOptions{.adv_lr = 0.5}, cfg.awp);
        };
        auto freelb_for = [](nn::Module& m) {
            return std::make_unique<tricks::FreeLB>(
                *dynamic_cast<TinyModel&>(m).embedding,
                tricks::FreeLBOptions{.steps = 2, .adv_lr = 0.1, .init_mag = 0.0});
        };

        manual_seed(5);
        TinyModel net;
        tricks::DataParallel dp(net, {.devices = {Device::cpu(), Device::cpu()}});
        optim::Adam opt(net.parameters(), {.lr = 0.05});
        tricks::TrainStepConfig cfg;
        cfg.optimizer = &opt;
        std::vector<std::shared_ptr<void>> keep;
        configure(cfg, [&](auto options, auto* tag) {
            using Attack = std::remove_pointer_t<decltype(tag)>;
            auto a = dp.make_attack<Attack>(options);
            keep.push_back(a);
            return a.get();
        });
        if (name == "freelb")
            cfg.freelb =
                dp.make_attack<tricks::FreeLB>(
                      std::function<std::unique_ptr<tricks::FreeLB>(nn::Module&)>(freelb_for))
                    .get();

        // The 1-process reference: the same weights, 2 micro-batches = the 2 shards.
        manual_seed(5);
        TinyModel ref;
        optim::Adam ref_opt(ref.parameters(), {.lr = 0.05});
        tricks::TrainStepConfig ref_cfg;
        ref_cfg.optimizer = &ref_opt;
        ref_cfg.accum_steps = 2;
        std::unique_ptr<tricks::FGM> ref_fgm;
        std::unique_ptr<tricks::PGD> ref_pgd;
        std::unique_ptr<tricks::AWP> ref_awp;
        std::unique_ptr<tricks::FreeLB> ref_freelb;
        configure(ref_cfg, [&](auto options, auto* tag) {
            using Attack = std::remove_pointer_t<decltype(tag)>;
            auto a = std::make_unique<Attack>(ref, options);
            Attack* raw = a.get();
            if constexpr (std::is_same_v<Attack, tricks::FGM>) ref_fgm = std::move(a);
            if constexpr (std::is_same_v<Attack, tricks::PGD>) ref_pgd = std::move(a);
            if constexpr (std::is_same_v<Attack, tricks::AWP>) ref_awp = std::move(a);
            return raw;
        });
        if (name == "freelb") {
            ref_freelb = freelb_for(ref);
            ref_cfg.freelb = ref_freelb.get();
        }

        for (int s = 0; s < 3; ++s) {
            std::vector<std::vector<Tensor>> before;
            for (int r = 0; r < dp.num_replicas(); ++r)
                before.push_back(weights(dp.replica(r)));
            std::vector<int> moved(static_cast<size_t>(dp.num_replicas()), 0);
            const tricks::StepResult part =
                dp.reduce_gradients(cfg, 16, [&](int r, int64_t b, int64_t e) {
                    moved[static_cast<size_t>(r)] +=
                        !all_bitwise_equal(weights(dp.replica(r)), before[static_cast<size_t>(r)]);
                    return task.loss(dp.replica<TinyModel>(r), 16 * s + b, 16 * s + e);
                });
            ref_opt.zero_grad();
            const tricks::StepResult ref_part = tricks::accumulate_gradients(
                ref_cfg, 16,
                [&](int64_t b, int64_t e) { return task.loss(ref, 16 * s + b, 16 * s + e); });
            check_close({part.loss}, {ref_part.loss}, 1e-6, 1e-7, "loss");
            for (int r = 0; r < dp.num_replicas(); ++r) {
                CAPTURE(r);
                // The weight attacks moved this replica's weights during its adversarial passes,
                // and its weights are now bitwise those before the step.
                if (name != "freelb") CHECK(moved[static_cast<size_t>(r)] > 0);
                CHECK(all_bitwise_equal(weights(dp.replica(r)), before[static_cast<size_t>(r)]));
                // Every replica holds the same reduced gradient: the big batch's with each shard
                // attacked along its own gradient (= accumulation over the shards).
                CHECK(all_bitwise_equal(gradients(dp.replica(r)), gradients(dp.replica(0))));
                const std::vector<Tensor> got = gradients(dp.replica(r)), want = gradients(ref);
                for (size_t i = 0; i < want.size(); ++i)
                    check_close(got[i], want[i], 1e-5, 1e-7, "reduced gradient vs accumulation");
            }
            // Both take the step; they stay together.
            tricks::apply_gradients(cfg, part);
            dp.sync_replicas();
            tricks::apply_gradients(ref_cfg, ref_part);
            const std::vector<Tensor> w = weights(net), w_ref = weights(ref);
            for (size_t i = 0; i < w.size(); ++i)
                check_close(w[i], w_ref[i], 1e-5, 1e-7, "weights after the step");
        }
        CHECK(opt.step_count() == 3);
    }
}

TEST_CASE("dp/data_parallel: weights changed outside train_step reach the replicas") {
    const DPTask task;
    manual_seed(5);
    TinyModel net;
    tricks::DataParallel dp(net, {.devices = {Device::cpu(), Device::cpu()}});
    CHECK(dp.replicas_identical());
    {
        NoGradGuard no_grad;
        net.fc1->weight.fill_(0.25);  // a checkpoint load or an EMA swap does the same
    }
    CHECK_FALSE(dp.replicas_identical());
    optim::Adam opt(net.parameters(), {.lr = 0.05});
    tricks::TrainStepConfig cfg;
    cfg.optimizer = &opt;
    dp.train_step(cfg, 16, [&](int r, int64_t b, int64_t e) {
        // The replica computes with the changed weights.
        CHECK(dp.replica<TinyModel>(r).fc1->weight.to_vector<float>()[0] == 0.25f);
        return task.loss(dp.replica<TinyModel>(r), b, e);
    });
    CHECK(dp.replicas_identical());
}

TEST_CASE("dp/data_parallel: errors") {
    const DPTask task;
    manual_seed(5);
    TinyModel net;
    tricks::DataParallel dp(net, {.devices = {Device::cpu(), Device::cpu()}});
    optim::Adam opt(net.parameters(), {.lr = 0.05});
    auto loss = [&](int r, int64_t b, int64_t e) {
        return task.loss(dp.replica<TinyModel>(r), b, e);
    };
    tricks::TrainStepConfig cfg;
    cfg.optimizer = &opt;

    SUBCASE("an attack not made by make_attack") {
        tricks::FGM fgm(net, {.epsilon = 1.0});
        cfg.fgm = &fgm;
        CHECK_THROWS_WITH_AS(dp.train_step(cfg, 16, loss), doctest::Contains("make_attack"),
                             StateError);
    }
    SUBCASE("a sync hook") {
        cfg.sync_hook = [](bool) {};
        CHECK_THROWS_WITH_AS(dp.train_step(cfg, 16, loss), doctest::Contains("sync_hook"),
                             StateError);
    }
    SUBCASE("a replica that fails reports its own error, and the next step works") {
        const std::vector<Tensor> before = snapshot(net);
        CHECK_THROWS_WITH_AS(dp.train_step(cfg, 16,
                                           [&](int r, int64_t b, int64_t e) {
                                               if (r == 1) throw IndexError("replica 1 failed");
                                               return loss(r, b, e);
                                           }),
                             "replica 1 failed", IndexError);
        CHECK(all_bitwise(snapshot(net), before));  // no step
        dp.train_step(cfg, 16, loss);
        CHECK_FALSE(all_bitwise(snapshot(net), before));
        CHECK(dp.replicas_identical());
    }
    SUBCASE("indices") {
        CHECK_THROWS_AS(dp.replica(2), IndexError);
        CHECK(dp.shard(0, 5) == std::pair<int64_t, int64_t>{0, 3});
        CHECK(dp.shard(1, 5) == std::pair<int64_t, int64_t>{3, 5});
    }
}
