// ops/elementwise.h — elementwise arithmetic and activations, differentiable.
//
// Binary ops broadcast NumPy-style; their backward sums the gradient back to each input's shape.
// Operands must share the device; of different floating dtypes they promote to the wider one
// (core/dtype.h's promote_types: f16 with bf16 gives f32), and each input's gradient comes back in
// its own dtype. A Tensor-scalar op keeps the tensor's dtype.
#pragma once

#include "core/tensor.h"

namespace minidl {

enum class GeluApproximation { None, Tanh };

Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
// A tie splits the gradient evenly between a and b, as in PyTorch.
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);

Tensor add(const Tensor& a, double s);
Tensor sub(const Tensor& a, double s);
Tensor mul(const Tensor& a, double s);
Tensor div(const Tensor& a, double s);
Tensor rsub(double s, const Tensor& a);  // s - a
Tensor rdiv(double s, const Tensor& a);  // s / a
Tensor pow(const Tensor& a, double exponent);

Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor square(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor gelu(const Tensor& x, GeluApproximation approximate = GeluApproximation::None);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
// min(max(x, lo), hi) elementwise against tensors broadcast to x's shape (AWP's trust region);
// the gradient reaches x wherever lo <= x <= hi, bounds included (PyTorch's clamp).
Tensor clamp(const Tensor& x, const Tensor& lo, const Tensor& hi);

inline Tensor operator+(const Tensor& a, const Tensor& b) {
    return add(a, b);
}
inline Tensor operator-(const Tensor& a, const Tensor& b) {
    return sub(a, b);
}
inline Tensor operator*(const Tensor& a, const Tensor& b) {
    return mul(a, b);
}
inline Tensor operator/(const Tensor& a, const Tensor& b) {
    return div(a, b);
}
inline Tensor operator+(const Tensor& a, double s) {
    return add(a, s);
}
inline Tensor operator-(const Tensor& a, double s) {
    return sub(a, s);
}
inline Tensor operator*(const Tensor& a, double s) {
    return mul(a, s);
}
inline Tensor operator/(const Tensor& a, double s) {
    return div(a, s);
}
inline Tensor operator+(double s, const Tensor& a) {
    return add(a, s);
}
inline Tensor operator-(double s, const Tensor& a) {
    return rsub(s, a);
}
inline Tensor operator*(double s, const Tensor& a) {
    return mul(a, s);
}
inline Tensor operator/(double s, const Tensor& a) {
    return rdiv(s, a);
}
inline Tensor operator-(const Tensor& x) {
    return neg(x);
}

}  // namespace minidl
