// ops/shape_ops.h — joining, slicing and gathering, differentiable.
//
//   concat(xs, dim):        y = [x_0 | x_1 | ...] along dim;   dx_k = the slice of dy
//   slice(x, dim, a, b):    y = x[..., a:b, ...] (a copy);     dx = zeros with dy in the slice
//   index_select(x, dim, idx [J]): y[..., j, ...] = x[..., idx[j], ...];  dx[idx[j]] += dy[j]
//   stack(xs, dim):         concat of the xs each unsqueezed at dim
// (view/reshape/transpose/narrow0 are Tensor members: core/tensor.h.)
#pragma once

#include <vector>

#include "core/tensor.h"

namespace minidl {

Tensor concat(const std::vector<Tensor>& xs, int64_t dim = 0);
Tensor stack(const std::vector<Tensor>& xs, int64_t dim = 0);
Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end);
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
Tensor unsqueeze(const Tensor& x, int64_t dim);
Tensor squeeze(const Tensor& x, int64_t dim);

}  // namespace minidl
