// core/finite.h — whether tensors hold only finite values (no NaN, no +-inf), and where not.
//
// A floating value is NaN or infinite exactly when its exponent field is all ones (IEEE 754):
//   f32 0x7f800000, f64 0x7ff0000000000000, f16 0x7c00, bf16 0x7f80
// (NaN when the mantissa is also non-zero, inf when it is zero). all_finite tests those bits with
// an integer OR-reduction, which the compiler vectorises where a floating comparison would not:
// one read pass over the tensor, threaded for large tensors (core/parallel.h). Integer tensors are
// always finite. Tensors on another device are copied to the host first (a diagnostics path:
// anomaly mode, checkpoint checks).
//
// Used by anomaly mode (core/anomaly.h), by training loops that must not step on a non-finite
// gradient, and by writers that must not save a non-finite weight (require_finite).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/state_dict.h"
#include "core/tensor.h"

namespace minidl {

// True when every element of t is finite (an undefined or empty tensor is).
bool all_finite(const Tensor& t);

struct NonFiniteCount {
    int64_t nan = 0;
    int64_t inf = 0;
    int64_t first = -1;  // flat index of the first NaN or inf, -1 when none
    bool any() const { return nan + inf > 0; }
};
// Counts the NaNs and infinities of t (the slow path for messages: call after all_finite failed).
NonFiniteCount count_non_finite(const Tensor& t);
// "3 NaN and 1 inf of 12 elements (the first at flat index 5)", or "finite".
std::string describe_non_finite(const Tensor& t);

// True when the gradient of every tensor in `params` is finite (tensors without a gradient count
// as finite). A row-sparse gradient (core/row_grad.h) is read as its rows, never made dense, so
// the cost is one read of what the backward pass wrote. Gradients on a GPU are checked there, one
// launch and one host read per device.
bool grads_all_finite(const std::vector<Tensor>& params);
// The same check, reading `value` (one element, e.g. a training step's loss) into value_out in the
// same transfer as the flag of value's device: a step that needs both waits for a GPU once, not
// twice. value's dtype is any; value_out is its value as a double.
bool grads_all_finite(const std::vector<Tensor>& params, const Tensor& value, double& value_out);

// Throws NonFiniteError naming `who`, `path` and the first tensor of `state` (by name) that holds
// a NaN or an inf, with its counts: for writers that must never save a broken weight.
void require_finite(const StateDict& state, const char* who, const std::string& path);

}  // namespace minidl
