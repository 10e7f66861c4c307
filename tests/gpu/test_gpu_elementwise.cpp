// tests/gpu/test_gpu_elementwise.cpp — unary (and backward), binary with broadcasting, sum_to and
// axpy on CUDA against the CPU kernels, for every floating dtype.
//
// Tolerances: the dtype's (gpu_support.h). Both devices evaluate the same formula in the same
// precision; CUDA's expf/logf/tanhf/erff/powf are within 2 ulp, the host libm's within 1, so F32
// results differ by a few ulp — far inside rtol 1e-5.
#include <doctest/doctest.h>

#include "tests/gpu/gpu_support.h"

using namespace minidl;
using namespace minidl::gpu_test;

namespace {

struct UnaryCase {
    UnaryOp op;
    const char* name;
    double low, high, alpha;  // input domain (away from poles and kinks), scalar operand
};

const std::vector<UnaryCase> kUnaryCases{
    {UnaryOp::Neg, "neg", -2, 2, 0},
    {UnaryOp::Exp, "exp", -3, 3, 0},
    {UnaryOp::Log, "log", 0.25, 4, 0},
    {UnaryOp::Sqrt, "sqrt", 0.25, 4, 0},
    {UnaryOp::Abs, "abs", -2, 2, 0},
    {UnaryOp::Relu, "relu", -2, 2, 0},
    {UnaryOp::GeluErf, "gelu_erf", -3, 3, 0},
    {UnaryOp::GeluTanh, "gelu_tanh", -3, 3, 0},
    {UnaryOp::Tanh, "tanh", -3, 3, 0},
    {UnaryOp::Sigmoid, "sigmoid", -4, 4, 0},
    {UnaryOp::AddScalar, "add_scalar", -2, 2, 0.75},
    {UnaryOp::MulScalar, "mul_scalar", -2, 2, -1.5},
    {UnaryOp::DivScalar, "div_scalar", -2, 2, 3.0},
    {UnaryOp::RDivScalar, "rdiv_scalar", 0.5, 2, 2.0},
    {UnaryOp::PowScalar, "pow_scalar", 0.25, 2, 2.5},
    {UnaryOp::PowScalar, "pow_scalar 0", 0.25, 2, 0.0},
    {UnaryOp::RSubScalar, "rsub_scalar", -2, 2, 1.25},
};

const std::vector<Shape> kShapes{{0}, {1}, {31}, {1000}, {3, 257}, {70001}};

}  // namespace

TEST_CASE("gpu/elementwise: unary forward and backward match the CPU for every op and dtype") {
    for (const UnaryCase& c : kUnaryCases) {
        for (DType dt : float_dtypes()) {
            for (const Shape& shape : kShapes) {
                const std::string fwd = describe(std::string("unary ") + c.name, dt, shape);
                const Tensor x = random_cpu(shape, dt, 21, c.low, c.high);
                Both f = run_both(fwd, {x, nan_filled(shape, dt)},
                                  [&](Kernels& k, std::vector<Tensor>& t) {
                                      k.unary(c.op, t[0], t[1], c.alpha);
                                  });
                check_parity(f.gpu[1], f.cpu[1], fwd);

                // Backward from the CPU's y (the same bits on both sides), a random gy.
                const std::string bwd =
                    describe(std::string("unary_backward ") + c.name, dt, shape);
                const Tensor gy = random_cpu(shape, dt, 22);
                Both b = run_both(bwd, {x, f.cpu[1], gy, nan_filled(shape, dt)},
                                  [&](Kernels& k, std::vector<Tensor>& t) {
                                      k.unary_backward(c.op, t[0], t[1], t[2], t[3], c.alpha);
                                  });
                check_parity(b.gpu[3], b.cpu[3], bwd);
            }
        }
    }
}

TEST_CASE("gpu/elementwise: unary works in place (y aliases x)") {
    for (DType dt : float_dtypes()) {
        const std::string what = describe("unary mul_scalar in place", dt, {1025});
        Both r =
            run_both(what, {random_cpu({1025}, dt, 3)}, [](Kernels& k, std::vector<Tensor>& t) {
                k.unary(UnaryOp::MulScalar, t[0], t[0], 0.5);
            });
        check_parity(r.gpu[0], r.cpu[0], what);
    }
}

TEST_CASE("gpu/elementwise: binary ops with broadcasting match the CPU") {
    struct Case {
        Shape a, b, out;
    };
    const std::vector<Case> cases{
        {{1000}, {1000}, {1000}},           // same shape
        {{37, 65}, {}, {37, 65}},           // tensor (op) 0-d scalar
        {{}, {37, 65}, {37, 65}},           // scalar (op) tensor
        {{1}, {}, {513}},                   // both broadcast (gy.to() * scale in cross_entropy)
        {{37, 65}, {65}, {37, 65}},         // bias row
        {{37, 65}, {37, 1}, {37, 65}},      // per-row column
        {{4, 1, 9}, {1, 7, 1}, {4, 7, 9}},  // outer product pattern
        {{2, 3, 4, 5}, {3, 1, 5}, {2, 3, 4, 5}},
        {{0, 5}, {5}, {0, 5}},
    };
    const std::vector<std::pair<BinaryOp, const char*>> ops{
        {BinaryOp::Add, "add"},
        {BinaryOp::Sub, "sub"},
        {BinaryOp::Mul, "mul"},
        {BinaryOp::Div, "div"},
        {BinaryOp::Maximum, "maximum"},
        {BinaryOp::Minimum, "minimum"},
        {BinaryOp::GreaterEqual, "greater_equal"},
    };
    for (const auto& [op, name] : ops) {
        for (DType dt : float_dtypes()) {
            for (const Case& c : cases) {
                const std::string what = describe(
                    std::string("binary ") + name + " a=" + shape_str(c.a) + " b=" + shape_str(c.b),
                    dt, c.out);
                // b away from 0 for division.
                Both r = run_both(
                    what,
                    {random_cpu(c.a, dt, 31), random_cpu(c.b, dt, 32, 0.5, 2.0),
                     nan_filled(c.out, dt)},
                    [&](Kernels& k, std::vector<Tensor>& t) { k.binary(op, t[0], t[1], t[2]); });
                check_parity(r.gpu[2], r.cpu[2], what);
            }
        }
    }
}

TEST_CASE("gpu/elementwise: sum_to (the gradient of a broadcast) matches the CPU") {
    struct Case {
        Shape x, out;
    };
    const std::vector<Case> cases{
        {{37, 65}, {65}},           // bias gradient: one summed group, outer
        {{37, 65}, {37, 1}},        // summed inner group
        {{4, 7, 9}, {1, 7, 1}},     // two summed groups: the gather kernel
        {{2, 3, 4, 5}, {3, 1, 5}},  // leading dim missing + a middle one
        {{100000, 3}, {3}},         // long sum, few outputs: two-pass reduction
        {{5, 6}, {5, 6}},           // nothing to sum
        {{300, 400}, {}},           // everything
        {{0, 4}, {4}},              // empty sum: zeros
    };
    for (DType dt : float_dtypes()) {
        for (const Case& c : cases) {
            const std::string what = describe("sum_to " + shape_str(c.out), dt, c.x);
            Both r = run_both(what, {random_cpu(c.x, dt, 41), nan_filled(c.out, dt)},
                              [](Kernels& k, std::vector<Tensor>& t) { k.sum_to(t[0], t[1]); });
            // The CPU sums in acc_t, the GPU in double: F32 sums of up to 1e5 terms differ by the
            // CPU's float rounding, ~sqrt(n) ulp; 16-bit results round once either way.
            const double factor = dt == DType::F32 ? 10.0 : 1.0;
            check_parity(r.gpu[1], r.cpu[1], what, scaled(dt, factor));
        }
    }
}

TEST_CASE("gpu/elementwise: axpy matches the CPU") {
    for (DType dt : float_dtypes()) {
        for (double alpha : {1.0, -0.3}) {
            const std::string what = describe("axpy " + std::to_string(alpha), dt, {4099});
            Both r =
                run_both(what, {random_cpu({4099}, dt, 51), random_cpu({4099}, dt, 52)},
                         [&](Kernels& k, std::vector<Tensor>& t) { k.axpy(alpha, t[0], t[1]); });
            check_parity(r.gpu[1], r.cpu[1], what);
        }
    }
}

TEST_CASE("gpu/elementwise: views that start inside a 16-byte pack take the one-element path") {
    // The contiguous kernels move 16 bytes per access only when every pointer is aligned to it
    // (cuda_common.cuh): a view one element into its storage is not, for any dtype. Element 0 of
    // each output is outside the view and must keep its value on both devices. The last case mixes
    // an aligned input with a misaligned output.
    constexpr int64_t n = 1001;
    for (DType dt : float_dtypes()) {
        const auto view = [](Tensor& t) { return t.narrow0(1, n); };
        const std::string un = describe("unary tanh, offset view", dt, {n});
        Both u = run_both(un, {random_cpu({n + 1}, dt, 61), nan_filled({n + 1}, dt)},
                          [&](Kernels& k, std::vector<Tensor>& t) {
                              Tensor x = view(t[0]), y = view(t[1]);
                              k.unary(UnaryOp::Tanh, x, y, 0.0);
                          });
        check_parity(u.gpu[1], u.cpu[1], un);
        const std::string bi = describe("binary mul, offset views", dt, {n});
        Both b = run_both(
            bi, {random_cpu({n + 1}, dt, 62), random_cpu({n + 1}, dt, 63), nan_filled({n + 1}, dt)},
            [&](Kernels& k, std::vector<Tensor>& t) {
                Tensor a = view(t[0]), c = view(t[1]), out = view(t[2]);
                k.binary(BinaryOp::Mul, a, c, out);
            });
        check_parity(b.gpu[2], b.cpu[2], bi);
        const std::string ax = describe("axpy, offset views", dt, {n});
        Both a = run_both(ax, {random_cpu({n + 1}, dt, 64), random_cpu({n + 1}, dt, 65)},
                          [&](Kernels& k, std::vector<Tensor>& t) {
                              Tensor x = view(t[0]), y = view(t[1]);
                              k.axpy(-0.3, x, y);
                          });
        check_parity(a.gpu[1], a.cpu[1], ax);
        const std::string mixed = describe("binary add, aligned inputs, offset output", dt, {n});
        Both m = run_both(
            mixed, {random_cpu({n}, dt, 66), random_cpu({n}, dt, 67), nan_filled({n + 1}, dt)},
            [&](Kernels& k, std::vector<Tensor>& t) {
                Tensor out = view(t[2]);
                k.binary(BinaryOp::Add, t[0], t[1], out);
            });
        check_parity(m.gpu[2], m.cpu[2], mixed);
    }
}
