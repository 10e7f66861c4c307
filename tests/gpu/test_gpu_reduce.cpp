// tests/gpu/test_gpu_reduce.cpp — reduce (sum, mean, max + indices), sum_squares and minmax_i64 on
// CUDA against the CPU kernels.
//
// Tolerances: both devices sum in double and round once, so sums agree to ~1e-15 relative before
// that rounding: the dtype's tolerance, and for F64 rtol 1e-12 still holds (different summation
// order of up to 1e6 doubles: error ~ n eps |x| ~ 1e-10 absolute at worst, hence atol 1e-9 there).
// Max and its index are exact: compared bitwise.
#include <doctest/doctest.h>

#include <limits>

#include "core/determinism.h"
#include "core/rng.h"
#include "tests/gpu/gpu_support.h"

using namespace minidl;
using namespace minidl::gpu_test;

namespace {

struct Split {
    int64_t outer, n, inner;
};

// Shapes that reach every path: warp rows, block rows, strided columns, two-pass chunks, n = 0.
const std::vector<Split> kSplits{
    {1, 1, 1},       {5, 7, 1}, {300, 33, 1}, {3, 1000, 1},  {2, 5000, 1},
    {1, 1000003, 1}, {4, 9, 3}, {7, 100, 33}, {2, 20000, 5}, {1, 100000, 70},
    {16, 3, 300},    {3, 0, 4}, {3, 0, 1},
};

Tolerance sum_tolerance(DType dt) {
    return dt == DType::F64 ? Tolerance{1e-12, 1e-9} : tolerance(dt);
}

}  // namespace

TEST_CASE("gpu/reduce: sum and mean over [outer, n, inner] match the CPU") {
    for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Mean}) {
        for (DType dt : float_dtypes()) {
            for (const Split& s : kSplits) {
                const Shape shape{s.outer, s.n, s.inner};
                const std::string what =
                    describe(op == ReduceOp::Sum ? "reduce sum" : "reduce mean", dt, shape);
                Both r =
                    run_both(what, {random_cpu(shape, dt, 61), nan_filled({s.outer, s.inner}, dt)},
                             [&](Kernels& k, std::vector<Tensor>& t) {
                                 k.reduce(op, t[0], t[1], nullptr, s.outer, s.n, s.inner);
                             });
                check_parity(r.gpu[1], r.cpu[1], what, sum_tolerance(dt));
            }
        }
    }
}

TEST_CASE("gpu/reduce: max and the index of the first maximum match the CPU exactly") {
    for (DType dt : float_dtypes()) {
        for (const Split& s : kSplits) {
            const Shape shape{s.outer, s.n, s.inner};
            const std::string what = describe("reduce max", dt, shape);
            // Few distinct values (16-bit rounding of a narrow range) make ties: the first wins.
            const Tensor x = random_cpu(shape, dt, 62, -1.0, dt == DType::F32 ? 1.0 : 0.01);
            Both r = run_both(
                what,
                {x, nan_filled({s.outer, s.inner}, dt), nan_filled({s.outer, s.inner}, DType::I64)},
                [&](Kernels& k, std::vector<Tensor>& t) {
                    k.reduce(ReduceOp::Max, t[0], t[1], &t[2], s.outer, s.n, s.inner);
                });
            check_bitwise(r.gpu[1], r.cpu[1], what + " values");
            check_bitwise(r.gpu[2], r.cpu[2], what + " indices");
        }
    }
}

TEST_CASE("gpu/reduce: a long max split into chunks keeps the first maximum and the first NaN") {
    // 300,000 elements in one row: the chunked two-pass path. The maximum 2 sits in two chunks
    // (the first one wins), then a NaN after both (the NaN wins), then another NaN.
    constexpr int64_t n = 300000;
    std::vector<float> v(n);
    Generator gen(71);
    for (float& e : v)
        e = static_cast<float>(gen.next_uniform());  // in [0, 1)
    v[7000] = 2.0f;
    v[190000] = 2.0f;
    for (bool with_nan : {false, true}) {
        if (with_nan) {
            v[250000] = std::numeric_limits<float>::quiet_NaN();
            v[260000] = std::numeric_limits<float>::quiet_NaN();
        }
        const std::string what =
            std::string("reduce max, one long row") + (with_nan ? ", NaN" : "");
        Both r = run_both(
            what, {Tensor::from_vector(v, {1, n}), nan_filled({1}), nan_filled({1}, DType::I64)},
            [](Kernels& k, std::vector<Tensor>& t) {
                k.reduce(ReduceOp::Max, t[0], t[1], &t[2], 1, n, 1);
            });
        check_bitwise(r.gpu[1], r.cpu[1], what + " values");
        check_bitwise(r.gpu[2], r.cpu[2], what + " indices");
        CHECK(r.gpu[2].to_vector<int64_t>() == std::vector<int64_t>{with_nan ? 250000 : 7000});
    }
}

TEST_CASE("gpu/reduce: max propagates the first NaN and handles -inf rows") {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const float inf = std::numeric_limits<float>::infinity();
    const Tensor x = Tensor::from_vector(
        std::vector<float>{1, nan, 3, nan, -inf, -inf, -inf, -inf, 2, 5, 5, 1}, {3, 4});
    Both r = run_both("reduce max nan/-inf rows", {x, nan_filled({3}), nan_filled({3}, DType::I64)},
                      [](Kernels& k, std::vector<Tensor>& t) {
                          k.reduce(ReduceOp::Max, t[0], t[1], &t[2], 3, 4, 1);
                      });
    check_bitwise(r.gpu[1], r.cpu[1], "reduce max nan/-inf rows values");
    check_bitwise(r.gpu[2], r.cpu[2], "reduce max nan/-inf rows indices");
    CHECK(r.gpu[2].to_vector<int64_t>() == std::vector<int64_t>{1, 0, 1});
}

TEST_CASE("gpu/reduce: sum_squares over several tensors matches the CPU and is reproducible") {
    for (DType dt : float_dtypes()) {
        const std::vector<Tensor> xs{random_cpu({1000, 37}, dt, 71), Tensor(),
                                     random_cpu({0}, dt, 72), random_cpu({1}, dt, 73),
                                     random_cpu({3000001}, dt, 74)};
        std::vector<Tensor> on_gpu;
        for (const Tensor& x : xs)
            on_gpu.push_back(x.defined() ? x.to(gpu()) : Tensor());
        const double cpu = cpu_kernels().sum_squares(xs);
        const double gpu1 = cuda::kernels().sum_squares(on_gpu);
        const double gpu2 = cuda::kernels().sum_squares(on_gpu);
        INFO(describe("sum_squares", dt, {4037038}) << ": cpu " << cpu << " gpu " << gpu1);
        // Double sums of 4e6 positive terms in different orders: ~1e-13 relative.
        CHECK(std::abs(gpu1 - cpu) <= 1e-11 * cpu);
        CHECK(gpu1 == gpu2);  // a fixed tree: bitwise the same on a rerun
    }
    CHECK(cuda::kernels().sum_squares({}) == 0.0);
}

TEST_CASE("gpu/reduce: minmax_i64 matches the CPU") {
    for (int64_t n : {int64_t{1}, int64_t{5}, int64_t{4097}, int64_t{2000003}}) {
        Tensor ids = ids_cpu(n, 1000000, 81);
        std::vector<int64_t> v = ids.to_vector<int64_t>();
        v[static_cast<size_t>(n / 2)] = -7;  // a negative id somewhere in the middle
        ids = Tensor::from_vector(v, {n});
        int64_t lo_c = 0, hi_c = 0, lo_g = 0, hi_g = 0;
        cpu_kernels().minmax_i64(ids, lo_c, hi_c);
        cuda::kernels().minmax_i64(ids.to(gpu()), lo_g, hi_g);
        INFO("minmax_i64 n=" << n);
        CHECK(lo_g == lo_c);
        CHECK(hi_g == hi_c);
    }
}
