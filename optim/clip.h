// optim/clip.h — gradient-norm clipping, as torch.nn.utils.clip_grad_norm_ (PyTorch 1.13,
// torch/nn/utils/clip_grad.py).
//
// Over the gradients of `params` that are defined, taken as one long vector:
//   total = (sum_i |g_i|^p)^(1/p)    (p = norm_type; p = inf: max_i |g_i|)
//   coef  = min(1, max_norm / (total + 1e-6));   every g *= coef
// Returns total, the norm BEFORE clipping (0 when no gradient is defined). The 2-norm is
// accumulated in double (Kernels::sum_squares); with error_if_nonfinite a NaN or infinite total
// throws ValueError before any gradient is changed (PyTorch's flag of the same name).
// Introduced for RNNs by Pascanu, Mikolov & Bengio 2013, arXiv:1211.5063
// (https://arxiv.org/abs/1211.5063).
#pragma once

#include <limits>
#include <vector>

#include "core/tensor.h"

namespace minidl::optim {

constexpr double kInfNorm = std::numeric_limits<double>::infinity();

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm, double norm_type = 2.0,
                      bool error_if_nonfinite = false);

}  // namespace minidl::optim
