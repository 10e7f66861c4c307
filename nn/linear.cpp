// nn/linear.cpp — Linear (math and initialisation in nn/linear.h; reference:
// torch/nn/modules/linear.py).
#include "nn/linear.h"

#include <cmath>

#include "core/check.h"
#include "ops/matmul.h"

namespace minidl::nn {

Linear::Linear(int64_t in_features, int64_t out_features, bool bias)
    : in_features_(in_features), out_features_(out_features), has_bias_(bias) {
    MDL_CHECK(in_features > 0 && out_features > 0, ValueError,
              "Linear: in_features and out_features must be positive, got in_features=",
              in_features, " out_features=", out_features);
    reset();
}

void Linear::reset() {
    weight = register_parameter("weight", Tensor::empty({out_features_, in_features_}));
    bias = has_bias_ ? register_parameter("bias", Tensor::empty({out_features_})) : Tensor();
    reset_parameters();
}

void Linear::reset_parameters(Generator* gen) {
    init::kaiming_uniform_(weight, std::sqrt(5.0), init::FanMode::FanIn,
                           init::Nonlinearity::LeakyRelu, gen);
    if (bias.defined()) {
        const double bound = 1.0 / std::sqrt(static_cast<double>(in_features_));
        init::uniform_(bias, -bound, bound, gen);
    }
}

Tensor Linear::forward(const Tensor& x) {
    MDL_CHECK(x.defined() && x.dim() >= 1 && x.size(-1) == in_features_, ShapeError,
              "Linear: input of shape ", x.defined() ? shape_str(x.shape()) : "(undefined)",
              " does not end in in_features=", in_features_, " (weight ", shape_str(weight.shape()),
              ")");
    return linear(x, weight, bias);
}

}  // namespace minidl::nn
