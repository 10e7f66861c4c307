// optim/adamw.cpp — AdamW: Adam's update with decoupled weight decay (see optim/adamw.h).
#include "optim/adamw.h"

namespace minidl::optim {

namespace {

AdamOptions as_adam_options(const AdamWOptions& o) {
    return AdamOptions{.lr = o.lr,
                       .beta1 = o.beta1,
                       .beta2 = o.beta2,
                       .eps = o.eps,
                       .weight_decay = o.weight_decay,
                       .amsgrad = o.amsgrad,
                       .maximize = o.maximize};
}

}  // namespace

AdamW::AdamW(std::vector<Tensor> params, AdamWOptions options)
    : Adam("adamw", single_group(std::move(params)), as_adam_options(options), true) {}

AdamW::AdamW(std::vector<ParamGroupOptions> groups, AdamWOptions options)
    : Adam("adamw", std::move(groups), as_adam_options(options), true) {}

}  // namespace minidl::optim
