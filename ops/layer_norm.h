// ops/layer_norm.h — layer normalisation over the trailing dims, differentiable.
//
// Ba, Kiros, Hinton 2016, arXiv:1607.06450. For each row x of the last numel(normalized_shape)
// elements (C of them):
//   mu = mean(x), var = mean((x - mu)^2) (biased), rstd = 1 / sqrt(var + eps), xhat = (x - mu) rstd
//   y = xhat * w + b
//   dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)),  dxhat = dy w
//   dw = sum over rows of dy xhat,  db = sum over rows of dy
// Statistics are computed in float for 16-bit inputs (autocast runs it in F32 anyway).
#pragma once

#include "core/tensor.h"

namespace minidl {

Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight = Tensor(),
                  const Tensor& bias = Tensor(), double eps = 1e-5);

}  // namespace minidl
