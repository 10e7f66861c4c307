// nn/linear.h — fully connected layer, as torch.nn.Linear.
//
//   y = x W^T + b,   x [..., IN] -> y [..., OUT],   W [OUT, IN] ("weight"),  b [OUT] ("bias")
// Initialisation (PyTorch's reset_parameters): W ~ kaiming_uniform(a = sqrt(5)), which is
// U(-1/sqrt(IN), 1/sqrt(IN)), then b ~ U(-1/sqrt(IN), 1/sqrt(IN)), drawn in that order.
// The gradients come from ops/matmul.h linear().
#pragma once

#include <cstdint>

#include "nn/module.h"

namespace minidl::nn {

class Linear : public Cloneable<Linear, UnaryModule> {
  public:
    Linear(int64_t in_features, int64_t out_features, bool bias = true);

    void reset() override;
    // Draws W and b again from the default generator (or `gen`).
    void reset_parameters(Generator* gen = nullptr);
    Tensor forward(const Tensor& x) override;
    std::string type_name() const override { return "Linear"; }

    int64_t in_features() const { return in_features_; }
    int64_t out_features() const { return out_features_; }

    Tensor weight;  // [OUT, IN]
    Tensor bias;    // [OUT], undefined without bias

  private:
    int64_t in_features_, out_features_;
    bool has_bias_;
};

}  // namespace minidl::nn
