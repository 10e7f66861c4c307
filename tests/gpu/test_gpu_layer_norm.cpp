// tests/gpu/test_gpu_layer_norm.cpp — layer_norm forward and backward on CUDA against the CPU
// kernels, with and without weight/bias, for rows handled by a warp and by a block.
//
// Tolerances: per-row statistics in acc_t in a different summation order: the dtype's tolerance
// for y, mean, rstd and gx (gx's three terms cancel: x2). gw/gb sum R rows of products of
// magnitude ~1 (errors ~sqrt(R) ulp of the partial sums, which reach ~sqrt(R)): F32 atol 1e-4 at
// R <= 1000 — the dtype's tolerance x100 for F32/F64 — and x10 for 16-bit outputs (the sum is
// rounded once to 16 bits on both sides, the float sums differ far less than one 16-bit ulp).
#include <doctest/doctest.h>

#include "tests/gpu/gpu_support.h"

using namespace minidl;
using namespace minidl::gpu_test;

TEST_CASE("gpu/layer_norm: forward and backward match the CPU") {
    struct Case {
        int64_t R, C;
    };
    const std::vector<Case> cases{{1, 1},    {7, 5},    {300, 64}, {33, 1000},
                                  {5, 1025}, {3, 5000}, {1000, 3}, {0, 8}};
    for (DType dt : float_dtypes()) {
        const DType stat_dt = dt == DType::F64 ? DType::F64 : DType::F32;
        for (const Case& c : cases) {
            for (bool affine : {false, true}) {
                const std::string tag = affine ? " affine" : "";
                const std::string fwd = describe("layer_norm" + tag, dt, {c.R, c.C});
                const Tensor x = random_cpu({c.R, c.C}, dt, 151, -2.0, 3.0);
                const Tensor w = affine ? random_cpu({c.C}, dt, 152, 0.5, 1.5) : Tensor();
                const Tensor b = affine ? random_cpu({c.C}, dt, 153) : Tensor();
                Both f = run_both(fwd,
                                  {x, w, b, nan_filled({c.R, c.C}, dt), nan_filled({c.R}, stat_dt),
                                   nan_filled({c.R}, stat_dt)},
                                  [](Kernels& k, std::vector<Tensor>& t) {
                                      k.layer_norm(t[0], t[1], t[2], t[3], t[4], t[5], 1e-5);
                                  });
                check_parity(f.gpu[3], f.cpu[3], fwd + " y");
                check_parity(f.gpu[4], f.cpu[4], fwd + " mean", tolerance(stat_dt));
                check_parity(f.gpu[5], f.cpu[5], fwd + " rstd", tolerance(stat_dt));

                // Backward from the CPU's statistics; gw/gb start non-zero (accumulated into).
                const std::string bwd = describe("layer_norm_backward" + tag, dt, {c.R, c.C});
                Both g = run_both(
                    bwd,
                    {x, w, f.cpu[4], f.cpu[5], random_cpu({c.R, c.C}, dt, 154),
                     nan_filled({c.R, c.C}, dt), affine ? random_cpu({c.C}, dt, 155) : Tensor(),
                     affine ? random_cpu({c.C}, dt, 156) : Tensor()},
                    [](Kernels& k, std::vector<Tensor>& t) {
                        k.layer_norm_backward(t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7]);
                    });
                check_parity(g.gpu[5], g.cpu[5], bwd + " gx", scaled(dt, 2.0));
                if (affine) {
                    const Tolerance sum_tol = scaled(dt, is_half(dt) ? 10.0 : 100.0);
                    check_parity(g.gpu[6], g.cpu[6], bwd + " gw", sum_tol);
                    check_parity(g.gpu[7], g.cpu[7], bwd + " gb", sum_tol);
                }
            }
        }
    }
}

TEST_CASE("gpu/layer_norm: backward computes only the gradients asked for") {
    const Tensor x = random_cpu({40, 70}, DType::F32, 161);
    const Tensor w = random_cpu({70}, DType::F32, 162);
    Both f = run_both("layer_norm stats",
                      {x, w, Tensor(), nan_filled({40, 70}), nan_filled({40}), nan_filled({40})},
                      [](Kernels& k, std::vector<Tensor>& t) {
                          k.layer_norm(t[0], t[1], t[2], t[3], t[4], t[5], 1e-5);
                      });
    // gx undefined, gw only.
    Both g = run_both("layer_norm_backward gw only",
                      {x, w, f.cpu[4], f.cpu[5], random_cpu({40, 70}, DType::F32, 163), Tensor(),
                       Tensor::zeros({70}), Tensor()},
                      [](Kernels& k, std::vector<Tensor>& t) {
                          k.layer_norm_backward(t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7]);
                      });
    CHECK_FALSE(g.gpu[5].defined());
    CHECK_FALSE(g.gpu[7].defined());
    check_parity(g.gpu[6], g.cpu[6], "layer_norm_backward gw only", scaled(DType::F32, 100.0));
}
