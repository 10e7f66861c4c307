// tricks/ema.h — EMA: an exponential moving average of the weights, swapped in for evaluation.
//
//   shadow <- d * shadow + (1 - d) * theta      after every optimizer step
// The shadow starts at the weights registered at construction (the seed's register(); PyTorch's
// AveragedModel instead starts at the first update — see tricks/swa.h). Unrolled, after n updates
//   shadow_n = d^n theta_0 + (1 - d) sum_{i=1..n} d^(n-i) theta_i
// so the initial weights keep weight d^n: with d = 0.999 after the ~770 steps of a 5-epoch run of
// the example, 0.999^770 ~ 46 % of the average is still the random initialisation. The optional
// warm-up (TensorFlow's ExponentialMovingAverage num_updates rule)
//   d_t = min(d, (1 + t) / (10 + t)),   t = number of updates including this one
// averages fast at first and reaches d later (docs/ema.md works the numbers).
// The shadow is kept in F32 whatever the parameters' dtype; the update is one fused pass per
// tensor (Kernels::ema_update). Evaluation with the average:
//   { auto swapped = ema.apply_shadow(); evaluate(model); }   // weights restored on scope exit,
//                                                            // also when evaluate() throws
// Bound to an optimizer (options.optimizer), update() advances only when that optimizer really
// stepped since the last update: a step skipped by the AMP scaler advances nothing.
// Reference: the widely shared PyTorch recipe's EMA class (register, update, apply_shadow,
// restore); tiny-cuda-nn
// ema.h for the F32 shadow.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "core/state_dict.h"
#include "nn/module.h"

namespace minidl::optim {
class Optimizer;
}

namespace minidl::tricks {

struct EMAOptions {
    double decay = 0.999;
    bool warmup = false;
    // When set, update() is a no-op unless this optimizer stepped since the previous update.
    const optim::Optimizer* optimizer = nullptr;
};

class EMA {
public:
    // Registers every parameter that requires grad: the shadow starts as a copy of it.
    explicit EMA(nn::Module& model, EMAOptions options = {});

    // shadow <- d_t shadow + (1 - d_t) theta. Returns false when skipped (bound optimizer did not
    // step).
    bool update();

    // Restores the live weights when it goes out of scope.
    class Swap {
    public:
        explicit Swap(EMA& ema) : ema_(&ema) {}
        Swap(Swap&& other) noexcept : ema_(std::exchange(other.ema_, nullptr)) {}
        Swap(const Swap&) = delete;
        Swap& operator=(const Swap&) = delete;
        Swap& operator=(Swap&&) = delete;
        ~Swap() {
            if (ema_) ema_->restore();
        }

    private:
        EMA* ema_;
    };
    // Backs the live weights up and copies the shadow into the model; restore() undoes it.
    [[nodiscard]] Swap apply_shadow();
    void restore();
    bool applied() const { return !backup_.empty(); }

    int64_t num_updates() const { return num_updates_; }
    // The decay the next update will use.
    double current_decay() const;
    const Tensor& shadow(const std::string& name) const;
    const std::vector<std::pair<std::string, Tensor>>& shadows() const { return shadow_; }

    // "shadow.<param name>" tensors; metadata "num_updates", "decay", "warmup".
    StateDict state_dict() const;
    void load_state_dict(const StateDict& state);

private:
    EMAOptions options_;
    std::vector<std::pair<std::string, Tensor>> params_;
    std::vector<std::pair<std::string, Tensor>> shadow_;
    std::vector<Tensor> backup_;
    int64_t num_updates_ = 0;
    int64_t optimizer_steps_seen_ = 0;
};

}  // namespace minidl::tricks
