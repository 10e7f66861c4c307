// ops/cpu/attention_cpu.cpp — flash attention on the CPU, forward and backward (math in
// ops/attention.h).
//
// One (batch, head) pair is one unit of work on the pool: its q, k, v (and dO, O) slices are
// converted once into float (double for F64) row-major buffers, then walked tile by tile with
// Eigen block products. Forward: for each tile of kBr query rows, the key tiles of kBc rows in
// order, with the online softmax — per row, the running max m, the running sum l of exp(s - m),
// and the accumulator acc rescaled by exp(m_old - m_new) whenever the max grows:
//   m' = max(m, max_j s_j);  l' = l e^(m - m') + sum_j e^(s_j - m');  acc' = acc e^(m - m') + P~ V
// (P~ the tile's exp(s - m'), dropped and rescaled by Z), O = acc / l, lse = m + log l.
// Backward (Dao 2023's loop order): for each key tile, every query tile; P = exp(S - lse) is
// recomputed, dV and dK of the key tile accumulate over the query tiles, dQ over the key tiles —
// each sum in a fixed order, so the result is the same for any thread count.
// GCC 12 reports a false "(may be) used uninitialized" inside its own AVX-512 intrinsics when it
// inlines Eigen's GEMM packing routines (as in ops/cpu/matmul_cpu.cpp): silenced for this file.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#include <Eigen/Core>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "core/parallel.h"
#include "core/philox.h"
#include "ops/cpu/cpu_kernels.h"
#include "ops/cpu/dispatch.h"

namespace minidl {

using cpu::acc_t;
using cpu::dispatch_float;

namespace {

constexpr int64_t kBr = 64;  // query rows per tile
constexpr int64_t kBc = 64;  // key rows per tile

template <typename A>
using Mat = Eigen::Matrix<A, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename A>
using MapC = Eigen::Map<const Mat<A>>;

// n rows of D elements from src, as A (16-bit values through float).
template <typename A, typename T>
void load(const T* src, int64_t n, int64_t D, Mat<A>& dst) {
    if constexpr (std::is_same_v<T, A>) {
        dst = MapC<A>(src, n, D);
    } else {
        dst.resize(n, D);
        for (int64_t i = 0; i < n * D; ++i)
            dst.data()[i] = static_cast<A>(static_cast<float>(src[i]));
    }
}

template <typename T, typename A>
void store(const Mat<A>& src, T* dst) {
    for (int64_t i = 0; i < src.size(); ++i)
        dst[i] = static_cast<T>(src.data()[i]);
}

// The dropout draw of flat element `flat`: 1 / keep or 0 (Philox block offset + flat / 4).
struct DropoutDraw {
    uint64_t seed, offset;
    float keep;
    uint64_t cached_block = ~uint64_t{0};
    Philox4 bits{};
    bool kept(uint64_t flat) {
        const uint64_t block = offset + flat / 4;
        if (block != cached_block) {
            bits = philox4x32_10(block, seed);
            cached_block = block;
        }
        return philox_uniform(bits.v[flat % 4]) < keep;
    }
};

// Whether key j is visible from query i.
inline bool visible(const float* mask_row, bool causal, int64_t i, int64_t j) {
    return (mask_row == nullptr || mask_row[j] != 0.0f) && (!causal || j <= i);
}

template <typename T>
void forward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_mask, Tensor& out,
             Tensor& lse, const AttentionArgs& a) {
    using A = acc_t<T>;
    const int64_t H = a.heads, Lq = a.lq, Lk = a.lk, D = a.d;
    const T* Q = q.raw<T>();
    const T* K = k.raw<T>();
    const T* V = v.raw<T>();
    const float* mask = key_mask.defined() ? key_mask.raw<float>() : nullptr;
    T* O = out.raw<T>();
    A* LSE = lse.raw<A>();
    const A scale = static_cast<A>(a.scale);
    const bool drop = a.dropout_p > 0;
    const A inv_keep = drop ? static_cast<A>(1.0 / (1.0 - a.dropout_p)) : A(1);
    constexpr A kNegInf = -std::numeric_limits<A>::infinity();

    parallel_for(a.batch * H, 1, [&](int64_t u0, int64_t u1) {
        Mat<A> q_all, k_all, v_all, s, acc;
        std::vector<A> m, l;
        DropoutDraw draw{a.seed, a.offset, static_cast<float>(1.0 - a.dropout_p)};
        for (int64_t bh = u0; bh < u1; ++bh) {
            const int64_t b = bh / H;
            const float* mask_row = mask ? mask + b * Lk : nullptr;
            load<A>(Q + bh * Lq * D, Lq, D, q_all);
            load<A>(K + bh * Lk * D, Lk, D, k_all);
            load<A>(V + bh * Lk * D, Lk, D, v_all);
            Mat<A> o_all(Lq, D);
            for (int64_t i0 = 0; i0 < Lq; i0 += kBr) {
                const int64_t rows = std::min(kBr, Lq - i0);
                acc.setZero(rows, D);
                m.assign(static_cast<size_t>(rows), kNegInf);
                l.assign(static_cast<size_t>(rows), A(0));
                for (int64_t j0 = 0; j0 < Lk; j0 += kBc) {
                    if (a.causal && j0 > i0 + rows - 1) break;
                    const int64_t cols = std::min(kBc, Lk - j0);
                    s.noalias() =
                        q_all.middleRows(i0, rows) * k_all.middleRows(j0, cols).transpose() * scale;
                    for (int64_t r = 0; r < rows; ++r) {
                        const int64_t i = i0 + r;
                        A tile_max = kNegInf;
                        for (int64_t c = 0; c < cols; ++c) {
                            A& x = s(r, c);
                            if (!visible(mask_row, a.causal, i, j0 + c)) x = kNegInf;
                            tile_max = std::max(tile_max, x);
                        }
                        const A m_new = std::max(m[r], tile_max);
                        if (m_new == kNegInf) {  // no visible key yet: nothing to add
                            s.row(r).setZero();
                            continue;
                        }
                        const A rescale = std::exp(m[r] - m_new);  // 0 when m[r] = -inf
                        A row_sum = 0;
                        for (int64_t c = 0; c < cols; ++c) {
                            const A e = std::exp(s(r, c) - m_new);
                            row_sum += e;
                            s(r, c) = e;
                        }
                        if (drop) {
                            const uint64_t flat0 = static_cast<uint64_t>((bh * Lq + i) * Lk + j0);
                            for (int64_t c = 0; c < cols; ++c)
                                s(r, c) = draw.kept(flat0 + static_cast<uint64_t>(c))
                                              ? s(r, c) * inv_keep
                                              : A(0);
                        }
                        l[r] = l[r] * rescale + row_sum;
                        acc.row(r) *= rescale;
                        m[r] = m_new;
                    }
                    acc.noalias() += s * v_all.middleRows(j0, cols);
                }
                for (int64_t r = 0; r < rows; ++r) {
                    if (l[r] > 0) {
                        o_all.row(i0 + r) = acc.row(r) / l[r];
                        LSE[bh * Lq + i0 + r] = m[r] + std::log(l[r]);
                    } else {  // every key masked
                        o_all.row(i0 + r).setZero();
                        LSE[bh * Lq + i0 + r] = kNegInf;
                    }
                }
            }
            store(o_all, O + bh * Lq * D);
        }
    });
}

template <typename T>
void backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_mask,
              const Tensor& out, const Tensor& lse, const Tensor& gout, Tensor& gq, Tensor& gk,
              Tensor& gv, const AttentionArgs& a) {
    using A = acc_t<T>;
    const int64_t H = a.heads, Lq = a.lq, Lk = a.lk, D = a.d;
    const float* mask = key_mask.defined() ? key_mask.raw<float>() : nullptr;
    const A* LSE = lse.raw<A>();
    const A scale = static_cast<A>(a.scale);
    const bool drop = a.dropout_p > 0;
    const A inv_keep = drop ? static_cast<A>(1.0 / (1.0 - a.dropout_p)) : A(1);

    parallel_for(a.batch * H, 1, [&](int64_t u0, int64_t u1) {
        Mat<A> q_all, k_all, v_all, o_all, do_all, p, dp, z;
        DropoutDraw draw{a.seed, a.offset, static_cast<float>(1.0 - a.dropout_p)};
        for (int64_t bh = u0; bh < u1; ++bh) {
            const int64_t b = bh / H;
            const float* mask_row = mask ? mask + b * Lk : nullptr;
            load<A>(q.raw<T>() + bh * Lq * D, Lq, D, q_all);
            load<A>(k.raw<T>() + bh * Lk * D, Lk, D, k_all);
            load<A>(v.raw<T>() + bh * Lk * D, Lk, D, v_all);
            load<A>(out.raw<T>() + bh * Lq * D, Lq, D, o_all);
            load<A>(gout.raw<T>() + bh * Lq * D, Lq, D, do_all);
            // Delta_i = sum_d dO_id O_id = sum_j P_ij dP_ij.
            const Eigen::Matrix<A, Eigen::Dynamic, 1> delta =
                (do_all.array() * o_all.array()).rowwise().sum();
            Mat<A> dq = Mat<A>::Zero(Lq, D), dk = Mat<A>::Zero(Lk, D), dv = Mat<A>::Zero(Lk, D);
            for (int64_t j0 = 0; j0 < Lk; j0 += kBc) {
                const int64_t cols = std::min(kBc, Lk - j0);
                for (int64_t i0 = 0; i0 < Lq; i0 += kBr) {
                    const int64_t rows = std::min(kBr, Lq - i0);
                    if (a.causal && j0 > i0 + rows - 1) continue;
                    p.noalias() =
                        q_all.middleRows(i0, rows) * k_all.middleRows(j0, cols).transpose() * scale;
                    if (drop) z.resize(rows, cols);
                    for (int64_t r = 0; r < rows; ++r) {
                        const int64_t i = i0 + r;
                        const A row_lse = LSE[bh * Lq + i];
                        for (int64_t c = 0; c < cols; ++c) {
                            const bool on =
                                std::isfinite(row_lse) && visible(mask_row, a.causal, i, j0 + c);
                            p(r, c) = on ? std::exp(p(r, c) - row_lse) : A(0);
                        }
                        if (drop) {
                            const uint64_t flat0 = static_cast<uint64_t>((bh * Lq + i) * Lk + j0);
                            for (int64_t c = 0; c < cols; ++c)
                                z(r, c) =
                                    draw.kept(flat0 + static_cast<uint64_t>(c)) ? inv_keep : A(0);
                        }
                    }
                    const auto d_o = do_all.middleRows(i0, rows);
                    if (drop) {
                        dv.middleRows(j0, cols).noalias() += p.cwiseProduct(z).transpose() * d_o;
                        dp.noalias() = d_o * v_all.middleRows(j0, cols).transpose();
                        dp = dp.cwiseProduct(z);
                    } else {
                        dv.middleRows(j0, cols).noalias() += p.transpose() * d_o;
                        dp.noalias() = d_o * v_all.middleRows(j0, cols).transpose();
                    }
                    // dS = P (dP - Delta), reusing dp.
                    dp = p.cwiseProduct(dp - delta.segment(i0, rows).replicate(1, cols));
                    dq.middleRows(i0, rows).noalias() += dp * k_all.middleRows(j0, cols) * scale;
                    dk.middleRows(j0, cols).noalias() +=
                        dp.transpose() * q_all.middleRows(i0, rows) * scale;
                }
            }
            store(dq, gq.raw<T>() + bh * Lq * D);
            store(dk, gk.raw<T>() + bh * Lk * D);
            store(dv, gv.raw<T>() + bh * Lk * D);
        }
    });
}

}  // namespace

void CpuKernels::attention(const Tensor& q, const Tensor& k, const Tensor& v,
                           const Tensor& key_mask, Tensor& out, Tensor& lse,
                           const AttentionArgs& args) {
    dispatch_float(q.dtype(), "attention",
                   [&](auto tag) { forward<decltype(tag)>(q, k, v, key_mask, out, lse, args); });
}

void CpuKernels::attention_backward(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& key_mask, const Tensor& out, const Tensor& lse,
                                    const Tensor& gout, Tensor& gq, Tensor& gk, Tensor& gv,
                                    const AttentionArgs& args) {
    dispatch_float(q.dtype(), "attention_backward", [&](auto tag) {
        backward<decltype(tag)>(q, k, v, key_mask, out, lse, gout, gq, gk, gv, args);
    });
}

}  // namespace minidl
