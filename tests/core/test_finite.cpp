// tests/core/test_finite.cpp — the finiteness scans (core/finite.h): every floating dtype, NaN
// told from inf, large tensors (the threaded path), integer tensors, and gradients held dense or
// row-sparse.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "core/finite.h"
#include "core/row_grad.h"
#include "ops/embedding.h"
#include "ops/reduce.h"

using namespace minidl;

TEST_CASE("core/finite: NaN and inf are found in every floating dtype") {
    const double inf = std::numeric_limits<double>::infinity();
    for (DType dt : {DType::F32, DType::F64, DType::F16, DType::BF16}) {
        CAPTURE(dt);
        const Tensor ok = Tensor::from_vector(std::vector<double>{1, -2, 0, 65000}, {4}, dt);
        CHECK(all_finite(ok));
        CHECK(describe_non_finite(ok) == "finite");
        const Tensor bad = Tensor::from_vector(std::vector<double>{1, NAN, -inf, NAN}, {2, 2}, dt);
        CHECK_FALSE(all_finite(bad));
        const NonFiniteCount c = count_non_finite(bad);
        CHECK(c.nan == 2);
        CHECK(c.inf == 1);
        CHECK(c.first == 1);
        CHECK(describe_non_finite(bad) ==
              "2 NaN and 1 inf of 4 elements (the first at flat index 1)");
    }
    // Integer, undefined and empty tensors hold nothing non-finite.
    CHECK(all_finite(Tensor::from_vector(std::vector<int64_t>{1, 2}, {2})));
    CHECK(all_finite(Tensor()));
    CHECK(all_finite(Tensor::empty({0, 3})));
}

TEST_CASE("core/finite: one bad element anywhere in a large tensor is found") {
    const int64_t n = (int64_t{1} << 20) + 7;  // many parallel blocks and a short last one
    for (int64_t at : {int64_t{0}, int64_t{65535}, int64_t{65536}, n / 2, n - 1}) {
        CAPTURE(at);
        Tensor t = Tensor::zeros({n});
        CHECK(all_finite(t));
        t.raw<float>()[at] = std::numeric_limits<float>::infinity();
        CHECK_FALSE(all_finite(t));
        CHECK(count_non_finite(t).first == at);
    }
}

TEST_CASE("core/finite: grads_all_finite reads dense and row-sparse gradients") {
    Tensor w =
        Tensor::from_vector(std::vector<float>{1, 2, 3, 4, 5, 6}, {3, 2}).set_requires_grad();
    Tensor b = Tensor::zeros({2}).set_requires_grad();
    CHECK(grads_all_finite({w, b}));  // no gradients yet
    const Tensor ids = Tensor::from_vector(std::vector<int64_t>{0, 2}, {2});
    const Tensor offsets = Tensor::from_vector(std::vector<int64_t>{0}, {1});
    embedding_bag(w, ids, offsets, BagMode::Sum)
        .backward(Tensor::from_vector(std::vector<float>{1, NAN}, {1, 2}));
    if (row_sparse_grads()) {
        REQUIRE(row_grad(w) != nullptr);
        CHECK_FALSE(grads_all_finite({w, b}));
        CHECK(row_grad(w) != nullptr);  // read as rows, not made dense
    }
    CHECK_FALSE(grads_all_finite({w, b}));
    w.set_grad(Tensor());
    CHECK(grads_all_finite({w, b}));
    b.set_grad(Tensor::from_vector(std::vector<float>{0, -INFINITY}, {2}));
    CHECK_FALSE(grads_all_finite({w, b}));
    CHECK(grads_all_finite({w}));
}
