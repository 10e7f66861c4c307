// optim/optimizer.h — the base of SGD, Adam and AdamW: parameter groups, per-parameter state,
// step(), zero_grad() and checkpoints.
//
// Semantics of torch.optim.Optimizer (torch/optim/optimizer.py, PyTorch 1.13):
//   - parameters come in groups; each group has its own lr (what LR schedules change) and
//     weight_decay, defaulting to the optimizer's options; the other hyper-parameters (betas,
//     momentum, ...) are the optimizer's;
//   - parameters are numbered 0, 1, ... across the groups in order; state is kept per number
//     and created on a parameter's first update;
//   - step() updates every parameter whose .grad() is defined and skips the others (their state
//     does not advance either);
//   - state_dict(): tensors "state.<i>.<name>" (exp_avg, exp_avg_sq, max_exp_avg_sq,
//     momentum_buffer), metadata "state.<i>.step", "param_groups.<g>.lr|weight_decay|params",
//     "options.<name>", "step_count" and "optimizer" (its kind). As in PyTorch the tensors alias
//     the live state; load_state_dict copies them, so a restored optimizer continues exactly as the
//     original would have.
// Each update is one fused pass per tensor through Kernels::adam_step / sgd_step
// (ops/cpu/optim_cpu.cpp); state is F32.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/state_dict.h"
#include "core/tensor.h"

namespace minidl::optim {

// A group as the optimizer keeps it (param_groups() hands these out; lr is writable).
struct ParamGroup {
    std::vector<Tensor> params;
    double lr = 0.0;
    double weight_decay = 0.0;
};

// A group as a caller describes it: unset fields take the optimizer's options.
struct ParamGroupOptions {
    std::vector<Tensor> params;
    std::optional<double> lr = std::nullopt;
    std::optional<double> weight_decay = std::nullopt;
};

// What an optimizer remembers about one parameter.
struct ParamState {
    int64_t step = 0;                       // updates applied so far
    std::map<std::string, Tensor> tensors;  // F32, the parameter's shape and device
};

class Optimizer {
  public:
    virtual ~Optimizer() = default;
    Optimizer(const Optimizer&) = delete;
    Optimizer& operator=(const Optimizer&) = delete;

    // One update of every parameter that has a gradient, without recording a graph.
    void step();
    // How many times step() has run (PyTorch's _step_count): what EMA, SWA and schedules that
    // must not advance on a skipped AMP step compare against. Saved in state_dict().
    int64_t step_count() const { return step_count_; }
    // Drops every gradient (set_to_none, PyTorch's default since 2.0) or fills it with zeros.
    void zero_grad(bool set_to_none = true);

    std::vector<ParamGroup>& param_groups() { return groups_; }
    const std::vector<ParamGroup>& param_groups() const { return groups_; }
    // Appends a group (its parameters are numbered after the existing ones).
    void add_param_group(ParamGroupOptions group);
    // Every parameter, in number order.
    std::vector<Tensor> parameters() const;
    // The state of parameter `index`, or nullptr before its first update.
    const ParamState* state(size_t index) const;

    StateDict state_dict() const;
    // Restores groups' lr/weight_decay, the options and the per-parameter state. Checks first
    // (kind, group sizes, state shapes, values) and throws before changing anything.
    void load_state_dict(const StateDict& state);

    // "sgd", "adam", "adamw": stored in state_dict() and checked on load.
    const std::string& name() const { return name_; }

  protected:
    Optimizer(std::string name, std::vector<ParamGroupOptions> groups, double default_lr,
              double default_weight_decay);

    // Updates `param` (its grad is defined, same dtype) with `state` (created empty on the first
    // update; the step counter is the subclass's to advance).
    virtual void update(const ParamGroup& group, Tensor& param, ParamState& state) = 0;
    // The hyper-parameters beyond lr and weight_decay, as strings for the metadata...
    virtual std::map<std::string, std::string> options_to_strings() const = 0;
    // ...and back; throws (before assigning anything) on a missing key or bad value.
    virtual void options_from_strings(const std::map<std::string, std::string>& values) = 0;

    // Shared checks for the options of the subclasses.
    static void check_non_negative(const char* optimizer, const char* what, double value);

  private:
    void add_group(ParamGroupOptions group);

    std::string name_;
    std::vector<ParamGroup> groups_;
    std::vector<std::optional<ParamState>> state_;  // by parameter number
    double default_lr_, default_weight_decay_;
    int64_t step_count_ = 0;
};

// One group holding `params`, with the optimizer's lr and weight_decay.
inline std::vector<ParamGroupOptions> single_group(std::vector<Tensor> params) {
    return {ParamGroupOptions{std::move(params), std::nullopt, std::nullopt}};
}

// Exact text form of a double (17 significant digits round-trip) and its parser.
std::string format_double(double value);
double parse_double(const std::string& text, const std::string& what);
// options_from_strings helpers: values[key] as a number / as "true" or "false"; a missing key is
// a StateError and a malformed value a FormatError, both naming `optimizer` and the key.
double option_number(const std::map<std::string, std::string>& values, const std::string& key,
                     const std::string& optimizer);
bool option_bool(const std::map<std::string, std::string>& values, const std::string& key,
                 const std::string& optimizer);
inline const char* bool_string(bool value) {
    return value ? "true" : "false";
}

}  // namespace minidl::optim
