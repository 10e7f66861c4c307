// tests/gpu/test_gpu_embedding.cpp — embedding / embedding_bag (forward and backward) and
// index_select / index_add on CUDA against the CPU kernels, in both scatter modes.
//
// Gathers copy bits: bitwise. Forward bags sum in acc_t in id order on both devices: the dtype's
// tolerance. Backward scatter-adds are compared with a reference that sums in acc_t: the CPU
// kernel itself for F32/F64, and for 16-bit dtypes the CPU kernel run in F32 on the same
// (widened) values and rounded once at the end. Tolerances, for rows that collect up to ~45
// contributions of magnitude ~1:
//   deterministic mode  the GPU sums each row in acc_t in a fixed order (chunks of 128 sorted
//                       positions) and rounds once: the dtype's tolerance x4 (summation order,
//                       fused multiply-adds with the bag scale); a rerun is bitwise equal.
//   atomic mode         the order of additions varies, and 16-bit rows are summed in an F32
//                       scratch and rounded once: x4 as well. (Rounding the row to 16 bits after
//                       each atomic addition, as this path once did, needed x40; a row hit 8192
//                       times is tested exactly in tests/device/test_device_scatter_add.cpp.)
#include <doctest/doctest.h>

#include <functional>
#include <utility>

#include "core/determinism.h"
#include "core/rng.h"
#include "tests/gpu/gpu_support.h"

using namespace minidl;
using namespace minidl::gpu_test;

namespace {

struct TableCase {
    int64_t V, C, L;
};
const std::vector<TableCase> kTables{{1, 1, 1},       {10, 3, 7},   {50, 64, 2000},
                                     {1000, 33, 500}, {7, 130, 64}, {20, 8, 0}};

// Bags over L ids: offsets 0, then irregular sizes including empty bags.
Tensor offsets_for(int64_t L, uint64_t seed) {
    Generator gen(seed);
    std::vector<int64_t> off{0};
    while (L > 0 && off.back() < L) {
        const int64_t next = off.back() + gen.randint(6);  // 0..5 ids: some bags empty
        if (next >= L) break;
        off.push_back(next);
    }
    return Tensor::from_vector(off, {static_cast<int64_t>(off.size())});
}

Tolerance scatter_tolerance(DType dt) {
    return scaled(dt, 4.0);
}

// Runs a scatter-add on the GPU and returns (GPU result, reference) for tensor `out`: the
// reference is the CPU kernel on the same inputs, in F32 for 16-bit dtypes, rounded once.
std::pair<Tensor, Tensor> scatter_and_reference(
    const std::string& what, const std::vector<Tensor>& inputs, size_t out,
    const std::function<void(Kernels&, std::vector<Tensor>&)>& fn) {
    const std::vector<Tensor> g = run_gpu(what, inputs, fn);
    std::vector<Tensor> ref;
    for (const Tensor& t : inputs)
        ref.push_back(!t.defined() ? Tensor()
                                   : (is_half(t.dtype()) ? t.to(DType::F32) : t.clone()));
    fn(cpu_kernels(), ref);
    return {g[out], ref[out].to(inputs[out].dtype())};
}

}  // namespace

TEST_CASE("gpu/embedding: embedding and index_select gather rows bit for bit") {
    for (DType dt : float_dtypes()) {
        for (const TableCase& c : kTables) {
            const std::string what = describe("embedding", dt, {c.V, c.C, c.L});
            Both r =
                run_both(what,
                         {random_cpu({c.V, c.C}, dt, 121), ids_cpu(c.L, c.V, 122),
                          nan_filled({c.L, c.C}, dt)},
                         [](Kernels& k, std::vector<Tensor>& t) { k.embedding(t[0], t[1], t[2]); });
            check_bitwise(r.gpu[2], r.cpu[2], what);
        }
        // index_select over the middle dim of [outer, n, inner]; odd inner sizes hit the 2-byte
        // and 4-byte copy units.
        for (const Shape& s : {Shape{3, 10, 5}, Shape{1, 100, 64}, Shape{4, 7, 1}}) {
            const std::string what = describe("index_select", dt, s);
            const int64_t J = 13;
            Both r = run_both(
                what,
                {random_cpu(s, dt, 123), ids_cpu(J, s[1], 124), nan_filled({s[0], J, s[2]}, dt)},
                [&](Kernels& k, std::vector<Tensor>& t) {
                    k.index_select(t[0], t[1], t[2], s[0], s[1], s[2]);
                });
            check_bitwise(r.gpu[2], r.cpu[2], what);
        }
    }
}

TEST_CASE("gpu/embedding: embedding_bag forward matches the CPU (sum, mean, padding)") {
    for (DType dt : float_dtypes()) {
        for (const TableCase& c : kTables) {
            if (c.L == 0) continue;
            for (BagMode mode : {BagMode::Sum, BagMode::Mean}) {
                for (int64_t padding : {int64_t{-1}, int64_t{0}}) {
                    const Tensor offsets = offsets_for(c.L, 125);
                    const int64_t B = offsets.numel();
                    const std::string what = describe(std::string("embedding_bag ") +
                                                          (mode == BagMode::Sum ? "sum" : "mean") +
                                                          " padding=" + std::to_string(padding),
                                                      dt, {c.V, c.C, c.L});
                    Both r = run_both(what,
                                      {random_cpu({c.V, c.C}, dt, 126), ids_cpu(c.L, c.V, 127),
                                       offsets, nan_filled({B, c.C}, dt)},
                                      [&](Kernels& k, std::vector<Tensor>& t) {
                                          k.embedding_bag(t[0], t[1], t[2], t[3], mode, padding);
                                      });
                    check_parity(r.gpu[3], r.cpu[3], what);
                }
            }
        }
    }
}

TEST_CASE("gpu/embedding: backward scatter-adds match the CPU in both modes") {
    for (bool det : {false, true}) {
        DeterministicGuard guard(det);
        const std::string mode_name = det ? " deterministic" : " atomic";
        for (DType dt : float_dtypes()) {
            const Tolerance tol = scatter_tolerance(dt);
            for (const TableCase& c : kTables) {
                for (int64_t padding : {int64_t{-1}, int64_t{0}}) {
                    const std::string what = describe(
                        "embedding_backward" + mode_name + " padding=" + std::to_string(padding),
                        dt, {c.V, c.C, c.L});
                    const auto [gpu_result, reference] = scatter_and_reference(
                        what,
                        {random_cpu({c.L, c.C}, dt, 131), ids_cpu(c.L, c.V, 132),
                         random_cpu({c.V, c.C}, dt, 133)},
                        2, [&](Kernels& k, std::vector<Tensor>& t) {
                            k.embedding_backward(t[0], t[1], t[2], padding);
                        });
                    check_parity(gpu_result, reference, what, tol);
                }
                if (c.L == 0) continue;
                for (BagMode mode : {BagMode::Sum, BagMode::Mean}) {
                    const Tensor offsets = offsets_for(c.L, 134);
                    const int64_t B = offsets.numel();
                    const std::string what = describe(std::string("embedding_bag_backward ") +
                                                          (mode == BagMode::Sum ? "sum" : "mean") +
                                                          mode_name + " padding=1",
                                                      dt, {c.V, c.C, c.L});
                    const auto [gpu_result, reference] = scatter_and_reference(
                        what,
                        {random_cpu({B, c.C}, dt, 135), ids_cpu(c.L, c.V, 136), offsets,
                         random_cpu({c.V, c.C}, dt, 137)},
                        3, [&](Kernels& k, std::vector<Tensor>& t) {
                            k.embedding_bag_backward(t[0], t[1], t[2], t[3], mode, 1);
                        });
                    check_parity(gpu_result, reference, what, tol);
                }
            }
            for (const Shape& s : {Shape{3, 10, 5}, Shape{1, 100, 64}, Shape{4, 7, 1}}) {
                const int64_t J = 300;
                const std::string what = describe("index_add" + mode_name, dt, s);
                const auto [gpu_result, reference] =
                    scatter_and_reference(what,
                                          {random_cpu({s[0], J, s[2]}, dt, 138),
                                           ids_cpu(J, s[1], 139), random_cpu(s, dt, 140)},
                                          2, [&](Kernels& k, std::vector<Tensor>& t) {
                                              k.index_add(t[0], t[1], t[2], s[0], s[1], s[2]);
                                          });
                check_parity(gpu_result, reference, what, tol);  // <= ~45 additions per row
            }
        }
    }
}

TEST_CASE(
    "gpu/embedding: deterministic scatter-adds of rows hit thousands of times match the CPU") {
    // 5000 contributions over 3 rows: ~1700 per row, summed over many chunks of sorted positions.
    // The CPU reference adds them one by one in acc_t: its partial sums reach ~40, so an F32 sum
    // drifts by ~sqrt(1700) x 0.3 ulp(32) ~ 5e-5 (F64: ~1e-13) whatever the final value: F32 atol
    // 1e-3, F64 atol 1e-11; 16-bit results are the same float sums rounded once: the dtype's x4.
    DeterministicGuard guard(true);
    const int64_t V = 3, C = 40, L = 5000;
    for (DType dt : float_dtypes()) {
        const Tolerance tol = dt == DType::F32   ? Tolerance{1e-4, 1e-3}
                              : dt == DType::F64 ? Tolerance{1e-12, 1e-11}
                                                 : scaled(dt, 4.0);
        const Tensor ids = ids_cpu(L, V, 145), offsets = offsets_for(L, 146);
        const int64_t B = offsets.numel();
        {
            const std::string what = describe("embedding_backward hot rows", dt, {V, C, L});
            const auto [gpu_result, reference] = scatter_and_reference(
                what, {random_cpu({L, C}, dt, 147), ids, random_cpu({V, C}, dt, 148)}, 2,
                [](Kernels& k, std::vector<Tensor>& t) {
                    k.embedding_backward(t[0], t[1], t[2], -1);
                });
            check_parity(gpu_result, reference, what, tol);
        }
        for (BagMode mode : {BagMode::Sum, BagMode::Mean}) {
            const std::string what = describe(std::string("embedding_bag_backward hot rows ") +
                                                  (mode == BagMode::Sum ? "sum" : "mean"),
                                              dt, {V, C, L});
            const auto [gpu_result, reference] = scatter_and_reference(
                what, {random_cpu({B, C}, dt, 149), ids, offsets, random_cpu({V, C}, dt, 150)}, 3,
                [&](Kernels& k, std::vector<Tensor>& t) {
                    k.embedding_bag_backward(t[0], t[1], t[2], t[3], mode, -1);
                });
            check_parity(gpu_result, reference, what, tol);
        }
        {
            const std::string what = describe("index_add hot rows", dt, {2, V, C});
            const auto [gpu_result, reference] = scatter_and_reference(
                what, {random_cpu({2, L, C}, dt, 151), ids, random_cpu({2, V, C}, dt, 152)}, 2,
                [&](Kernels& k, std::vector<Tensor>& t) {
                    k.index_add(t[0], t[1], t[2], 2, V, C);
                });
            check_parity(gpu_result, reference, what, tol);
        }
    }
}

TEST_CASE("gpu/embedding: deterministic mode gives bitwise the same gradients on a rerun") {
    DeterministicGuard guard(true);
    for (DType dt : float_dtypes()) {
        // Heavy collisions: 20000 ids over 50 rows.
        const Tensor gy = random_cpu({20000, 40}, dt, 141), ids = ids_cpu(20000, 50, 142);
        const Tensor offsets = offsets_for(20000, 143);
        const Tensor gyb = random_cpu({offsets.numel(), 40}, dt, 144);
        auto run = [&] {
            return run_gpu("deterministic backward rerun",
                           {gy, ids, offsets, gyb, Tensor::zeros({50, 40}, dt),
                            Tensor::zeros({50, 40}, dt), Tensor::zeros({1, 50, 40}, dt)},
                           [](Kernels& k, std::vector<Tensor>& t) {
                               k.embedding_backward(t[0], t[1], t[4], -1);
                               k.embedding_bag_backward(t[3], t[1], t[2], t[5], BagMode::Mean, 7);
                               k.index_add(t[0].view({1, 20000, 40}), t[1], t[6], 1, 50, 40);
                           });
        };
        const std::vector<Tensor> first = run(), second = run();
        for (size_t i = 4; i < 7; ++i)
            check_bitwise(second[i], first[i],
                          describe("deterministic rerun #" + std::to_string(i), dt, {50, 40}));
    }
}
