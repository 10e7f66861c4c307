// optim/sgd.cpp — SGD (update rule in optim/sgd.h; the fused kernel is Kernels::sgd_step).
#include "optim/sgd.h"

#include "core/check.h"
#include "core/kernels.h"

namespace minidl::optim {

namespace {

void check_options(const SgdOptions& o) {
    MDL_CHECK(o.lr >= 0.0, ValueError, "sgd: lr must be non-negative, got ", o.lr);
    MDL_CHECK(o.momentum >= 0.0, ValueError, "sgd: momentum must be non-negative, got ",
              o.momentum);
    MDL_CHECK(o.weight_decay >= 0.0, ValueError, "sgd: weight_decay must be non-negative, got ",
              o.weight_decay);
    // PyTorch's rule: Nesterov momentum is defined without dampening.
    MDL_CHECK(!o.nesterov || (o.momentum > 0.0 && o.dampening == 0.0), ValueError,
              "sgd: nesterov requires momentum > 0 and dampening = 0, got momentum=", o.momentum,
              " dampening=", o.dampening);
}

}  // namespace

SGD::SGD(std::vector<Tensor> params, SgdOptions options)
    : SGD(single_group(std::move(params)), options) {}

SGD::SGD(std::vector<ParamGroupOptions> groups, SgdOptions options)
    : Optimizer("sgd", std::move(groups), options.lr, options.weight_decay), options_(options) {
    check_options(options_);
}

void SGD::update(const ParamGroup& group, Tensor& param, ParamState& state) {
    const bool use_momentum = options_.momentum != 0.0;
    Tensor* buffer = nullptr;
    bool first_step = false;
    if (use_momentum) {
        auto it = state.tensors.find("momentum_buffer");
        first_step = it == state.tensors.end();
        if (first_step) {
            // Written, not read, on the first step: the kernel sets it to the gradient.
            it = state.tensors
                     .emplace("momentum_buffer",
                              Tensor::empty(param.shape(), DType::F32, param.device()))
                     .first;
        }
        buffer = &it->second;
    }
    ++state.step;
    const SgdArgs args{.lr = group.lr,
                       .momentum = options_.momentum,
                       .dampening = options_.dampening,
                       .weight_decay = group.weight_decay,
                       .nesterov = options_.nesterov,
                       .maximize = options_.maximize,
                       .first_step = first_step};
    kernels_for(param.device()).sgd_step(param, param.grad(), buffer, args);
}

std::map<std::string, std::string> SGD::options_to_strings() const {
    return {{"momentum", format_double(options_.momentum)},
            {"dampening", format_double(options_.dampening)},
            {"nesterov", bool_string(options_.nesterov)},
            {"maximize", bool_string(options_.maximize)}};
}

void SGD::options_from_strings(const std::map<std::string, std::string>& values) {
    SgdOptions o = options_;
    o.momentum = option_number(values, "momentum", name());
    o.dampening = option_number(values, "dampening", name());
    o.nesterov = option_bool(values, "nesterov", name());
    o.maximize = option_bool(values, "maximize", name());
    check_options(o);
    options_ = o;
}

}  // namespace minidl::optim
