// ops/softmax.h — softmax and log-softmax along one dim, differentiable.
//
//   softmax:      y_i = e^(x_i - m) / sum_j e^(x_j - m),  m = max_j x_j (for stability)
//                 dx_i = y_i (dy_i - sum_j dy_j y_j)
//   log_softmax:  y_i = x_i - m - log sum_j e^(x_j - m)
//                 dx_i = dy_i - e^(y_i) sum_j dy_j
#pragma once

#include "core/tensor.h"

namespace minidl {

Tensor softmax(const Tensor& x, int64_t dim = -1);
Tensor log_softmax(const Tensor& x, int64_t dim = -1);

}  // namespace minidl
