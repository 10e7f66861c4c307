// nn/layer_norm.h — layer normalisation over the trailing dims, as torch.nn.LayerNorm.
//
// Ba, Kiros, Hinton 2016, arXiv:1607.06450 (https://arxiv.org/abs/1607.06450). Over the last
// numel(normalized_shape) elements of each row:
//   y = (x - mean) / sqrt(var + eps) * weight + bias      (var biased)
// weight ("weight", ones) and bias ("bias", zeros) have normalized_shape and exist only with
// elementwise_affine. The math and gradients are in ops/layer_norm.h.
#pragma once

#include "nn/module.h"

namespace minidl::nn {

class LayerNorm : public Cloneable<LayerNorm, UnaryModule> {
  public:
    explicit LayerNorm(Shape normalized_shape, double eps = 1e-5, bool elementwise_affine = true);

    void reset() override;
    void reset_parameters();
    Tensor forward(const Tensor& x) override;
    std::string type_name() const override { return "LayerNorm"; }

    const Shape& normalized_shape() const { return normalized_shape_; }
    double eps() const { return eps_; }

    Tensor weight;  // normalized_shape, undefined without elementwise_affine
    Tensor bias;    // normalized_shape, undefined without elementwise_affine

  private:
    Shape normalized_shape_;
    double eps_;
    bool elementwise_affine_;
};

}  // namespace minidl::nn
