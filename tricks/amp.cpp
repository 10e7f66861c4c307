// tricks/amp.cpp — autocast scope and the dynamic loss scaler (see amp.h).
#include "tricks/amp.h"

#include <cmath>

#include "core/autograd.h"
#include "core/check.h"
#include "core/kernels.h"
#include "ops/elementwise.h"
#include "optim/clip.h"
#include "optim/optimizer.h"

namespace minidl::amp {

Autocast::Autocast(DType dtype, bool enabled)
    : previous_enabled_(autocast::is_enabled()), previous_dtype_(autocast::dtype()) {
    autocast::set_state(enabled, enabled ? dtype : previous_dtype_);
}

Autocast::~Autocast() { autocast::set_state(previous_enabled_, previous_dtype_); }

GradScaler::GradScaler(GradScalerOptions options) : options_(options), scale_(options.init_scale) {
    MDL_CHECK(options_.init_scale > 0 && std::isfinite(options_.init_scale), ValueError,
              "GradScaler: init_scale must be positive and finite, got ", options_.init_scale);
    MDL_CHECK(options_.growth_factor > 1.0, ValueError,
              "GradScaler: growth_factor must be > 1, got ", options_.growth_factor);
    MDL_CHECK(options_.backoff_factor > 0.0 && options_.backoff_factor < 1.0, ValueError,
              "GradScaler: backoff_factor must be in (0, 1), got ", options_.backoff_factor);
    MDL_CHECK(options_.growth_interval >= 1, ValueError,
              "GradScaler: growth_interval must be at least 1, got ", options_.growth_interval);
}

GradScaler::PerOptimizer& GradScaler::state_of(optim::Optimizer& optimizer) {
    return per_optimizer_[&optimizer];
}

Tensor GradScaler::scale(const Tensor& loss) const {
    if (!options_.enabled) return loss;
    MDL_CHECK(loss.defined() && is_floating(loss.dtype()), DTypeError,
              "GradScaler::scale: the loss must be a floating tensor");
    return loss * scale_;
}

void GradScaler::unscale_(optim::Optimizer& optimizer) {
    if (!options_.enabled) return;
    PerOptimizer& st = state_of(optimizer);
    MDL_CHECK(!st.unscaled, StateError,
              "GradScaler::unscale_: already called for this optimizer since the last update() "
              "(unscaling twice would divide the gradients by the scale twice)");
    MDL_CHECK(!st.stepped, StateError,
              "GradScaler::unscale_: called after step() in the same iteration");
    // One fused pass per device: g *= 1/S, found_inf |= any(!isfinite(g)).
    std::map<std::string, std::vector<Tensor>> by_device;
    for (const Tensor& p : optimizer.parameters())
        if (p.grad().defined()) by_device[p.device().str()].push_back(p.grad());
    bool found = false;
    for (auto& [dev, grads] : by_device) {
        const Device device = grads.front().device();
        Tensor inv_scale = Tensor::scalar(1.0 / scale_, DType::F32, device);
        Tensor found_inf = Tensor::zeros({1}, DType::F32, device);
        kernels_for(device).unscale_and_check(grads, inv_scale, found_inf);
        for (const Tensor& g : grads) g.bump_version();
        found = found || found_inf.item() != 0.0;  // the one host read of this device
    }
    st.unscaled = true;
    st.found_inf = st.found_inf || found;
}

bool GradScaler::step(optim::Optimizer& optimizer) {
    if (!options_.enabled) {
        optimizer.step();
        return true;
    }
    PerOptimizer& st = state_of(optimizer);
    MDL_CHECK(!st.stepped, StateError,
              "GradScaler::step: step() was already called for this optimizer since the last "
              "update() (a second optimizer step in one iteration)");
    if (!st.unscaled) unscale_(optimizer);
    st.stepped = true;
    if (st.found_inf) return false;
    optimizer.step();
    return true;
}

void GradScaler::record_overflow(optim::Optimizer& optimizer) {
    if (!options_.enabled) return;
    state_of(optimizer).found_inf = true;
}

bool GradScaler::found_inf() const {
    for (const auto& [opt, st] : per_optimizer_)
        if (st.found_inf) return true;
    return false;
}

void GradScaler::update() {
    if (!options_.enabled) return;
    MDL_CHECK(!per_optimizer_.empty(), StateError,
              "GradScaler::update: no step() or unscale_() since the last update(), so there is "
              "no inf check to adjust the scale from");
    if (found_inf()) {
        scale_ *= options_.backoff_factor;
        growth_tracker_ = 0;
    } else if (++growth_tracker_ == options_.growth_interval) {
        scale_ *= options_.growth_factor;
        growth_tracker_ = 0;
    }
    per_optimizer_.clear();
}

double GradScaler::clip_grad_norm(optim::Optimizer& optimizer, double max_norm, double norm_type) {
    if (options_.enabled && !state_of(optimizer).unscaled) unscale_(optimizer);
    return optim::clip_grad_norm(optimizer.parameters(), max_norm, norm_type);
}

StateDict GradScaler::state_dict() const {
    StateDict sd;
    sd.metadata["scale"] = optim::format_double(scale_);
    sd.metadata["growth_tracker"] = std::to_string(growth_tracker_);
    sd.metadata["growth_factor"] = optim::format_double(options_.growth_factor);
    sd.metadata["backoff_factor"] = optim::format_double(options_.backoff_factor);
    sd.metadata["growth_interval"] = std::to_string(options_.growth_interval);
    sd.metadata["enabled"] = options_.enabled ? "true" : "false";
    return sd;
}

void GradScaler::load_state_dict(const StateDict& state) {
    // Parse and check everything before assigning anything (PyTorch restores the options too).
    const char* who = "GradScaler::load_state_dict";
    GradScalerOptions o;
    o.init_scale = options_.init_scale;
    o.growth_factor = optim::parse_double(state.meta("growth_factor", who), "growth_factor");
    o.backoff_factor = optim::parse_double(state.meta("backoff_factor", who), "backoff_factor");
    o.growth_interval = std::stoll(state.meta("growth_interval", who));
    o.enabled = state.meta("enabled", who) == "true";
    const double scale = optim::parse_double(state.meta("scale", who), "GradScaler scale");
    const int64_t tracker = std::stoll(state.meta("growth_tracker", who));
    MDL_CHECK(scale > 0 && std::isfinite(scale), FormatError, who, ": invalid scale ", scale);
    MDL_CHECK(tracker >= 0 && tracker < o.growth_interval, FormatError, who,
              ": growth_tracker ", tracker, " outside [0, growth_interval ", o.growth_interval,
              ")");
    MDL_CHECK(o.growth_factor > 1.0 && o.backoff_factor > 0.0 && o.backoff_factor < 1.0,
              FormatError, who, ": invalid growth/backoff factors ", o.growth_factor, ", ",
              o.backoff_factor);
    options_ = o;
    scale_ = scale;
    growth_tracker_ = tracker;
    per_optimizer_.clear();
}

}  // namespace minidl::amp
