// ops/cuda/attention_plan.h — how the CUDA flash-attention kernels (ops/cuda/attention.cu) cover
// a problem: whether they take it, and their grids, blocks and shared memory. Plain C++ with no
// CUDA header, so that the CPU-only build compiles it and its tests run on any machine.
//
// The kernels give each row (a query in the forward and dQ passes, a key in the dK/dV pass) one
// warp; lane l holds elements l, l + 32, l + 64, ... of the row's D-vectors, so a dot product is
// a per-lane partial sum and a butterfly reduction, and D <= 128 needs at most 4 registers per
// vector and lane. A block holds kRowsPerBlock warps, whose rows share the tiles of the other
// side that the block loads into shared memory in float: kTile rows of K and V (forward, dQ) or
// of Q and dO plus their lse and Delta (dK/dV). The grid is one-dimensional, (b, h) major and
// row tile minor, so its size is limited only by 2^31 - 1 blocks.
//
// Not fused (the op then runs its composite of matmul, softmax and dropout): F64 (the composite
// keeps double precision; the fused kernels accumulate in float), D > 128 (more than 4 registers
// per vector and lane), and grids past 2^31 - 1 blocks.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>

#include "core/dtype.h"
#include "core/kernels.h"

#if defined(__CUDACC__)
#define MDL_ATTENTION_HD __host__ __device__ inline
#else
#define MDL_ATTENTION_HD inline
#endif

namespace minidl::cuda_attention {

constexpr int kWarp = 32;
constexpr int kRowsPerBlock = 8;  // warps per block: 256 threads
constexpr int kTile = 32;         // rows of the other side per shared-memory tile
constexpr int kMaxD = 128;        // 4 elements per lane

struct Plan {
    bool fused = false;
    std::string why_not;  // the reason when not fused
    int per_lane = 0;     // ceil(D / 32): the kernels' template parameter
    int threads = kRowsPerBlock * kWarp;
    int64_t query_tiles = 0;     // ceil(Lq / kRowsPerBlock) per (b, h)
    int64_t key_tiles = 0;       // ceil(Lk / kRowsPerBlock) per (b, h)
    int64_t forward_blocks = 0;  // forward, Delta and dQ: B H query_tiles
    int64_t key_blocks = 0;      // dK and dV: B H key_tiles (0: no key, no launch)
    int64_t forward_shared = 0;  // bytes: the K and V tiles
    int64_t key_shared = 0;      // bytes: the Q and dO tiles, their lse and Delta
};

inline Plan plan(const AttentionArgs& a, DType dtype) {
    Plan p;
    if (dtype != DType::F32 && dtype != DType::F16 && dtype != DType::BF16) {
        p.why_not = "dtype " + std::string(dtype_name(dtype)) +
                    " runs the composite (the fused kernels accumulate in float)";
        return p;
    }
    if (a.d < 1 || a.d > kMaxD) {
        p.why_not =
            "head size " + std::to_string(a.d) + " is outside [1, " + std::to_string(kMaxD) + "]";
        return p;
    }
    const int64_t bh = a.batch * a.heads;
    p.per_lane = static_cast<int>((a.d + kWarp - 1) / kWarp);
    p.query_tiles = (a.lq + kRowsPerBlock - 1) / kRowsPerBlock;
    p.key_tiles = (a.lk + kRowsPerBlock - 1) / kRowsPerBlock;
    p.forward_blocks = bh * p.query_tiles;
    p.key_blocks = bh * p.key_tiles;
    constexpr int64_t kMaxBlocks = (int64_t{1} << 31) - 1;
    if (p.forward_blocks > kMaxBlocks || p.key_blocks > kMaxBlocks) {
        p.why_not = "grid of " + std::to_string(std::max(p.forward_blocks, p.key_blocks)) +
                    " blocks exceeds 2^31 - 1";
        return p;
    }
    const int64_t f = static_cast<int64_t>(sizeof(float));
    p.forward_shared = 2 * kTile * a.d * f;
    p.key_shared = 2 * kTile * a.d * f + 2 * kTile * f;
    p.fused = true;
    return p;
}

// The first key a block of rows [i0, i0 + kRowsPerBlock) can see, and the first query that can
// see a block of keys [j0, ...): under the causal mask a query i sees keys j <= i, so a forward
// or dQ block stops at key i0 + kRowsPerBlock and a dK/dV block starts at query j0.
MDL_ATTENTION_HD int64_t key_end(int64_t lk, bool causal, int64_t i0) {
    return causal && i0 + kRowsPerBlock < lk ? i0 + kRowsPerBlock : lk;
}
MDL_ATTENTION_HD int64_t query_begin(int64_t lq, bool causal, int64_t j0) {
    return !causal ? 0 : (j0 < lq ? j0 : lq);
}

}  // namespace minidl::cuda_attention
