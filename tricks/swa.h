// tricks/swa.h — SWA, stochastic weight averaging: an equal average of the weights along the
// tail of training, with its learning-rate schedule and the BatchNorm refresh.
//
// Izmailov, Podoprikhin, Garipov, Vetrov, Wilson: "Averaging Weights Leads to Wider Optima and
// Better Generalization", UAI 2018, arXiv:1803.05407 (https://arxiv.org/abs/1803.05407). SGD with a constant or cyclical lr keeps
// moving around a wide, flat region of low loss; the average of the visited weights lies near its
// centre, where small shifts between train and test loss surfaces cost little.
//   AveragedModel:  w_swa <- w_swa + (w - w_swa) / (n + 1),  n <- n + 1   (first update copies w)
//                   (torch.optim.swa_utils.AveragedModel, PyTorch 1.13; a custom average
//                   function replaces the rule, e.g. an EMA — which then starts at the first
//                   update, not at construction as the seed's EMA in tricks/ema.h does)
//   SWALR:          anneals each group's lr from its value to swa_lr over anneal_epochs steps,
//                   alpha(t) = (1 - cos(pi t)) / 2 (cos) or t (linear), then holds swa_lr
//                   (PyTorch's SWALR, including its recursive form)
//   update_bn:      BatchNorm statistics of the averaged weights are not the average of the
//                   statistics: recompute them with one pass over the training data (cumulative
//                   average, momentum = none)
//   swap_swa_sgd:   the seed's torchcontrib style — exchange the live and the averaged weights
// Buffers are not averaged (PyTorch 1.13's default); update_bn recomputes BatchNorm's.
// Bound to an optimizer, update_parameters() counts only when that optimizer stepped since the
// previous update (a step skipped by the AMP scaler does not enter the average twice).
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "core/state_dict.h"
#include "nn/module.h"
#include "optim/lr_scheduler.h"

namespace minidl::tricks {

class AveragedModel {
public:
    // avg(averaged, current, n_averaged) -> new averaged value (all F32 or the param dtype).
    using AverageFn = std::function<Tensor(const Tensor&, const Tensor&, int64_t)>;

    explicit AveragedModel(const nn::Module& model, AverageFn avg_fn = {},
                           const optim::Optimizer* optimizer = nullptr);

    // Folds `model`'s current parameters into the average; returns false when skipped (bound
    // optimizer did not step).
    bool update_parameters(const nn::Module& model);
    int64_t n_averaged() const { return n_averaged_; }
    // The averaged copy (same structure and names as the model it was made from).
    nn::Module& module() { return *module_; }
    const nn::Module& module() const { return *module_; }
    template <typename M>
    M& module_as() {
        return dynamic_cast<M&>(*module_);
    }

    // Exchanges the values of `model`'s parameters with the averaged ones (torchcontrib's
    // swap_swa_sgd); calling it twice restores both.
    void swap_swa_sgd(nn::Module& model);

    // The module's state under "module." plus metadata "n_averaged".
    StateDict state_dict() const;
    void load_state_dict(const StateDict& state);

private:
    std::shared_ptr<nn::Module> module_;
    AverageFn avg_fn_;
    const optim::Optimizer* optimizer_;
    int64_t n_averaged_ = 0;
    int64_t optimizer_steps_seen_ = -1;
};

enum class AnnealStrategy { Cos, Linear };

struct SWALROptions {
    double swa_lr = 0.05;
    int64_t anneal_epochs = 10;
    AnnealStrategy anneal_strategy = AnnealStrategy::Cos;
};

class SWALR : public optim::LRScheduler {
public:
    SWALR(optim::Optimizer& optimizer, SWALROptions options);
    std::string name() const override { return "swalr"; }

protected:
    std::vector<double> compute_lr() override;

private:
    double anneal(double t) const;
    SWALROptions options_;
};

// Recomputes the running statistics of every BatchNorm1d in `model` from one pass of
// `forward_pass` over the training data (which must run model.forward on every batch, without
// backward): statistics reset, momentum none (cumulative average), training mode, then the
// momenta and modes are restored. A model without BatchNorm is left untouched.
void update_bn(nn::Module& model, const std::function<void()>& forward_pass);

}  // namespace minidl::tricks
