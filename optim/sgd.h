// optim/sgd.h — stochastic gradient descent with momentum, dampening, Nesterov momentum and
// L2 weight decay, as torch.optim.SGD (PyTorch 1.13, torch/optim/sgd.py, _single_tensor_sgd).
//
// Per parameter p with gradient g (PyTorch documentation of torch.optim.SGD; Nesterov momentum in
// the form of Sutskever et al. 2013, https://proceedings.mlr.press/v28/sutskever13.html):
//   g = -g if maximize
//   g = g + weight_decay * p                          (if weight_decay != 0)
//   if momentum != 0:
//       b = g on the first step, else b = momentum * b + (1 - dampening) * g
//       g = g + momentum * b if nesterov, else g = b
//   p = p - lr * g
// State: "momentum_buffer" (F32) when momentum != 0.
#pragma once

#include "optim/optimizer.h"

namespace minidl::optim {

struct SgdOptions {
    double lr = 1e-3;  // PyTorch makes lr a required argument: set it
    double momentum = 0.0;
    double dampening = 0.0;
    double weight_decay = 0.0;
    bool nesterov = false;
    bool maximize = false;
};

class SGD : public Optimizer {
  public:
    explicit SGD(std::vector<Tensor> params, SgdOptions options = {});
    explicit SGD(std::vector<ParamGroupOptions> groups, SgdOptions options = {});

    // The hyper-parameters; lr and weight_decay here are only the defaults of new groups.
    const SgdOptions& options() const { return options_; }

  protected:
    void update(const ParamGroup& group, Tensor& param, ParamState& state) override;
    std::map<std::string, std::string> options_to_strings() const override;
    void options_from_strings(const std::map<std::string, std::string>& values) override;

  private:
    SgdOptions options_;
};

}  // namespace minidl::optim
