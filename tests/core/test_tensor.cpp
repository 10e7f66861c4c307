// tests/core/test_tensor.cpp — Tensor factories, metadata, conversions, views and in-place rules.
#include <doctest/doctest.h>

#include "core/autograd.h"
#include "core/check.h"
#include "core/rng.h"
#include "ops/elementwise.h"
#include "tests/support/compare.h"

using namespace minidl;
using minidl::test::bitwise_equal;
using minidl::test::check_close;

TEST_CASE("core/tensor: factories give the requested shape, dtype and values") {
    Tensor z = Tensor::zeros({2, 3});
    CHECK(z.shape() == Shape{2, 3});
    CHECK(z.dtype() == DType::F32);
    CHECK(z.numel() == 6);
    check_close(z, std::vector<double>(6, 0.0), 0, 0, "zeros");
    check_close(Tensor::ones({4}, DType::F64), std::vector<double>(4, 1.0), 0, 0, "ones");
    check_close(Tensor::full({2}, 2.5, DType::BF16), {2.5, 2.5}, 0, 0, "full bf16");
    CHECK(Tensor::arange(0, 5).to_vector<int64_t>() == std::vector<int64_t>{0, 1, 2, 3, 4});
    check_close(Tensor::arange(1, 2, 0.25, DType::F32), {1, 1.25, 1.5, 1.75}, 0, 0, "arange");
    Tensor s = Tensor::scalar(3.0);
    CHECK(s.dim() == 0);
    CHECK(s.item() == 3.0);
    Tensor e = Tensor::empty({0, 4});
    CHECK(e.numel() == 0);
    CHECK(e.to_vector<float>().empty());
}

TEST_CASE("core/tensor: from_vector and to_vector round trip through every dtype") {
    const std::vector<double> v{1.0, -2.5, 0.125, 1024.0};
    for (DType dt : {DType::F32, DType::F64, DType::F16, DType::BF16}) {
        CAPTURE(dt);
        Tensor t = Tensor::from_vector(v, {2, 2}, dt);
        CHECK(t.dtype() == dt);
        check_close(t, v, 0, 0, "exactly representable values");
    }
    Tensor ids = Tensor::from_vector(std::vector<int64_t>{3, -1, 7}, {3});
    CHECK(ids.to_vector<int64_t>() == std::vector<int64_t>{3, -1, 7});
    CHECK_THROWS_AS(Tensor::from_vector(std::vector<float>{1, 2, 3}, {2, 2}), ShapeError);
}

TEST_CASE("core/tensor: casts round to nearest even in the 16-bit formats") {
    // 1 + 2^-8 is halfway between two bf16 values (1 and 1 + 2^-7): ties go to the even one, 1.
    Tensor t = Tensor::from_vector(std::vector<double>{1.0 + 1.0 / 256, 1.0 + 3.0 / 256}, {2});
    CHECK(t.to(DType::BF16).to_vector<double>() == std::vector<double>{1.0, 1.0 + 4.0 / 256});
    // F16 overflows to inf above 65504 (+ half an ulp).
    Tensor big = Tensor::from_vector(std::vector<float>{70000.0f}, {1});
    CHECK(std::isinf(big.to(DType::F16).item()));
}

TEST_CASE("core/tensor: view shares storage and version, transpose copies") {
    Tensor a = Tensor::arange(0, 6, 1, DType::F32).view({2, 3});
    Tensor v = a.view({3, -1});
    CHECK(v.shape() == Shape{3, 2});
    CHECK(v.is_same_memory(a));
    Tensor t = a.transpose(0, 1);
    CHECK(t.shape() == Shape{3, 2});
    CHECK_FALSE(t.is_same_memory(a));
    check_close(t, {0, 3, 1, 4, 2, 5}, 0, 0, "transpose");
    const uint64_t before = a.version();
    v.fill_(1.0);
    CHECK(a.version() == before + 1);
    check_close(a, std::vector<double>(6, 1.0), 0, 0, "write through the view");
    CHECK_THROWS_WITH_AS(a.view({4, 2}), doctest::Contains("[2, 3]"), ShapeError);
}

TEST_CASE("core/tensor: narrow0 is a zero-copy row range") {
    Tensor a = Tensor::arange(0, 8, 1, DType::F32).view({4, 2});
    Tensor rows = a.narrow0(1, 2);
    CHECK(rows.shape() == Shape{2, 2});
    check_close(rows, {2, 3, 4, 5}, 0, 0, "rows 1..2");
    CHECK(rows.storage() == a.storage());
    CHECK_THROWS_AS(a.narrow0(3, 2), IndexError);
}

TEST_CASE("core/tensor: rand and randn are reproducible from the seed") {
    Generator g1(42), g2(42), g3(43);
    Tensor a = Tensor::randn({1000}, &g1);
    Tensor b = Tensor::randn({1000}, &g2);
    Tensor c = Tensor::randn({1000}, &g3);
    CHECK(bitwise_equal(a, b));
    CHECK_FALSE(bitwise_equal(a, c));
    const std::vector<double> v = a.to_vector<double>();
    double mean = 0, var = 0;
    for (double x : v)
        mean += x / v.size();
    for (double x : v)
        var += (x - mean) * (x - mean) / v.size();
    CHECK(std::abs(mean) < 0.1);
    CHECK(std::abs(var - 1.0) < 0.15);
    Tensor u = Tensor::rand({1000}, &g1, DType::F32, Device::cpu(), -2.0, 3.0);
    for (double x : u.to_vector<double>()) {
        CHECK(x >= -2.0);
        CHECK(x < 3.0);
    }
}

TEST_CASE("core/tensor: in-place writes to tensors that require grad need NoGradGuard") {
    Tensor w = Tensor::ones({3}).set_requires_grad();
    CHECK_THROWS_AS(w.fill_(2.0), StateError);
    CHECK_THROWS_AS(w.add_(Tensor::ones({3})), StateError);
    {
        NoGradGuard no_grad;
        w.add_(Tensor::ones({3}), 0.5);
    }
    check_close(w, {1.5, 1.5, 1.5}, 0, 0, "updated under NoGradGuard");
}

TEST_CASE("core/tensor: copy_ converts dtype and broadcasts") {
    Tensor dst = Tensor::zeros({2, 3}, DType::F64);
    dst.copy_(Tensor::from_vector(std::vector<float>{1, 2, 3}, {3}));
    check_close(dst, {1, 2, 3, 1, 2, 3}, 0, 0, "broadcast copy");
    CHECK_THROWS_AS(dst.copy_(Tensor::zeros({4})), ShapeError);
}

TEST_CASE("core/device: CUDA in a CPU-only view of the world is a clear DeviceError") {
    CHECK(Device::parse("cuda:1") == Device::cuda(1));
    CHECK_THROWS_AS(Device::parse("tpu"), DeviceError);
}
