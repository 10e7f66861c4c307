// tests/core/test_autograd.cpp — the backward engine: accumulation, retain_graph, NoGradGuard,
// detach, version counters.
#include <doctest/doctest.h>

#include <thread>

#include "core/autograd.h"
#include "core/check.h"
#include "ops/elementwise.h"
#include "tests/support/compare.h"

using namespace minidl;
using minidl::test::check_close;

TEST_CASE("core/autograd: gradients accumulate into leaves across backward calls") {
    Tensor x = Tensor::from_vector(std::vector<double>{1, 2, 3}, {3}).set_requires_grad();
    Tensor y = (x * x).view({1, 3});
    Tensor w = Tensor::ones({1, 3}, DType::F64);
    y.backward(w, /*retain_graph=*/true);
    check_close(x.grad(), {2, 4, 6}, 0, 0, "first backward: 2x");
    y.backward(w);
    check_close(x.grad(), {4, 8, 12}, 0, 0, "second backward accumulates");
    CHECK_THROWS_WITH_AS(y.backward(w), doctest::Contains("second time"), StateError);
}

TEST_CASE("core/autograd: a tensor used twice sums its gradients (diamond graph)") {
    Tensor x = Tensor::from_vector(std::vector<double>{0.5, -1.5}, {2}).set_requires_grad();
    Tensor a = x * 3.0;
    Tensor b = exp(x);
    Tensor y = a * b + a;  // dy/dx = 3 e^x + 3x e^x + 3
    y.backward(Tensor::ones({2}, DType::F64));
    std::vector<double> expected;
    for (double v : {0.5, -1.5})
        expected.push_back(3 * std::exp(v) + 3 * v * std::exp(v) + 3);
    check_close(x.grad(), expected, 1e-12, 1e-12, "diamond");
}

TEST_CASE("core/autograd: modifying a saved tensor in place makes backward throw") {
    Tensor x = Tensor::from_vector(std::vector<double>{1, 2}, {2}).set_requires_grad();
    Tensor h = x * 2.0;
    Tensor y = exp(h);  // saves its output y
    {
        NoGradGuard no_grad;
        y.add_(Tensor::ones({2}, DType::F64));
    }
    CHECK_THROWS_WITH_AS(y.backward(Tensor::ones({2}, DType::F64)),
                         doctest::Contains("modified in place"), StateError);
}

TEST_CASE("core/autograd: NoGradGuard records nothing and is per thread") {
    Tensor x = Tensor::ones({2}).set_requires_grad();
    {
        NoGradGuard no_grad;
        Tensor y = x * 2.0;
        CHECK_FALSE(y.requires_grad());
        bool other_thread_records = false;
        std::thread t([&] { other_thread_records = (x * 2.0).requires_grad(); });
        t.join();
        CHECK(other_thread_records);  // the guard did not leak into the other thread
    }
    CHECK((x * 2.0).requires_grad());
}

TEST_CASE("core/autograd: detach cuts the graph but shares storage") {
    Tensor x = Tensor::ones({2}).set_requires_grad();
    Tensor y = x * 3.0;
    Tensor d = y.detach();
    CHECK_FALSE(d.requires_grad());
    CHECK(d.is_same_memory(y));
    Tensor z = d * x;
    z.backward(Tensor::ones({2}));
    check_close(x.grad(), {3, 3}, 0, 0, "only the path through x itself");
}

TEST_CASE("core/autograd: retain_grad keeps the gradient of a non-leaf") {
    Tensor x = Tensor::ones({2}).set_requires_grad();
    Tensor h = x * 2.0;
    h.retain_grad();
    (h * h).backward(Tensor::ones({2}));
    check_close(h.grad(), {4, 4}, 0, 0, "dL/dh = 2h");
    check_close(x.grad(), {8, 8}, 0, 0, "dL/dx = 2h * 2");
}

TEST_CASE("core/autograd: dtype casts are differentiable and gradients come back in F32") {
    Tensor w = Tensor::from_vector(std::vector<float>{1.5f, -2.0f}, {2}).set_requires_grad();
    Tensor y = w.to(DType::BF16) * 2.0;
    CHECK(y.dtype() == DType::BF16);
    y.to(DType::F32).backward(Tensor::ones({2}));
    CHECK(w.grad().dtype() == DType::F32);
    check_close(w.grad(), {2, 2}, 0, 0, "through the cast");
}
