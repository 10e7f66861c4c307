// core/autocast.h — the thread-local autocast state that ops consult (tricks/amp.h sets it).
//
// While amp::Autocast(F16 or BF16) is alive in a thread, ops follow PyTorch's CUDA autocast lists
// ("Autocast Op Reference"), on every device:
//   to the low dtype   matmul, linear, scaled_dot_product_attention: f32 (and the other 16-bit
//                      format's) operands are cast down; products accumulate in float, results
//                      are 16-bit;
//   to f32             pow, rdiv (PyTorch's __rdiv__/reciprocal), exp, log, sum, norm, softmax,
//                      log_softmax, layer_norm, cross_entropy: 16-bit inputs are cast up first,
//                      results are f32;
//   everything else    runs in its inputs' dtype; binary elementwise ops on mixed dtypes promote
//                      to the wider one (ops/elementwise.h), inside autocast as outside. mean is
//                      not forced to f32 (it is in neither list).
// float64 tensors are never cast (PyTorch casts only f32/f16/bf16). Casts are ordinary
// differentiable to() calls, so gradients reach f32 parameters in f32.
#pragma once

#include "core/dtype.h"
#include "core/tensor.h"

namespace minidl::autocast {

bool is_enabled();
// The low dtype in use (meaningful only when enabled).
DType dtype();
// Sets the state of this thread (tricks/amp.h's Autocast scope does this).
void set_state(bool enabled, DType dtype);

// x cast to the autocast dtype when autocast is on and x is f32/f16/bf16; x otherwise.
Tensor cast_low(const Tensor& x);
// x cast to F32 when autocast is on and x is 16-bit; x otherwise.
Tensor cast_float(const Tensor& x);

}  // namespace minidl::autocast
