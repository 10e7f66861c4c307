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
//       FGM / AWP: attack, backward(scale * w_j * adversarial loss), restore
//       PGD: K steps (pgd.h), the last adversarial gradient accumulated onto the clean one
//   if an attack met a non-finite gradient: the scaler skips the step (record_overflow)
//   clip (through the scaler: unscale exactly once)
//   stepped = scaler ? scaler.step(optimizer) : optimizer.step()
//   scaler.update()
//   if stepped: ema.update(), scheduler.step()        a skipped step advances nothing
//
// An attack that perturbs nothing (epsilon 0, zero gradient) skips its adversarial pass, so
// FGM with epsilon 0 is plain training, bitwise.
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
};

struct StepResult {
    double loss = 0.0;       // the effective batch's mean clean loss (sum of w_j * loss_j)
    bool stepped = false;    // whether the optimizer updated the weights
    bool overflow = false;   // a non-finite gradient was found (scaled, or met by an attack)
    double grad_norm = 0.0;  // the pre-clip gradient norm when clipping is on
};

// `loss_fn(begin, end)` runs the forward pass on samples [begin, end) of the current batch and
// returns their MEAN loss (a 0-d tensor); `batch_size` is the number of samples in the batch.
StepResult train_step(TrainStepConfig& config, int64_t batch_size,
                      const std::function<Tensor(int64_t begin, int64_t end)>& loss_fn);

}  // namespace minidl::tricks
