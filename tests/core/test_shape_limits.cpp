// tests/core/test_shape_limits.cpp — shapes whose element or byte count does not fit in int64 are
// refused with a ShapeError naming the shape, by every factory and by view/reshape, before
// anything is allocated: never a wrapped-around count, never a small buffer behind a huge shape.
#include <doctest/doctest.h>

#include <cstdint>
#include <limits>

#include "core/allocator.h"
#include "core/check.h"
#include "core/shape.h"
#include "core/tensor.h"

using namespace minidl;

namespace {
constexpr int64_t k2p31 = int64_t{1} << 31;
constexpr int64_t k2p32 = int64_t{1} << 32;
constexpr int64_t k2p62 = int64_t{1} << 62;
constexpr int64_t kMax = std::numeric_limits<int64_t>::max();

int64_t cpu_bytes_in_use() {
    return static_cast<int64_t>(allocator_for(Device::cpu()).stats().bytes_in_use);
}
}  // namespace

TEST_CASE("core/shape: checked_numel counts elements and refuses what overflows int64") {
    CHECK(checked_numel({}, "op") == 1);
    CHECK(checked_numel({2, 3}, "op") == 6);
    CHECK(checked_numel({kMax}, "op") == kMax);
    CHECK(checked_numel({0, k2p31}, "op") == 0);
    CHECK_THROWS_WITH_AS(checked_numel({k2p32, k2p32}, "op"),
                         doctest::Contains("op: shape [4294967296, 4294967296] has more than"),
                         ShapeError);
    CHECK_THROWS_AS(checked_numel({kMax, 2}, "op"), ShapeError);
    // Zeros count as 1: an empty tensor's strides (4 * 2^62 here) must not overflow either.
    CHECK_THROWS_AS(checked_numel({0, k2p62, 4}, "op"), ShapeError);
    CHECK_THROWS_WITH_AS(checked_numel({2, -3}, "op"),
                         doctest::Contains("op: negative dimension in shape [2, -3]"), ShapeError);
}

TEST_CASE(
    "core/shape: factories refuse shapes beyond int64 elements or bytes, allocating nothing") {
    const int64_t before = cpu_bytes_in_use();
    CHECK_THROWS_WITH_AS(Tensor::empty({k2p32, k2p32}),
                         doctest::Contains("Tensor::empty: shape [4294967296, 4294967296]"),
                         ShapeError);
    CHECK_THROWS_AS(Tensor::zeros({kMax, 2}), ShapeError);
    CHECK_THROWS_AS(Tensor::ones({3, k2p62}), ShapeError);
    CHECK_THROWS_AS(Tensor::randn({k2p32, k2p32}), ShapeError);
    CHECK_THROWS_AS(Tensor::empty({0, k2p62, 4}), ShapeError);
    // 2^62 elements fit in int64, their bytes do not: 4 * 2^62 would wrap around to 0 bytes.
    CHECK_THROWS_WITH_AS(Tensor::empty({k2p62}, DType::F32),
                         doctest::Contains("shape [4611686018427387904] of f32 takes more than"),
                         ShapeError);
    CHECK_THROWS_AS(Tensor::empty({k2p31, k2p31}, DType::F64), ShapeError);
    CHECK_THROWS_AS(Tensor::from_vector(std::vector<float>{}, {k2p62, 4, 0}), ShapeError);
    CHECK_THROWS_WITH_AS(Tensor::arange(0, 1e300), doctest::Contains("Tensor::arange"), ShapeError);
    CHECK(cpu_bytes_in_use() == before);
    // Empty tensors with large (valid) dimensions are fine and take no memory.
    CHECK(Tensor::empty({0, k2p31}).numel() == 0);
}

TEST_CASE(
    "core/shape: view and reshape refuse shapes whose count overflows, even if it wraps to numel") {
    const Tensor x = Tensor::ones({4});
    // (2^62 + 1) * 4 = 2^64 + 4, which wraps around to exactly 4 in 64-bit arithmetic.
    CHECK_THROWS_WITH_AS(x.view({k2p62 + 1, 4}),
                         doctest::Contains("view: shape [4611686018427387905, 4] has more than"),
                         ShapeError);
    CHECK_THROWS_AS(x.reshape({k2p62 + 1, 4}), ShapeError);
    CHECK_THROWS_AS(x.view({-1, k2p62, 4}), ShapeError);
    CHECK_THROWS_AS(x.view({k2p32, k2p32, -1}), ShapeError);
    const Tensor empty = Tensor::zeros({0});
    CHECK_THROWS_AS(empty.view({0, k2p62, 4}), ShapeError);
    CHECK(empty.view({0, k2p31}).shape() == Shape{0, k2p31});
    CHECK(x.view({2, -1}).shape() == Shape{2, 2});
}
