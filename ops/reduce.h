// ops/reduce.h — sums, means and maxima over all elements or one dim, differentiable.
//
//   sum:  y = sum_j x_j               dx_j = dy (broadcast back over the reduced dim)
//   mean: y = sum_j x_j / n           dx_j = dy / n
//   max:  y = max_j x_j               dx_j = dy / m for the m elements equal to the max (ties
//                                      share the gradient, PyTorch's amax rule), 0 elsewhere
//   (max_with_indices returns the FIRST argmax as the index.)
// keepdim keeps the reduced dim with size 1. The result has the input's dtype; 16-bit inputs are
// accumulated in float.
#pragma once

#include <utility>

#include "core/tensor.h"

namespace minidl {

Tensor sum(const Tensor& x);  // 0-d
Tensor sum(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor mean(const Tensor& x);  // 0-d
Tensor mean(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor max(const Tensor& x);  // 0-d
Tensor max(const Tensor& x, int64_t dim, bool keepdim = false);
// Values and (I64) indices of the maximum along dim.
std::pair<Tensor, Tensor> max_with_indices(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);  // I64, not differentiable

// The L2 norm of all elements, differentiable: sqrt(sum(x^2)).
Tensor norm(const Tensor& x);
// sqrt of the sum of squares over every element of every tensor, as a host double (not
// differentiable; accumulated in double). The norm that FGM and clipping need.
double global_l2_norm(const std::vector<Tensor>& xs);

}  // namespace minidl
