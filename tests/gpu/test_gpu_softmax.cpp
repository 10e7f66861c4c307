// tests/gpu/test_gpu_softmax.cpp — softmax / log_softmax (forward and backward) and the fused
// cross-entropy (forward and backward) on CUDA against the CPU kernels.
//
// Tolerances: the dtype's. Each row is reduced in acc_t on both devices, in a different order
// (the GPU sums lane-strided partials): for rows of up to 50k elements the F32 sums differ by
// ~sqrt(n) ulp ~ 1e-5 relative, so rows longer than 4096 use 10x the F32 tolerance.
#include <doctest/doctest.h>

#include <limits>

#include "tests/gpu/gpu_support.h"

using namespace minidl;
using namespace minidl::gpu_test;

namespace {

struct Split {
    int64_t outer, n, inner;
};

const std::vector<Split> kSplits{{1, 1, 1},    {7, 10, 1},   {300, 33, 1},
                                 {5, 1000, 1}, {3, 1025, 1}, {2, 50000, 1},
                                 {4, 9, 3},    {3, 100, 65}, {0, 5, 1}};

Tolerance row_tolerance(DType dt, int64_t n) {
    return scaled(dt, dt == DType::F32 && n > 4096 ? 10.0 : 1.0);
}

}  // namespace

TEST_CASE("gpu/softmax: softmax and log_softmax forward and backward match the CPU") {
    for (bool log : {false, true}) {
        for (DType dt : float_dtypes()) {
            for (const Split& s : kSplits) {
                const Shape shape{s.outer, s.n, s.inner};
                const std::string name = log ? "log_softmax" : "softmax";
                const std::string fwd = describe(name, dt, shape);
                const Tensor x = random_cpu(shape, dt, 91, -4.0, 4.0);
                Both f = run_both(fwd, {x, nan_filled(shape, dt)},
                                  [&](Kernels& k, std::vector<Tensor>& t) {
                                      k.softmax(t[0], t[1], s.outer, s.n, s.inner, log);
                                  });
                check_parity(f.gpu[1], f.cpu[1], fwd, row_tolerance(dt, s.n));

                const std::string bwd = describe(name + "_backward", dt, shape);
                Both b =
                    run_both(bwd, {f.cpu[1], random_cpu(shape, dt, 92), nan_filled(shape, dt)},
                             [&](Kernels& k, std::vector<Tensor>& t) {
                                 k.softmax_backward(t[0], t[1], t[2], s.outer, s.n, s.inner, log);
                             });
                check_parity(b.gpu[2], b.cpu[2], bwd, row_tolerance(dt, s.n));
            }
        }
    }
}

TEST_CASE("gpu/softmax: rows with -inf and +inf entries match the CPU") {
    const float inf = std::numeric_limits<float>::infinity();
    const Tensor x = Tensor::from_vector(
        std::vector<float>{-inf, 0, 1, 2, -inf, -inf, -inf, -inf, 1, inf, 0, 3}, {3, 4});
    for (bool log : {false, true}) {
        const std::string what = log ? "log_softmax inf rows" : "softmax inf rows";
        Both r = run_both(what, {x, nan_filled({3, 4})}, [&](Kernels& k, std::vector<Tensor>& t) {
            k.softmax(t[0], t[1], 3, 4, 1, log);
        });
        check_parity(r.gpu[1], r.cpu[1], what);
    }
}

TEST_CASE("gpu/softmax: cross_entropy forward and backward match the CPU") {
    struct Case {
        int64_t N, C;
        double ls;
        int64_t ignore;
    };
    const std::vector<Case> cases{{1, 1, 0.0, -100},   {8, 10, 0.0, -100}, {8, 10, 0.1, 3},
                                  {300, 2, 0.2, -100}, {33, 1000, 0.0, 7}, {5, 30000, 0.1, -100},
                                  {0, 5, 0.0, -100}};
    for (DType dt : float_dtypes()) {
        for (const Case& c : cases) {
            const std::string tag =
                " ls=" + std::to_string(c.ls) + " ignore=" + std::to_string(c.ignore);
            const std::string fwd = describe("cross_entropy" + tag, dt, {c.N, c.C});
            const DType loss_dt = dt == DType::F64 ? DType::F64 : DType::F32;
            const Tensor logits = random_cpu({c.N, c.C}, dt, 101, -5.0, 5.0);
            // Targets in [0, C); with an ignore_index inside that range some rows are ignored.
            const Tensor targets = ids_cpu(c.N, c.C, 102);
            Both f = run_both(
                fwd, {logits, targets, nan_filled({c.N}, loss_dt), nan_filled({c.N}, loss_dt)},
                [&](Kernels& k, std::vector<Tensor>& t) {
                    k.cross_entropy(t[0], t[1], t[2], t[3], c.ls, c.ignore);
                });
            // Losses and lse are F32 for 16-bit logits: the F32 tolerance (x10 for long rows).
            const Tolerance loss_tol = row_tolerance(loss_dt, c.C);
            check_parity(f.gpu[2], f.cpu[2], fwd + " losses", loss_tol);
            check_parity(f.gpu[3], f.cpu[3], fwd + " lse", loss_tol);

            const std::string bwd = describe("cross_entropy_backward" + tag, dt, {c.N, c.C});
            Both b =
                run_both(bwd,
                         {logits, targets, f.cpu[3], random_cpu({c.N}, loss_dt, 103),
                          nan_filled({c.N, c.C}, dt)},
                         [&](Kernels& k, std::vector<Tensor>& t) {
                             k.cross_entropy_backward(t[0], t[1], t[2], t[3], t[4], c.ls, c.ignore);
                         });
            check_parity(b.gpu[4], b.cpu[4], bwd, row_tolerance(dt, c.C));
        }
    }
}
