// optim/adam.h — Adam, as torch.optim.Adam (PyTorch 1.13, torch/optim/adam.py,
// _single_tensor_adam).
//
// Kingma & Ba 2015, "Adam: A Method for Stochastic Optimization", arXiv:1412.6980
// (https://arxiv.org/abs/1412.6980); AMSGrad: Reddi, Kale & Kumar 2018,
// https://openreview.net/forum?id=ryQu7f-RZ. Per parameter p with gradient g, at step t:
//   g = -g if maximize
//   g = g + weight_decay * p                  (L2 penalty folded into the gradient)
//   m = beta1 m + (1 - beta1) g
//   v = beta2 v + (1 - beta2) g^2
//   vmax = max(vmax, v) with amsgrad, and v below is vmax
//   denom = sqrt(v) / sqrt(1 - beta2^t) + eps
//   p = p - lr / (1 - beta1^t) * m / denom
// (the eps placement of PyTorch's implementation: eps is added after the bias correction of v).
// State: "exp_avg" (m), "exp_avg_sq" (v), "max_exp_avg_sq" (vmax, amsgrad), all F32, and the
// step count t. AdamW (optim/adamw.h) is the same update with the decay decoupled from g.
#pragma once

#include "optim/optimizer.h"

namespace minidl::optim {

struct AdamOptions {
    double lr = 1e-3;
    double beta1 = 0.9;    // PyTorch's betas[0]
    double beta2 = 0.999;  // PyTorch's betas[1]
    double eps = 1e-8;
    double weight_decay = 0.0;
    bool amsgrad = false;
    bool maximize = false;
};

class Adam : public Optimizer {
  public:
    explicit Adam(std::vector<Tensor> params, AdamOptions options = {});
    explicit Adam(std::vector<ParamGroupOptions> groups, AdamOptions options = {});

    // The hyper-parameters; lr and weight_decay here are only the defaults of new groups.
    const AdamOptions& options() const { return options_; }

  protected:
    // For AdamW: `decoupled_weight_decay` applies p *= 1 - lr * weight_decay instead.
    Adam(std::string name, std::vector<ParamGroupOptions> groups, AdamOptions options,
         bool decoupled_weight_decay);

    void update(const ParamGroup& group, Tensor& param, ParamState& state) override;
    std::map<std::string, std::string> options_to_strings() const override;
    void options_from_strings(const std::map<std::string, std::string>& values) override;

  private:
    AdamOptions options_;
    bool decoupled_weight_decay_;
};

}  // namespace minidl::optim
