// nn/layer_norm.cpp — LayerNorm (see nn/layer_norm.h; reference:
// torch/nn/modules/normalization.py).
#include "nn/layer_norm.h"

#include "core/check.h"
#include "ops/layer_norm.h"

namespace minidl::nn {

LayerNorm::LayerNorm(Shape normalized_shape, double eps, bool elementwise_affine)
    : normalized_shape_(std::move(normalized_shape)),
      eps_(eps),
      elementwise_affine_(elementwise_affine) {
    bool positive = !normalized_shape_.empty();
    for (int64_t s : normalized_shape_)
        positive = positive && s > 0;
    MDL_CHECK(positive, ShapeError, "LayerNorm: normalized_shape must be non-empty with positive ",
              "sizes, got ", shape_str(normalized_shape_));
    MDL_CHECK(eps >= 0.0, ValueError, "LayerNorm: eps must be non-negative, got ", eps);
    reset();
}

void LayerNorm::reset() {
    if (elementwise_affine_) {
        weight = register_parameter("weight", Tensor::empty(normalized_shape_));
        bias = register_parameter("bias", Tensor::empty(normalized_shape_));
    } else {
        weight = Tensor();
        bias = Tensor();
    }
    reset_parameters();
}

void LayerNorm::reset_parameters() {
    if (!elementwise_affine_) return;
    init::ones_(weight);
    init::zeros_(bias);
}

Tensor LayerNorm::forward(const Tensor& x) {
    return layer_norm(x, normalized_shape_, weight, bias, eps_);
}

}  // namespace minidl::nn
