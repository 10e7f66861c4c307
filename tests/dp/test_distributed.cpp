// tests/dp/test_distributed.cpp — DistributedDataParallel with ranks on threads (in-process
// communicator; tests/dp/mpi_tests.cpp runs the same checks over MPI): the equivalence rule of
// dp_support.h, ranks bitwise identical after every step, no_sync accumulation, an overflow on one
// rank skipping the step on all, per-rank FGM, bucketing with overlap, no communication on
// accumulation micro-steps, unused parameters, a rank that stops answering, and the
// DistributedSampler.
#include <doctest/doctest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <numeric>
#include <set>

#include "core/finite.h"
#include "nn/linear.h"
#include "tests/dp/ddp_runs.h"
#include "tests/dp/rank_threads.h"

using namespace minidl;
using namespace minidl::test;

namespace {

// Runs `o` on `world` ranks (threads); rank r's model starts from its own seed, so the
// construction broadcast is what makes them equal.
std::vector<DDPRank> ddp_threads(int world, const RunOptions& o, DDPMode mode,
                                 tricks::DDPOptions options = {}) {
    const DPTask task;
    auto comms = make_in_process_group(world, {.timeout_s = 30});
    std::vector<std::shared_ptr<TinyModel>> models;
    for (int r = 0; r < world; ++r) {  // on this thread: the default generator is shared
        manual_seed(o.init_seed + 1000 * r);
        models.push_back(std::make_shared<TinyModel>());
    }
    std::vector<DDPRank> out(static_cast<size_t>(world));
    run_ranks(world,
              [&](int r) { out[r] = ddp_rank_run(task, o, *models[r], comms[r], mode, options); });
    return out;
}

}  // namespace

TEST_CASE("dp/ddp: 2 ranks equal 1 process on the full batch after each of 5 steps") {
    const DPTask task;
    RunOptions o;
    o.ema = true;
    RunOptions accum = o;
    accum.accum = 2;
    const Trajectory full = reference_run(task, o), halves = reference_run(task, accum);
    for (DDPMode mode :
         {DDPMode::TrainStep, DDPMode::Halves, DDPMode::SyncHook, DDPMode::Backward}) {
        CAPTURE(static_cast<int>(mode));
        const auto ranks = ddp_threads(2, o, mode);
        for (const DDPRank& rank : ranks) {
            CHECK(rank.identical_after_construction);
            CHECK(rank.identical_every_step);
            for (int s = 0; s < o.steps; ++s) {
                CAPTURE(s);
                // (g0 + g1) / 2 of the two mean-loss gradients is bitwise the accumulation of the
                // two halves weighted 1/2 each.
                CHECK(all_bitwise(rank.trajectory.weights[s], halves.weights[s]));
                check_all_close(rank.trajectory.weights[s], full.weights[s], 1e-5, 1e-7,
                                "vs full batch");
            }
            if (mode != DDPMode::Backward) CHECK(all_bitwise(rank.trajectory.ema, halves.ema));
        }
        // train_step averages the loss over the ranks; the other two report their own.
        if (mode == DDPMode::TrainStep || mode == DDPMode::Halves)
            CHECK(ranks[0].trajectory.losses == ranks[1].trajectory.losses);
    }
}

TEST_CASE("dp/ddp: 4 ranks, and buckets of 64 bytes launched during backward, change nothing") {
    const DPTask task;
    RunOptions o;
    const Trajectory full = reference_run(task, o);
    const auto one_bucket = ddp_threads(2, o, DDPMode::TrainStep);
    const auto many =
        ddp_threads(2, o, DDPMode::TrainStep, {.bucket_cap_bytes = 64, .first_bucket_bytes = 64});
    CHECK(one_bucket[0].buckets == 1);
    CHECK(many[0].buckets == 5);  // fc2.bias | fc2.weight | fc1.bias | fc1.weight | embedding
    CHECK(many[0].launched_during_backward == 5);
    const auto four = ddp_threads(4, o, DDPMode::TrainStep);
    for (int s = 0; s < o.steps; ++s) {
        CHECK(all_bitwise(many[1].trajectory.weights[s], one_bucket[1].trajectory.weights[s]));
        for (const DDPRank& rank : four)
            check_all_close(rank.trajectory.weights[s], full.weights[s], 1e-5, 1e-7, "4 ranks");
        CHECK(all_bitwise(four[3].trajectory.weights[s], four[0].trajectory.weights[s]));
    }
}

TEST_CASE("dp/ddp: no_sync micro-steps then one synced backward equal the big batch") {
    const DPTask task;
    RunOptions o;
    o.accum = 2;  // per rank: 2 micro-batches of 4, the first under no_sync
    RunOptions quarters = o;
    quarters.accum = 4;
    const Trajectory full = reference_run(task, RunOptions{});
    const Trajectory q = reference_run(task, quarters);
    for (DDPMode mode : {DDPMode::TrainStep, DDPMode::SyncHook, DDPMode::Backward}) {
        CAPTURE(static_cast<int>(mode));
        const auto ranks = ddp_threads(2, o, mode);
        for (int s = 0; s < o.steps; ++s) {
            check_all_close(ranks[0].trajectory.weights[s], full.weights[s], 1e-5, 1e-7, "full");
            check_all_close(ranks[0].trajectory.weights[s], q.weights[s], 1e-5, 1e-7, "quarters");
            CHECK(all_bitwise(ranks[0].trajectory.weights[s], ranks[1].trajectory.weights[s]));
        }
    }
}

TEST_CASE("dp/ddp: an overflow on one rank skips the step on all ranks (AMP)") {
    const DPTask task;
    RunOptions o;
    o.amp = true;
    o.ema = true;
    o.inf_step = 2;
    o.inf_rank = 1;
    RunOptions accum = o;
    accum.accum = 2;
    const Trajectory ref = reference_run(task, accum);
    for (DDPMode mode : {DDPMode::TrainStep, DDPMode::Halves, DDPMode::SyncHook}) {
        const auto ranks = ddp_threads(2, o, mode);
        for (const DDPRank& rank : ranks) {
            CHECK(rank.trajectory.steps_taken == 4);
            CHECK(rank.trajectory.final_scale == 512.0);
            CHECK(all_bitwise(rank.trajectory.weights[2], rank.trajectory.weights[1]));
            for (int s = 0; s < o.steps; ++s)
                CHECK(all_bitwise(rank.trajectory.weights[s], ref.weights[s]));
            CHECK(all_bitwise(rank.trajectory.ema, ref.ema));
        }
    }
}

TEST_CASE("dp/ddp: a NaN on one rank reaches every rank's reduced gradient, all skip alike") {
    // reduce_gradients, a finiteness check, apply_gradients: what text_classifier's
    // --on-nonfinite does under --distributed. The NaN loss of rank 1 at step 2 survives the
    // average, so both ranks see it and skip that step: they stay bitwise equal, step 2 changes
    // no weight, and the other steps are exactly those of the reference run from the same state.
    const DPTask task;
    RunOptions o;
    o.inf_step = 2;
    o.inf_rank = 1;
    o.inject_nan = true;
    const auto ranks = ddp_threads(2, o, DDPMode::SkipNonFinite);
    RunOptions accum;
    accum.accum = 2;
    accum.steps = 2;
    const Trajectory before = reference_run(task, accum);  // steps 0 and 1 as in the ranks' run
    for (const DDPRank& rank : ranks) {
        CHECK(rank.identical_every_step);
        CHECK(rank.trajectory.steps_taken == o.steps - 1);
        CHECK(std::isnan(rank.trajectory.losses[2]));
        CHECK(all_bitwise(rank.trajectory.weights[0], before.weights[0]));
        CHECK(all_bitwise(rank.trajectory.weights[1], before.weights[1]));
        CHECK(all_bitwise(rank.trajectory.weights[2], rank.trajectory.weights[1]));
        CHECK_FALSE(all_bitwise(rank.trajectory.weights[3], rank.trajectory.weights[2]));
        for (const std::vector<Tensor>& w : rank.trajectory.weights)
            for (const Tensor& t : w)
                CHECK(all_finite(t));
    }
    CHECK(all_bitwise(ranks[0].trajectory.weights.back(), ranks[1].trajectory.weights.back()));
}

TEST_CASE("dp/ddp: train_step attacks each rank with its own gradient, like DataParallel") {
    const DPTask task;
    RunOptions o;
    o.fgm = 0.5;
    RunOptions accum = o;
    accum.accum = 2;
    const Trajectory ref = reference_run(task, accum);
    const auto ranks = ddp_threads(2, o, DDPMode::TrainStep);
    for (int s = 0; s < o.steps; ++s) {
        check_all_close(ranks[0].trajectory.weights[s], ref.weights[s], 1e-5, 1e-7, "fgm");
        CHECK(all_bitwise(ranks[0].trajectory.weights[s], ranks[1].trajectory.weights[s]));
    }
    // Through sync_hook every backward averages, so the attack follows the AVERAGED gradient:
    // the single-process FGM step on the whole batch.
    const auto averaged = ddp_threads(2, o, DDPMode::SyncHook);
    const Trajectory full = reference_run(task, o);
    for (int s = 0; s < o.steps; ++s)
        check_all_close(averaged[1].trajectory.weights[s], full.weights[s], 1e-5, 1e-7,
                        "fgm (averaged)");
}

namespace {
// A communicator that counts the all-reduces passing through it to another. DDP calls it from its
// communication thread, hence the atomic.
class CountingComm final : public Communicator {
  public:
    explicit CountingComm(std::shared_ptr<Communicator> inner)
        : Communicator({.timeout_s = inner->timeout_s()}), inner_(std::move(inner)) {}
    int rank() const override { return inner_->rank(); }
    int world_size() const override { return inner_->world_size(); }
    const char* backend() const override { return inner_->backend(); }
    void all_reduce(const std::vector<Tensor>& tensors, CommOp op) override {
        ++all_reduces;
        inner_->all_reduce(tensors, op);
    }
    void broadcast(const std::vector<Tensor>& tensors, int root) override {
        inner_->broadcast(tensors, root);
    }
    void barrier() override { inner_->barrier(); }
    void abort(const std::string& reason) override { inner_->abort(reason); }
    bool broken() const override { return inner_->broken(); }
    std::atomic<int64_t> all_reduces{0};

  private:
    std::shared_ptr<Communicator> inner_;
};
}  // namespace

TEST_CASE("dp/ddp: accumulation micro-steps communicate nothing, one synced step all buckets") {
    // 5 buckets of 64 bytes (fc2.bias | fc2.weight | fc1.bias | fc1.weight | embedding). Per
    // optimizer step of 4 micro-batches, whichever way it is driven: 5 all-reduces of gradients,
    // none during the first 3 micro-batches; train_step adds one for the overflow flag and loss.
    const DPTask task;
    auto comms = make_in_process_group(2, {.timeout_s = 30});
    std::vector<std::shared_ptr<TinyModel>> nets;
    for (int r = 0; r < 2; ++r) {
        manual_seed(5);
        nets.push_back(std::make_shared<TinyModel>());
    }
    // Per rank: after the no_sync micro-steps, after the synced one, per train_step (two ways).
    std::vector<std::array<int64_t, 4>> counts(2);
    run_ranks(2, [&](int r) {
        EnableGradGuard grad_mode;
        auto comm = std::make_shared<CountingComm>(comms[r]);
        TinyModel& net = *nets[r];
        tricks::DistributedDataParallel ddp(net, comm,
                                            {.bucket_cap_bytes = 64, .first_bucket_bytes = 64});
        auto loss = [&](int64_t b, int64_t e) { return task.loss(net, 8 * r + b, 8 * r + e); };
        {
            auto local = ddp.no_sync();
            for (int64_t j = 0; j < 3; ++j)
                loss(2 * j, 2 * j + 2).backward();
        }
        counts[r][0] = comm->all_reduces.exchange(0);
        loss(6, 8).backward();
        counts[r][1] = comm->all_reduces.exchange(0);
        optim::Adam opt(net.parameters(), {.lr = 0.05});
        tricks::TrainStepConfig cfg;
        cfg.optimizer = &opt;
        cfg.accum_steps = 4;
        ddp.train_step(cfg, 8, loss);
        counts[r][2] = comm->all_reduces.exchange(0);
        cfg.sync_hook = ddp.sync_hook();
        tricks::train_step(cfg, 8, loss);
        counts[r][3] = comm->all_reduces.exchange(0);
    });
    for (int r = 0; r < 2; ++r) {
        CAPTURE(r);
        CHECK(counts[r][0] == 0);
        CHECK(counts[r][1] == 5);
        CHECK(counts[r][2] == 5 + 1);
        CHECK(counts[r][3] == 5);
    }
}

namespace {
// Three heads on one input: rank 0 uses a and b, rank 1 uses a only, c is never used.
struct Heads : nn::Cloneable<Heads> {
    Heads() { reset(); }
    void reset() override {
        a = register_module("a", std::make_shared<nn::Linear>(4, 2));
        b = register_module("b", std::make_shared<nn::Linear>(4, 2));
        c = register_module("c", std::make_shared<nn::Linear>(4, 2));
    }
    Tensor loss(int rank, const Tensor& x) {
        Tensor l = sum(a->forward(x));
        return rank == 0 ? l + sum(b->forward(x)) : l;
    }
    std::shared_ptr<nn::Linear> a, b, c;
};
}  // namespace

TEST_CASE("dp/ddp: a parameter unused on one rank gets the average, one unused everywhere none") {
    manual_seed(3);
    Heads model;
    std::vector<std::shared_ptr<Heads>> nets = {nn::clone(model), nn::clone(model)};
    std::vector<Tensor> x = {Tensor::randn({3, 4}), Tensor::randn({3, 4})};
    // Expected: each rank's local gradients, averaged.
    std::vector<std::shared_ptr<Heads>> local = {nn::clone(model), nn::clone(model)};
    for (int r = 0; r < 2; ++r)
        local[r]->loss(r, x[r]).backward();
    NoGradGuard no_grad;
    const Tensor ga = local[0]->a->weight.grad().clone().add_(local[1]->a->weight.grad()).mul_(0.5);
    const Tensor gb = local[0]->b->weight.grad().clone().mul_(0.5);

    auto comms = make_in_process_group(2);
    run_ranks(2, [&](int r) {
        EnableGradGuard grad_mode;
        tricks::DistributedDataParallel ddp(*nets[r], comms[r],
                                            {.bucket_cap_bytes = 40, .first_bucket_bytes = 40});
        nets[r]->loss(r, x[r]).backward();
    });
    for (int r = 0; r < 2; ++r) {
        CHECK(bitwise_equal(nets[r]->a->weight.grad(), ga));
        CHECK(bitwise_equal(nets[r]->b->weight.grad(), gb));
        CHECK_FALSE(nets[r]->c->weight.grad().defined());
    }
}

TEST_CASE("dp/ddp: a rank that stops answering makes the others throw within the timeout") {
    const DPTask task;
    auto comms = make_in_process_group(2, {.timeout_s = 0.5});
    manual_seed(5);
    std::vector<std::shared_ptr<TinyModel>> nets = {std::make_shared<TinyModel>(),
                                                    std::make_shared<TinyModel>()};
    std::string error;
    double seconds = 0;
    run_ranks(2, [&](int r) {
        tricks::DistributedDataParallel ddp(*nets[r], comms[r]);
        if (r == 1) return;  // constructed, then gone
        optim::Adam opt(nets[r]->parameters(), {.lr = 0.05});
        tricks::TrainStepConfig cfg;
        cfg.optimizer = &opt;
        const auto start = std::chrono::steady_clock::now();
        try {
            ddp.train_step(cfg, 8, [&](int64_t b, int64_t e) { return task.loss(*nets[r], b, e); });
        } catch (const CommError& e) {
            error = e.what();
        }
        seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        CHECK_THROWS_AS(
            ddp.train_step(cfg, 8, [&](int64_t b, int64_t e) { return task.loss(*nets[r], b, e); }),
            StateError);
    });
    CHECK(error.find("all_reduce on rank 0 of 2") != std::string::npos);
    CHECK(error.find("timed out after 0.5 s waiting for rank(s) 1") != std::string::npos);
    CHECK(seconds >= 0.45);
    CHECK(seconds < 5.0);
}

TEST_CASE("dp/ddp: DistributedSampler gives every rank an even shard, PyTorch's padding") {
    SUBCASE("padding") {
        std::multiset<int64_t> seen;
        for (int r = 0; r < 3; ++r) {
            tricks::DistributedSampler s(10, r, 3, {.shuffle = false});
            CHECK(s.num_samples() == 4);
            CHECK(s.total_size() == 12);
            const auto idx = s.indices();
            CHECK(idx.size() == 4);
            seen.insert(idx.begin(), idx.end());
        }
        CHECK(tricks::DistributedSampler(10, 0, 3, {.shuffle = false}).indices() ==
              std::vector<int64_t>{0, 3, 6, 9});
        CHECK(tricks::DistributedSampler(10, 1, 3, {.shuffle = false}).indices() ==
              std::vector<int64_t>{1, 4, 7, 0});  // padded with the first indices
        CHECK(seen.size() == 12);
        for (int64_t i = 0; i < 10; ++i)
            CHECK(seen.count(i) == (i < 2 ? 2u : 1u));
    }
    SUBCASE("drop_last") {
        std::set<int64_t> seen;
        for (int r = 0; r < 3; ++r) {
            tricks::DistributedSampler s(10, r, 3, {.shuffle = false, .drop_last = true});
            CHECK(s.num_samples() == 3);
            for (int64_t i : s.indices())
                CHECK(seen.insert(i).second);
        }
        CHECK(seen.size() == 9);
    }
    SUBCASE("shuffle: seeded per epoch, the same permutation on every rank") {
        tricks::DistributedSampler a0(100, 0, 2, {.seed = 7}), a1(100, 1, 2, {.seed = 7});
        std::vector<int64_t> all = a0.indices();
        const auto other = a1.indices();
        all.insert(all.end(), other.begin(), other.end());
        std::sort(all.begin(), all.end());
        std::vector<int64_t> expected(100);
        std::iota(expected.begin(), expected.end(), int64_t{0});
        CHECK(all == expected);  // a partition of the data set
        const auto epoch0 = a0.indices();
        a0.set_epoch(1);
        CHECK(a0.indices() != epoch0);
        a0.set_epoch(0);
        CHECK(a0.indices() == epoch0);
        CHECK(tricks::DistributedSampler(100, 0, 2, {.seed = 8}).indices() != epoch0);
    }
    CHECK_THROWS_AS(tricks::DistributedSampler(10, 3, 3), IndexError);
}
