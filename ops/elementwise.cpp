// ops/elementwise.cpp — elementwise arithmetic and activations: checks, forward, backward.
//
// Unary f with y = f(x):  dx = dy * f'(x)  (the derivatives are in ops/cpu/elementwise_cpu.cpp
// and ops/cuda/elementwise.cu, one switch each). Binary ops with broadcasting, out = a (op) b:
//   add: da = dy,        db = dy          sub: da = dy,       db = -dy
//   mul: da = dy * b,    db = dy * a      div: da = dy / b,   db = -dy * out / b
//   maximum: da = dy [a >= b], db = dy [a < b]    minimum: da = dy [a <= b], db = dy [a > b]
// each then summed back over the dims that broadcasting stretched (sum_to_shape).
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
    MDL_CHECK(a.dtype() == b.dtype(), DTypeError, op,
              ": operands of different dtypes, a=", a.dtype(), " b=", b.dtype(),
              " (convert one with .to())");
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

// 1 where a >= b, else 0, in a's dtype and the broadcast shape (not differentiable).
Tensor greater_equal(const Tensor& a, const Tensor& b) {
    NoGradGuard no_grad;
    return binary_forward(BinaryOp::GreaterEqual, a, b, "greater_equal");
}

Tensor binary_op(const char* name, BinaryOp op, const Tensor& a, const Tensor& b) {
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
                                 // mask_a = [a >= b] for maximum, [b >= a] (i.e. a <= b) for
                                 // minimum.
                                 const Tensor mask_a =
                                     op == BinaryOp::Maximum
                                         ? greater_equal(saved_a.get(), saved_b.get())
                                         : greater_equal(saved_b.get(), saved_a.get());
                                 if (needs[0]) ga = mul(gy, mask_a);
                                 if (needs[1]) gb = mul(gy, rsub(1.0, mask_a));
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
Tensor rdiv(double s, const Tensor& a) {
    return unary_op("rdiv", UnaryOp::RDivScalar, a, s);
}
Tensor pow(const Tensor& a, double exponent) {
    return unary_op("pow", UnaryOp::PowScalar, a, exponent);
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
    Tensor y = minimum(maximum(x, lo), hi);
    MDL_CHECK(y.shape() == x.shape(), ShapeError, "clamp: bounds of shapes ", shape_str(lo.shape()),
              " and ", shape_str(hi.shape()), " do not broadcast to x's shape ",
              shape_str(x.shape()));
    return y;
}

}  // namespace minidl
