// ops/attention.h — scaled dot-product attention, differentiable, fused on the CPU.
//
// Vaswani et al. 2017, "Attention Is All You Need", arXiv:1706.03762. Per batch b and head h,
// with q [Lq, D], k and v [Lk, D] and s = scale (default 1 / sqrt(D)):
//   S = s q k^T + M          [Lq, Lk]   M_ij = -inf where key j is padding (key_mask[b, j] = 0)
//                                        or, causal, where j > i; 0 elsewhere
//   P = softmax_j(S)                     row by row
//   O = (P * Z) v            [Lq, D]    Z_ij = Bernoulli(1 - p) / (1 - p), attention dropout
// Backward, from dO (with lse_i = log sum_j exp S_ij and Delta_i = sum_d dO_id O_id):
//   dv = (P * Z)^T dO
//   dP = (dO v^T) * Z
//   dS = P * (dP - Delta)                  (softmax's Jacobian; Delta_i = sum_j P_ij dP_ij)
//   dq = s dS k,   dk = s dS^T q
//
// The CPU kernel is flash attention (Dao et al. 2022, arXiv:2205.14135; Dao 2023,
// arXiv:2307.08691): queries in tiles of Br rows against keys in tiles of Bc, with a running max
// m_i and running sum l_i per query row (the online softmax of Milakov & Gimelshein 2018,
// arXiv:1805.02867), so the forward never holds an [Lq, Lk] matrix: only O and lse = m + log l
// [B, H, Lq] are kept. The backward recomputes each tile's scores and P = exp(S - lse) from them.
//
// Dropout: Z_ij of element (b, h, i, j) is drawn from the Philox counter of its flat index
// ((b H + h) Lq + i) Lk + j — the same draw as ops/dropout.h over a [B, H, Lq, Lk] tensor with
// the same generator state — so the recomputation in backward replays it exactly, CPU and CUDA
// agree, and the composite softmax -> dropout -> matmul draws the same mask.
//
// A query row whose keys are all masked has no distribution: its output and gradients are 0
// (PyTorch's composite would give NaN).
//
// Shapes: q [B, H, Lq, D], k and v [B, H, Lk, D], key_mask [B, Lk] (1 = attend, 0 = padding,
// Hugging Face's attention_mask; any dtype), causal needs Lq == Lk. Output [B, H, Lq, D], the
// dtype of q (F16/BF16 compute in float). Under autocast q, k and v are cast to the low dtype
// first (PyTorch's autocast list). On CUDA the fused kernels (ops/cuda/attention.cu) take F32,
// F16 and BF16 with D <= 128; anything else (F64, larger heads) runs as the composite of matmul,
// softmax and dropout, which holds the [B, H, Lq, Lk] scores (ops/cuda/attention_plan.h).
#pragma once

#include "core/rng.h"
#include "core/tensor.h"

namespace minidl {

struct AttentionOptions {
    Tensor key_mask = {};    // [B, Lk], 1 = attend, 0 = padding; undefined: every key
    bool causal = false;     // query i sees keys j <= i
    double dropout_p = 0.0;  // attention dropout (applied only when training)
    bool training = true;
    double scale = 0.0;              // 0: 1 / sqrt(D)
    Generator* generator = nullptr;  // the dropout's generator (nullptr: the default one)
};

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const AttentionOptions& options = {});

// The same attention as a composite of matmul, softmax and dropout (autograd through each): what
// runs where the kernel table has no fused attention, and the tests' unfused reference. It holds
// the [B, H, Lq, Lk] scores, and a query row with every key masked gives NaN.
Tensor attention_composite(const Tensor& q, const Tensor& k, const Tensor& v,
                           const AttentionOptions& options = {});

}  // namespace minidl
