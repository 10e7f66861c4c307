// core/dtype.h — the element types a Tensor can hold.
//
//   F32   IEEE binary32, the default and the dtype of master weights and optimizer state
//   F64   IEEE binary64, used by the finite-difference gradient checks
//   F16   IEEE binary16 (1 sign, 5 exponent, 10 mantissa bits; max 65504)
//   BF16  bfloat16 (1 sign, 8 exponent, 7 mantissa bits; the range of F32, 3 significant digits)
//   I64   signed 64-bit integers: token ids, offsets, labels
//
// F16 and BF16 are storage formats: CPU kernels convert to float for arithmetic (through Eigen's
// half/bfloat16), CUDA kernels use __half/__nv_bfloat16 and accumulate in float.
#pragma once

#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string_view>

namespace minidl {

enum class DType : uint8_t { F32, F64, F16, BF16, I64 };

// Bytes per element.
constexpr size_t dtype_size(DType t) {
    switch (t) {
        case DType::F32:
            return 4;
        case DType::F64:
            return 8;
        case DType::F16:
            return 2;
        case DType::BF16:
            return 2;
        case DType::I64:
            return 8;
    }
    return 0;
}

constexpr bool is_floating(DType t) {
    return t != DType::I64;
}

// True for the 16-bit formats that autocast computes in.
constexpr bool is_half(DType t) {
    return t == DType::F16 || t == DType::BF16;
}

// The dtype that a binary op on floating operands of dtypes a and b computes in and returns:
// PyTorch's type promotion for tensors of the same category (torch.promote_types) — the wider of
// the two, where f16 and bf16 (neither holds the other: f16 has more mantissa, bf16 more exponent)
// meet in f32. I64 only with I64 (the floating ops reject integer operands anyway).
constexpr DType promote_types(DType a, DType b) {
    if (a == b) return a;
    if (a == DType::I64 || b == DType::I64) return DType::I64;  // not floating; callers reject it
    if (a == DType::F64 || b == DType::F64) return DType::F64;
    return DType::F32;  // f32 with a 16-bit format, or f16 with bf16
}

// Lower-case name used in messages: "f32", "bf16", "i64".
constexpr std::string_view dtype_name(DType t) {
    switch (t) {
        case DType::F32:
            return "f32";
        case DType::F64:
            return "f64";
        case DType::F16:
            return "f16";
        case DType::BF16:
            return "bf16";
        case DType::I64:
            return "i64";
    }
    return "?";
}

inline std::ostream& operator<<(std::ostream& os, DType t) {
    return os << dtype_name(t);
}

}  // namespace minidl
