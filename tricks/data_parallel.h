// tricks/data_parallel.h — DataParallel: one process, N replicas of the model (CPU threads or
// GPUs), one optimizer. For one process per device, launched with mpirun, see
// tricks/distributed.h (DistributedDataParallel).
//
// The math. A global batch of N samples is split into shards of n_0 .. n_{R-1} samples (sizes
// differ by at most one, the first ones larger — GradAccumulator's split), one per replica. The
// batch's mean loss is
//   L = (1/N) sum_i l_i = sum_r sum_{j in r} (n_j / N) * mean_{i in j} l_i,
// so replica r back-propagates each of its micro-batches' mean loss weighted by n_j / N (N the
// GLOBAL batch), and the SUM of the replicas' gradients is exactly the global batch's gradient,
// also for odd batch sizes (averaging the replicas' mean-loss gradients is right only when the
// shards are equal). With two replicas this is the arithmetic of gradient accumulation over the
// two halves, and the result is bitwise that of tricks::train_step with accum_steps = 2 on one
// replica (tests/dp/test_data_parallel.cpp).
//
// One step (train_step):
//   0. if the primary's weights changed since the replicas were last synchronised (a checkpoint
//      loaded, an EMA swap), copy them to the replicas first;
//   1. zero_grad everywhere; replica r gets samples [s_r, s_r + n_r) of the batch — the loss
//      function takes them with Tensor::narrow0, a zero-copy view on the CPU;
//   2. in parallel, one thread per replica (grad mode and autocast are per thread): the gradient
//      half of train_step (accumulate_gradients) with the replica's own adversarial attack, the
//      shared loss scale and the accumulation micro-batches — no communication on micro-steps.
//      FreeLB is the exception: it replays the process-wide default generator between its passes,
//      so with FreeLB the replicas take turns (in replica order) instead of running at once;
//   3. in parallel: all-reduce (sum) of the gradients. In-process (threads, every element summed
//      in replica order: bitwise reproducible) for CPU replicas and for GPUs without NCCL; NCCL
//      (nccl::init_all) for replicas on distinct GPUs;
//   4. on the calling thread, the update half (apply_gradients) on the primary: an overflow found
//      by any replica's attack, or an inf/NaN in any replica's gradient (it survives the sum),
//      skips the step — there is one optimizer, so it is skipped "on all"; EMA and the scheduler
//      follow the primary's optimizer; SWA averages the primary (the model passed in);
//   5. the primary's parameters and buffers are copied to the replicas: bitwise identical again
//      (replicas_identical() checks it). Buffers updated by a replica's forward (BatchNorm
//      statistics) are overwritten by the primary's, as PyTorch's DataParallel does.
//
// Why a wrapper around the two halves of train_step, not a loss_fn that runs the replicas inside
// tricks::train_step: the adversarial tricks perturb the weights between backward passes. Inside
// train_step they would act on the primary alone, with the SUMMED gradient, after the replicas'
// clean passes had already been combined; here each replica attacks its own copy with its own
// shard's gradient, before the all-reduce — the per-micro-batch semantics of FGM/PGD under
// accumulation (tricks/perturbation.h) — and communication happens once per step.
//
// Usage (tests/dp/test_data_parallel.cpp compiles this):
//   tricks::DataParallel dp(*model, {.devices = {Device::cpu(), Device::cpu()}});
//   optim::Adam opt(model->parameters(), {.lr = 1e-3});     // the primary's parameters
//   auto fgm = dp.make_attack<tricks::FGM>(tricks::FGMOptions{.epsilon = 1.0});
//   tricks::TrainStepConfig cfg;  cfg.optimizer = &opt;  cfg.fgm = fgm.get();  cfg.ema = &ema;
//   dp.train_step(cfg, batch.size, [&](int r, int64_t begin, int64_t end) {
//       Net& net = dp.replica<Net>(r);                   // called from replica r's thread
//       return cross_entropy(net.forward(x.narrow0(begin, end - begin).to(dp.device(r))), ...);
//   });
// The loss function runs concurrently on R threads: it may read shared data, not modify it.
// Dropout in replicas draws from the shared default generator in thread order: such runs are not
// bitwise reproducible.
//
// References: PyTorch's nn.DataParallel (replicate / scatter / parallel_apply / gather) and
// DistributedDataParallel (Li et al. 2020, arXiv:2006.15704,
// https://arxiv.org/abs/2006.15704), which also recommends one process per GPU over threads.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "core/comm.h"
#include "core/device.h"
#include "nn/module.h"
#include "tricks/train_step.h"

namespace minidl::tricks {

enum class ReplicaComm {
    Auto,       // NCCL for replicas on distinct GPUs where built with it, in-process otherwise
    InProcess,  // threads meeting in shared memory (device tensors staged through the host)
    NCCL,       // nccl::init_all over the replicas' GPUs (distinct devices)
};

struct DataParallelOptions {
    std::vector<Device> devices = {Device::cpu(), Device::cpu()};  // replica r lives on devices[r]
    ReplicaComm comm = ReplicaComm::Auto;
    CommOptions comm_options = {};
    // Verify after every step that the replicas are bitwise the primary (a debugging aid).
    bool check_replicas = false;
};

class DataParallel {
  public:
    // Replica 0 is `model` itself (moved to devices[0] if it is elsewhere); replicas 1..R-1 are
    // made once, here, with model.clone() + to(devices[r]).
    DataParallel(nn::Module& model, DataParallelOptions options = {});
    ~DataParallel();
    DataParallel(const DataParallel&) = delete;
    DataParallel& operator=(const DataParallel&) = delete;

    int num_replicas() const { return static_cast<int>(replicas_.size()); }
    nn::Module& replica(int r);
    template <typename M>
    M& replica(int r) {
        return dynamic_cast<M&>(replica(r));
    }
    Device device(int r) const;
    // The samples [begin, end) of a batch of `batch_size` that replica r trains on.
    std::pair<int64_t, int64_t> shard(int r, int64_t batch_size) const;
    // The communicator of replica r (its rank is r).
    Communicator& comm(int r);

    // `loss_fn(r, begin, end)`: replica r's forward on samples [begin, end) of the batch; returns
    // their MEAN loss. Runs concurrently on the replicas' threads.
    using ReplicaLossFn = std::function<Tensor(int replica, int64_t begin, int64_t end)>;
    // One optimizer step on the primary over a batch of `batch_size` samples (see the top of this
    // file). `config` is the primary's: its optimizer, scaler, EMA and scheduler; its attack, if
    // any, must come from make_attack (each replica runs its own copy); sync_hook must be empty.
    StepResult train_step(TrainStepConfig& config, int64_t batch_size,
                          const ReplicaLossFn& loss_fn);
    // The first half of train_step: zero_grad, every replica's gradient half on its shard (its
    // attack perturbing and restoring its own weights), and the all-reduce. Afterwards every
    // replica's .grad() holds the global batch's gradient and its weights are those before the
    // call; returns the global mean loss and whether any replica overflowed. train_step is this,
    // then apply_gradients on the primary and sync_replicas().
    StepResult reduce_gradients(TrainStepConfig& config, int64_t batch_size,
                                const ReplicaLossFn& loss_fn);

    // One attack per replica, each on its own replica, made by `make(replica module)`; returns the
    // primary's, which is what goes into TrainStepConfig (train_step finds the others). Shared:
    // this object keeps every copy alive too.
    template <typename Attack>
    std::shared_ptr<Attack> make_attack(
        const std::function<std::unique_ptr<Attack>(nn::Module&)>& make) {
        std::vector<std::shared_ptr<void>> copies;
        std::shared_ptr<Attack> primary;
        for (int r = 0; r < num_replicas(); ++r) {
            std::shared_ptr<Attack> copy(make(replica(r)));
            if (r == 0) primary = copy;
            copies.push_back(std::move(copy));
        }
        attacks_[primary.get()] = std::move(copies);
        return primary;
    }
    // The same for attacks constructed as Attack(module, options) (FGM, PGD, AWP).
    template <typename Attack, typename Options>
    std::shared_ptr<Attack> make_attack(Options options) {
        return make_attack<Attack>(std::function<std::unique_ptr<Attack>(nn::Module&)>(
            [options](nn::Module& m) { return std::make_unique<Attack>(m, options); }));
    }

    // Copies the primary's parameters and buffers into every replica (train_step does it after
    // every step, and before one when the primary was changed from outside).
    void sync_replicas();
    // Whether every replica's parameters and buffers are bitwise the primary's.
    bool replicas_identical() const;

  private:
    class Workers;
    template <typename Attack>
    Attack* sibling(Attack* primary, int r, const char* field) const;
    void run_parallel(const std::function<void(int)>& fn);
    void make_comms();
    bool primary_changed() const;
    void remember_versions();

    DataParallelOptions options_;
    std::vector<std::shared_ptr<nn::Module>> replicas_;  // [0] aliases the user's model
    std::vector<std::vector<Tensor>> params_;            // per replica, in named_parameters order
    std::vector<std::vector<Tensor>> buffers_;
    std::vector<std::shared_ptr<Communicator>> comms_;
    std::unique_ptr<Workers> workers_;
    std::map<const void*, std::vector<std::shared_ptr<void>>> attacks_;
    std::vector<std::pair<const void*, uint64_t>>
        synced_versions_;  // the primary's, at the last sync
};

}  // namespace minidl::tricks
