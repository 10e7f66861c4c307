// nn/activation.h — elementwise activations as modules, as torch.nn.ReLU, GELU and Tanh.
//
//   ReLU: y = max(x, 0)
//   GELU: y = x Phi(x) (exact, erf) or 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
//         (approximate = Tanh; Hendrycks & Gimpel 2016, arXiv:1606.08415)
//   Tanh: y = tanh(x)
// No parameters; the math and gradients are in ops/elementwise.h.
#pragma once

#include "nn/module.h"
#include "ops/elementwise.h"

namespace minidl::nn {

class ReLU : public Cloneable<ReLU, UnaryModule> {
  public:
    void reset() override {}
    Tensor forward(const Tensor& x) override { return minidl::relu(x); }
    std::string type_name() const override { return "ReLU"; }
};

class GELU : public Cloneable<GELU, UnaryModule> {
  public:
    explicit GELU(GeluApproximation approximate = GeluApproximation::None)
        : approximate_(approximate) {}
    void reset() override {}
    Tensor forward(const Tensor& x) override { return minidl::gelu(x, approximate_); }
    std::string type_name() const override { return "GELU"; }
    GeluApproximation approximate() const { return approximate_; }

  private:
    GeluApproximation approximate_;
};

class Tanh : public Cloneable<Tanh, UnaryModule> {
  public:
    void reset() override {}
    Tensor forward(const Tensor& x) override { return minidl::tanh(x); }
    std::string type_name() const override { return "Tanh"; }
};

}  // namespace minidl::nn
