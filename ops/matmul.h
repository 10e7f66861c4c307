// ops/matmul.h — matrix products, differentiable.
//
//   matmul(a [M, K], b [K, N]) -> [M, N]          da = dy b^T,  db = a^T dy
//   matmul(a [B, M, K], b [B, K, N]) -> [B, M, N]  (batched; b may also be [K, N], shared)
//   linear(x [..., IN], w [OUT, IN], b [OUT]) = x w^T + b -> [..., OUT]
//          dx = dy w,  dw = dy^T x (over all leading dims),  db = sum of dy over leading dims
// Under amp::Autocast the operands are cast to the autocast dtype (F16/BF16) first; products are
// accumulated in float and the result is in the low dtype, as PyTorch's autocast does.
#pragma once

#include "core/tensor.h"

namespace minidl {

Tensor matmul(const Tensor& a, const Tensor& b);
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

}  // namespace minidl
