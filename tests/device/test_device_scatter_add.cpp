// tests/device/test_device_scatter_add.cpp — the scatter-add kernels (embedding_backward,
// embedding_bag_backward, index_add) on a row hit 8192 times, in every float dtype and both
// scatter modes (core/determinism.h; the CPU has one mode), on test_device().
//
// A frequent token's gradient row collects thousands of contributions. Summed in 16 bits, the row
// stops growing once half an ulp of it exceeds a contribution (bf16: 256 + 1 rounds to 256), so
// the kernels sum in acc_t (F32 for 16-bit dtypes) and round once. The inputs are chosen so that
// the F32 sum is exact in any order: every value is k 2^-12 with k < 2^8 (exact in bf16, which
// holds 8 significant bits; the mean bags' 1/4 makes that k 2^-14), and every partial sum is a
// multiple of 2^-14 below 2^10, which needs at most 24 bits. The only error left is the final
// rounding to the dtype, at most half an ulp: |got - exact| <= 2^-p |exact| with p = 8 (bf16), 11
// (f16), 24 (f32), 53 (f64), against the exact sum in double. Summing in 16 bits misses by far
// more: a row stalls once half its ulp exceeds the contributions (~2^-5 here), at 16 in bf16 and
// 128 in f16, while the exact sum is ~258.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/determinism.h"
#include "core/kernels.h"
#include "core/tensor.h"
#include "tests/support/device.h"

using namespace minidl;
using minidl::test::test_device;

namespace {

constexpr int64_t kHits = 8192;  // contributions to the hot row

// One rounding to the dtype, relative: 2^-p for p significant bits.
double half_ulp_rel(DType dt) {
    switch (dt) {
        case DType::BF16:
            return std::ldexp(1.0, -8);
        case DType::F16:
            return std::ldexp(1.0, -11);
        case DType::F32:
            return std::ldexp(1.0, -24);
        default:
            return std::ldexp(1.0, -53);
    }
}

// n values k / 4096, k in [1, 256) from a fixed sequence: exact in every dtype.
std::vector<double> exact_values(int64_t n, uint64_t seed) {
    std::vector<double> v(static_cast<size_t>(n));
    uint64_t s = seed;
    for (auto& x : v) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x = static_cast<double>(1 + (s >> 33) % 255) / 4096.0;
    }
    return v;
}

Tensor on_device(const std::vector<double>& v, const Shape& shape, DType dt) {
    return Tensor::from_vector(v, shape).to(dt).to(test_device());
}

Tensor ids_on_device(const std::vector<int64_t>& v) {
    return Tensor::from_vector(v, {static_cast<int64_t>(v.size())}).to(test_device());
}

// CHECKs |got - want| <= rtol |want| elementwise.
void check_rounded_once(const Tensor& got_device, const std::vector<double>& want, double rtol,
                        const std::string& what) {
    const std::vector<double> got = got_device.to(Device::cpu()).to_vector<double>();
    REQUIRE(got.size() == want.size());
    size_t bad = 0, worst = 0;
    double worst_err = -1;
    for (size_t i = 0; i < got.size(); ++i) {
        const double err = std::abs(got[i] - want[i]);
        if (!(err <= rtol * std::abs(want[i]))) ++bad;
        if (!(err <= worst_err)) {
            worst_err = err;
            worst = i;
        }
    }
    INFO(what << ": " << bad << " elements off by more than " << rtol << " relative; worst ["
              << worst << "] got " << got[worst] << ", exact " << want[worst]);
    CHECK(bad == 0);
}

std::string mode_name(bool det) {
    return det ? " deterministic" : " atomic";
}

const DType kDtypes[] = {DType::BF16, DType::F16, DType::F32, DType::F64};

}  // namespace

TEST_CASE("device/scatter_add: embedding_backward sums a row hit 8192 times, rounding once") {
    // Table [V, C] = [5, 3]; ids: the hot id 2 kHits times, id 4 three times, interleaved.
    const int64_t V = 5, C = 3;
    std::vector<int64_t> ids;
    for (int64_t i = 0; i < kHits; ++i) {
        ids.push_back(2);
        if (i % 3000 == 0) ids.push_back(4);
    }
    const int64_t L = static_cast<int64_t>(ids.size());
    const std::vector<double> gy = exact_values(L * C, 1), w0 = exact_values(V * C, 2);
    for (int64_t padding : {int64_t{-1}, int64_t{4}}) {
        std::vector<double> want = w0;  // gweight += the contributions, in exact arithmetic
        for (int64_t i = 0; i < L; ++i)
            if (ids[i] != padding)
                for (int64_t c = 0; c < C; ++c)
                    want[ids[i] * C + c] += gy[i * C + c];
        for (bool det : {false, true}) {
            DeterministicGuard guard(det);
            for (DType dt : kDtypes) {
                const std::string what = "embedding_backward " + std::string(dtype_name(dt)) +
                                         mode_name(det) + " padding=" + std::to_string(padding);
                Tensor gw = on_device(w0, {V, C}, dt);
                kernels_for(test_device())
                    .embedding_backward(on_device(gy, {L, C}, dt), ids_on_device(ids), gw, padding);
                check_rounded_once(gw, want, half_ulp_rel(dt), what);
            }
        }
    }
}

TEST_CASE("device/scatter_add: embedding_bag_backward sums a row hit 8192 times, rounding once") {
    // kHits / 4 bags of 4 ids each: the hot id 1 in every position but one id 3 per 64th bag.
    // Mean mode scales by 1/4 or 1/3 (bags holding padding id 3): the 1/3 is not exact, so the
    // padded case runs in sum mode only, and mean mode's 1/4 keeps the values multiples of 2^-14.
    const int64_t V = 4, C = 2, B = kHits / 4;
    std::vector<int64_t> ids, offsets;
    for (int64_t b = 0; b < B; ++b) {
        offsets.push_back(static_cast<int64_t>(ids.size()));
        for (int k = 0; k < 4; ++k)
            ids.push_back(b % 64 == 0 && k == 0 ? 3 : 1);
    }
    const int64_t L = static_cast<int64_t>(ids.size());
    const std::vector<double> gy = exact_values(B * C, 3), w0 = exact_values(V * C, 4);
    struct Case {
        BagMode mode;
        int64_t padding;
    };
    for (const Case& k : {Case{BagMode::Sum, -1}, Case{BagMode::Sum, 3}, Case{BagMode::Mean, -1}}) {
        std::vector<double> want = w0;
        for (int64_t b = 0; b < B; ++b)
            for (int64_t i = offsets[b]; i < offsets[b] + 4; ++i)
                if (ids[i] != k.padding)
                    for (int64_t c = 0; c < C; ++c)
                        want[ids[i] * C + c] +=
                            gy[b * C + c] * (k.mode == BagMode::Mean ? 0.25 : 1.0);
        for (bool det : {false, true}) {
            DeterministicGuard guard(det);
            for (DType dt : kDtypes) {
                const std::string what = "embedding_bag_backward " + std::string(dtype_name(dt)) +
                                         (k.mode == BagMode::Sum ? " sum" : " mean") +
                                         mode_name(det) + " padding=" + std::to_string(k.padding);
                Tensor gw = on_device(w0, {V, C}, dt);
                kernels_for(test_device())
                    .embedding_bag_backward(on_device(gy, {B, C}, dt), ids_on_device(ids),
                                            ids_on_device(offsets), gw, k.mode, k.padding);
                check_rounded_once(gw, want, half_ulp_rel(dt), what);
            }
        }
    }
    CHECK(L == kHits);
}

TEST_CASE("device/scatter_add: index_add sums a row hit 8192 times, rounding once") {
    // gx [outer, n, inner] = [2, 3, 4]; idx: kHits indices, all 0 but every 100th one 2.
    const int64_t outer = 2, n = 3, inner = 4, J = kHits;
    std::vector<int64_t> idx(static_cast<size_t>(J));
    for (int64_t j = 0; j < J; ++j)
        idx[j] = j % 100 == 0 ? 2 : 0;
    const std::vector<double> gy = exact_values(outer * J * inner, 5),
                              x0 = exact_values(outer * n * inner, 6);
    std::vector<double> want = x0;
    for (int64_t o = 0; o < outer; ++o)
        for (int64_t j = 0; j < J; ++j)
            for (int64_t i = 0; i < inner; ++i)
                want[(o * n + idx[j]) * inner + i] += gy[(o * J + j) * inner + i];
    for (bool det : {false, true}) {
        DeterministicGuard guard(det);
        for (DType dt : kDtypes) {
            const std::string what = "index_add " + std::string(dtype_name(dt)) + mode_name(det);
            Tensor gx = on_device(x0, {outer, n, inner}, dt);
            kernels_for(test_device())
                .index_add(on_device(gy, {outer, J, inner}, dt), ids_on_device(idx), gx, outer, n,
                           inner);
            check_rounded_once(gx, want, half_ulp_rel(dt), what);
        }
    }
}
