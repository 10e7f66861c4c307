// tests/support/poison.cpp — see poison.h.
#include "tests/support/poison.h"

#include <algorithm>
#include <limits>

#include "core/check.h"

namespace minidl::test {

Tensor nan_filled(const Shape& shape, DType dtype, Device device) {
    Tensor t = Tensor::empty(shape, dtype, Device::cpu());
    if (dtype == DType::I64) {
        int64_t* p = t.data<int64_t>();
        std::fill(p, p + t.numel(), kPoisonI64);
    } else {
        MDL_ASSERT(is_floating(dtype), "nan_filled: no NaN in ", dtype);
        t.fill_(std::numeric_limits<double>::quiet_NaN());
    }
    return device == Device::cpu() ? t : t.to(device);
}

}  // namespace minidl::test
