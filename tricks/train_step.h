// tricks/train_step.h — one optimizer step with any combination of the tricks.
//
// Each trick stays usable alone in a hand-written loop (their headers show the seed-style loop);
// this helper runs them together in the one order that is right for all of them:
//
//   optimizer.zero_grad()
//   for each micro-batch j of the effective batch (grad_accum.h: weight w_j = n_j / N):
//       sync_hook(j is last)                          data parallel: all-reduce on the last only
//       attack.begin_micro_batch()                    attacks follow this micro-batch's gradient
//       { Autocast } loss_j = loss_fn(begin_j, end_j)  the micro-batch's mean loss
//       backward(scale * w_j * loss_j)                clean pass (FreeLB: K passes of 1/K)
//       FGM: attack, backward(scale * w_j * adversarial loss), restore   (clean + adversarial)
//       PGD: K steps (pgd.h), the last adversarial gradient accumulated onto the clean one
//       AWP: attack, drop this micro-batch's clean gradient, adversarial backward, restore
//   if an attack met a non-finite gradient: the scaler skips the step (record_overflow)
//   clip (through the scaler: unscale exactly once)
//   stepped = scaler ? scaler.step(optimizer) : optimizer.step()
//   scaler.update()
//   if stepped: ema.update(), scheduler.step()        a skipped step advances nothing
//
// The adversarial passes always run, as in the seed's loop, also when the attack moved nothing
// (epsilon 0, a zero gradient): FGM and PGD then train on twice the clean gradient (the objective
// L(E) + L(E + r) at r = 0), AWP and FreeLB on the clean gradient. An attack that meets a
// non-finite gradient norm moves nothing and marks the step as overflowed.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>

#include "core/dtype.h"
#include "core/tensor.h"

namespace minidl::optim {
class Optimizer;
class LRScheduler;
}  // namespace minidl::optim
namespace minidl::amp {
class GradScaler;
}

namespace minidl::tricks {

class FGM;
class PGD;
class AWP;
class FreeLB;
class EMA;

struct TrainStepConfig {
    optim::Optimizer* optimizer = nullptr;
    // At most one adversarial trick.
    FGM* fgm = nullptr;
    PGD* pgd = nullptr;
    AWP* awp = nullptr;
    FreeLB* freelb = nullptr;
    // Mixed precision: the autocast dtype (F16/BF16) and the loss scaler (F16 needs one).
    std::optional<DType> autocast = {};
    amp::GradScaler* scaler = nullptr;
    // Micro-batches per optimizer step (the effective batch is split, see grad_accum.h).
    int64_t accum_steps = 1;
    // Gradient-norm clipping (0: off).
    double clip_norm = 0.0;
    EMA* ema = nullptr;
    // Stepped after every real optimizer step (per-step schedules).
    optim::LRScheduler* scheduler = nullptr;
    // Called before each micro-batch's backward passes with whether it is the last one.
    std::function<void(bool sync)> sync_hook = {};
    // Whether the step reads its loss to the host (StepResult::loss). Reading a loss that lives
    // on a GPU waits for the GPU; a loop that reads it later, with another value in the same
    // transfer (grads_all_finite's overload in core/finite.h), sets this to false.
    bool read_loss = true;
};

struct StepResult {
    // The effective batch's mean loss (sum of w_j * loss_j) of the first forward pass of each
    // micro-batch: the clean loss, except under FreeLB, whose first pass is already at X + delta_0.
    // loss_tensor holds it as a 0-d F64 tensor on the loss's device, summed there (no host wait
    // per micro-batch); loss is its value, read once per step, or NaN when the config said not
    // to read it (TrainStepConfig::read_loss).
    Tensor loss_tensor;
    double loss = 0.0;
    bool stepped = false;    // whether the optimizer updated the weights
    bool overflow = false;   // a non-finite gradient was found (scaled, or met by an attack)
    double grad_norm = 0.0;  // the pre-clip gradient norm when clipping is on
};

using LossFn = std::function<Tensor(int64_t begin, int64_t end)>;

// `loss_fn(begin, end)` runs the forward pass on samples [begin, end) of the current batch and
// returns their MEAN loss (a 0-d tensor); `batch_size` is the number of samples in the batch.
// It is zero_grad + accumulate_gradients + apply_gradients.
StepResult train_step(TrainStepConfig& config, int64_t batch_size, const LossFn& loss_fn);

// The two halves of train_step, for data parallelism (tricks/data_parallel.h): every replica runs
// the gradient half on its shard, the gradients are summed across replicas, and the primary copy
// runs the update half once.
//
// accumulate_gradients: the micro-batch loop above over samples [0, batch_size), without
// zero_grad. Micro-batch j's mean loss is weighted by n_j / denominator (0: batch_size), so a
// replica holding n_r samples of a global batch of N passes N and the replicas' gradients SUM to
// the global batch's, whatever the shard sizes. Returns sum_j (n_j / denominator) * loss_j in
// `loss` (the shard's part of the global mean loss) and, in `overflow`, whether an attack met a
// non-finite gradient.
StepResult accumulate_gradients(TrainStepConfig& config, int64_t batch_size, const LossFn& loss_fn,
                                int64_t denominator = 0);
// apply_gradients: an attack's overflow skips the step (record_overflow), clipping, the (scaled)
// optimizer step, the scaler's update, then EMA and scheduler if the optimizer stepped. Takes the
// loss and overflow flag of the gradient half.
StepResult apply_gradients(TrainStepConfig& config, StepResult accumulated);

}  // namespace minidl::tricks
