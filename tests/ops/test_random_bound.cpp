// tests/ops/test_random_bound.cpp — uniform fills stay below high in every dtype
// (ops/random_bound.h, the CPU kernel in ops/cpu/random_cpu.cpp).
//
// x = low + (high - low) u is below high for u < 1, but rounding it to the dtype can give high:
// bf16 (8 significant bits) rounds every x in [1 - 2^-9, 1) to 1.0. uniform_top is the value the
// fills clamp to: the largest value of the dtype below high. Checked directly on values worked out
// by hand, then on fills of 2^18 draws over ranges where the rounding reaches high tens to
// thousands of times (the fraction is given at each range).
#include <doctest/doctest.h>

#include <cmath>
#include <iomanip>
#include <limits>
#include <string>
#include <utility>

#include "core/kernels.h"
#include "core/tensor.h"
#include "ops/random_bound.h"

using namespace minidl;

TEST_CASE("ops/random_bound: uniform_top is the largest value of the dtype below high") {
    const double inf = std::numeric_limits<double>::infinity();
    // Below 1: one ulp of the binade [1/2, 1).
    CHECK(uniform_top(0, 1, DType::BF16) == 1 - std::ldexp(1.0, -8));
    CHECK(uniform_top(0, 1, DType::F16) == 1 - std::ldexp(1.0, -11));
    CHECK(uniform_top(0, 1, DType::F32) == 1 - std::ldexp(1.0, -24));
    CHECK(uniform_top(0, 1, DType::F64) == 1 - std::ldexp(1.0, -53));
    // Below -1: one ulp of [1, 2) further from zero.
    CHECK(uniform_top(-2, -1, DType::BF16) == -1 - std::ldexp(1.0, -7));
    CHECK(uniform_top(-2, -1, DType::F16) == -1 - std::ldexp(1.0, -10));
    // 0.3 is in no dtype: bf16 0.30078125 and f16 0.30004883 lie above it, so the value below is
    // the answer; F32's nearest 0.30000001 also lies above.
    CHECK(uniform_top(0, 0.3, DType::BF16) == 0.298828125);
    CHECK(uniform_top(0, 0.3, DType::F16) == 0.2998046875);
    CHECK(uniform_top(0, 0.3, DType::F32) == static_cast<double>(std::nextafter(0.3f, 0.0f)));
    // Above every finite value: the largest finite one.
    CHECK(uniform_top(0, 1e6, DType::F16) == 65504.0);
    CHECK(uniform_top(0, inf, DType::BF16) == 3.3895313892515355e38);
    CHECK(uniform_top(0, 1e300, DType::F32) ==
          static_cast<double>(std::numeric_limits<float>::max()));
    // Subnormals: the f16 value below 2^-14 (the smallest normal) is the largest subnormal.
    CHECK(uniform_top(0, std::ldexp(1.0, -14), DType::F16) == std::ldexp(1023.0, -24));
    // An empty or reversed range has nothing to clamp to.
    CHECK(uniform_top(1, 1, DType::BF16) == inf);
    CHECK(uniform_top(2, 1, DType::F32) == inf);
}

TEST_CASE("ops/random_bound: CPU uniform fills never return high") {
    const int64_t n = int64_t{1} << 18;
    const double tiny = std::ldexp(1.0, -20);
    struct Range {
        double low, high;
    };
    // [0, 1): bf16 2^-9 of the draws would round to 1, f16 2^-12. [-2, -1): the same at -1.
    // [0, 0.3): 16-bit ~6e-4 / ~2.4e-4. [1, 1 + 2^-20): F32 and F64 (drawn in float) 1/16.
    const Range ranges[] = {{0, 1}, {-2, -1}, {0, 0.3}, {1, 1 + tiny}};
    for (DType dt : {DType::BF16, DType::F16, DType::F32, DType::F64}) {
        for (const Range& r : ranges) {
            Tensor t = Tensor::full({n}, std::numeric_limits<double>::quiet_NaN(), dt);
            cpu_kernels().uniform(t, r.low, r.high, 0x5eed, 3);
            const std::vector<double> v = t.to_vector<double>();
            int64_t at_high = 0, outside = 0;
            for (double x : v) {
                at_high += x == r.high;
                outside += !(x >= r.low && x < r.high);
            }
            INFO(dtype_name(dt) << std::setprecision(17) << " [" << r.low << ", " << r.high << "): "
                                << outside << " draws outside, " << at_high << " equal to high");
            CHECK(outside == 0);
        }
    }
}
