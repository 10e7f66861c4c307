// tests/ops/test_errors.cpp — bad input raises a clear, typed error that names the op and the
// offending values, before any output or gradient is modified.
#include <doctest/doctest.h>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/check.h"
#include "ops/ops.h"
#include "tests/support/compare.h"

using namespace minidl;
using minidl::test::bitwise_equal;

namespace {
Tensor ids(std::vector<int64_t> v) {
    const int64_t n = static_cast<int64_t>(v.size());
    return Tensor::from_vector(v, {n});
}
}  // namespace

TEST_CASE("ops/errors: out-of-range embedding ids name the id, its position and the table size") {
    Tensor w = Tensor::ones({5, 3}).set_requires_grad();
    // A gradient from an earlier step must survive a failed call untouched.
    embedding(w, ids({1, 2})).backward(Tensor::ones({2, 3}));
    const Tensor grad_before = w.grad().clone();
    CHECK_THROWS_WITH_AS(embedding(w, ids({0, 5})), doctest::Contains("ids[1] = 5"), IndexError);
    CHECK_THROWS_WITH_AS(embedding(w, ids({-1})), doctest::Contains("table of size 5"), IndexError);
    CHECK_THROWS_WITH_AS(embedding_bag(w, ids({4, 7, 1}), ids({0})),
                         doctest::Contains("ids[1] = 7"), IndexError);
    CHECK_THROWS_WITH_AS(embedding_bag(w, ids({1, 2}), ids({0, 3})),
                         doctest::Contains("offsets[1] = 3"), IndexError);
    CHECK_THROWS_WITH_AS(embedding_bag(w, ids({1, 2}), ids({1})),
                         doctest::Contains("offsets[0] must be 0"), IndexError);
    CHECK_THROWS_AS(embedding(w, Tensor::zeros({2})), DTypeError);  // float ids
    CHECK(bitwise_equal(w.grad(), grad_before));
}

TEST_CASE("ops/errors: shape mismatches name both shapes") {
    Tensor a = Tensor::ones({32, 128}), b = Tensor::ones({64, 10});
    CHECK_THROWS_WITH_AS(matmul(a, b), doctest::Contains("a=[32, 128] b=[64, 10]"), ShapeError);
    CHECK_THROWS_WITH_AS(Tensor::ones({2, 3}) + Tensor::ones({4}),
                         doctest::Contains("a=[2, 3] b=[4]"), ShapeError);
    CHECK_THROWS_WITH_AS(linear(Tensor::ones({2, 5}), Tensor::ones({3, 4})),
                         doctest::Contains("weight=[3, 4]"), ShapeError);
    CHECK_THROWS_WITH_AS(cross_entropy(Tensor::ones({4, 3}), ids({0, 1, 2})),
                         doctest::Contains("[4, 3]"), ShapeError);
    CHECK_THROWS_WITH_AS(layer_norm(Tensor::ones({2, 3}), {4}), doctest::Contains("[2, 3]"),
                         ShapeError);
    CHECK_THROWS_AS(concat({Tensor::ones({2, 3}), Tensor::ones({3, 3})}, 1), ShapeError);
    CHECK_THROWS_AS(sum(Tensor::ones({2, 3}), 2), IndexError);
}

TEST_CASE("ops/errors: dtype mismatches outside PyTorch's promotion rules are errors") {
    // Elementwise binary ops promote floating dtypes (tests/ops/test_type_promotion.cpp); an
    // integer operand, and matmul's operands (PyTorch requires equal dtypes there), do not.
    CHECK_THROWS_WITH_AS(Tensor::ones({2}) + Tensor::zeros({2}, DType::I64),
                         doctest::Contains("expected a floating tensor, got i64"), DTypeError);
    CHECK_THROWS_AS(matmul(Tensor::ones({2, 2}), Tensor::ones({2, 2}, DType::BF16)), DTypeError);
    CHECK_THROWS_AS(relu(Tensor::ones({2}, DType::I64)), DTypeError);
    CHECK_THROWS_AS(cross_entropy(Tensor::ones({2, 3}), Tensor::zeros({2})), DTypeError);
}

TEST_CASE("ops/errors: class targets out of range name the target and the class count") {
    Tensor logits = Tensor::zeros({3, 4}).set_requires_grad();
    CHECK_THROWS_WITH_AS(cross_entropy(logits, ids({0, 4, 1})), doctest::Contains("targets[1] = 4"),
                         IndexError);
    CHECK_THROWS_AS(cross_entropy(logits, ids({0, -3, 1})), IndexError);
    CHECK_NOTHROW(cross_entropy(logits, ids({0, -100, 1})));  // the default ignore_index
    CHECK_FALSE(logits.grad().defined());
}

TEST_CASE("ops/errors: a device that is not there is a DeviceError") {
    // One past the last GPU: absent on every machine (cuda:0 without a GPU).
    const int missing = cuda::device_count();
    CHECK_THROWS_AS(Tensor::zeros({2}, DType::F32, Device::cuda(missing)), DeviceError);
}

TEST_CASE("ops/errors: invalid values are ValueErrors") {
    CHECK_THROWS_AS(dropout(Tensor::ones({2}), 1.5, true), ValueError);
    CHECK_THROWS_AS(cross_entropy(Tensor::ones({2, 3}), ids({0, 1}), {.label_smoothing = -0.1}),
                    ValueError);
    CHECK_THROWS_AS(Tensor::arange(0, 1, 0), ValueError);
}
