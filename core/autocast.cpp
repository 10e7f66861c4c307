// core/autocast.cpp — see autocast.h.
#include "core/autocast.h"

#include "core/check.h"

namespace minidl::autocast {

namespace {
thread_local bool tls_enabled = false;
thread_local DType tls_dtype = DType::BF16;
}  // namespace

bool is_enabled() {
    return tls_enabled;
}
DType dtype() {
    return tls_dtype;
}

void set_state(bool enabled, DType dtype) {
    MDL_CHECK(!enabled || is_half(dtype), DTypeError,
              "autocast: the compute dtype must be f16 or bf16, got ", dtype);
    tls_enabled = enabled;
    tls_dtype = dtype;
}

Tensor cast_low(const Tensor& x) {
    // float64 is left alone, as PyTorch's autocast does (it casts only "eligible" tensors).
    if (!tls_enabled || !x.defined() || !is_floating(x.dtype()) || x.dtype() == DType::F64 ||
        x.dtype() == tls_dtype)
        return x;
    return x.to(tls_dtype);
}

Tensor cast_float(const Tensor& x) {
    if (!tls_enabled || !x.defined() || !is_half(x.dtype())) return x;
    return x.to(DType::F32);
}

}  // namespace minidl::autocast
