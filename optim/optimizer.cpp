// optim/optimizer.cpp — parameter groups, stepping and checkpoints of Optimizer (see
// optim/optimizer.h; reference: torch/optim/optimizer.py of PyTorch 1.13).
#include "optim/optimizer.h"

#include <cmath>
#include <set>
#include <sstream>
#include <unordered_set>

#include "core/autograd.h"
#include "core/check.h"
#include "core/row_grad.h"

namespace minidl::optim {

std::string format_double(double value) {
    std::ostringstream os;
    os.precision(17);
    os << value;
    return os.str();
}

double parse_double(const std::string& text, const std::string& what) {
    size_t used = 0;
    double value = 0.0;
    try {
        value = std::stod(text, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    MDL_CHECK(used == text.size() && !text.empty(), FormatError, what, ": expected a number, got '",
              text, "'");
    return value;
}

namespace {

const std::string& option_text(const std::map<std::string, std::string>& values,
                               const std::string& key, const std::string& optimizer) {
    auto it = values.find(key);
    MDL_CHECK(it != values.end(), StateError, optimizer, "::load_state_dict: missing 'options.",
              key, "'");
    return it->second;
}

}  // namespace

double option_number(const std::map<std::string, std::string>& values, const std::string& key,
                     const std::string& optimizer) {
    return parse_double(option_text(values, key, optimizer),
                        optimizer + "::load_state_dict: options." + key);
}

bool option_bool(const std::map<std::string, std::string>& values, const std::string& key,
                 const std::string& optimizer) {
    const std::string& text = option_text(values, key, optimizer);
    MDL_CHECK(text == "true" || text == "false", FormatError, optimizer,
              "::load_state_dict: options.", key, " must be true or false, got '", text, "'");
    return text == "true";
}

namespace {

int64_t parse_int(const std::string& text, const std::string& what) {
    size_t used = 0;
    long long value = 0;
    try {
        value = std::stoll(text, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    MDL_CHECK(used == text.size() && !text.empty(), FormatError, what,
              ": expected an integer, got '", text, "'");
    return value;
}

std::string join_indices(size_t first, size_t count) {
    std::ostringstream os;
    for (size_t i = 0; i < count; ++i)
        os << (i ? "," : "") << first + i;
    return os.str();
}

}  // namespace

void Optimizer::check_non_negative(const char* optimizer, const char* what, double value) {
    MDL_CHECK(value >= 0.0, ValueError, optimizer, ": ", what, " must be non-negative, got ",
              value);
}

Optimizer::Optimizer(std::string name, std::vector<ParamGroupOptions> groups, double default_lr,
                     double default_weight_decay)
    : name_(std::move(name)), default_lr_(default_lr), default_weight_decay_(default_weight_decay) {
    MDL_CHECK(!groups.empty(), ValueError, name_, ": got no parameter groups");
    for (auto& g : groups)
        add_group(std::move(g));
}

void Optimizer::add_param_group(ParamGroupOptions group) {
    add_group(std::move(group));
}

void Optimizer::add_group(ParamGroupOptions group) {
    const std::string where = name() + ": parameter group " + std::to_string(groups_.size());
    MDL_CHECK(!group.params.empty(), ValueError, where, " is empty");
    std::unordered_set<const TensorImpl*> seen;
    for (const auto& g : groups_)
        for (const auto& p : g.params)
            seen.insert(p.impl());
    for (size_t i = 0; i < group.params.size(); ++i) {
        const Tensor& p = group.params[i];
        MDL_CHECK(p.defined(), StateError, where, ": parameter ", i, " is undefined");
        MDL_CHECK(is_floating(p.dtype()), DTypeError, where, ": parameter ", i,
                  " must be floating, got ", p.dtype(), " of shape ", shape_str(p.shape()));
        MDL_CHECK(p.is_leaf(), StateError, where, ": parameter ", i,
                  " is not a leaf (it was computed by ", p.grad_fn()->name(), ")");
        MDL_CHECK(seen.insert(p.impl()).second, ValueError, where, ": parameter ", i, " of shape ",
                  shape_str(p.shape()), " appears more than once");
    }
    const double lr = group.lr.value_or(default_lr_);
    const double weight_decay = group.weight_decay.value_or(default_weight_decay_);
    check_non_negative(name().c_str(), "lr", lr);
    check_non_negative(name().c_str(), "weight_decay", weight_decay);
    state_.resize(state_.size() + group.params.size());
    groups_.push_back(ParamGroup{std::move(group.params), lr, weight_decay});
}

std::vector<Tensor> Optimizer::parameters() const {
    std::vector<Tensor> out;
    for (const auto& g : groups_)
        out.insert(out.end(), g.params.begin(), g.params.end());
    return out;
}

const ParamState* Optimizer::state(size_t index) const {
    return index < state_.size() && state_[index] ? &*state_[index] : nullptr;
}

void Optimizer::step() {
    NoGradGuard no_grad;
    // Check every gradient before updating any parameter: an error leaves the model as it was.
    size_t index = 0;
    for (const auto& group : groups_) {
        for (const Tensor& param : group.params) {
            // A row-sparse gradient (core/row_grad.h) is checked without materialising it.
            const RowGrad* rows = row_grad(param);
            const Tensor& grad = rows ? rows->values : param.grad();
            MDL_CHECK(!grad.defined() || grad.dtype() == param.dtype(), DTypeError, name(),
                      ": parameter ", index, " of shape ", shape_str(param.shape()), " is ",
                      param.dtype(), " but its gradient is ", grad.dtype(),
                      " (unscale mixed-precision gradients into the master weights first)");
            ++index;
        }
    }
    index = 0;
    for (const auto& group : groups_) {
        for (Tensor param : group.params) {
            if (row_grad(param) != nullptr || param.grad().defined()) {
                if (!state_[index]) state_[index].emplace();
                update(group, param, *state_[index]);
                param.bump_version();  // a graph that saved the old values must not use them
            }
            ++index;
        }
    }
    ++step_count_;
}

void Optimizer::zero_grad(bool set_to_none) {
    NoGradGuard no_grad;
    for (const auto& group : groups_) {
        for (const auto& p : group.params) {
            if (set_to_none) {
                p.set_grad(Tensor());  // also drops a row-sparse gradient without densifying it
                continue;
            }
            if (!p.grad().defined()) continue;
            Tensor g = p.grad();
            g.zero_();
        }
    }
}

StateDict Optimizer::state_dict() const {
    StateDict out;
    out.metadata["optimizer"] = name();
    out.metadata["param_groups"] = std::to_string(groups_.size());
    out.metadata["step_count"] = std::to_string(step_count_);
    size_t first = 0;
    for (size_t g = 0; g < groups_.size(); ++g) {
        const std::string prefix = "param_groups." + std::to_string(g) + ".";
        out.metadata[prefix + "lr"] = format_double(groups_[g].lr);
        out.metadata[prefix + "weight_decay"] = format_double(groups_[g].weight_decay);
        out.metadata[prefix + "params"] = join_indices(first, groups_[g].params.size());
        first += groups_[g].params.size();
    }
    for (const auto& [key, value] : options_to_strings())
        out.metadata["options." + key] = value;
    for (size_t i = 0; i < state_.size(); ++i) {
        if (!state_[i]) continue;
        const std::string prefix = "state." + std::to_string(i) + ".";
        out.metadata[prefix + "step"] = std::to_string(state_[i]->step);
        for (const auto& [key, t] : state_[i]->tensors)
            out.tensors[prefix + key] = t.detach();
    }
    return out;
}

void Optimizer::load_state_dict(const StateDict& sd) {
    const std::string what = name() + "::load_state_dict";
    // ---- validate everything first -------------------------------------------------------------
    const std::string kind = sd.meta("optimizer", what.c_str());
    MDL_CHECK(kind == name(), StateError, what, ": the state is of a '", kind,
              "' optimizer, this is '", name(), "'");
    const int64_t ngroups =
        parse_int(sd.meta("param_groups", what.c_str()), what + " param_groups");
    MDL_CHECK(ngroups == static_cast<int64_t>(groups_.size()), StateError, what, ": the state has ",
              ngroups, " parameter groups, this optimizer ", groups_.size());
    const int64_t step_count = parse_int(sd.meta("step_count", what.c_str()), what + " step_count");
    MDL_CHECK(step_count >= 0, FormatError, what, ": step_count is negative: ", step_count);
    std::vector<double> lrs, decays;
    size_t first = 0;
    for (size_t g = 0; g < groups_.size(); ++g) {
        const std::string prefix = "param_groups." + std::to_string(g) + ".";
        const std::string expected = join_indices(first, groups_[g].params.size());
        const std::string& saved = sd.meta(prefix + "params", what.c_str());
        MDL_CHECK(saved == expected, StateError, what, ": group ", g, " holds parameters [", saved,
                  "] in the state but [", expected,
                  "] here (groups must have the same "
                  "sizes, in the same order)");
        lrs.push_back(
            parse_double(sd.meta(prefix + "lr", what.c_str()), what + " " + prefix + "lr"));
        decays.push_back(parse_double(sd.meta(prefix + "weight_decay", what.c_str()),
                                      what + " " + prefix + "weight_decay"));
        check_non_negative(what.c_str(), (prefix + "lr").c_str(), lrs.back());
        check_non_negative(what.c_str(), (prefix + "weight_decay").c_str(), decays.back());
        first += groups_[g].params.size();
    }
    const std::vector<Tensor> params = parameters();
    std::vector<std::optional<ParamState>> loaded(params.size());
    for (const auto& [key, value] : sd.metadata) {
        if (key.rfind("state.", 0) != 0) continue;
        const size_t dot = key.find('.', 6);
        MDL_CHECK(dot != std::string::npos && key.substr(dot + 1) == "step", FormatError, what,
                  ": unexpected metadata key '", key, "'");
        const int64_t index = parse_int(key.substr(6, dot - 6), what + " " + key);
        MDL_CHECK(index >= 0 && index < static_cast<int64_t>(params.size()), IndexError, what,
                  ": '", key, "' names parameter ", index, " but there are ", params.size());
        const int64_t step = parse_int(value, what + " " + key);
        MDL_CHECK(step >= 0, FormatError, what, ": '", key, "' is negative: ", step);
        loaded[index].emplace().step = step;
    }
    for (const auto& [key, t] : sd.tensors) {
        MDL_CHECK(key.rfind("state.", 0) == 0, FormatError, what, ": unexpected tensor '", key,
                  "'");
        const size_t dot = key.find('.', 6);
        MDL_CHECK(dot != std::string::npos, FormatError, what, ": malformed key '", key, "'");
        const int64_t index = parse_int(key.substr(6, dot - 6), what + " " + key);
        MDL_CHECK(index >= 0 && index < static_cast<int64_t>(params.size()) && loaded[index],
                  StateError, what, ": tensor '", key,
                  "' belongs to no parameter with a saved step");
        MDL_CHECK(t.defined() && is_floating(t.dtype()), DTypeError, what, ": '", key,
                  "' must be a floating tensor");
        MDL_CHECK(t.shape() == params[index].shape(), ShapeError, what, ": '", key, "' has shape ",
                  shape_str(t.shape()), " but parameter ", index, " has shape ",
                  shape_str(params[index].shape()));
    }
    std::map<std::string, std::string> options;
    for (const auto& [key, value] : sd.metadata)
        if (key.rfind("options.", 0) == 0) options[key.substr(8)] = value;

    // ---- then apply: the options may still reject a value, so they go first --------------------
    options_from_strings(options);
    for (size_t g = 0; g < groups_.size(); ++g) {
        groups_[g].lr = lrs[g];
        groups_[g].weight_decay = decays[g];
    }
    NoGradGuard no_grad;
    for (const auto& [key, t] : sd.tensors) {
        const size_t dot = key.find('.', 6);
        const size_t index = static_cast<size_t>(std::stoll(key.substr(6, dot - 6)));
        // A copy of our own, as F32 on the parameter's device.
        loaded[index]->tensors[key.substr(dot + 1)] =
            t.detach().to(params[index].device()).to(DType::F32).clone();
    }
    state_ = std::move(loaded);
    step_count_ = step_count;
}

}  // namespace minidl::optim
