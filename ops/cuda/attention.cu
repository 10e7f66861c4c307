// ops/cuda/attention.cu — flash attention on CUDA, forward and backward, F32/F16/BF16 (the math
// is in ops/attention.h; the launch geometry and what is not fused in ops/cuda/attention_plan.h).
//
// Forward (one warp per query row i, the block's 8 rows sharing K/V tiles in shared memory):
// for each visible key j in order, s = scale q_i . k_j (lane partial sums, butterfly reduction),
// then the online softmax of Milakov & Gimelshein 2018 (arXiv:1805.02867):
//   s > m:  acc *= e^(m - s), l *= e^(m - s), m = s
//   p = e^(s - m);  l += p;  acc += p z_ij v_j        (z_ij: the dropout factor, 1 without)
// and at the end O_i = acc / l, lse_i = m + log l (a row with no visible key: O_i = 0,
// lse_i = -inf). The [Lq, Lk] scores are never stored.
// Backward (Dao 2023, arXiv:2307.08691), without atomics so that every sum has one fixed order:
//   Delta_i = dO_i . O_i                                    (one warp per query row)
//   dQ pass, one warp per query row, over the keys j:
//     p = e^(s_ij - lse_i),  dp = z_ij dO_i . v_j,  ds = p (dp - Delta_i),  dq_i += scale ds k_j
//   dK/dV pass, one warp per key row j, over the queries i:
//     dv_j += p z_ij dO_i,   dk_j += scale ds q_i
// Both passes recompute s and p from q, k and lse (the dQ pass and the dK/dV pass each once).
// Dropout factors z_ij come from core/philox.h exactly as the CPU kernel and ops/dropout.h draw
// them: element (b, h, i, j) is lane flat % 4 of Philox block offset + flat / 4,
// flat = ((b H + h) Lq + i) Lk + j; kept when its uniform is below 1 - p, then scaled by
// 1 / (1 - p) in float — so CPU and CUDA drop the same elements.
// Inputs are widened to float once when loaded; results are rounded to the dtype once on store.
#include "core/philox.h"
#include "ops/cuda/attention_plan.h"
#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/cuda_kernels.h"

namespace minidl {

using namespace cuda_detail;
using cuda_attention::kRowsPerBlock;
using cuda_attention::kTile;
using cuda_attention::kWarp;

namespace {

// The sizes every kernel reads, in the form the device uses.
struct Geometry {
    int64_t heads, lq, lk, d;
    int64_t row_tiles;  // tiles of kRowsPerBlock rows per (b, h) on this kernel's own side
    float scale;
    bool causal, drop;
    float keep, inv_keep;  // 1 - p and 1 / (1 - p), rounded to float as the CPU rounds them
    uint64_t seed, offset;
};

Geometry geometry(const AttentionArgs& a, int64_t row_tiles) {
    const bool drop = a.dropout_p > 0;
    return Geometry{a.heads,
                    a.lq,
                    a.lk,
                    a.d,
                    row_tiles,
                    static_cast<float>(a.scale),
                    a.causal,
                    drop,
                    static_cast<float>(1.0 - a.dropout_p),
                    drop ? static_cast<float>(1.0 / (1.0 - a.dropout_p)) : 1.0f,
                    a.seed,
                    a.offset};
}

__device__ __forceinline__ bool key_visible(const float* mask_row, bool causal, int64_t i,
                                            int64_t j) {
    return (mask_row == nullptr || mask_row[j] != 0.0f) && (!causal || j <= i);
}

// z_ij: 1 / (1 - p) where element (bh, i, j) is kept, 0 where dropped, 1 without dropout.
__device__ __forceinline__ float dropout_factor(const Geometry& g, int64_t bh, int64_t i,
                                                int64_t j) {
    if (!g.drop) return 1.0f;
    const uint64_t flat = static_cast<uint64_t>((bh * g.lq + i) * g.lk + j);
    const Philox4 bits = philox4x32_10(g.offset + flat / 4, g.seed);
    const uint32_t lane_bits = (flat & 3) == 0   ? bits.v[0]
                               : (flat & 3) == 1 ? bits.v[1]
                               : (flat & 3) == 2 ? bits.v[2]
                                                 : bits.v[3];
    return philox_uniform(lane_bits) < g.keep ? g.inv_keep : 0.0f;
}

// Row `row` of a [rows, d] matrix of T into this lane's NT registers (zeros past d).
template <int NT, typename T>
__device__ __forceinline__ void load_row(const T* __restrict__ src, int64_t d, int lane,
                                         float (&dst)[NT]) {
#pragma unroll
    for (int t = 0; t < NT; ++t) {
        const int64_t e = lane + t * kWarp;
        dst[t] = e < d ? convert<float>(src[e]) : 0.0f;
    }
}

template <int NT, typename T>
__device__ __forceinline__ void store_row(const float (&src)[NT], float factor, int64_t d, int lane,
                                          T* __restrict__ dst) {
#pragma unroll
    for (int t = 0; t < NT; ++t) {
        const int64_t e = lane + t * kWarp;
        if (e < d) dst[e] = convert<T>(src[t] * factor);
    }
}

// The dot product of this lane's registers with row `row` of a shared tile, summed over the warp.
template <int NT>
__device__ __forceinline__ float warp_dot(const float (&x)[NT], const float* __restrict__ tile_row,
                                          int64_t d, int lane) {
    float part = 0.0f;
#pragma unroll
    for (int t = 0; t < NT; ++t) {
        const int64_t e = lane + t * kWarp;
        if (e < d) part = fmaf(x[t], tile_row[e], part);
    }
    return warp_reduce(part, SumOp());
}

// rows x d elements of T from src (contiguous) into a float tile, by the whole block.
template <typename T>
__device__ __forceinline__ void load_tile(const T* __restrict__ src, int64_t count,
                                          float* __restrict__ tile) {
    for (int64_t e = threadIdx.x; e < count; e += blockDim.x)
        tile[e] = convert<float>(src[e]);
}

// Where this thread works: its block's (b, h) pair and first row, its warp's row, its lane, and
// the key-mask row of its batch (nullptr without a mask).
struct Place {
    int64_t bh, first, row;
    int lane;
    const float* mask_row;
};

__device__ __forceinline__ Place place(const Geometry& g, const float* mask) {
    const int64_t bh = blockIdx.x / g.row_tiles;
    const int64_t first = (blockIdx.x % g.row_tiles) * kRowsPerBlock;
    return Place{bh, first, first + threadIdx.x / kWarp, static_cast<int>(threadIdx.x % kWarp),
                 mask ? mask + (bh / g.heads) * g.lk : nullptr};
}

// K and V rows [j0, j0 + cols) of pair bh into the block's shared tiles, once every warp is done
// with the previous ones.
template <typename T>
__device__ __forceinline__ void load_kv_tiles(const T* __restrict__ k, const T* __restrict__ v,
                                              const Geometry& g, int64_t bh, int64_t j0,
                                              int64_t cols, float* k_tile, float* v_tile) {
    __syncthreads();
    load_tile(k + (bh * g.lk + j0) * g.d, cols * g.d, k_tile);
    load_tile(v + (bh * g.lk + j0) * g.d, cols * g.d, v_tile);
    __syncthreads();
}

template <typename T, int NT>
__global__ void __launch_bounds__(kRowsPerBlock* kWarp)
    attention_forward_kernel(const T* __restrict__ q, const T* __restrict__ k,
                             const T* __restrict__ v, const float* __restrict__ mask,
                             T* __restrict__ out, float* __restrict__ lse, Geometry g) {
    extern __shared__ float smem[];
    const int64_t D = g.d;
    float* k_tile = smem;
    float* v_tile = smem + kTile * D;
    const auto [bh, i0, i, lane, mask_row] = place(g, mask);
    const bool row_ok = i < g.lq;  // the same for the whole warp

    float q_row[NT], acc[NT];
    if (row_ok) load_row<NT>(q + (bh * g.lq + i) * D, D, lane, q_row);
#pragma unroll
    for (int t = 0; t < NT; ++t)
        acc[t] = 0.0f;
    float m = -CUDART_INF_F, l = 0.0f;

    const int64_t end = cuda_attention::key_end(g.lk, g.causal, i0);
    for (int64_t j0 = 0; j0 < end; j0 += kTile) {
        const int64_t cols = end - j0 < kTile ? end - j0 : kTile;
        load_kv_tiles(k, v, g, bh, j0, cols, k_tile, v_tile);
        if (!row_ok) continue;
        for (int64_t c = 0; c < cols; ++c) {
            const int64_t j = j0 + c;
            if (!key_visible(mask_row, g.causal, i, j)) continue;
            const float s = warp_dot(q_row, k_tile + c * D, D, lane) * g.scale;
            if (s > m) {  // the running max grows: rescale what was summed under the old one
                const float rescale = expf(m - s);  // 0 while m is -inf
                l *= rescale;
#pragma unroll
                for (int t = 0; t < NT; ++t)
                    acc[t] *= rescale;
                m = s;
            }
            const float p = expf(s - m);
            l += p;
            const float pz = p * dropout_factor(g, bh, i, j);
            const float* v_row = v_tile + c * D;
#pragma unroll
            for (int t = 0; t < NT; ++t) {
                const int64_t e = lane + t * kWarp;
                if (e < D) acc[t] = fmaf(pz, v_row[e], acc[t]);
            }
        }
    }
    if (!row_ok) return;
    T* out_row = out + (bh * g.lq + i) * D;
    if (l > 0.0f) {
        store_row<NT>(acc, 1.0f / l, D, lane, out_row);
        if (lane == 0) lse[bh * g.lq + i] = m + logf(l);
    } else {  // no visible key
        const float zeros[NT] = {};
        store_row<NT>(zeros, 0.0f, D, lane, out_row);
        if (lane == 0) lse[bh * g.lq + i] = -CUDART_INF_F;
    }
}

// Delta_i = sum_d dO_id O_id, one warp per row of [rows, D].
template <typename T, int NT>
__global__ void __launch_bounds__(kRowsPerBlock* kWarp)
    attention_delta_kernel(const T* __restrict__ gout, const T* __restrict__ out, int64_t rows,
                           int64_t d, float* __restrict__ delta) {
    const int lane = threadIdx.x % kWarp;
    const int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
    if (r >= rows) return;
    float go[NT], o[NT];
    load_row<NT>(gout + r * d, d, lane, go);
    load_row<NT>(out + r * d, d, lane, o);
    float part = 0.0f;
#pragma unroll
    for (int t = 0; t < NT; ++t)
        part = fmaf(go[t], o[t], part);
    part = warp_reduce(part, SumOp());
    if (lane == 0) delta[r] = part;
}

// dQ: one warp per query row, over the visible keys in K/V tiles.
template <typename T, int NT>
__global__ void __launch_bounds__(kRowsPerBlock* kWarp)
    attention_dq_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                        const float* __restrict__ mask, const float* __restrict__ lse,
                        const float* __restrict__ delta, const T* __restrict__ gout,
                        T* __restrict__ gq, Geometry g) {
    extern __shared__ float smem[];
    const int64_t D = g.d;
    float* k_tile = smem;
    float* v_tile = smem + kTile * D;
    const auto [bh, i0, i, lane, mask_row] = place(g, mask);
    const bool row_ok = i < g.lq;

    float q_row[NT], go_row[NT], dq[NT];
    float row_lse = -CUDART_INF_F, row_delta = 0.0f;
    if (row_ok) {
        load_row<NT>(q + (bh * g.lq + i) * D, D, lane, q_row);
        load_row<NT>(gout + (bh * g.lq + i) * D, D, lane, go_row);
        row_lse = lse[bh * g.lq + i];
        row_delta = delta[bh * g.lq + i];
    }
#pragma unroll
    for (int t = 0; t < NT; ++t)
        dq[t] = 0.0f;
    const bool has_keys = row_ok && isfinite(row_lse);

    const int64_t end = cuda_attention::key_end(g.lk, g.causal, i0);
    for (int64_t j0 = 0; j0 < end; j0 += kTile) {
        const int64_t cols = end - j0 < kTile ? end - j0 : kTile;
        load_kv_tiles(k, v, g, bh, j0, cols, k_tile, v_tile);
        if (!has_keys) continue;
        for (int64_t c = 0; c < cols; ++c) {
            const int64_t j = j0 + c;
            if (!key_visible(mask_row, g.causal, i, j)) continue;
            const float* k_row = k_tile + c * D;
            const float s = warp_dot(q_row, k_row, D, lane) * g.scale;
            const float p = expf(s - row_lse);
            const float dp =
                warp_dot(go_row, v_tile + c * D, D, lane) * dropout_factor(g, bh, i, j);
            const float ds = p * (dp - row_delta);
#pragma unroll
            for (int t = 0; t < NT; ++t) {
                const int64_t e = lane + t * kWarp;
                if (e < D) dq[t] = fmaf(ds, k_row[e], dq[t]);
            }
        }
    }
    if (row_ok) store_row<NT>(dq, g.scale, D, lane, gq + (bh * g.lq + i) * D);
}

// dK and dV: one warp per key row, over the queries that can see it, in Q/dO tiles.
template <typename T, int NT>
__global__ void __launch_bounds__(kRowsPerBlock* kWarp)
    attention_dkdv_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                          const float* __restrict__ mask, const float* __restrict__ lse,
                          const float* __restrict__ delta, const T* __restrict__ gout,
                          T* __restrict__ gk, T* __restrict__ gv, Geometry g) {
    extern __shared__ float smem[];
    const int64_t D = g.d;
    float* q_tile = smem;
    float* go_tile = smem + kTile * D;
    float* lse_tile = smem + 2 * kTile * D;
    float* delta_tile = lse_tile + kTile;
    const auto [bh, j0, j, lane, mask_row] = place(g, mask);
    const bool key_ok = j < g.lk;
    // A masked key has p = 0 for every query: its gradients are 0.
    const bool live = key_ok && (mask_row == nullptr || mask_row[j] != 0.0f);

    float k_row[NT], v_row[NT], dk[NT], dv[NT];
    if (key_ok) {
        load_row<NT>(k + (bh * g.lk + j) * D, D, lane, k_row);
        load_row<NT>(v + (bh * g.lk + j) * D, D, lane, v_row);
    }
#pragma unroll
    for (int t = 0; t < NT; ++t)
        dk[t] = dv[t] = 0.0f;

    for (int64_t r0 = cuda_attention::query_begin(g.lq, g.causal, j0); r0 < g.lq; r0 += kTile) {
        const int64_t rows = g.lq - r0 < kTile ? g.lq - r0 : kTile;
        __syncthreads();
        load_tile(q + (bh * g.lq + r0) * D, rows * D, q_tile);
        load_tile(gout + (bh * g.lq + r0) * D, rows * D, go_tile);
        for (int64_t e = threadIdx.x; e < rows; e += blockDim.x) {
            lse_tile[e] = lse[bh * g.lq + r0 + e];
            delta_tile[e] = delta[bh * g.lq + r0 + e];
        }
        __syncthreads();
        if (!live) continue;
        for (int64_t r = 0; r < rows; ++r) {
            const int64_t i = r0 + r;
            const float row_lse = lse_tile[r];
            if (!isfinite(row_lse) || (g.causal && j > i)) continue;
            const float* q_r = q_tile + r * D;
            const float* go_r = go_tile + r * D;
            const float s = warp_dot(k_row, q_r, D, lane) * g.scale;
            const float p = expf(s - row_lse);
            const float z = dropout_factor(g, bh, i, j);
            const float dp = warp_dot(v_row, go_r, D, lane) * z;
            const float ds = p * (dp - delta_tile[r]);
            const float pz = p * z;
#pragma unroll
            for (int t = 0; t < NT; ++t) {
                const int64_t e = lane + t * kWarp;
                if (e < D) {
                    dv[t] = fmaf(pz, go_r[e], dv[t]);
                    dk[t] = fmaf(ds, q_r[e], dk[t]);
                }
            }
        }
    }
    if (!key_ok) return;
    store_row<NT>(dk, g.scale, D, lane, gk + (bh * g.lk + j) * D);
    store_row<NT>(dv, 1.0f, D, lane, gv + (bh * g.lk + j) * D);
}

// body(T{}, std::integral_constant<int, NT>{}) for the plan's dtype and per-lane count.
template <typename F>
void dispatch_attention(DType dtype, int per_lane, const char* op, F&& body) {
    dispatch_float(dtype, op, [&](auto tag) {
        using T = decltype(tag);
        if constexpr (std::is_same_v<T, double>) {
            MDL_ASSERT(false, op, ": F64 runs the composite (ops/cuda/attention_plan.h)");
        } else {
            switch (per_lane) {
                case 1:
                    body(T{}, std::integral_constant<int, 1>{});
                    return;
                case 2:
                    body(T{}, std::integral_constant<int, 2>{});
                    return;
                case 3:
                    body(T{}, std::integral_constant<int, 3>{});
                    return;
                case 4:
                    body(T{}, std::integral_constant<int, 4>{});
                    return;
                default:
                    MDL_ASSERT(false, op, ": ", per_lane, " elements per lane");
            }
        }
    });
}

const cuda_attention::Plan& checked(const cuda_attention::Plan& p, const char* op) {
    MDL_ASSERT(p.fused, op, ": not fused here (", p.why_not, "); has_fused_attention said so");
    return p;
}

}  // namespace

bool CudaKernels::has_fused_attention(const AttentionArgs& args, DType dtype) const {
    return cuda_attention::plan(args, dtype).fused;
}

void CudaKernels::attention(const Tensor& q, const Tensor& k, const Tensor& v,
                            const Tensor& key_mask, Tensor& out, Tensor& lse,
                            const AttentionArgs& args) {
    const cuda_attention::Plan& p = checked(cuda_attention::plan(args, q.dtype()), "attention");
    if (p.forward_blocks == 0) return;
    const int dev = cuda::device_of(q);
    cuda::DeviceGuard guard(dev);
    const Geometry g = geometry(args, p.query_tiles);
    const float* mask = key_mask.defined() ? key_mask.raw<const float>() : nullptr;
    dispatch_attention(q.dtype(), p.per_lane, "attention", [&](auto tag, auto nt) {
        using T = decltype(tag);
        attention_forward_kernel<T, decltype(nt)::value>
            <<<static_cast<unsigned>(p.forward_blocks), p.threads,
               static_cast<size_t>(p.forward_shared), cuda::stream(dev)>>>(
                q.raw<const T>(), k.raw<const T>(), v.raw<const T>(), mask, out.raw<T>(),
                lse.raw<float>(), g);
        MDL_CUDA_LAUNCH_CHECK();
    });
}

void CudaKernels::attention_backward(const Tensor& q, const Tensor& k, const Tensor& v,
                                     const Tensor& key_mask, const Tensor& out, const Tensor& lse,
                                     const Tensor& gout, Tensor& gq, Tensor& gk, Tensor& gv,
                                     const AttentionArgs& args) {
    const cuda_attention::Plan& p =
        checked(cuda_attention::plan(args, q.dtype()), "attention_backward");
    const int dev = cuda::device_of(q);
    cuda::DeviceGuard guard(dev);
    const cudaStream_t stream = cuda::stream(dev);
    const float* mask = key_mask.defined() ? key_mask.raw<const float>() : nullptr;
    const int64_t rows = args.batch * args.heads * args.lq;
    Tensor delta = Tensor::empty({rows}, DType::F32, q.device());
    dispatch_attention(q.dtype(), p.per_lane, "attention_backward", [&](auto tag, auto nt) {
        using T = decltype(tag);
        constexpr int NT = decltype(nt)::value;
        if (p.forward_blocks > 0) {
            attention_delta_kernel<T, NT>
                <<<static_cast<unsigned>(ceil_div(rows, kRowsPerBlock)), p.threads, 0, stream>>>(
                    gout.raw<const T>(), out.raw<const T>(), rows, args.d, delta.raw<float>());
            MDL_CUDA_LAUNCH_CHECK();
            attention_dq_kernel<T, NT><<<static_cast<unsigned>(p.forward_blocks), p.threads,
                                         static_cast<size_t>(p.forward_shared), stream>>>(
                q.raw<const T>(), k.raw<const T>(), v.raw<const T>(), mask, lse.raw<const float>(),
                delta.raw<const float>(), gout.raw<const T>(), gq.raw<T>(),
                geometry(args, p.query_tiles));
            MDL_CUDA_LAUNCH_CHECK();
        }
        if (p.key_blocks > 0) {
            attention_dkdv_kernel<T, NT><<<static_cast<unsigned>(p.key_blocks), p.threads,
                                           static_cast<size_t>(p.key_shared), stream>>>(
                q.raw<const T>(), k.raw<const T>(), v.raw<const T>(), mask, lse.raw<const float>(),
                delta.raw<const float>(), gout.raw<const T>(), gk.raw<T>(), gv.raw<T>(),
                geometry(args, p.key_tiles));
            MDL_CUDA_LAUNCH_CHECK();
        }
    });
}

}  // namespace minidl
