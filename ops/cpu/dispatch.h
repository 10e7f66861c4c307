// ops/cpu/dispatch.h — dtype dispatch and numeric helpers shared by the CPU kernels.
//
// dispatch_float(dtype, "op", [&](auto tag) { using T = decltype(tag); ... }) instantiates the
// body for float, double, Eigen::half and Eigen::bfloat16 (F16/BF16 share the bit layout of
// minidl's 16-bit dtypes). acc_t<T> is the type arithmetic runs in: double for double, float for
// the rest (16-bit values are widened once per element).
#pragma once

#include <Eigen/Core>
#include <type_traits>

#include "core/check.h"
#include "core/dtype.h"

namespace minidl::cpu {

template <typename T>
using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <typename F>
void dispatch_float(DType dtype, const char* op, F&& body) {
    switch (dtype) {
        case DType::F32:
            body(float{});
            return;
        case DType::F64:
            body(double{});
            return;
        case DType::F16:
            body(Eigen::half{});
            return;
        case DType::BF16:
            body(Eigen::bfloat16{});
            return;
        default:
            throw DTypeError(detail::concat(op, ": expected a floating dtype, got ", dtype));
    }
}

template <typename F>
void dispatch_all(DType dtype, const char* op, F&& body) {
    if (dtype == DType::I64) {
        body(int64_t{});
        return;
    }
    dispatch_float(dtype, op, std::forward<F>(body));
}

// Widening/narrowing conversions that work for every element type above.
template <typename A, typename T>
inline A load(T v) {
    return static_cast<A>(v);
}
template <typename T, typename A>
inline T store(A v) {
    return static_cast<T>(v);
}

// Elements per parallel chunk for memory-bound passes: small tensors stay on one thread, where
// waking the pool would cost more than the pass.
constexpr int64_t kElementwiseGrain = 32768;

}  // namespace minidl::cpu
