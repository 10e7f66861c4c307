// core/autocast.h — the thread-local autocast state that ops consult (tricks/amp.h sets it).
//
// While amp::Autocast(F16 or BF16) is alive in a thread, matmul and linear cast their floating
// operands to that dtype (products accumulate in float, results are 16-bit), and the ops that need
// range or precision (softmax, log_softmax, cross_entropy, layer_norm, sum, mean, exp, log) cast
// 16-bit inputs up to F32 first — PyTorch's autocast lists. Casts are ordinary differentiable
// to() calls, so gradients reach F32 parameters in F32.
#pragma once

#include "core/dtype.h"
#include "core/tensor.h"

namespace minidl::autocast {

bool is_enabled();
// The low dtype in use (meaningful only when enabled).
DType dtype();
// Sets the state of this thread (tricks/amp.h's Autocast scope does this).
void set_state(bool enabled, DType dtype);

// x cast to the autocast dtype when autocast is on and x is floating; x otherwise.
Tensor cast_low(const Tensor& x);
// x cast to F32 when autocast is on and x is 16-bit; x otherwise.
Tensor cast_float(const Tensor& x);

}  // namespace minidl::autocast
