// optim/adamw.h — AdamW: Adam with decoupled weight decay, as torch.optim.AdamW (PyTorch 1.13,
// torch/optim/adamw.py, _single_tensor_adamw).
//
// Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization", arXiv:1711.05101
// (https://arxiv.org/abs/1711.05101). The decay shrinks the weights directly instead of entering
// the gradient (and so the moments); otherwise the update is Adam's (optim/adam.h):
//   p = p * (1 - lr * weight_decay)
//   m, v, (vmax) and the step as Adam with the raw gradient g (-g if maximize)
// The default weight_decay is 1e-2, PyTorch's.
#pragma once

#include "optim/adam.h"

namespace minidl::optim {

struct AdamWOptions {
    double lr = 1e-3;
    double beta1 = 0.9;
    double beta2 = 0.999;
    double eps = 1e-8;
    double weight_decay = 1e-2;
    bool amsgrad = false;
    bool maximize = false;
};

class AdamW : public Adam {
  public:
    explicit AdamW(std::vector<Tensor> params, AdamWOptions options = {});
    explicit AdamW(std::vector<ParamGroupOptions> groups, AdamWOptions options = {});
};

}  // namespace minidl::optim
