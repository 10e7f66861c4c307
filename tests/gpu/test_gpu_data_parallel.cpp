// tests/gpu/test_gpu_data_parallel.cpp — data parallelism on one GPU: the equivalence rule of
// tests/dp/dp_support.h with
//   - DataParallel, 2 replicas on cuda:0, in-process communicator (device tensors staged through
//     the host: NCCL cannot put two ranks on one GPU);
//   - the NCCL communicator with one rank (nccl::init_all({0})): collectives on the device, and
//     DistributedDataParallel and DataParallel driving it;
//   - two NCCL ranks with distinct data, where NCCL allows two ranks on the GPUs at hand (two
//     GPUs; on one GPU it refuses, and the test prints why).
// Deterministic mode (core/determinism.h) makes the embedding backward's scatter a fixed-order sum,
// so that runs on the same GPU can be compared bitwise.
#include <doctest/doctest.h>

#include <thread>

#include "core/comm.h"
#include "core/determinism.h"
#include "tests/dp/ddp_runs.h"
#include "tests/gpu/gpu_support.h"
#include "tricks/data_parallel.h"

using namespace minidl;
using namespace minidl::test;
using minidl::gpu_test::gpu;

namespace {

Trajectory data_parallel_gpu_run(const DPTask& task, const RunOptions& o,
                                 tricks::DataParallelOptions options, bool* identical) {
    manual_seed(o.init_seed);
    TinyModel net;
    tricks::DataParallel dp(net, options);
    optim::Adam opt(net.parameters(), {.lr = o.lr});
    amp::GradScaler scaler({.init_scale = 1024.0});
    tricks::TrainStepConfig cfg;
    cfg.optimizer = &opt;
    if (o.fgm > 0)
        cfg.fgm = dp.make_attack<tricks::FGM>(tricks::FGMOptions{.epsilon = o.fgm}).get();
    if (o.amp) {
        cfg.autocast = DType::F16;
        cfg.scaler = &scaler;
    }
    Trajectory t;
    *identical = true;
    for (int s = 0; s < o.steps; ++s) {
        const int64_t base = s * o.batch;
        t.losses.push_back(dp.train_step(cfg, o.batch, [&](int r, int64_t b, int64_t e) {
                                 return task_loss(task, dp.replica<TinyModel>(r), base + b,
                                                  base + e, o, s, r, dp.device(r));
                             }).loss);
        t.weights.push_back(snapshot(net));
        *identical = *identical && dp.replicas_identical();
    }
    t.steps_taken = opt.step_count();
    t.final_scale = scaler.get_scale();
    return t;
}

}  // namespace

TEST_CASE("gpu/data_parallel: 2 replicas on one GPU (in-process) equal 1 process, 5 steps") {
    DeterministicGuard deterministic;
    const DPTask task;
    RunOptions o;
    RunOptions accum = o;
    accum.accum = 2;
    const Trajectory full = reference_run(task, o, gpu());
    const Trajectory halves = reference_run(task, accum, gpu());
    bool identical = false;
    const Trajectory dp = data_parallel_gpu_run(
        task, o, {.devices = {gpu(), gpu()}, .comm = tricks::ReplicaComm::InProcess}, &identical);
    CHECK(identical);
    for (int s = 0; s < o.steps; ++s) {
        CAPTURE(s);
        CHECK(all_bitwise(dp.weights[s], halves.weights[s]));
        check_all_close(dp.weights[s], full.weights[s], 1e-5, 1e-7, "vs full batch");
    }
    // The GPU run agrees with the CPU run (different kernels: tolerance).
    const Trajectory cpu = reference_run(task, o);
    check_all_close(dp.weights.back(), cpu.weights.back(), 1e-4, 1e-6, "vs CPU");
}

TEST_CASE("gpu/data_parallel: an overflow on one GPU replica skips the step, FGM per replica") {
    DeterministicGuard deterministic;
    const DPTask task;
    RunOptions o;
    o.amp = true;
    o.inf_step = 2;
    o.inf_rank = 1;
    bool identical = false;
    const Trajectory dp = data_parallel_gpu_run(
        task, o, {.devices = {gpu(), gpu()}, .comm = tricks::ReplicaComm::InProcess}, &identical);
    CHECK(identical);
    CHECK(dp.steps_taken == 4);
    CHECK(dp.final_scale == 512.0);
    CHECK(all_bitwise(dp.weights[2], dp.weights[1]));

    RunOptions f;
    f.fgm = 0.5;
    RunOptions accum = f;
    accum.accum = 2;
    const Trajectory ref = reference_run(task, accum, gpu());
    const Trajectory fgm = data_parallel_gpu_run(
        task, f, {.devices = {gpu(), gpu()}, .comm = tricks::ReplicaComm::InProcess}, &identical);
    CHECK(identical);
    for (int s = 0; s < f.steps; ++s)
        check_all_close(fgm.weights[s], ref.weights[s], 1e-5, 1e-7, "fgm vs accumulation");
}

TEST_CASE("gpu/nccl: one rank: collectives, DistributedDataParallel and DataParallel") {
    if (!nccl::available()) {
        MESSAGE("built without NCCL: nothing to test");
        return;
    }
    DeterministicGuard deterministic;
    auto comms = nccl::init_all({0}, {.timeout_s = 60});
    REQUIRE(comms.size() == 1);
    Communicator& comm = *comms[0];
    CHECK(std::string(comm.backend()) == "nccl");
    Tensor a = Tensor::full({1000}, 3.0, DType::F32, gpu());
    Tensor h = Tensor::full({4}, 1.5, DType::BF16, gpu());
    comm.all_reduce({a, h}, CommOp::Sum);
    comm.all_reduce({a}, CommOp::Average);
    comm.broadcast({a}, 0);
    comm.barrier();
    CHECK(a.to_vector<float>() == std::vector<float>(1000, 3.0f));
    CHECK(h.to_vector<float>() == std::vector<float>(4, 1.5f));
    Tensor host = Tensor::ones({2});
    CHECK_THROWS_AS(comm.all_reduce({host}), DeviceError);

    // DDP over NCCL with one rank: the average of one gradient is the gradient, bitwise.
    const DPTask task;
    RunOptions o;
    o.ema = true;
    const Trajectory single = reference_run(task, o, gpu());
    for (DDPMode mode : {DDPMode::TrainStep, DDPMode::Backward}) {
        manual_seed(o.init_seed);
        TinyModel net;
        const DDPRank rank =
            ddp_rank_run(task, o, net, comms[0], mode,
                         {.bucket_cap_bytes = 64, .first_bucket_bytes = 64}, gpu());
        CHECK(rank.identical_after_construction);
        for (int s = 0; s < o.steps; ++s)
            CHECK(all_bitwise(rank.trajectory.weights[s], single.weights[s]));
    }

    // DataParallel forced onto NCCL with one replica.
    bool identical = false;
    const Trajectory dp = data_parallel_gpu_run(
        task, RunOptions{}, {.devices = {gpu()}, .comm = tricks::ReplicaComm::NCCL}, &identical);
    const Trajectory plain = reference_run(task, RunOptions{}, gpu());
    for (int s = 0; s < o.steps; ++s)
        CHECK(all_bitwise(dp.weights[s], plain.weights[s]));
}

TEST_CASE("gpu/nccl: two ranks with distinct data (where NCCL allows two ranks on the GPUs here)") {
    if (!nccl::available()) {
        MESSAGE("built without NCCL: nothing to test");
        return;
    }
    // Two ranks need two GPUs: NCCL refuses two ranks of one communicator on the same device
    // ("Duplicate GPU detected"). With one GPU the attempt is made anyway, so that an NCCL that
    // allows it is tested, and otherwise the reason is printed.
    const int devices = cuda::device_count();
    const std::vector<int> ranks_on =
        devices >= 2 ? std::vector<int>{0, 1} : std::vector<int>{0, 0};
    std::vector<std::shared_ptr<Communicator>> comms;
    try {
        comms = nccl::init_all(ranks_on, {.timeout_s = 20});
    } catch (const std::exception& e) {
        MESSAGE("2 NCCL ranks on " << devices << " GPU(s): not run: " << e.what());
        CHECK(devices < 2);  // with two GPUs, init must work
        return;
    }
    REQUIRE(comms.size() == 2);
    // Rank r holds r + 1 (F32) and 10 (r + 1) (BF16, exact); each rank drives its own thread.
    std::vector<std::vector<float>> sums(2), averages(2), broadcast(2);
    std::vector<std::string> errors(2);
    std::vector<std::thread> threads;
    for (int r = 0; r < 2; ++r) {
        threads.emplace_back([&, r] {
            try {
                const Device d = Device::cuda(ranks_on[static_cast<size_t>(r)]);
                Tensor a = Tensor::full({1000}, r + 1.0, DType::F32, d);
                Tensor b = Tensor::full({4}, 10.0 * (r + 1), DType::BF16, d);
                comms[static_cast<size_t>(r)]->all_reduce({a, b}, CommOp::Sum);
                sums[static_cast<size_t>(r)] = a.to_vector<float>();
                sums[static_cast<size_t>(r)].push_back(b.to_vector<float>()[3]);
                Tensor c = Tensor::full({8}, r + 1.0, DType::F32, d);
                comms[static_cast<size_t>(r)]->all_reduce({c}, CommOp::Average);
                averages[static_cast<size_t>(r)] = c.to_vector<float>();
                Tensor e = Tensor::full({8}, 100.0 + r, DType::F32, d);
                comms[static_cast<size_t>(r)]->broadcast({e}, 1);
                broadcast[static_cast<size_t>(r)] = e.to_vector<float>();
            } catch (const std::exception& ex) {
                errors[static_cast<size_t>(r)] = ex.what();
            }
        });
    }
    for (std::thread& t : threads)
        t.join();
    for (size_t r = 0; r < 2; ++r) {
        CAPTURE(r);
        CHECK(errors[r].empty());
        if (!errors[r].empty()) MESSAGE(errors[r]);
        std::vector<float> want_sum(1000, 3.0f);
        want_sum.push_back(30.0f);
        CHECK(sums[r] == want_sum);
        CHECK(averages[r] == std::vector<float>(8, 1.5f));
        CHECK(broadcast[r] == std::vector<float>(8, 101.0f));
    }
}
