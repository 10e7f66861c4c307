// tests/core/test_poison.cpp — the GPU parity suite's output buffers (tests/support/poison.h):
// every element poisoned in every dtype, and a kernel that skips an element is caught by the
// comparisons the suite uses. Runs in the CPU suite, so the helper is checked where CI has no GPU.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "core/tensor.h"
#include "tests/support/compare.h"
#include "tests/support/poison.h"

using namespace minidl;
using test::kPoisonI64;
using test::nan_filled;

TEST_CASE("tests/poison: nan_filled sets every element to NaN, or the I64 poison") {
    for (const Shape& shape : {Shape{0}, Shape{3, 5}, Shape{1000}}) {
        CAPTURE(shape.size());
        for (DType dt : {DType::F32, DType::F64, DType::F16, DType::BF16}) {
            CAPTURE(dt);
            const Tensor t = nan_filled(shape, dt);
            CHECK(t.dtype() == dt);
            CHECK(t.shape() == shape);
            for (double v : t.to(DType::F64).to_vector<double>())
                REQUIRE(std::isnan(v));
        }
        for (int64_t v : nan_filled(shape, DType::I64).to_vector<int64_t>())
            REQUIRE(v == kPoisonI64);
    }
}

TEST_CASE("tests/poison: an element a kernel did not write fails the parity comparisons") {
    // The reference device wrote all 8 outputs; the device under test forgot the last one.
    std::vector<double> written(8);
    for (size_t i = 0; i < written.size(); ++i)
        written[i] = 0.25 * static_cast<double>(i);
    for (DType dt : {DType::F32, DType::F64, DType::F16, DType::BF16}) {
        CAPTURE(dt);
        const Tensor expected = Tensor::from_vector(written, {8}).to(dt);
        Tensor out = nan_filled({8}, dt);
        out.narrow0(0, 7).copy_(expected.narrow0(0, 7));
        const std::vector<double> got = out.to(DType::F64).to_vector<double>();
        const std::vector<double> want = expected.to(DType::F64).to_vector<double>();
        CHECK_FALSE(test::compare_close(got, want, 1e-3, 1e-3).ok);
        CHECK_FALSE(test::bitwise_equal(out, expected));
        // Written completely, the same buffer passes both.
        out.narrow0(7, 1).copy_(expected.narrow0(7, 1));
        CHECK(test::compare_close(out.to(DType::F64).to_vector<double>(), want, 0, 0).ok);
        CHECK(test::bitwise_equal(out, expected));
    }
    std::vector<int64_t> ids = {4, 0, 2};
    const Tensor expected_ids = Tensor::from_vector(ids, {3});
    Tensor out_ids = nan_filled({3}, DType::I64);
    out_ids.narrow0(0, 2).copy_(expected_ids.narrow0(0, 2));
    CHECK_FALSE(test::bitwise_equal(out_ids, expected_ids));
}
