// tests/ops/test_type_promotion.cpp — binary ops on mixed floating dtypes (PyTorch's promotion,
// ops/elementwise.h) and the autocast op lists (core/autocast.h).
//
// type_promotion.json (tests/fixtures/make_transformer_fixtures.py) holds, for add, sub, mul, div,
// maximum and minimum on every ordered pair of f16, bf16, f32 and f64 (a [2, 3] against a
// broadcast b [3]), PyTorch's result dtype, output and the gradients of sum(out * upstream) with
// their dtypes. Tolerance: 2 units in the last place of the result's dtype (rtol 2 eps, atol
// 1e-12); both sides compute in the promoted dtype, so most elements agree exactly.
//
// The autocast lists are checked op by op: the output dtype, and the value against the op applied
// to explicitly cast inputs (bitwise: autocast is nothing but those casts).
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <string>

#include "core/autocast.h"
#include "core/check.h"
#include "nn/linear.h"
#include "ops/ops.h"
#include "tests/support/compare.h"
#include "tests/support/fixtures.h"
#include "tricks/amp.h"

using namespace minidl;
using namespace minidl::test;

namespace {

DType dtype_named(const std::string& name) {
    static const std::map<std::string, DType> names = {
        {"f16", DType::F16}, {"bf16", DType::BF16}, {"f32", DType::F32}, {"f64", DType::F64}};
    return names.at(name);
}

// The machine epsilon of a floating dtype.
double epsilon(DType t) {
    switch (t) {
        case DType::F16:
            return 0x1p-10;
        case DType::BF16:
            return 0x1p-7;
        case DType::F32:
            return 0x1p-23;
        default:
            return 0x1p-52;
    }
}

Tensor binary(const std::string& op, const Tensor& a, const Tensor& b) {
    if (op == "add") return add(a, b);
    if (op == "sub") return sub(a, b);
    if (op == "mul") return mul(a, b);
    if (op == "div") return div(a, b);
    if (op == "maximum") return maximum(a, b);
    REQUIRE(op == "minimum");
    return minimum(a, b);
}

}  // namespace

TEST_CASE("ops/type promotion: promote_types is PyTorch's table for the floating dtypes") {
    // torch.promote_types over {f16, bf16, f32, f64}.
    CHECK(promote_types(DType::F16, DType::F16) == DType::F16);
    CHECK(promote_types(DType::BF16, DType::BF16) == DType::BF16);
    CHECK(promote_types(DType::F16, DType::BF16) == DType::F32);
    CHECK(promote_types(DType::BF16, DType::F16) == DType::F32);
    for (DType half : {DType::F16, DType::BF16}) {
        CHECK(promote_types(half, DType::F32) == DType::F32);
        CHECK(promote_types(DType::F32, half) == DType::F32);
        CHECK(promote_types(half, DType::F64) == DType::F64);
    }
    CHECK(promote_types(DType::F32, DType::F64) == DType::F64);
    CHECK(promote_types(DType::F64, DType::F32) == DType::F64);
}

TEST_CASE("ops/type promotion: mixed-dtype binary ops match PyTorch (type_promotion.json)") {
    const json fx = load_fixture("type_promotion");
    REQUIRE(fx.at("cases").size() == 96);
    double worst = 0;
    for (const json& c : fx.at("cases")) {
        const std::string op = c.at("op");
        const DType ta = dtype_named(c.at("a_dtype")), tb = dtype_named(c.at("b_dtype"));
        CAPTURE(op);
        CAPTURE(c.at("a_dtype").get<std::string>());
        CAPTURE(c.at("b_dtype").get<std::string>());
        // The fixture's values are exact in their own dtypes: f64 -> dtype loses nothing.
        Tensor a = tensor_from_json(c.at("a"), DType::F64).to(ta).set_requires_grad();
        Tensor b = tensor_from_json(c.at("b"), DType::F64).to(tb).set_requires_grad();
        Tensor out = binary(op, a, b);
        const DType tout = dtype_named(c.at("out_dtype"));
        REQUIRE(out.dtype() == tout);
        const Tensor up = tensor_from_json(c.at("upstream"), DType::F64).to(tout);
        sum(mul(out, up)).backward();
        REQUIRE(a.grad().dtype() == dtype_named(c.at("grad_a_dtype")));
        REQUIRE(b.grad().dtype() == dtype_named(c.at("grad_b_dtype")));
        CHECK(a.grad().dtype() == ta);  // each input's gradient in its own dtype
        CHECK(b.grad().dtype() == tb);
        // Two units in the last place of the result's dtype, or of the gradient's when coarser.
        const double rtol = 2 * epsilon(tout);
        worst = std::max(worst, check_close(out.to(DType::F64), values_from_json(c.at("output")),
                                            rtol, 1e-12, "output"));
        worst =
            std::max(worst, check_close(a.grad().to(DType::F64), values_from_json(c.at("grad_a")),
                                        std::max(rtol, 2 * epsilon(ta)), 1e-12, "grad_a"));
        worst =
            std::max(worst, check_close(b.grad().to(DType::F64), values_from_json(c.at("grad_b")),
                                        std::max(rtol, 2 * epsilon(tb)), 1e-12, "grad_b"));
    }
    MESSAGE("type_promotion: 96 cases, max relative error " << worst);
}

TEST_CASE("ops/type promotion: a 16-bit linear output plus an f32 residual, under autocast") {
    // The encoder's residual: h = x + linear(x) with linear in f16/bf16 under autocast. It used to
    // throw DTypeError; PyTorch returns f32 and sends each gradient back in its input's dtype.
    for (DType low : {DType::F16, DType::BF16}) {
        CAPTURE(low);
        manual_seed(3);
        nn::Linear fc(4, 4);
        Tensor x = Tensor::randn({3, 4}).set_requires_grad();
        Tensor h;
        {
            amp::Autocast autocast(low);
            Tensor y = fc.forward(x);
            CHECK(y.dtype() == low);
            h = x + y;
            CHECK(h.dtype() == DType::F32);
            // The same sum with the cast written out.
            CHECK(bitwise_equal(h, x + y.to(DType::F32)));
        }
        sum(h).backward();
        CHECK(x.grad().dtype() == DType::F32);
        CHECK(fc.weight.grad().dtype() == DType::F32);
        // d sum(x + W x + b) / db = 1 per row, summed over the 3 rows: exact in any dtype.
        check_close(fc.bias.grad(), std::vector<double>(4, 3.0), 0, 0, "bias grad");
    }
}

TEST_CASE("ops/type promotion: f16 with bf16 meet in f32, scalars keep the tensor's dtype") {
    const Tensor a = Tensor::full({2}, 1.5, DType::F16), b = Tensor::full({2}, 0.25, DType::BF16);
    for (const Tensor& r : {a + b, a - b, a * b, a / b, maximum(a, b), minimum(a, b), b + a})
        CHECK(r.dtype() == DType::F32);
    check_close(a + b, {1.75, 1.75}, 0, 0);
    CHECK((a + 2.0).dtype() == DType::F16);
    CHECK((2.0 * b).dtype() == DType::BF16);
    CHECK(rdiv(1.0, a).dtype() == DType::F16);  // outside autocast: no list applies
    // clamp's bounds promote with x.
    CHECK(clamp(Tensor::zeros({3}, DType::BF16), Tensor::full({3}, -1.0),
                Tensor::full({3}, 1.0, DType::F64))
              .dtype() == DType::F64);
}

TEST_CASE("ops/type promotion: autocast follows PyTorch's CUDA lists, op by op") {
    manual_seed(11);
    const Tensor x32 = Tensor::rand({4, 6}) + 0.5;  // positive: log, pow, rdiv are defined
    const Tensor w32 = Tensor::randn({6, 6});
    for (DType low : {DType::F16, DType::BF16}) {
        CAPTURE(low);
        const Tensor xl = x32.to(low);
        amp::Autocast autocast(low);
        // To the low dtype: f32 operands are cast down, the result is 16-bit.
        CHECK(bitwise_equal(matmul(x32, w32), matmul(xl, w32.to(low))));
        CHECK(matmul(x32, w32).dtype() == low);
        CHECK(linear(x32, w32).dtype() == low);
        const Tensor q = Tensor::randn({1, 2, 3, 4});
        CHECK(scaled_dot_product_attention(q, q, q).dtype() == low);
        // To f32: 16-bit inputs are cast up, the result is f32 — the op on the f32 cast of the
        // input, bitwise.
        const Tensor up = xl.to(DType::F32);
        CHECK(bitwise_equal(pow(xl, 1.5), pow(up, 1.5)));
        CHECK(bitwise_equal(rdiv(1.0, xl), rdiv(1.0, up)));
        CHECK(bitwise_equal(exp(xl), exp(up)));
        CHECK(bitwise_equal(log(xl), log(up)));
        CHECK(bitwise_equal(sum(xl), sum(up)));
        CHECK(bitwise_equal(norm(xl), norm(up)));
        CHECK(bitwise_equal(softmax(xl, 1), softmax(up, 1)));
        CHECK(bitwise_equal(log_softmax(xl, 1), log_softmax(up, 1)));
        CHECK(bitwise_equal(layer_norm(xl, {6}), layer_norm(up, {6})));
        const Tensor targets = Tensor::from_vector(std::vector<int64_t>{0, 1, 2, 3}, {4});
        CHECK(bitwise_equal(cross_entropy(xl, targets), cross_entropy(up, targets)));
        for (const Tensor& r :
             {pow(xl, 1.5), rdiv(1.0, xl), exp(xl), log(xl), sum(xl), norm(xl), softmax(xl, 1),
              log_softmax(xl, 1), layer_norm(xl, {6}), cross_entropy(xl, targets)})
            CHECK(r.dtype() == DType::F32);
        // In neither list: the input's dtype (mean included, unlike sum).
        CHECK(mean(xl).dtype() == low);
        CHECK(relu(xl).dtype() == low);
        CHECK(sqrt(xl).dtype() == low);
        CHECK(tanh(xl).dtype() == low);
        CHECK(gelu(xl).dtype() == low);
        CHECK((xl * 2.0).dtype() == low);
    }
}

TEST_CASE("ops/type promotion: autocast leaves float64 alone") {
    // PyTorch casts only f32/f16/bf16 tensors: the gradient checks' f64 graphs stay f64.
    const Tensor a = Tensor::randn({3, 4}, nullptr, DType::F64),
                 b = Tensor::randn({4, 2}, nullptr, DType::F64);
    amp::Autocast autocast(DType::BF16);
    CHECK(autocast::cast_low(a).dtype() == DType::F64);
    CHECK(matmul(a, b).dtype() == DType::F64);
    CHECK(linear(a, b.t()).dtype() == DType::F64);
    CHECK(softmax(a, 1).dtype() == DType::F64);
    CHECK(bitwise_equal(matmul(a, b), [&] {
        amp::Autocast off(DType::BF16, false);
        return matmul(a, b);
    }()));
    // An f64 operand with an f32 one under a low-dtype op: the f32 one is cast down, the f64 one
    // is not, so matmul sees two dtypes — an error, as in PyTorch.
    CHECK_THROWS_AS(matmul(a, Tensor::randn({4, 2})), DTypeError);
}
