// tests/ops/test_cpu_layout_kernels.cpp — the CPU permute and reduce kernels against their
// definitions written out element by element, bit for bit. Both kernels have a fast path beside
// the general one (permute: whole runs when the last dim stays last; reduce: sums down the rows
// of [outer, n, inner] a block of columns at a time), and both paths must give exactly the
// definition's bits: a permute moves values, and every output of a sum adds its n inputs in order
// j = 0, 1, ... in double, whichever path runs.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>

#include "core/kernels.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "tests/support/compare.h"

using namespace minidl;

namespace {

Shape permuted(const Shape& s, const std::vector<int64_t>& perm) {
    Shape out;
    for (int64_t p : perm)
        out.push_back(s[static_cast<size_t>(p)]);
    return out;
}

}  // namespace

TEST_CASE("ops/cpu permute: every path equals out[idx] = x[idx permuted back], bit for bit") {
    struct Case {
        Shape shape;
        std::vector<int64_t> perm;
    };
    const std::vector<Case> cases{
        {{2, 5, 3, 64}, {0, 2, 1, 3}},  // a head split: the last dim stays last (runs)
        {{2, 3, 5, 7}, {0, 2, 1, 3}},   // the same with short runs
        {{4, 6, 1}, {1, 0, 2}},         // runs of 1: the element path
        {{3, 4, 5}, {2, 0, 1}},         // the last dim moves: the element path
        {{3, 4, 5}, {0, 1, 2}},         // identity
        {{7, 9}, {1, 0}},               // a transpose
        {{2, 0, 3}, {1, 0, 2}},         // empty
    };
    Generator gen(21);
    for (const Case& c : cases) {
        for (DType dt : {DType::F32, DType::F64, DType::F16}) {
            const Tensor x = Tensor::randn(c.shape, &gen).to(dt);
            Tensor out = Tensor::empty(permuted(c.shape, c.perm), dt);
            cpu_kernels().permute(x, out, c.perm);
            const std::vector<double> xv = x.to_vector<double>(), ov = out.to_vector<double>();
            // Walk the output's multi-index; the input index is its inverse permutation.
            const Shape& os = out.shape();
            const size_t nd = os.size();
            std::vector<int64_t> idx(nd, 0), xstride(nd, 1);
            for (size_t d = nd - 1; d-- > 0;)
                xstride[d] = xstride[d + 1] * c.shape[d + 1];
            int64_t mismatches = 0;
            for (int64_t flat = 0; flat < out.numel(); ++flat) {
                int64_t rem = flat, xoff = 0;
                for (size_t d = nd; d-- > 0;) {
                    idx[d] = rem % os[d];
                    rem /= os[d];
                    xoff += idx[d] * xstride[static_cast<size_t>(c.perm[d])];
                }
                if (std::memcmp(&ov[static_cast<size_t>(flat)], &xv[static_cast<size_t>(xoff)],
                                sizeof(double)) != 0)
                    ++mismatches;
            }
            CAPTURE(c.shape.size());
            CAPTURE(c.shape.back());
            CAPTURE(dtype_name(dt));
            CHECK(mismatches == 0);
        }
    }
}

TEST_CASE("ops/cpu reduce: sums and means over n, every [outer, n, inner], bit for bit") {
    struct Case {
        int64_t outer, n, inner;
    };
    // inner > 1 takes the column-block path (blocks of 256: 300 and 513 span two and three);
    // inner = 1 the per-output path; n = 0 gives 0 (sum) and NaN (mean) on both sides.
    const std::vector<Case> cases{{1, 4096, 128}, {3, 37, 300}, {2, 5, 513}, {4, 50, 1},
                                  {1, 1, 7},      {2, 0, 5},    {5, 3, 2}};
    Generator gen(22);
    for (const Case& c : cases) {
        for (DType dt : {DType::F32, DType::F64, DType::BF16}) {
            for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Mean}) {
                const Tensor x = Tensor::randn({c.outer, c.n, c.inner}, &gen).to(dt);
                Tensor out = Tensor::empty({c.outer, c.inner}, dt);
                cpu_kernels().reduce(op, x, out, nullptr, c.outer, c.n, c.inner);
                const std::vector<double> xv = x.to_vector<double>();
                std::vector<double> expect;
                for (int64_t o = 0; o < c.outer; ++o)
                    for (int64_t i = 0; i < c.inner; ++i) {
                        double s = 0;
                        for (int64_t j = 0; j < c.n; ++j)
                            s += xv[static_cast<size_t>((o * c.n + j) * c.inner + i)];
                        expect.push_back(op == ReduceOp::Mean ? s / static_cast<double>(c.n) : s);
                    }
                const Tensor want = Tensor::from_vector(expect, {c.outer, c.inner})
                                        .to(dt);  // one rounding, as the kernel's
                CAPTURE(c.outer);
                CAPTURE(c.n);
                CAPTURE(c.inner);
                CAPTURE(dtype_name(dt));
                CHECK(test::bitwise_equal(out, want));
            }
        }
    }
}
