// tests/support/poison.h — output buffers that a kernel must overwrite completely.
//
// Tensor::empty holds whatever the allocator had, and a parity test that gives two devices the same
// bytes would pass for a kernel that skipped elements (garbage compared with the same garbage).
// nan_filled returns floating tensors filled with NaN and I64 tensors filled with kPoisonI64, so an
// element a kernel forgot fails compare_close against the other device's written value (NaN
// against a number is never close) and bitwise_equal (the poison against a written id).
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace minidl::test {

constexpr int64_t kPoisonI64 = 0x7f7f7f7f7f7f7f7f;

// A tensor of `shape` whose every element is NaN (floating dtypes) or kPoisonI64 (I64), on device.
Tensor nan_filled(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());

}  // namespace minidl::test
