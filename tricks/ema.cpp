// tricks/ema.cpp — see ema.h.
#include "tricks/ema.h"

#include <algorithm>
#include <cmath>

#include "core/autograd.h"
#include "core/check.h"
#include "core/kernels.h"
#include "optim/optimizer.h"

namespace minidl::tricks {

EMA::EMA(nn::Module& model, EMAOptions options) : options_(options) {
    MDL_CHECK(options_.decay >= 0.0 && options_.decay <= 1.0, ValueError,
              "EMA: decay must be in [0, 1], got ", options_.decay);
    NoGradGuard no_grad;
    for (auto& [name, p] : model.named_parameters()) {
        if (!p.requires_grad()) continue;
        params_.emplace_back(name, p);
        shadow_.emplace_back(name, p.detach().to(DType::F32).clone());
    }
    MDL_CHECK(!params_.empty(), StateError, "EMA: the model has no parameter that requires grad");
    if (options_.optimizer) optimizer_steps_seen_ = options_.optimizer->step_count();
}

double EMA::current_decay() const {
    if (!options_.warmup) return options_.decay;
    const double t = static_cast<double>(num_updates_ + 1);
    return std::min(options_.decay, (1.0 + t) / (10.0 + t));
}

bool EMA::update() {
    MDL_CHECK(!applied(), StateError,
              "EMA::update: the shadow is applied to the model; restore() before updating");
    if (options_.optimizer) {
        const int64_t steps = options_.optimizer->step_count();
        if (steps == optimizer_steps_seen_) return false;  // the step was skipped
        optimizer_steps_seen_ = steps;
    }
    const double d = current_decay();
    for (size_t i = 0; i < params_.size(); ++i) {
        Tensor& s = shadow_[i].second;
        const Tensor& p = params_[i].second;
        MDL_CHECK(p.device() == s.device(), DeviceError, "EMA::update: parameter '",
                  params_[i].first, "' is on ", p.device(), " but its shadow on ", s.device(),
                  " (move the model before creating the EMA)");
        kernels_for(s.device()).ema_update(s, p, d);
        s.bump_version();
    }
    ++num_updates_;
    return true;
}

EMA::Swap EMA::apply_shadow() {
    MDL_CHECK(!applied(), StateError, "EMA::apply_shadow: already applied");
    NoGradGuard no_grad;
    for (auto& [name, p] : params_) backup_.push_back(p.detach().clone());
    for (size_t i = 0; i < params_.size(); ++i) Tensor(params_[i].second).copy_(shadow_[i].second);
    return Swap(*this);
}

void EMA::restore() {
    MDL_CHECK(applied(), StateError, "EMA::restore: apply_shadow() was not called");
    NoGradGuard no_grad;
    for (size_t i = 0; i < params_.size(); ++i) Tensor(params_[i].second).copy_(backup_[i]);
    backup_.clear();
}

const Tensor& EMA::shadow(const std::string& name) const {
    for (const auto& [n, s] : shadow_)
        if (n == name) return s;
    throw StateError("EMA::shadow: no parameter named '" + name + "'");
}

StateDict EMA::state_dict() const {
    StateDict sd;
    for (const auto& [name, s] : shadow_) sd.tensors["shadow." + name] = s;
    sd.metadata["num_updates"] = std::to_string(num_updates_);
    sd.metadata["decay"] = optim::format_double(options_.decay);
    sd.metadata["warmup"] = options_.warmup ? "true" : "false";
    return sd;
}

void EMA::load_state_dict(const StateDict& state) {
    // Check everything before changing anything.
    for (const auto& [name, s] : shadow_) {
        const Tensor& t = state.at("shadow." + name, "EMA::load_state_dict");
        MDL_CHECK(t.shape() == s.shape(), ShapeError, "EMA::load_state_dict: shadow of '", name,
                  "' has shape ", shape_str(t.shape()), ", expected ", shape_str(s.shape()));
    }
    const int64_t n = std::stoll(state.meta("num_updates", "EMA::load_state_dict"));
    MDL_CHECK(n >= 0, FormatError, "EMA::load_state_dict: negative num_updates ", n);
    // The saved rule continues the run (as the optimizer's own hyper-parameters do).
    const double decay =
        optim::parse_double(state.meta("decay", "EMA::load_state_dict"), "EMA decay");
    MDL_CHECK(decay >= 0.0 && decay <= 1.0, FormatError, "EMA::load_state_dict: decay ", decay,
              " outside [0, 1]");
    const bool warmup = state.meta("warmup", "EMA::load_state_dict") == "true";
    NoGradGuard no_grad;
    for (auto& [name, s] : shadow_) s.copy_(state.at("shadow." + name));
    num_updates_ = n;
    options_.decay = decay;
    options_.warmup = warmup;
    if (options_.optimizer) optimizer_steps_seen_ = options_.optimizer->step_count();
}

}  // namespace minidl::tricks
