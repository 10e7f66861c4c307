// optim/lr_scheduler.cpp — LR schedules (formulas and protocol in optim/lr_scheduler.h;
// reference: torch/optim/lr_scheduler.py of PyTorch 1.13).
#include "optim/lr_scheduler.h"

#include <cmath>
#include <numbers>
#include <sstream>

#include "core/check.h"

namespace minidl::optim {

namespace {

std::string join_doubles(const std::vector<double>& values) {
    std::string out;
    for (size_t i = 0; i < values.size(); ++i) {
        if (i) out += ',';
        out += format_double(values[i]);
    }
    return out;
}

std::vector<double> split_doubles(const std::string& text, const std::string& what) {
    std::vector<double> out;
    std::stringstream ss(text);
    std::string item;
    while (std::getline(ss, item, ','))
        out.push_back(parse_double(item, what));
    return out;
}

int64_t parse_int64(const std::string& text, const std::string& what) {
    const double value = parse_double(text, what);
    MDL_CHECK(value == std::floor(value), FormatError, what, ": expected an integer, got '", text,
              "'");
    return static_cast<int64_t>(value);
}

// Python's a % b for b > 0: never negative.
int64_t floor_mod(int64_t a, int64_t b) {
    const int64_t r = a % b;
    return r < 0 ? r + b : r;
}

std::vector<double> current_lrs(const Optimizer& optimizer) {
    std::vector<double> out;
    for (const auto& g : optimizer.param_groups())
        out.push_back(g.lr);
    return out;
}

}  // namespace

// ---- LRScheduler -----------------------------------------------------------------------------

LRScheduler::LRScheduler(Optimizer& optimizer)
    : optimizer_(optimizer), base_lrs_(current_lrs(optimizer)) {}

void LRScheduler::initial_step() {
    step();
}

void LRScheduler::step() {
    ++step_count_;
    ++last_epoch_;
    std::vector<double> lrs = compute_lr();
    MDL_ASSERT(lrs.size() == optimizer_.param_groups().size(), name(), ": computed ", lrs.size(),
               " lrs for ", optimizer_.param_groups().size(), " groups");
    for (size_t g = 0; g < lrs.size(); ++g)
        optimizer_.param_groups()[g].lr = lrs[g];
    last_lr_ = std::move(lrs);
}

StateDict LRScheduler::state_dict() const {
    StateDict out;
    out.metadata["scheduler"] = name();
    out.metadata["last_epoch"] = std::to_string(last_epoch_);
    out.metadata["step_count"] = std::to_string(step_count_);
    out.metadata["base_lrs"] = join_doubles(base_lrs_);
    out.metadata["last_lr"] = join_doubles(last_lr_);
    return out;
}

void LRScheduler::load_state_dict(const StateDict& state) {
    const std::string what = name() + "::load_state_dict";
    const std::string& kind = state.meta("scheduler", what.c_str());
    MDL_CHECK(kind == name(), StateError, what, ": the state is of a '", kind,
              "' schedule, this is '", name(), "'");
    const int64_t last_epoch = parse_int64(state.meta("last_epoch", what.c_str()), what);
    const int64_t step_count = parse_int64(state.meta("step_count", what.c_str()), what);
    std::vector<double> base = split_doubles(state.meta("base_lrs", what.c_str()), what);
    std::vector<double> last = split_doubles(state.meta("last_lr", what.c_str()), what);
    const size_t groups = optimizer_.param_groups().size();
    MDL_CHECK(base.size() == groups && last.size() == groups, StateError, what,
              ": the state has lrs for ", base.size(), " groups, the optimizer has ", groups);
    MDL_CHECK(last_epoch >= 0 && step_count >= 1, FormatError, what,
              ": bad counters last_epoch=", last_epoch, " step_count=", step_count);
    last_epoch_ = last_epoch;
    step_count_ = step_count;
    base_lrs_ = std::move(base);
    last_lr_ = std::move(last);
}

// ---- StepLR ----------------------------------------------------------------------------------

StepLR::StepLR(Optimizer& optimizer, int64_t step_size, double gamma)
    : LRScheduler(optimizer), step_size_(step_size), gamma_(gamma) {
    MDL_CHECK(step_size > 0, ValueError, "StepLR: step_size must be positive, got ", step_size);
    initial_step();
}

std::vector<double> StepLR::compute_lr() {
    std::vector<double> lrs = current_lrs(optimizer_);
    if (last_epoch_ == 0 || last_epoch_ % step_size_ != 0) return lrs;
    for (double& lr : lrs)
        lr *= gamma_;
    return lrs;
}

// ---- CosineAnnealingLR -----------------------------------------------------------------------

CosineAnnealingLR::CosineAnnealingLR(Optimizer& optimizer, int64_t t_max, double eta_min)
    : LRScheduler(optimizer), t_max_(t_max), eta_min_(eta_min) {
    MDL_CHECK(t_max > 0, ValueError, "CosineAnnealingLR: T_max must be positive, got ", t_max);
    initial_step();
}

std::vector<double> CosineAnnealingLR::compute_lr() {
    constexpr double pi = std::numbers::pi;
    const double t_max = static_cast<double>(t_max_);
    const double e = static_cast<double>(last_epoch_);
    std::vector<double> lrs = current_lrs(optimizer_);
    if (last_epoch_ == 0) return lrs;
    if (floor_mod(last_epoch_ - 1 - t_max_, 2 * t_max_) == 0) {
        // Leaving the minimum: the recursive ratio below would divide by zero.
        for (size_t g = 0; g < lrs.size(); ++g)
            lrs[g] += (base_lrs_[g] - eta_min_) * (1.0 - std::cos(pi / t_max)) / 2.0;
        return lrs;
    }
    for (double& lr : lrs)
        lr = (1.0 + std::cos(pi * e / t_max)) / (1.0 + std::cos(pi * (e - 1.0) / t_max)) *
                 (lr - eta_min_) +
             eta_min_;
    return lrs;
}

// ---- LinearWarmupDecay -----------------------------------------------------------------------

LinearWarmupDecay::LinearWarmupDecay(Optimizer& optimizer, LinearWarmupDecayOptions options)
    : LRScheduler(optimizer), options_(options) {
    MDL_CHECK(options.warmup_steps >= 0 && options.total_steps >= options.warmup_steps, ValueError,
              "LinearWarmupDecay: need 0 <= warmup_steps <= total_steps, got warmup_steps=",
              options.warmup_steps, " total_steps=", options.total_steps);
    MDL_CHECK(options.min_lr_ratio >= 0.0 && options.min_lr_ratio <= 1.0, ValueError,
              "LinearWarmupDecay: min_lr_ratio must be in [0, 1], got ", options.min_lr_ratio);
    initial_step();
}

double LinearWarmupDecay::factor(int64_t epoch) const {
    if (epoch < options_.warmup_steps)
        return static_cast<double>(epoch) / static_cast<double>(options_.warmup_steps);
    const double span =
        static_cast<double>(std::max<int64_t>(1, options_.total_steps - options_.warmup_steps));
    const double progress =
        std::min(1.0, static_cast<double>(epoch - options_.warmup_steps) / span);
    const double decay = options_.decay == DecayShape::Linear
                             ? 1.0 - progress
                             : 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
    return options_.min_lr_ratio + (1.0 - options_.min_lr_ratio) * decay;
}

std::vector<double> LinearWarmupDecay::compute_lr() {
    std::vector<double> lrs = base_lrs_;
    for (double& lr : lrs)
        lr *= factor(last_epoch_);
    return lrs;
}

// ---- LambdaLR --------------------------------------------------------------------------------

LambdaLR::LambdaLR(Optimizer& optimizer, std::function<double(int64_t)> lr_lambda)
    : LRScheduler(optimizer), lr_lambda_(std::move(lr_lambda)) {
    MDL_CHECK(static_cast<bool>(lr_lambda_), ValueError, "LambdaLR: lr_lambda is empty");
    initial_step();
}

std::vector<double> LambdaLR::compute_lr() {
    std::vector<double> lrs = base_lrs_;
    const double f = lr_lambda_(last_epoch_);
    for (double& lr : lrs)
        lr *= f;
    return lrs;
}

}  // namespace minidl::optim
