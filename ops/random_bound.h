// ops/random_bound.h — the largest value of a dtype below a bound, for uniform fills on [low,
// high).
//
// A uniform draw computes x = low + (high - low) u in float, u in [0, 1), and rounds x to the
// output dtype. x < high in exact arithmetic, but the rounding can still land on high: in bf16 (8
// significant bits) every x in [1 - 2^-9, 1) rounds to 1.0, and in F32 1 + (1 - 2^-24) rounds to 2.
// The fills therefore clamp the rounded value to uniform_top(low, high, dtype):
//   top = max { v in dtype : v < high }      (the next value below high in that dtype)
// and leave it alone (top = +inf) when high <= low, where [low, high) holds nothing to clamp to.
// Host code only (both the CPU kernels and the CUDA launchers call it); shared by
// ops/cpu/random_cpu.cpp and ops/cuda/random.cu so that the two clamp to bitwise the same value.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "core/dtype.h"

namespace minidl {

namespace random_bound_detail {

// The value of 16-bit patterns, exactly (every bf16 and f16 value is a double).
inline double bf16_value(uint16_t bits) {
    const uint32_t u = static_cast<uint32_t>(bits) << 16;
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

inline double f16_value(uint16_t bits) {
    const double sign = (bits & 0x8000) ? -1.0 : 1.0;
    const int e = (bits >> 10) & 0x1f, m = bits & 0x3ff;
    if (e == 0x1f)
        return m ? std::numeric_limits<double>::quiet_NaN()
                 : sign * std::numeric_limits<double>::infinity();
    if (e == 0) return sign * std::ldexp(m, -24);  // subnormal
    return sign * std::ldexp(1024 + m, e - 25);
}

// Sign-magnitude patterns in value order: key(bits) is increasing in the value (-0 and +0 share
// key 0), so "the largest value below high" is a binary search over keys.
inline uint16_t bits_of_key(int32_t key) {
    return key < 0 ? static_cast<uint16_t>(0x8000 | -key) : static_cast<uint16_t>(key);
}

// The largest key in [-inf_key, inf_key] (the infinities included) whose value is < high.
template <typename Value>
double largest_16bit_below(double high, int32_t inf_key, Value value) {
    int32_t lo = -inf_key, hi = inf_key;  // value(lo) = -inf < high (high > low > -inf)
    if (value(bits_of_key(hi)) < high) return value(bits_of_key(hi));
    while (hi - lo > 1) {  // invariant: value(lo) < high <= value(hi)
        const int32_t mid = lo + (hi - lo) / 2;
        if (value(bits_of_key(mid)) < high) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    return value(bits_of_key(lo));
}

}  // namespace random_bound_detail

// max { v in dtype : v < high } as a double (exactly a value of dtype), or +inf when
// !(high > low). dtype is floating.
inline double uniform_top(double low, double high, DType dtype) {
    namespace d = random_bound_detail;
    constexpr double kInf = std::numeric_limits<double>::infinity();
    if (!(high > low)) return kInf;
    switch (dtype) {
        case DType::F64:
            return std::nextafter(high, -kInf);
        case DType::F32: {
            // Round to nearest: f is the float closest to high; if it is not below high, the
            // float before it is.
            float f = static_cast<float>(high);
            if (static_cast<double>(f) >= high)
                f = std::nextafter(f, -std::numeric_limits<float>::infinity());
            return f;
        }
        case DType::BF16:
            return d::largest_16bit_below(high, 0x7f80, d::bf16_value);
        case DType::F16:
            return d::largest_16bit_below(high, 0x7c00, d::f16_value);
        default:
            return kInf;
    }
}

}  // namespace minidl
