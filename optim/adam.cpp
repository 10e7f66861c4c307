// optim/adam.cpp — Adam and the shared body of AdamW (update rule in optim/adam.h; the fused
// kernel is Kernels::adam_step).
#include "optim/adam.h"

#include "core/check.h"
#include "core/kernels.h"
#include "core/row_grad.h"

namespace minidl::optim {

namespace {

void check_options(const std::string& name, const AdamOptions& o) {
    MDL_CHECK(o.lr >= 0.0, ValueError, name, ": lr must be non-negative, got ", o.lr);
    MDL_CHECK(o.eps >= 0.0, ValueError, name, ": eps must be non-negative, got ", o.eps);
    MDL_CHECK(o.beta1 >= 0.0 && o.beta1 < 1.0, ValueError, name, ": beta1 must be in [0, 1), got ",
              o.beta1);
    MDL_CHECK(o.beta2 >= 0.0 && o.beta2 < 1.0, ValueError, name, ": beta2 must be in [0, 1), got ",
              o.beta2);
    MDL_CHECK(o.weight_decay >= 0.0, ValueError, name, ": weight_decay must be non-negative, got ",
              o.weight_decay);
}

Tensor& state_tensor(ParamState& state, const char* key, const Tensor& param) {
    auto it = state.tensors.find(key);
    if (it == state.tensors.end())
        it = state.tensors.emplace(key, Tensor::zeros(param.shape(), DType::F32, param.device()))
                 .first;
    return it->second;
}

}  // namespace

Adam::Adam(std::vector<Tensor> params, AdamOptions options)
    : Adam("adam", single_group(std::move(params)), options, false) {}

Adam::Adam(std::vector<ParamGroupOptions> groups, AdamOptions options)
    : Adam("adam", std::move(groups), options, false) {}

Adam::Adam(std::string name, std::vector<ParamGroupOptions> groups, AdamOptions options,
           bool decoupled_weight_decay)
    : Optimizer(std::move(name), std::move(groups), options.lr, options.weight_decay),
      options_(options),
      decoupled_weight_decay_(decoupled_weight_decay) {
    check_options(this->name(), options_);
}

void Adam::update(const ParamGroup& group, Tensor& param, ParamState& state) {
    // Moments start at zero (created on the first update, or restored by load_state_dict).
    Tensor& exp_avg = state_tensor(state, "exp_avg", param);
    Tensor& exp_avg_sq = state_tensor(state, "exp_avg_sq", param);
    Tensor* max_exp_avg_sq =
        options_.amsgrad ? &state_tensor(state, "max_exp_avg_sq", param) : nullptr;
    ++state.step;
    const AdamArgs args{.lr = group.lr,
                        .beta1 = options_.beta1,
                        .beta2 = options_.beta2,
                        .eps = options_.eps,
                        .weight_decay = group.weight_decay,
                        .decoupled_weight_decay = decoupled_weight_decay_,
                        .amsgrad = options_.amsgrad,
                        .maximize = options_.maximize,
                        .step = state.step};
    // An embedding table's row-sparse gradient (core/row_grad.h) is used as it is: every row is
    // still updated, the untouched ones with g = 0 — the dense step, without a dense gradient.
    if (const RowGrad* rows = row_grad(param)) {
        kernels_for(param.device())
            .adam_step_rows(param, rows->rows, rows->values, exp_avg, exp_avg_sq, max_exp_avg_sq,
                            args);
    } else {
        kernels_for(param.device())
            .adam_step(param, param.grad(), exp_avg, exp_avg_sq, max_exp_avg_sq, args);
    }
}

std::map<std::string, std::string> Adam::options_to_strings() const {
    return {{"beta1", format_double(options_.beta1)},
            {"beta2", format_double(options_.beta2)},
            {"eps", format_double(options_.eps)},
            {"amsgrad", bool_string(options_.amsgrad)},
            {"maximize", bool_string(options_.maximize)}};
}

void Adam::options_from_strings(const std::map<std::string, std::string>& values) {
    AdamOptions o = options_;
    o.beta1 = option_number(values, "beta1", name());
    o.beta2 = option_number(values, "beta2", name());
    o.eps = option_number(values, "eps", name());
    o.amsgrad = option_bool(values, "amsgrad", name());
    o.maximize = option_bool(values, "maximize", name());
    check_options(name(), o);
    options_ = o;
}

}  // namespace minidl::optim
