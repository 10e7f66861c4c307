// tests/dp/dp_timing.cpp — minidl_dp_timing: time a training step of the text classifier's model
// (EmbeddingBag(V, 64, mean) -> Linear(64, 64) -> ReLU -> Linear(64, 2), V = 27,769) with
// 1 or N processes (mpirun -np N: DistributedDataParallel over MPI) or N replica threads
// (--replicas N: DataParallel), and the all-reduce of its gradients alone. Synthetic bags of
// --bag uniform ids; the global batch is split over the ranks (strong scaling). Prints one JSON
// line (rank 0). The figures of docs/data_parallel.md come from here:
//   minidl_dp_timing --threads 1 --plain 1                1 process, no data parallelism
//   minidl_dp_timing --threads 1 --plain 1 --dense 1      the same with dense embedding gradients
//   minidl_dp_timing --threads 1                          1 process under DDP (a world of 1)
//   mpirun -np 2 minidl_dp_timing --threads 1             2 processes, 1 thread each
//   minidl_dp_timing --threads 1 --replicas 2             1 process, 2 replica threads
// --plain: tricks::train_step alone, where the embedding's gradient stays row-sparse
// (core/row_grad.h); DDP's gradient hooks and DataParallel's all-reduce need it dense.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/comm.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "core/row_grad.h"
#include "nn/embedding.h"
#include "nn/linear.h"
#include "ops/ops.h"
#include "optim/adam.h"
#include "tricks/data_parallel.h"
#include "tricks/distributed.h"

using namespace minidl;

namespace {

struct Model : nn::Cloneable<Model> {
    Model(int64_t vocab, int64_t dim) : vocab_(vocab), dim_(dim) { reset(); }
    void reset() override {
        embedding = register_module("embedding", std::make_shared<nn::EmbeddingBag>(vocab_, dim_));
        fc1 = register_module("fc1", std::make_shared<nn::Linear>(dim_, dim_));
        fc2 = register_module("fc2", std::make_shared<nn::Linear>(dim_, 2));
    }
    Tensor forward(const Tensor& ids, const Tensor& offsets) {
        return fc2->forward(relu(fc1->forward(embedding->forward(ids, offsets))));
    }
    int64_t vocab_, dim_;
    std::shared_ptr<nn::EmbeddingBag> embedding;
    std::shared_ptr<nn::Linear> fc1, fc2;
};

struct Batch {
    std::vector<int64_t> ids, offsets, labels;
};

// Samples [first, last) of a batch of fixed-length bags as model inputs.
Tensor loss_of(Model& net, const Batch& b, int64_t bag, int64_t first, int64_t last) {
    const int64_t n = last - first;
    std::vector<int64_t> ids(b.ids.begin() + first * bag, b.ids.begin() + last * bag);
    std::vector<int64_t> offsets(static_cast<size_t>(n)),
        labels(b.labels.begin() + first, b.labels.begin() + last);
    for (int64_t i = 0; i < n; ++i)
        offsets[static_cast<size_t>(i)] = i * bag;
    return cross_entropy(
        net.forward(Tensor::from_vector(ids, {n * bag}), Tensor::from_vector(offsets, {n})),
        Tensor::from_vector(labels, {n}));
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
    int steps = 40, threads = 0, replicas = 0;
    bool plain = false, dense = false;
    int64_t batch = 32, bag = 200, vocab = 27769, dim = 64;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string flag = argv[i];
        const long long v = std::atoll(argv[i + 1]);
        if (flag == "--steps")
            steps = static_cast<int>(v);
        else if (flag == "--threads")
            threads = static_cast<int>(v);
        else if (flag == "--replicas")
            replicas = static_cast<int>(v);
        else if (flag == "--plain")
            plain = v != 0;
        else if (flag == "--dense")
            dense = v != 0;
        else if (flag == "--batch")
            batch = v;
        else if (flag == "--bag")
            bag = v;
        else if (flag == "--vocab")
            vocab = v;
        else {
            std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
            return 2;
        }
    }
    if (threads > 0) set_num_threads(threads);
    if (dense) set_row_sparse_grads(false);
    try {
        const bool distributed = launch_world_size() > 1;
        std::shared_ptr<Communicator> comm =
            distributed ? mpi::world() : make_in_process_group(1).front();
        const int rank = comm->rank(), world = comm->world_size();
        const int64_t per_rank = batch / world;

        manual_seed(1);
        Model net(vocab, dim);
        std::unique_ptr<tricks::DataParallel> dp;
        std::unique_ptr<tricks::DistributedDataParallel> ddp;
        if (replicas > 0)
            dp = std::make_unique<tricks::DataParallel>(
                net,
                tricks::DataParallelOptions{
                    .devices = std::vector<Device>(static_cast<size_t>(replicas), Device::cpu())});
        else if (!plain)
            ddp = std::make_unique<tricks::DistributedDataParallel>(net, comm);
        optim::Adam opt(net.parameters(), {.lr = 1e-3});
        tricks::TrainStepConfig cfg;
        cfg.optimizer = &opt;

        Generator gen(7 + static_cast<uint64_t>(rank));
        Batch b;
        for (int64_t i = 0; i < batch * bag; ++i)
            b.ids.push_back(gen.randint(vocab));
        for (int64_t i = 0; i < batch; ++i)
            b.labels.push_back(gen.randint(2));

        std::vector<double> step_s;
        for (int s = 0; s < steps; ++s) {
            comm->barrier();
            const auto t0 = std::chrono::steady_clock::now();
            if (dp)
                dp->train_step(cfg, batch, [&](int r, int64_t first, int64_t last) {
                    return loss_of(dp->replica<Model>(r), b, bag, first, last);
                });
            else if (ddp)
                ddp->train_step(cfg, per_rank, [&](int64_t first, int64_t last) {
                    return loss_of(net, b, bag, first, last);
                });
            else
                tricks::train_step(cfg, batch, [&](int64_t first, int64_t last) {
                    return loss_of(net, b, bag, first, last);
                });
            if (s >= 5) step_s.push_back(seconds_since(t0));  // after warm-up
        }

        // The all-reduce of the gradients alone: one flat buffer of every parameter's size.
        int64_t elements = 0;
        for (const Tensor& p : net.parameters())
            elements += p.numel();
        Tensor flat = Tensor::ones({elements});
        std::vector<double> reduce_s;
        for (int s = 0; s < 20; ++s) {
            comm->barrier();
            const auto t0 = std::chrono::steady_clock::now();
            comm->all_reduce({flat}, CommOp::Average);
            if (s >= 3) reduce_s.push_back(seconds_since(t0));
        }
        if (rank == 0)
            std::printf(
                "{\"mode\": \"%s%s\", \"processes\": %d, \"replicas\": %d, \"threads\": %d, "
                "\"batch\": %lld, \"bag\": %lld, \"params\": %lld, \"grad_bytes\": %lld, "
                "\"step_ms\": %.3f, \"samples_per_s\": %.1f, \"allreduce_ms\": %.3f}\n",
                dp    ? "DataParallel"
                : ddp ? "DistributedDataParallel"
                      : "plain",
                dense ? " (dense embedding gradients)" : "", world, dp ? replicas : 1,
                get_num_threads(), static_cast<long long>(batch), static_cast<long long>(bag),
                static_cast<long long>(elements), static_cast<long long>(elements * 4),
                1e3 * median(step_s), static_cast<double>(batch) / median(step_s),
                1e3 * median(reduce_s));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "minidl_dp_timing: %s\n", e.what());
        return 1;
    }
    return 0;
}
