// tests/gpu/test_gpu_attention.cpp — the CUDA flash-attention kernels (ops/cuda/attention.cu)
// against the CPU's (ops/cpu/attention_cpu.cpp, itself checked against PyTorch and a float64
// gradcheck in tests/ops/test_attention.cpp): forward (O and lse) and backward (dQ, dK, dV) for
// F32, F16 and BF16, every per-lane instance (D = 1, 33, 64, 128), several tiles of rows and of
// keys, Lq != Lk, a key mask with a batch whose keys are all masked, causal, and dropout (the
// same Philox draw on both devices: a different mask would differ by whole terms, far beyond the
// tolerance). Then the op through autograd on the GPU, where F64 and D > 128 take the composite.
//
// Tolerances: O and lse at the dtype's (tests/gpu/gpu_support.h); gradients sum up to Lq or Lk
// products in float in another order than the CPU's: x10 for F32 and x4 for 16-bit results
// (rounded once on both sides, so the float difference flips at most a rounding).
#include <doctest/doctest.h>

#include "core/autograd.h"
#include "core/rng.h"
#include "ops/ops.h"
#include "tests/gpu/gpu_support.h"

using namespace minidl;
using namespace minidl::gpu_test;

namespace {

struct Case {
    int64_t B, H, Lq, Lk, D;
    bool causal, masked;
    double dropout;
};

// [B, Lk] F32: batch 0 sees every key, batch 1 its first Lk - 5, batch 2 none.
Tensor key_mask_for(int64_t B, int64_t Lk) {
    std::vector<float> m(static_cast<size_t>(B * Lk), 1.0f);
    for (int64_t j = 0; j < Lk; ++j) {
        if (B > 1 && j >= Lk - 5) m[static_cast<size_t>(Lk + j)] = 0.0f;
        if (B > 2) m[static_cast<size_t>(2 * Lk + j)] = 0.0f;
    }
    return Tensor::from_vector(m, {B, Lk});
}

Tolerance gradient_tolerance(DType dt) {
    return scaled(dt, dt == DType::F32 ? 10.0 : 4.0);
}

}  // namespace

TEST_CASE("gpu/attention: fused forward and backward match the CPU kernels") {
    const std::vector<Case> cases{
        {2, 2, 130, 130, 64, false, false, 0.0}, {3, 2, 70, 70, 64, false, true, 0.0},
        {2, 2, 130, 130, 64, true, true, 0.0},   {1, 3, 7, 45, 33, false, false, 0.0},
        {3, 1, 45, 7, 128, false, true, 0.0},    {2, 1, 9, 9, 1, true, false, 0.0},
        {3, 2, 70, 70, 64, false, true, 0.1},    {2, 2, 40, 40, 96, true, true, 0.25},
    };
    for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
        const DType lse_dt = DType::F32;
        for (const Case& c : cases) {
            const AttentionArgs a{.batch = c.B,
                                  .heads = c.H,
                                  .lq = c.Lq,
                                  .lk = c.Lk,
                                  .d = c.D,
                                  .scale = 1.0 / std::sqrt(static_cast<double>(c.D)),
                                  .causal = c.causal,
                                  .dropout_p = c.dropout,
                                  .seed = 1234,
                                  .offset = 77};
            REQUIRE(kernels_for(gpu()).has_fused_attention(a, dt));
            const std::string what =
                describe(std::string("attention") + (c.causal ? " causal" : "") +
                             (c.masked ? " masked" : "") + (c.dropout > 0 ? " dropout" : ""),
                         dt, {c.B, c.H, c.Lq, c.Lk, c.D});
            const Tensor q = random_cpu({c.B, c.H, c.Lq, c.D}, dt, 401, -2.0, 2.0);
            const Tensor k = random_cpu({c.B, c.H, c.Lk, c.D}, dt, 402, -2.0, 2.0);
            const Tensor v = random_cpu({c.B, c.H, c.Lk, c.D}, dt, 403);
            const Tensor mask = c.masked ? key_mask_for(c.B, c.Lk) : Tensor();
            Both f = run_both(what,
                              {q, k, v, mask, nan_filled({c.B, c.H, c.Lq, c.D}, dt),
                               nan_filled({c.B, c.H, c.Lq}, lse_dt)},
                              [&](Kernels& kt, std::vector<Tensor>& t) {
                                  kt.attention(t[0], t[1], t[2], t[3], t[4], t[5], a);
                              });
            check_parity(f.gpu[4], f.cpu[4], what + " out");
            check_parity(f.gpu[5], f.cpu[5], what + " lse", tolerance(lse_dt));

            // Backward from the CPU's O and lse, so that both sides start from the same bits.
            const Tensor gout = random_cpu({c.B, c.H, c.Lq, c.D}, dt, 404);
            Both g = run_both(what + " backward",
                              {q, k, v, mask, f.cpu[4], f.cpu[5], gout, nan_filled(q.shape(), dt),
                               nan_filled(k.shape(), dt), nan_filled(v.shape(), dt)},
                              [&](Kernels& kt, std::vector<Tensor>& t) {
                                  kt.attention_backward(t[0], t[1], t[2], t[3], t[4], t[5], t[6],
                                                        t[7], t[8], t[9], a);
                              });
            check_parity(g.gpu[7], g.cpu[7], what + " dq", gradient_tolerance(dt));
            check_parity(g.gpu[8], g.cpu[8], what + " dk", gradient_tolerance(dt));
            check_parity(g.gpu[9], g.cpu[9], what + " dv", gradient_tolerance(dt));
        }
    }
}

TEST_CASE("gpu/attention: the op on the GPU matches the CPU through autograd, composite included") {
    // F32 D = 64 runs the fused kernels; F64 and D = 160 the composite (attention_plan.h). The
    // fully masked batch is left out: the composite gives NaN there, by its definition.
    struct OpCase {
        DType dtype;
        int64_t D;
        double rtol, atol;
    };
    for (const OpCase& c :
         {OpCase{DType::F32, 64, 1e-4, 1e-5}, OpCase{DType::F64, 64, 1e-10, 1e-12},
          OpCase{DType::F32, 160, 1e-4, 1e-5}}) {
        const int64_t B = 2, H = 2, L = 50;
        const Tensor q0 = random_cpu({B, H, L, c.D}, c.dtype, 501),
                     k0 = random_cpu({B, H, L, c.D}, c.dtype, 502),
                     v0 = random_cpu({B, H, L, c.D}, c.dtype, 503),
                     up = random_cpu({B, H, L, c.D}, c.dtype, 504);
        const Tensor mask = key_mask_for(B, L);
        std::vector<Tensor> results[2];
        for (int side = 0; side < 2; ++side) {
            const Device dev = side == 0 ? Device::cpu() : gpu();
            Generator gen(9);
            Tensor q = q0.to(dev).set_requires_grad(), k = k0.to(dev).set_requires_grad(),
                   v = v0.to(dev).set_requires_grad();
            const Tensor out = scaled_dot_product_attention(
                q, k, v, {.key_mask = mask.to(dev), .dropout_p = 0.1, .generator = &gen});
            sum(mul(out, up.to(dev))).backward();
            for (const Tensor& t : {out, q.grad(), k.grad(), v.grad()})
                results[side].push_back(t.to(Device::cpu()));
        }
        const std::string what = describe("scaled_dot_product_attention", c.dtype, {B, H, L, c.D});
        const char* names[] = {" out", " dq", " dk", " dv"};
        for (size_t i = 0; i < 4; ++i)
            check_parity(results[1][i], results[0][i], what + names[i], Tolerance{c.rtol, c.atol});
    }
}
