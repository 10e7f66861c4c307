// ops/elementwise.cpp — elementwise arithmetic and activations: checks, forward, backward.
//
// Unary f with y = f(x):  dx = dy * f'(x)  (the derivatives are in ops/cpu/elementwise_cpu.cpp
// and ops/cuda/elementwise.cu, one switch each). Binary ops with broadcasting, out = a (op) b:
//   add: da = dy,        db = dy          sub: da = dy,       db = -dy
//   mul: da = dy * b,    db = dy * a      div: da = dy / b,   db = -dy * out / b
//   maximum: da = dy ([a > b] + [a == b] / 2),  db = dy ([a < b] + [a == b] / 2)
//   minimum: da = dy ([a < b] + [a == b] / 2),  db = dy ([a > b] + [a == b] / 2)
// each then summed back over the dims that broadcasting stretched (sum_to_shape). A tie splits the
// gradient evenly, as PyTorch's maximum/minimum do (the subgradient that favours neither side).
// clamp(x, lo, hi) = min(max(x, lo), hi) is not their composition for the gradient: as PyTorch's
// clamp, x gets dy wherever lo <= x <= hi (bounds included), lo where x < lo, hi where it wins.
//
// Type promotion (PyTorch's): operands of different floating dtypes are computed in, and return,
// promote_types(a, b) (core/dtype.h) — the wider one, f16 with bf16 in f32 — inside and outside
// autocast. The narrower operand goes through a differentiable to(), so each input's gradient
// comes back in its own dtype. Tensor-scalar ops keep the tensor's dtype, as a Python scalar does.
//
// Under autocast (core/autocast.h) exp, log, pow, rdiv run in f32 (PyTorch's f32 list).
#include "ops/elementwise.h"

#include "core/autocast.h"
#include "core/autograd.h"
#include "core/check.h"
#include "core/kernels.h"

namespace minidl {

namespace {

void check_floating(const char* op, const Tensor& x) {
    MDL_CHECK(x.defined(), StateError, op, ": the input tensor is undefined");
    MDL_CHECK(is_floating(x.dtype()), DTypeError, op, ": expected a floating tensor, got ",
              x.dtype(), " of shape ", shape_str(x.shape()));
}

void check_pair(const char* op, const Tensor& a, const Tensor& b) {
    check_floating(op, a);
    check_floating(op, b);
    MDL_CHECK(a.device() == b.device(), DeviceError, op, ": operands on different devices, a on ",
              a.device(), " b on ", b.device());
}

// x in dtype t: itself, or a differentiable to(t) whose backward returns the gradient in x's own
// dtype.
Tensor promoted(const Tensor& x, DType t) {
    return x.dtype() == t ? x : x.to(t);
}

// The gradient g of a broadcast result, summed back to `shape`.
Tensor sum_to_shape(const Tensor& g, const Shape& shape) {
    if (g.shape() == shape) return g;
    Tensor out = Tensor::empty(shape, g.dtype(), g.device());
    kernels_for(g.device()).sum_to(g, out);
    return out;
}

// Which of x and y = f(x) the backward of each unary op reads.
bool backward_reads_y(UnaryOp op) {
    return op == UnaryOp::Exp || op == UnaryOp::Sqrt || op == UnaryOp::Tanh ||
           op == UnaryOp::Sigmoid;
}
bool backward_reads_x(UnaryOp op) {
    switch (op) {
        case UnaryOp::Log:
        case UnaryOp::Abs:
        case UnaryOp::Relu:
        case UnaryOp::GeluErf:
        case UnaryOp::GeluTanh:
        case UnaryOp::RDivScalar:
        case UnaryOp::PowScalar:
            return true;
        default:
            return false;
    }
}

Tensor unary_op(const char* name, UnaryOp op, const Tensor& x, double alpha = 0.0) {
    check_floating(name, x);
    Tensor y = Tensor::empty_like(x);
    if (x.numel() > 0) kernels_for(x.device()).unary(op, x, y, alpha);
    if (autograd::should_record({x})) {
        SavedTensor sx = backward_reads_x(op) ? SavedTensor(x, name) : SavedTensor();
        SavedTensor sy = backward_reads_y(op) ? SavedTensor(y, name) : SavedTensor();
        autograd::record(
            name, {x}, y, [op, alpha, sx, sy](const Tensor& gy, const std::vector<bool>&) {
                Tensor gx = Tensor::empty_like(gy);
                if (gy.numel() > 0)
                    kernels_for(gy.device()).unary_backward(op, sx.get(), sy.get(), gy, gx, alpha);
                return std::vector<Tensor>{gx};
            });
    }
    return y;
}

Tensor binary_forward(BinaryOp op, const Tensor& a, const Tensor& b, const char* name) {
    check_pair(name, a, b);
    Tensor out = Tensor::empty(broadcast_shapes(a.shape(), b.shape(), name), a.dtype(), a.device());
    if (out.numel() > 0) kernels_for(a.device()).binary(op, a, b, out);
    return out;
}

// 1 where a >= b, else 0, in a's dtype and the broadcast shape (not differentiable; a and b share
// their dtype: the saved, promoted operands of maximum/minimum).
Tensor greater_equal(const Tensor& a, const Tensor& b) {
    NoGradGuard no_grad;
    return binary_forward(BinaryOp::GreaterEqual, a, b, "greater_equal");
}

Tensor binary_op(const char* name, BinaryOp op, const Tensor& a_in, const Tensor& b_in) {
    check_pair(name, a_in, b_in);
    const DType common = promote_types(a_in.dtype(), b_in.dtype());
    const Tensor a = promoted(a_in, common), b = promoted(b_in, common);
    Tensor out = binary_forward(op, a, b, name);
    if (!autograd::should_record({a, b})) return out;
    const Shape sa = a.shape(), sb = b.shape();
    // Only what the backward of this op reads is saved.
    const bool reads_operands = op != BinaryOp::Add && op != BinaryOp::Sub;
    SavedTensor saved_a = reads_operands ? SavedTensor(a, name) : SavedTensor();
    SavedTensor saved_b = reads_operands ? SavedTensor(b, name) : SavedTensor();
    SavedTensor saved_out = op == BinaryOp::Div ? SavedTensor(out, name) : SavedTensor();
    autograd::record(name, {a, b}, out,
                     [op, sa, sb, saved_a, saved_b, saved_out](const Tensor& gy,
                                                               const std::vector<bool>& needs) {
                         Tensor ga, gb;
                         switch (op) {
                             case BinaryOp::Add:
                                 if (needs[0]) ga = gy;
                                 if (needs[1]) gb = gy;
                                 break;
                             case BinaryOp::Sub:
                                 if (needs[0]) ga = gy;
                                 if (needs[1]) gb = neg(gy);
                                 break;
                             case BinaryOp::Mul:
                                 if (needs[0]) ga = mul(gy, saved_b.get());
                                 if (needs[1]) gb = mul(gy, saved_a.get());
                                 break;
                             case BinaryOp::Div:
                                 if (needs[0]) ga = div(gy, saved_b.get());
                                 if (needs[1])
                                     gb = neg(div(mul(gy, saved_out.get()), saved_b.get()));
                                 break;
                             case BinaryOp::Maximum:
                             case BinaryOp::Minimum: {
                                 // ge = [a >= b], le = [a <= b]; the winner's share is
                                 // (ge + 1 - le) / 2 for maximum: 1 above, 1/2 at a tie, 0 below.
                                 const Tensor ge = greater_equal(saved_a.get(), saved_b.get());
                                 const Tensor le = greater_equal(saved_b.get(), saved_a.get());
                                 const Tensor share_a = op == BinaryOp::Maximum
                                                            ? mul(add(ge, rsub(1.0, le)), 0.5)
                                                            : mul(add(le, rsub(1.0, ge)), 0.5);
                                 if (needs[0]) ga = mul(gy, share_a);
                                 if (needs[1]) gb = mul(gy, rsub(1.0, share_a));
                                 break;
                             }
                             case BinaryOp::GreaterEqual:
                                 break;
                         }
                         return std::vector<Tensor>{ga.defined() ? sum_to_shape(ga, sa) : ga,
                                                    gb.defined() ? sum_to_shape(gb, sb) : gb};
                     });
    return out;
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) {
    return binary_op("add", BinaryOp::Add, a, b);
}
Tensor sub(const Tensor& a, const Tensor& b) {
    return binary_op("sub", BinaryOp::Sub, a, b);
}
Tensor mul(const Tensor& a, const Tensor& b) {
    return binary_op("mul", BinaryOp::Mul, a, b);
}
Tensor div(const Tensor& a, const Tensor& b) {
    return binary_op("div", BinaryOp::Div, a, b);
}
Tensor maximum(const Tensor& a, const Tensor& b) {
    return binary_op("maximum", BinaryOp::Maximum, a, b);
}
Tensor minimum(const Tensor& a, const Tensor& b) {
    return binary_op("minimum", BinaryOp::Minimum, a, b);
}

Tensor add(const Tensor& a, double s) {
    return unary_op("add", UnaryOp::AddScalar, a, s);
}
Tensor sub(const Tensor& a, double s) {
    return unary_op("sub", UnaryOp::AddScalar, a, -s);
}
Tensor mul(const Tensor& a, double s) {
    return unary_op("mul", UnaryOp::MulScalar, a, s);
}
Tensor div(const Tensor& a, double s) {
    return unary_op("div", UnaryOp::DivScalar, a, s);
}
Tensor rsub(double s, const Tensor& a) {
    return unary_op("rsub", UnaryOp::RSubScalar, a, s);
}
// rdiv (PyTorch's __rdiv__, reciprocal) and pow run in f32 under autocast.
Tensor rdiv(double s, const Tensor& a) {
    return unary_op("rdiv", UnaryOp::RDivScalar, autocast::cast_float(a), s);
}
Tensor pow(const Tensor& a, double exponent) {
    return unary_op("pow", UnaryOp::PowScalar, autocast::cast_float(a), exponent);
}

Tensor neg(const Tensor& x) {
    return unary_op("neg", UnaryOp::Neg, x);
}
// exp and log run in float under autocast (their range/precision needs it).
Tensor exp(const Tensor& x) {
    return unary_op("exp", UnaryOp::Exp, autocast::cast_float(x));
}
Tensor log(const Tensor& x) {
    return unary_op("log", UnaryOp::Log, autocast::cast_float(x));
}
Tensor sqrt(const Tensor& x) {
    return unary_op("sqrt", UnaryOp::Sqrt, x);
}
Tensor abs(const Tensor& x) {
    return unary_op("abs", UnaryOp::Abs, x);
}
Tensor square(const Tensor& x) {
    return unary_op("square", UnaryOp::PowScalar, x, 2.0);
}
Tensor relu(const Tensor& x) {
    return unary_op("relu", UnaryOp::Relu, x);
}
Tensor gelu(const Tensor& x, GeluApproximation approximate) {
    return approximate == GeluApproximation::Tanh ? unary_op("gelu", UnaryOp::GeluTanh, x)
                                                  : unary_op("gelu", UnaryOp::GeluErf, x);
}
Tensor tanh(const Tensor& x) {
    return unary_op("tanh", UnaryOp::Tanh, x);
}
Tensor sigmoid(const Tensor& x) {
    return unary_op("sigmoid", UnaryOp::Sigmoid, x);
}

Tensor clamp(const Tensor& x, const Tensor& lo, const Tensor& hi) {
    Tensor y;
    {
        NoGradGuard no_grad;
        y = minimum(maximum(x, lo), hi);
    }
    MDL_CHECK(y.shape() == x.shape(), ShapeError, "clamp: bounds of shapes ", shape_str(lo.shape()),
              " and ", shape_str(hi.shape()), " do not broadcast to x's shape ",
              shape_str(x.shape()));
    if (!autograd::should_record({x, lo, hi})) return y;
    // Recorded on the promoted inputs, whose to() returns each gradient in its input's dtype.
    const DType common = y.dtype();
    const Tensor px = promoted(x, common), plo = promoted(lo, common), phi = promoted(hi, common);
    const Shape sx = x.shape(), slo = lo.shape(), shi = hi.shape();
    const SavedTensor saved_x(px, "clamp"), saved_lo(plo, "clamp"), saved_hi(phi, "clamp");
    autograd::record("clamp", {px, plo, phi}, y,
                     [sx, slo, shi, saved_x, saved_lo, saved_hi](const Tensor& gy,
                                                                 const std::vector<bool>& needs) {
                         // above_lo = [x >= lo]; under_hi = [max(x, lo) <= hi]: hi loses. x passes
                         // where both hold, lo where x < lo and hi loses, hi wherever it wins (also
                         // when lo > hi).
                         const Tensor xv = saved_x.get(), lov = saved_lo.get(),
                                      hiv = saved_hi.get();
                         const Tensor above_lo = greater_equal(xv, lov);
                         const Tensor under_hi = greater_equal(hiv, maximum(xv, lov));
                         std::vector<Tensor> g(3);
                         if (needs[0]) g[0] = sum_to_shape(mul(gy, mul(above_lo, under_hi)), sx);
                         if (needs[1])
                             g[1] = sum_to_shape(mul(gy, mul(rsub(1.0, above_lo), under_hi)), slo);
                         if (needs[2]) g[2] = sum_to_shape(mul(gy, rsub(1.0, under_hi)), shi);
                         return g;
                     });
    return y;
}

}  // namespace minidl
