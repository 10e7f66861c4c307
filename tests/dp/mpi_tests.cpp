// tests/dp/mpi_tests.cpp — the DDP equivalence tests over MPI: run by CTest as
//   mpirun --allow-run-as-root --oversubscribe -np 2 minidl_mpi_tests
// Every rank runs every case; the collectives pair them up. A failed check on any rank makes that
// rank exit non-zero, and mpirun with it. Each rank compares with the single-process reference
// it computes itself (the same seeds give the same numbers in every process).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include "tests/dp/ddp_runs.h"

using namespace minidl;
using namespace minidl::test;

namespace {
std::shared_ptr<Communicator> world() {
    return mpi::world({.timeout_s = 60});
}
}  // namespace

TEST_CASE("dp/mpi: all_reduce, broadcast and barrier across processes") {
    auto comm = world();
    REQUIRE(comm->world_size() >= 2);
    const int r = comm->rank(), n = comm->world_size();
    Tensor sum = Tensor::from_vector(std::vector<double>{1.0 * r, 1.0}, {2});
    Tensor avg = Tensor::full({3}, 2.0 * r);
    Tensor mx = Tensor::from_vector(std::vector<int64_t>{r, -r}, {2});
    comm->all_reduce({sum, avg}, CommOp::Sum);
    comm->all_reduce({mx}, CommOp::Max);
    CHECK(sum.to_vector<double>() == std::vector<double>{n * (n - 1) / 2.0, 1.0 * n});
    CHECK(avg.to_vector<float>() == std::vector<float>(3, 2.0f * (n * (n - 1) / 2)));
    CHECK(mx.to_vector<int64_t>() == std::vector<int64_t>{n - 1, 0});
    Tensor b = Tensor::full({2}, 1.0 + r);
    comm->broadcast({b}, n - 1);
    CHECK(b.to_vector<float>() == std::vector<float>(2, static_cast<float>(n)));
    comm->barrier();
    Tensor a = Tensor::full({4}, 1.0 + r);
    comm->all_reduce({a}, CommOp::Average);
    CHECK(a.to_vector<float>() == std::vector<float>(4, (n + 1) / 2.0f));
}

TEST_CASE("dp/mpi: 2 processes equal 1 process on the full batch after each of 5 steps") {
    auto comm = world();
    REQUIRE(comm->world_size() == 2);
    const DPTask task;
    RunOptions o;
    o.ema = true;
    RunOptions accum = o;
    accum.accum = 2;
    const Trajectory full = reference_run(task, o), halves = reference_run(task, accum);
    for (DDPMode mode : {DDPMode::TrainStep, DDPMode::SyncHook, DDPMode::Backward}) {
        CAPTURE(static_cast<int>(mode));
        manual_seed(o.init_seed + 1000 * comm->rank());  // different until the broadcast
        TinyModel net;
        const DDPRank rank = ddp_rank_run(task, o, net, comm, mode);
        CHECK(rank.identical_after_construction);
        CHECK(rank.identical_every_step);  // bitwise across processes
        for (int s = 0; s < o.steps; ++s) {
            CAPTURE(s);
            CHECK(all_bitwise(rank.trajectory.weights[s], halves.weights[s]));
            check_all_close(rank.trajectory.weights[s], full.weights[s], 1e-5, 1e-7, "full batch");
        }
    }
}

TEST_CASE("dp/mpi: no_sync accumulation, small buckets, an overflow on one rank") {
    auto comm = world();
    const DPTask task;
    SUBCASE("no_sync micro-steps equal the big batch") {
        RunOptions o;
        o.accum = 2;
        const Trajectory full = reference_run(task, RunOptions{});
        for (DDPMode mode : {DDPMode::Backward, DDPMode::TrainStep}) {
            manual_seed(o.init_seed);
            TinyModel net;
            const DDPRank rank = ddp_rank_run(task, o, net, comm, mode,
                                              {.bucket_cap_bytes = 64, .first_bucket_bytes = 64});
            CHECK(rank.buckets == 5);
            CHECK(rank.identical_every_step);
            for (int s = 0; s < o.steps; ++s)
                check_all_close(rank.trajectory.weights[s], full.weights[s], 1e-5, 1e-7, "full");
        }
    }
    SUBCASE("an overflow on rank 1 skips the step on every rank") {
        RunOptions o;
        o.amp = true;
        o.inf_step = 2;
        o.inf_rank = 1;
        RunOptions accum = o;
        accum.accum = 2;
        const Trajectory ref = reference_run(task, accum);
        manual_seed(o.init_seed);
        TinyModel net;
        const DDPRank rank = ddp_rank_run(task, o, net, comm, DDPMode::TrainStep);
        CHECK(rank.trajectory.steps_taken == 4);
        CHECK(rank.trajectory.final_scale == 512.0);
        CHECK(all_bitwise(rank.trajectory.weights[2], rank.trajectory.weights[1]));
        for (int s = 0; s < o.steps; ++s)
            CHECK(all_bitwise(rank.trajectory.weights[s], ref.weights[s]));
    }
}

int main(int argc, char** argv) {
    auto comm = world();
    doctest::Context context(argc, argv);
    const int failed = context.run();
    // Every rank learns whether any failed, so that all exit alike (a broken communicator: this
    // rank timed out waiting for one that failed).
    Tensor any = Tensor::from_vector(std::vector<int64_t>{failed != 0}, {1});
    try {
        comm->all_reduce({any}, CommOp::Max);
    } catch (const CommError& e) {
        std::fprintf(stderr, "minidl_mpi_tests: rank %d: %s\n", comm->rank(), e.what());
        return 1;
    }
    const bool any_failed = any.to_vector<int64_t>()[0] != 0;
    if (comm->rank() == 0)
        std::printf("minidl_mpi_tests: %d ranks, %s\n", comm->world_size(),
                    any_failed ? "FAILED" : "passed");
    return any_failed ? 1 : 0;
}
