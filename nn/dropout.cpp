// nn/dropout.cpp — Dropout (see nn/dropout.h; reference: torch/nn/modules/dropout.py).
#include "nn/dropout.h"

#include "core/check.h"
#include "ops/dropout.h"

namespace minidl::nn {

Dropout::Dropout(double p, Generator* generator) : p_(p), generator_(generator) {
    MDL_CHECK(p >= 0.0 && p <= 1.0, ValueError, "Dropout: p must be in [0, 1], got ", p);
}

Tensor Dropout::forward(const Tensor& x) {
    return dropout(x, p_, is_training(), generator_);
}

}  // namespace minidl::nn
