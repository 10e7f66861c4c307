// tests/gpu/test_gpu_matmul.cpp — gemm (cuBLAS) against the CPU GEMM: every transpose
// combination, batched with per-batch and shared (stride 0) matrices, alpha/beta, k = 0, odd
// sizes, and the TF32 switch.
//
// Tolerances: GEMM sums k products in a blocked order that differs between cuBLAS and Eigen; the
// rounding error of each is bounded by ~k eps sum_k |a||b| and is in practice ~sqrt(k) eps times
// that. With entries in [-1, 1] and k <= 300: F32 rtol 1e-4, atol 1e-4 (results near zero after
// cancellation need the absolute term); F64 rtol 1e-12, atol 1e-12. F16/BF16 accumulate in float
// on both sides and round once: the 16-bit tolerance, with atol 2e-3 (F16) for cancellations.
// TF32 rounds inputs to 10 mantissa bits: rtol 1e-2, atol 3e-2 at k = 64.
#include <doctest/doctest.h>

#include "core/determinism.h"
#include "tests/gpu/gpu_support.h"

using namespace minidl;
using namespace minidl::gpu_test;

namespace {

Tolerance gemm_tolerance(DType dt) {
    switch (dt) {
        case DType::F32:
            return {1e-4, 1e-4};
        case DType::F64:
            return {1e-12, 1e-12};
        case DType::F16:
            return {2e-3, 2e-3};
        default:
            return {1.6e-2, 1.6e-2};
    }
}

// Runs one GemmArgs on both devices: A, B and C sized for the strides, C starting random (for
// beta != 0).
void check_gemm(const GemmArgs& g, DType dt, const std::string& label, Tolerance tol) {
    const int64_t a_rows = g.trans_a ? g.k : g.m, a_cols = g.trans_a ? g.m : g.k;
    const int64_t b_rows = g.trans_b ? g.n : g.k, b_cols = g.trans_b ? g.k : g.n;
    const int64_t na = (g.batch - 1) * g.stride_a + a_rows * a_cols;
    const int64_t nb = (g.batch - 1) * g.stride_b + b_rows * b_cols;
    const int64_t nc = (g.batch - 1) * g.stride_c + g.m * g.n;
    const std::string what =
        describe("gemm " + label + (g.trans_a ? " A^T" : "") + (g.trans_b ? " B^T" : "") +
                     " batch=" + std::to_string(g.batch) + " alpha=" + std::to_string(g.alpha) +
                     " beta=" + std::to_string(g.beta),
                 dt, {g.m, g.n, g.k});
    Both r = run_both(
        what, {random_cpu({na}, dt, 111), random_cpu({nb}, dt, 112), random_cpu({nc}, dt, 113)},
        [&](Kernels& k, std::vector<Tensor>& t) { k.gemm(t[0], t[1], t[2], g); });
    check_parity(r.gpu[2], r.cpu[2], what, tol);
}

}  // namespace

TEST_CASE("gpu/matmul: gemm matches the CPU for every transpose, shape and dtype") {
    struct Dims {
        int64_t m, n, k;
    };
    const std::vector<Dims> dims{{1, 1, 1},    {5, 7, 3},    {33, 17, 65}, {128, 64, 256},
                                 {1, 300, 50}, {300, 1, 50}, {37, 41, 300}};
    for (DType dt : float_dtypes()) {
        for (const Dims& d : dims) {
            for (bool ta : {false, true}) {
                for (bool tb : {false, true}) {
                    GemmArgs g;
                    g.m = d.m, g.n = d.n, g.k = d.k;
                    g.trans_a = ta, g.trans_b = tb;
                    g.stride_c = d.m * d.n;
                    check_gemm(g, dt, "2d", gemm_tolerance(dt));
                }
            }
        }
    }
}

TEST_CASE("gpu/matmul: batched gemm with shared (stride 0) operands, alpha and beta") {
    for (DType dt : float_dtypes()) {
        const int64_t m = 19, n = 23, k = 29, batch = 5;
        for (int shared = 0; shared < 3; ++shared) {  // 0: none, 1: A shared, 2: B shared
            GemmArgs g;
            g.batch = batch, g.m = m, g.n = n, g.k = k;
            g.stride_a = shared == 1 ? 0 : m * k;
            g.stride_b = shared == 2 ? 0 : k * n;
            g.stride_c = m * n;
            g.trans_b = shared == 2;  // a weight [n, k] used as B^T, as linear does
            check_gemm(g, dt, shared == 0 ? "batched" : (shared == 1 ? "shared A" : "shared B"),
                       gemm_tolerance(dt));
            g.alpha = -0.5, g.beta = 1.0;  // accumulate into C
            check_gemm(g, dt, "batched accumulate", gemm_tolerance(dt));
            g.alpha = 2.0, g.beta = 0.25;
            check_gemm(g, dt, "batched scaled", gemm_tolerance(dt));
        }
    }
}

TEST_CASE("gpu/matmul: k = 0 gives beta C, and empty outputs are left alone") {
    for (DType dt : float_dtypes()) {
        for (double beta : {0.0, 0.5}) {
            GemmArgs g;
            g.batch = 2, g.m = 3, g.n = 4, g.k = 0, g.beta = beta;
            g.stride_a = 0, g.stride_b = 0, g.stride_c = 12;
            check_gemm(g, dt, "k=0", tolerance(dt));
        }
        GemmArgs empty;
        empty.m = 0, empty.n = 5, empty.k = 3;
        check_gemm(empty, dt, "m=0", tolerance(dt));
    }
}

TEST_CASE("gpu/matmul: allow_tf32 switches F32 products to TF32 within its precision") {
    GemmArgs g;
    g.m = 64, g.n = 64, g.k = 64, g.stride_c = 64 * 64;
    set_allow_tf32(true);
    check_gemm(g, DType::F32, "tf32", {1e-2, 3e-2});
    set_allow_tf32(false);
    check_gemm(g, DType::F32, "tf32 off again", gemm_tolerance(DType::F32));
}
