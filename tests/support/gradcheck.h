// tests/support/gradcheck.h — finite-difference gradient checks in float64.
//
// For f: inputs -> output, compares the whole Jacobian from backward (one backward per output
// element, with a one-hot gradient) against central differences
//   J[k, i] ~ (f(x + eps e_i)[k] - f(x - eps e_i)[k]) / (2 eps)
// with PyTorch gradcheck's defaults: eps = 1e-6, |analytic - numeric| <= atol + rtol |numeric|,
// atol = 1e-5, rtol = 1e-3. Inputs must be F64 leaves; those with requires_grad are checked.
// Choose inputs away from kinks (ReLU at 0, ties of max), where the derivative is not defined.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace minidl::test {

struct GradcheckOptions {
    double eps = 1e-6, atol = 1e-5, rtol = 1e-3;
};

using GradFn = std::function<Tensor(const std::vector<Tensor>&)>;

// CHECKs every Jacobian entry; returns true when all pass.
bool gradcheck(const GradFn& f, const std::vector<Tensor>& inputs,
               const GradcheckOptions& options = {}, const std::string& what = "");

// A random F64 leaf of `shape` that requires grad (uniform on [low, high), seeded).
Tensor rand64(const Shape& shape, uint64_t seed, double low = -1.0, double high = 1.0);

}  // namespace minidl::test
