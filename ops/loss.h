// ops/loss.h — cross-entropy on logits (fused log-softmax + negative log-likelihood).
//
// For logits x [N, C] and class targets t [N] (I64), with label smoothing ls (PyTorch's rule):
//   lse_i  = log sum_c e^(x_ic)
//   loss_i = (1 - ls) (lse_i - x_{i,t_i}) + ls (lse_i - (1/C) sum_c x_ic)
//   d loss_i / d x_ic = softmax_ic - (1 - ls) [c = t_i] - ls / C
// Rows whose target equals ignore_index contribute 0 and are left out of the mean's count.
// Reduction: Mean (the default; divides by the number of non-ignored rows), Sum, or None ([N]).
// The loss is F32 for F32/F16/BF16 logits (F64 stays F64): autocast computes it in float.
#pragma once

#include "core/tensor.h"

namespace minidl {

enum class Reduction { None, Mean, Sum };

struct CrossEntropyOptions {
    Reduction reduction = Reduction::Mean;
    double label_smoothing = 0.0;
    int64_t ignore_index = -100;
};

Tensor cross_entropy(const Tensor& logits, const Tensor& targets,
                     const CrossEntropyOptions& options = {});

}  // namespace minidl
