// tests/ops/test_attention_plan.cpp — the host side of the CUDA flash-attention kernels
// (ops/cuda/attention_plan.h), which runs without a GPU: which problems they take (F32/F16/BF16
// with 1 <= D <= 128; F64 and larger heads go to the composite), the per-lane register count
// that picks the kernel instance, the grids (every (b, h, row) in exactly one block), the shared
// memory (within the 48 KiB a launch gets without opting in), and the causal bounds: a block of
// query rows must loop over every key any of its rows sees, and a block of keys over every query
// that sees any of them, and no further than that. The kernels themselves run in
// tests/gpu/test_gpu_attention.cpp on a GPU.
#include <doctest/doctest.h>

#include <set>
#include <tuple>

#include "ops/cuda/attention_plan.h"

using namespace minidl;
namespace ca = minidl::cuda_attention;

namespace {

AttentionArgs args(int64_t B, int64_t H, int64_t Lq, int64_t Lk, int64_t D, bool causal = false) {
    return AttentionArgs{.batch = B, .heads = H, .lq = Lq, .lk = Lk, .d = D, .causal = causal};
}

}  // namespace

TEST_CASE(
    "ops/attention_plan: fused for F32, F16 and BF16 with 1 <= D <= 128, else the composite") {
    for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
        for (int64_t d : {1, 31, 32, 33, 64, 96, 127, 128}) {
            const ca::Plan p = ca::plan(args(2, 2, 128, 128, d), dt);
            CAPTURE(d);
            CHECK(p.fused);
            CHECK(p.why_not.empty());
            CHECK(p.per_lane == (d + 31) / 32);  // 1..4: the kernel instances that exist
            CHECK(p.per_lane * ca::kWarp >= d);
            CHECK((p.per_lane - 1) * ca::kWarp < d);
        }
    }
    const ca::Plan f64 = ca::plan(args(2, 2, 8, 8, 64), DType::F64);
    CHECK_FALSE(f64.fused);
    CHECK(f64.why_not.find(std::string(dtype_name(DType::F64))) != std::string::npos);
    for (int64_t d : {0, 129, 256}) {
        const ca::Plan p = ca::plan(args(2, 2, 8, 8, d), DType::F32);
        CAPTURE(d);
        CHECK_FALSE(p.fused);
        CHECK(p.why_not.find("head size " + std::to_string(d)) != std::string::npos);
    }
    CHECK_FALSE(ca::plan(args(1, 1, 8, 8, 8), DType::I64).fused);
}

TEST_CASE("ops/attention_plan: grids cover every (b, h, row) once and fit the launch limits") {
    for (auto [B, H, Lq, Lk] : {std::tuple<int64_t, int64_t, int64_t, int64_t>{1, 1, 1, 1},
                                {2, 3, 7, 9},
                                {3, 2, 8, 16},
                                {2, 2, 130, 65},
                                {1, 1, 5, 0}}) {
        const ca::Plan p = ca::plan(args(B, H, Lq, Lk, 64), DType::F16);
        REQUIRE(p.fused);
        CHECK(p.threads == ca::kRowsPerBlock * ca::kWarp);
        CHECK(p.forward_blocks == B * H * p.query_tiles);
        CHECK(p.key_blocks == B * H * p.key_tiles);
        // The kernels' decomposition: block -> (bh = block / tiles, first row = block % tiles * 8),
        // warp w -> row first + w, rows past the end idle.
        for (auto [blocks, tiles, rows] : {std::tuple{p.forward_blocks, p.query_tiles, Lq},
                                           std::tuple{p.key_blocks, p.key_tiles, Lk}}) {
            std::set<std::pair<int64_t, int64_t>> seen;
            for (int64_t block = 0; block < blocks; ++block)
                for (int64_t w = 0; w < ca::kRowsPerBlock; ++w) {
                    const int64_t bh = block / tiles, row = block % tiles * ca::kRowsPerBlock + w;
                    if (row < rows) CHECK(seen.insert({bh, row}).second);
                }
            CHECK(static_cast<int64_t>(seen.size()) == B * H * rows);
        }
    }
    CHECK(ca::plan(args(1, 1, 5, 0, 64), DType::F32).key_blocks == 0);  // no key: no dK/dV launch
    // Shared memory: at D = 128 the largest use, still under the 48 KiB of a default launch.
    const ca::Plan big = ca::plan(args(1, 1, 8, 8, ca::kMaxD), DType::F32);
    CHECK(big.forward_shared == 2 * ca::kTile * 128 * 4);
    CHECK(big.key_shared == 2 * ca::kTile * 128 * 4 + 2 * ca::kTile * 4);
    CHECK(big.key_shared <= 48 * 1024);
    // A grid past 2^31 - 1 blocks is refused, not truncated into an unsigned launch size.
    const ca::Plan huge = ca::plan(args(int64_t{1} << 20, 1024, 128, 128, 64), DType::F32);
    CHECK_FALSE(huge.fused);
    CHECK(huge.why_not.find("2^31 - 1") != std::string::npos);
}

TEST_CASE("ops/attention_plan: causal loops reach every visible pair and stop right after") {
    for (int64_t L : {1, 7, 8, 9, 33, 64}) {
        for (int64_t i0 = 0; i0 < L; i0 += ca::kRowsPerBlock) {
            // The last key any row of the block sees is its last row: i <= i0 + 7 and i < L.
            const int64_t last_row = std::min(L, i0 + ca::kRowsPerBlock) - 1;
            CAPTURE(L);
            CAPTURE(i0);
            CHECK(ca::key_end(L, true, i0) == last_row + 1);
            CHECK(ca::key_end(L, false, i0) == L);
        }
        for (int64_t j0 = 0; j0 < L; j0 += ca::kRowsPerBlock) {
            // The first query that sees key j0 (the block's smallest) is j0 itself.
            CHECK(ca::query_begin(L, true, j0) == j0);
            CHECK(ca::query_begin(L, false, j0) == 0);
        }
    }
}
