// tricks/amp.h — automatic mixed precision: autocast scopes and dynamic loss scaling.
//
// Micikevicius et al.: "Mixed Precision Training", ICLR 2018, arXiv:1710.03740
// (https://arxiv.org/abs/1710.03740). Matrix products
// run in F16/BF16 (half the memory traffic, tensor cores on GPUs) with F32 accumulation; the
// master weights, the optimizer state and the range-sensitive ops stay F32 (core/autocast.h lists
// which op does what). F16's range is narrow (max 65504, smallest normal 6e-5), so small
// gradients underflow: the loss is multiplied by a scale S before backward, and the gradients are
// divided by S before the optimizer sees them. The scale is dynamic (PyTorch's GradScaler,
// torch/cuda/amp/grad_scaler.py and its amp_update_scale kernel):
//   any gradient inf/NaN:  skip the optimizer step,  S <- S * backoff,  tracker <- 0
//   else:                  step,  tracker += 1,  if tracker == interval: S <- S * growth, tracker <- 0
// Defaults: S0 = 2^16, growth 2, backoff 0.5, interval 2000. BF16 has F32's range and needs no
// scaling: use Autocast(BF16) alone (or a GradScaler with enabled = false, which passes through).
//
// The training step:
//   { amp::Autocast ac(DType::F16); loss = loss_fn(model(x), y); }
//   scaler.scale(loss).backward();
//   scaler.step(optimizer);      // unscales (once), skips on inf/NaN; returns whether it stepped
//   scaler.update();
// Pitfalls closed here: unscale_() twice in one iteration throws; step() twice before update()
// throws; clip_grad_norm() through the scaler unscales first, exactly once; a non-finite gradient
// met by an adversarial attack (record_overflow) skips the step like one met by the scaler; and a
// skipped step advances nothing — optimizers count real steps (Optimizer::step_count), which EMA
// and SWA bound to the optimizer follow, and tricks::train_step steps the LR schedule only after a
// real step (PyTorch steps the scheduler anyway and warns, pytorch/pytorch#44511). A hand-written
// loop guards its schedule with step()'s result: `if (scaler.step(opt)) schedule.step();`.
// update() without a step() (or unscale_) since the last update throws, as PyTorch's asserts.
#pragma once

#include <map>

#include "core/autocast.h"
#include "core/state_dict.h"
#include "core/tensor.h"

namespace minidl::optim {
class Optimizer;
}

namespace minidl::amp {

// While alive, this thread's matmul/linear compute in `dtype` (F16 or BF16); restores the previous
// state on destruction (scopes nest).
class Autocast {
public:
    explicit Autocast(DType dtype, bool enabled = true);
    ~Autocast();
    Autocast(const Autocast&) = delete;
    Autocast& operator=(const Autocast&) = delete;

private:
    bool previous_enabled_;
    DType previous_dtype_;
};

struct GradScalerOptions {
    double init_scale = 65536.0;
    double growth_factor = 2.0;
    double backoff_factor = 0.5;
    int64_t growth_interval = 2000;
    bool enabled = true;
};

class GradScaler {
public:
    explicit GradScaler(GradScalerOptions options = {});

    // loss * S (differentiable); the loss itself when disabled.
    Tensor scale(const Tensor& loss) const;
    // Divides the gradients of `optimizer`'s parameters by S and checks them for inf/NaN in one
    // fused pass per tensor. Once per optimizer per iteration (StateError otherwise).
    void unscale_(optim::Optimizer& optimizer);
    // unscale_ (if not done yet), then the optimizer step unless a gradient was non-finite.
    // Returns whether the optimizer stepped. Once per optimizer per iteration.
    bool step(optim::Optimizer& optimizer);
    // Marks this iteration of `optimizer` as overflowed (an attack met a non-finite gradient).
    void record_overflow(optim::Optimizer& optimizer);
    // Adjusts S from what this iteration found; ends the iteration.
    void update();
    // Unscales (once) and clips the gradients' total norm; returns the pre-clip norm of the
    // UNSCALED gradients (inf/NaN when they overflowed — the step will then be skipped).
    double clip_grad_norm(optim::Optimizer& optimizer, double max_norm, double norm_type = 2.0);

    double get_scale() const { return options_.enabled ? scale_ : 1.0; }
    int64_t growth_tracker() const { return growth_tracker_; }
    bool is_enabled() const { return options_.enabled; }
    // Whether any optimizer found a non-finite gradient in this iteration so far.
    bool found_inf() const;

    // Metadata "scale", "growth_tracker" and the options (exact decimal text).
    StateDict state_dict() const;
    void load_state_dict(const StateDict& state);

private:
    struct PerOptimizer {
        bool unscaled = false;
        bool stepped = false;
        bool found_inf = false;
    };
    PerOptimizer& state_of(optim::Optimizer& optimizer);

    GradScalerOptions options_;
    double scale_;
    int64_t growth_tracker_ = 0;
    std::map<const optim::Optimizer*, PerOptimizer> per_optimizer_;
};

}  // namespace minidl::amp
