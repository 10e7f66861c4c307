// tricks/swa.cpp — see swa.h.
#include "tricks/swa.h"

#include <cmath>
#include <numbers>
#include <optional>

#include "core/autograd.h"
#include "core/check.h"
#include "core/kernels.h"
#include "nn/batch_norm.h"
#include "ops/elementwise.h"
#include "optim/optimizer.h"

namespace minidl::tricks {

AveragedModel::AveragedModel(const nn::Module& model, AverageFn avg_fn,
                             const optim::Optimizer* optimizer)
    : module_(model.clone()), avg_fn_(std::move(avg_fn)), optimizer_(optimizer) {
    // The averaged copy is never trained: its parameters need no gradients.
    for (Tensor p : module_->parameters()) p.set_requires_grad(false);
}

bool AveragedModel::update_parameters(const nn::Module& model) {
    if (optimizer_) {
        const int64_t steps = optimizer_->step_count();
        if (steps == optimizer_steps_seen_) return false;
        optimizer_steps_seen_ = steps;
    }
    const auto mine = module_->named_parameters();
    const auto theirs = model.named_parameters();
    MDL_CHECK(mine.size() == theirs.size(), StateError,
              "AveragedModel::update_parameters: the model has ", theirs.size(),
              " parameters, the average ", mine.size());
    NoGradGuard no_grad;
    for (size_t i = 0; i < mine.size(); ++i) {
        MDL_CHECK(mine[i].first == theirs[i].first && mine[i].second.shape() == theirs[i].second.shape(),
                  StateError, "AveragedModel::update_parameters: parameter ", i, " is '",
                  theirs[i].first, "' ", shape_str(theirs[i].second.shape()), ", expected '",
                  mine[i].first, "' ", shape_str(mine[i].second.shape()));
        Tensor avg = mine[i].second;
        const Tensor current = theirs[i].second.detach().to(avg.device()).to(avg.dtype());
        if (n_averaged_ == 0) {
            avg.copy_(current);
        } else if (avg_fn_) {
            avg.copy_(avg_fn_(avg.detach(), current, n_averaged_));
        } else {
            // w_swa + (w - w_swa) / (n + 1), PyTorch's order of operations, in one pass over
            // the weights (bitwise the three ops; tests/tricks/test_swa.cpp).
            kernels_for(avg.device()).swa_update(avg, current, n_averaged_);
            avg.bump_version();
        }
    }
    ++n_averaged_;
    return true;
}

void AveragedModel::swap_swa_sgd(nn::Module& model) {
    const auto mine = module_->named_parameters();
    const auto theirs = model.named_parameters();
    MDL_CHECK(mine.size() == theirs.size(), StateError,
              "AveragedModel::swap_swa_sgd: the model has ", theirs.size(),
              " parameters, the average ", mine.size());
    NoGradGuard no_grad;
    for (size_t i = 0; i < mine.size(); ++i) {
        Tensor a = mine[i].second, b = theirs[i].second;
        const Tensor keep = b.detach().clone();
        b.copy_(a);
        a.copy_(keep);
    }
}

StateDict AveragedModel::state_dict() const {
    StateDict sd;
    sd.merge(module_->state_dict(), "module.");
    sd.metadata["n_averaged"] = std::to_string(n_averaged_);
    return sd;
}

void AveragedModel::load_state_dict(const StateDict& state) {
    const int64_t n = std::stoll(state.meta("n_averaged", "AveragedModel::load_state_dict"));
    module_->load_state_dict(state.sub("module."));
    n_averaged_ = n;
    optimizer_steps_seen_ = optimizer_ ? optimizer_->step_count() : -1;
}

// ---- SWALR ------------------------------------------------------------------------------------

SWALR::SWALR(optim::Optimizer& optimizer, SWALROptions options)
    : LRScheduler(optimizer), options_(options) {
    MDL_CHECK(options_.swa_lr >= 0, ValueError, "SWALR: swa_lr must be non-negative, got ",
              options_.swa_lr);
    MDL_CHECK(options_.anneal_epochs >= 0, ValueError,
              "SWALR: anneal_epochs must be non-negative, got ", options_.anneal_epochs);
    initial_step();
}

double SWALR::anneal(double t) const {
    return options_.anneal_strategy == AnnealStrategy::Cos
               ? (1.0 - std::cos(std::numbers::pi * t)) / 2.0
               : t;
}

std::vector<double> SWALR::compute_lr() {
    // PyTorch 1.13 SWALR.get_lr: recover the lr before annealing from the current one, then move
    // alpha(t) of the way to swa_lr.
    int64_t step = step_count_ - 1;
    if (options_.anneal_epochs == 0) step = std::max<int64_t>(1, step);
    const double denom = static_cast<double>(std::max<int64_t>(1, options_.anneal_epochs));
    const double prev_t = std::clamp(static_cast<double>(step - 1) / denom, 0.0, 1.0);
    const double prev_alpha = anneal(prev_t);
    const double t = std::clamp(static_cast<double>(step) / denom, 0.0, 1.0);
    const double alpha = anneal(t);
    std::vector<double> lrs;
    for (const auto& group : optimizer_.param_groups()) {
        const double prev_lr = prev_alpha == 1.0
                                   ? options_.swa_lr
                                   : (group.lr - prev_alpha * options_.swa_lr) / (1.0 - prev_alpha);
        lrs.push_back(options_.swa_lr * alpha + prev_lr * (1.0 - alpha));
    }
    return lrs;
}

// ---- update_bn --------------------------------------------------------------------------------

void update_bn(nn::Module& model, const std::function<void()>& forward_pass) {
    struct Saved {
        nn::BatchNorm1d* bn;
        std::optional<double> momentum;
    };
    std::vector<Saved> saved;
    for (auto& [name, m] : model.named_modules()) {
        if (auto* bn = dynamic_cast<nn::BatchNorm1d*>(m)) {
            saved.push_back({bn, bn->momentum()});
            bn->reset_running_stats();
            bn->set_momentum(std::nullopt);
        }
    }
    if (saved.empty()) return;
    const bool was_training = model.is_training();
    model.train(true);
    {
        NoGradGuard no_grad;
        forward_pass();
    }
    for (auto& s : saved) s.bn->set_momentum(s.momentum);
    model.train(was_training);
}

}  // namespace minidl::tricks
