// ops/check_args.h — argument checks shared by the op files (internal; not installed API).
//
// Each throws the error type that says what is wrong, with a message that names the op, the
// argument and its shape/dtype/device, before the op writes anything.
#pragma once

#include <cstdint>

#include "core/check.h"
#include "core/tensor.h"

namespace minidl::ops_detail {

inline void check_defined(const char* op, const char* arg, const Tensor& t) {
    MDL_CHECK(t.defined(), StateError, op, ": ", arg, " is undefined");
}

inline void check_floating(const char* op, const char* arg, const Tensor& t) {
    check_defined(op, arg, t);
    MDL_CHECK(is_floating(t.dtype()), DTypeError, op, ": ", arg, " must be floating, got ",
              t.dtype(), " of shape ", shape_str(t.shape()));
}

inline void check_dtype(const char* op, const char* arg, const Tensor& t, DType expected) {
    check_defined(op, arg, t);
    MDL_CHECK(t.dtype() == expected, DTypeError, op, ": ", arg, " must be ", expected, ", got ",
              t.dtype(), " of shape ", shape_str(t.shape()));
}

inline void check_same_device(const char* op, const char* arg_a, const Tensor& a, const char* arg_b,
                              const Tensor& b) {
    MDL_CHECK(a.device() == b.device(), DeviceError, op, ": ", arg_a, " is on ", a.device(),
              " but ", arg_b, " is on ", b.device());
}

inline void check_same_dtype(const char* op, const char* arg_a, const Tensor& a, const char* arg_b,
                             const Tensor& b) {
    MDL_CHECK(a.dtype() == b.dtype(), DTypeError, op, ": ", arg_a, " is ", a.dtype(), " but ",
              arg_b, " is ", b.dtype(), " (convert one with .to())");
}

inline void check_dim(const char* op, const char* arg, const Tensor& t, int64_t ndim) {
    MDL_CHECK(t.dim() == ndim, ShapeError, op, ": ", arg, " must be ", ndim, "-d, got shape ",
              shape_str(t.shape()));
}

// Ids must lie in [0, size) (or equal `allowed`, e.g. ignore_index); names the first bad id and
// its position. Checked on the host, from one min/max pass on the device first. Returns true when
// every id is in [0, size) (so none equals an out-of-range `allowed`).
bool check_ids_in_range(const char* op, const char* arg, const Tensor& ids, int64_t size,
                        const char* size_name, int64_t allowed = INT64_MIN);

}  // namespace minidl::ops_detail
