// ops/dropout.h — inverted dropout, differentiable.
//
// Srivastava et al. 2014, https://jmlr.org/papers/v15/srivastava14a.html. In training each element
// is kept with probability 1 - p and scaled by 1 / (1 - p), so the expectation is unchanged:
//   y = x * m,  m_i = Bernoulli(1 - p) / (1 - p);   dx = dy * m
// The mask comes from the counter-based generator, so a run is reproducible from its seed and the
// same on CPU and CUDA. Not training (or p == 0): y = x.
#pragma once

#include "core/rng.h"
#include "core/tensor.h"

namespace minidl {

Tensor dropout(const Tensor& x, double p, bool training, Generator* gen = nullptr);

// The scaled mask that dropout(x, p, true, gen) would multiply by (FreeLB replays it).
Tensor dropout_mask(const Shape& shape, double p, DType dtype, Device device, Generator* gen);

}  // namespace minidl
