// tricks/distributed.h — DistributedDataParallel (one process — or one thread — per rank, each
// with its own copy of the model and its own optimizer) and DistributedSampler (each rank its own
// even shard of the data).
//
// Li et al., "PyTorch Distributed: Experiences on Accelerating Data Parallel Training", VLDB 2020,
// arXiv:2006.15704 (https://arxiv.org/abs/2006.15704): the design followed here. Every rank
//   - starts from rank 0's parameters and buffers (broadcast at construction), so that identical
//     gradients give identical updates and the ranks never drift apart;
//   - runs forward and backward on its own shard of the global batch (B / N samples);
//   - averages the gradients over the ranks: with equal shards,
//       (1/N) sum_r grad(mean loss of shard r) = grad(mean loss of the global batch);
//   - steps its own optimizer on the averaged gradients (identical on every rank: each engine
//     delivers the same bits to every rank).
// Bucketing: the gradients are packed, in REVERSE registration order (roughly the order backward
// produces them), into flat buckets of at most bucket_cap_bytes (25 MiB, PyTorch's default; the
// first bucket 1 MiB, so communication starts early); one all-reduce per bucket instead of one
// per tensor amortises the per-call latency (2 (N-1) alpha in the ring model). Overlap: a
// post-accumulate hook on every parameter (core/autograd.h) marks it ready; when all parameters
// of a bucket are ready, the bucket is packed and handed to a communication thread, which
// all-reduces it while backward goes on computing the earlier layers' gradients. Buckets are
// launched strictly in index order, so every rank issues the same collectives in the same order.
// At the end of backward (autograd::queue_callback) the remaining buckets are launched, all are
// waited for, and the averages are unpacked into .grad(). A parameter that got no gradient on a
// rank contributes zeros; each bucket carries one flag per parameter (1 where the rank had a
// gradient), so a parameter that got a gradient nowhere keeps none (PyTorch needs
// find_unused_parameters for this; here it costs a few floats per bucket).
//
// Two ways to drive it:
//   transparent (PyTorch's):  loss.backward() averages the gradients by itself; inside
//                             `auto guard = ddp.no_sync();` backward only accumulates locally
//                             (accumulation micro-steps), and the next synchronised backward
//                             averages the accumulated sum. tricks::train_step works with
//                             cfg.sync_hook = ddp.sync_hook(). Every backward of a synchronised
//                             micro-batch averages, so an adversarial attack there follows the
//                             AVERAGED gradient (and pays one extra all-reduce per pass).
//   ddp.train_step(cfg, ...): the per-rank semantics of DataParallel: each rank runs the
//                             gradient half of train_step on its shard with its own attack
//                             (per-rank gradients), one averaging after the last backward — with
//                             overlap when there is a single backward per micro-batch (no
//                             attack), after backward otherwise — then the overflow flags and
//                             the losses are averaged (an inf on any rank skips the step on all)
//                             and the update half runs (optimizer, scaler, EMA, scheduler).
// Rank 0 alone should write checkpoints and reports: is_main_process().
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "core/comm.h"
#include "nn/module.h"
#include "tricks/train_step.h"

namespace minidl::tricks {

struct DDPOptions {
    int64_t bucket_cap_bytes = int64_t{25} << 20;
    int64_t first_bucket_bytes = int64_t{1} << 20;
    // Launch buckets from the gradient hooks during backward (false: all after backward).
    bool overlap = true;
    // Broadcast rank 0's buffers (BatchNorm statistics) before every train_step, as PyTorch's
    // broadcast_buffers does before every forward.
    bool broadcast_buffers = true;
};

// One bucket as laid out (for tests, docs and the curious).
struct BucketInfo {
    std::vector<std::string> params;  // names, in the bucket's order
    int64_t elements = 0;             // gradient elements (the flags come on top)
    DType dtype = DType::F32;
};

class DistributedDataParallel {
  public:
    // Broadcasts rank 0's parameters and buffers into `module` (a collective: every rank
    // constructs its DistributedDataParallel at the same point), lays out the buckets and
    // registers the gradient hooks. `module` must outlive this object.
    DistributedDataParallel(nn::Module& module, std::shared_ptr<Communicator> comm,
                            DDPOptions options = {});
    ~DistributedDataParallel();
    DistributedDataParallel(const DistributedDataParallel&) = delete;
    DistributedDataParallel& operator=(const DistributedDataParallel&) = delete;

    nn::Module& module() { return module_; }
    Communicator& comm() { return *comm_; }
    int rank() const { return comm_->rank(); }
    int world_size() const { return comm_->world_size(); }
    bool is_main_process() const { return comm_->rank() == 0; }
    const std::vector<BucketInfo>& buckets() const { return bucket_info_; }
    // Buckets launched from a hook (during backward) in the last synchronisation.
    int launched_during_backward() const { return launched_early_; }

    // While alive, backward passes accumulate locally without communicating.
    class NoSync {
      public:
        explicit NoSync(DistributedDataParallel& ddp);
        ~NoSync();
        NoSync(const NoSync&) = delete;
        NoSync& operator=(const NoSync&) = delete;

      private:
        DistributedDataParallel& ddp_;
        bool previous_;
    };
    [[nodiscard]] NoSync no_sync() { return NoSync(*this); }
    // For TrainStepConfig::sync_hook in tricks::train_step: synchronise on the last micro-batch.
    std::function<void(bool)> sync_hook();

    // One optimizer step with per-rank gradients (see the top of this file). `loss_fn(begin, end)`
    // returns the mean loss of samples [begin, end) of THIS rank's batch of `batch_size`; every
    // rank must pass the same batch_size. config.sync_hook must be empty. StepResult::loss is the
    // mean over the ranks.
    StepResult train_step(TrainStepConfig& config, int64_t batch_size, const LossFn& loss_fn);
    // The first half of train_step: zero_grad, the gradient half on this rank's shard (its attack
    // perturbing and restoring its own weights) and the averaging. Afterwards every rank's .grad()
    // holds the same averaged gradient and its weights are those before the call; returns the
    // loss averaged over the ranks and whether any rank's attack overflowed — the same on every
    // rank, so a check between the halves decides alike everywhere. train_step is this, then
    // tricks::apply_gradients.
    StepResult reduce_gradients(TrainStepConfig& config, int64_t batch_size, const LossFn& loss_fn);

    // Averages the gradients now (e.g. after backward passes run under no_sync()).
    void synchronize();
    // Copies rank 0's parameters and buffers to every rank (collective).
    void broadcast_parameters();
    void broadcast_buffers();
    // Whether every rank holds bitwise the same parameters and buffers (collective; compares a
    // 62-bit hash of the bytes with an all-reduce of max and min).
    bool replicas_identical();

  private:
    struct Bucket;
    struct Pipeline;
    void on_grad_ready(size_t param);
    void begin_reduction();
    void launch_ready_buckets(bool all);
    void launch(size_t bucket);
    void finish_reduction();
    void on_backward_end();
    bool hooks_armed() const { return require_sync_ && !deferred_all_; }

    nn::Module& module_;
    std::shared_ptr<Communicator> comm_;
    DDPOptions options_;
    std::vector<Tensor> params_;  // trainable, registration order
    std::vector<Tensor> buffers_;
    std::vector<uint64_t> hook_ids_;
    std::vector<Bucket> buckets_;
    std::vector<BucketInfo> bucket_info_;
    std::vector<size_t> bucket_of_;       // param -> bucket
    std::vector<bool> ready_;             // param ready in the current reduction
    std::unique_ptr<Pipeline> pipeline_;  // the communication thread
    bool require_sync_ = true;
    bool deferred_all_ = false;     // train_step with an attack: launch everything at the end
    bool deferred_finish_ = false;  // train_step: it finishes the reduction, not backward's end
    bool in_reduction_ = false;
    size_t next_launch_ = 0;
    int launched_early_ = 0;
    bool failed_ = false;
};

// Every rank's share of a data set of `size` samples, PyTorch's DistributedSampler semantics:
// each epoch the indices are shuffled with a generator seeded by seed + epoch (the same
// permutation on every rank; minidl's Philox generator, not PyTorch's), padded by repeating the
// first indices to a multiple of world_size (or the tail dropped with drop_last), and rank r takes
// positions r, r + N, r + 2N, ... — so every rank gets the same number of samples and runs the
// same number of steps (the collectives must match).
struct DistributedSamplerOptions {
    bool shuffle = true;
    uint64_t seed = 0;
    bool drop_last = false;
};

class DistributedSampler {
  public:
    DistributedSampler(int64_t size, int rank, int world_size,
                       DistributedSamplerOptions options = {});
    void set_epoch(int64_t epoch) { epoch_ = epoch; }
    // This rank's indices for the current epoch (num_samples() of them).
    std::vector<int64_t> indices() const;
    int64_t num_samples() const { return num_samples_; }
    int64_t total_size() const { return num_samples_ * world_size_; }
    // Rank `rank`'s shard of an order of the whole data set (padding or dropping as above).
    static std::vector<int64_t> shard(const std::vector<int64_t>& order, int rank, int world_size,
                                      bool drop_last = false);

  private:
    int64_t size_;
    int rank_, world_size_;
    DistributedSamplerOptions options_;
    int64_t num_samples_;
    int64_t epoch_ = 0;
};

}  // namespace minidl::tricks
