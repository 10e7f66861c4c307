// ops/attention.cpp — scaled dot-product attention (math in ops/attention.h): argument checks,
// the fused kernels with their backward node, and the composite form for tables without them.
#include "ops/attention.h"

#include <cmath>
#include <limits>

#include "core/autocast.h"
#include "core/autograd.h"
#include "core/kernels.h"
#include "ops/check_args.h"
#include "ops/dropout.h"
#include "ops/elementwise.h"
#include "ops/matmul.h"
#include "ops/softmax.h"

namespace minidl {

using namespace ops_detail;

namespace {

constexpr const char* kOp = "scaled_dot_product_attention";

// The checked arguments: the kernel's sizes and the key mask as F32 [B, Lk] (or undefined).
struct Prepared {
    AttentionArgs args;
    Tensor key_mask;
    double dropout_p = 0.0;  // 0 when not training
};

Prepared prepare(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& o) {
    for (auto [name, t] : {std::pair{"q", &q}, std::pair{"k", &k}, std::pair{"v", &v}}) {
        check_floating(kOp, name, *t);
        check_dim(kOp, name, *t, 4);
    }
    check_same_dtype(kOp, "q", q, "k", k);
    check_same_dtype(kOp, "q", q, "v", v);
    check_same_device(kOp, "q", q, "k", k);
    check_same_device(kOp, "q", q, "v", v);
    const Shape& qs = q.shape();
    const Shape& ks = k.shape();
    MDL_CHECK(ks[0] == qs[0] && ks[1] == qs[1] && ks[3] == qs[3], ShapeError, kOp,
              ": k must be [B, H, Lk, D] with q's B, H and D, got q ", shape_str(qs), " and k ",
              shape_str(ks));
    MDL_CHECK(v.shape() == ks, ShapeError, kOp, ": v must have k's shape ", shape_str(ks), ", got ",
              shape_str(v.shape()));
    MDL_CHECK(!o.causal || qs[2] == ks[2], ShapeError, kOp,
              ": causal attention needs as many queries as keys, got Lq = ", qs[2],
              " and Lk = ", ks[2]);
    MDL_CHECK(o.dropout_p >= 0.0 && o.dropout_p < 1.0, ValueError, kOp,
              ": dropout_p must be in [0, 1), got ", o.dropout_p);
    MDL_CHECK(o.scale >= 0.0 && std::isfinite(o.scale), ValueError, kOp,
              ": scale must be finite and positive (0: 1 / sqrt(D)), got ", o.scale);
    Prepared p;
    if (o.key_mask.defined()) {
        check_dim(kOp, "key_mask", o.key_mask, 2);
        check_same_device(kOp, "q", q, "key_mask", o.key_mask);
        MDL_CHECK(o.key_mask.shape()[0] == qs[0] && o.key_mask.shape()[1] == ks[2], ShapeError, kOp,
                  ": key_mask must be [B, Lk] = [", qs[0], ", ", ks[2], "], got ",
                  shape_str(o.key_mask.shape()));
        NoGradGuard no_grad;
        p.key_mask = o.key_mask.dtype() == DType::F32 ? o.key_mask : o.key_mask.to(DType::F32);
    }
    p.dropout_p = o.training ? o.dropout_p : 0.0;
    p.args =
        AttentionArgs{.batch = qs[0],
                      .heads = qs[1],
                      .lq = qs[2],
                      .lk = ks[2],
                      .d = qs[3],
                      .scale = o.scale > 0 ? o.scale : 1.0 / std::sqrt(static_cast<double>(qs[3])),
                      .causal = o.causal,
                      .dropout_p = p.dropout_p};
    return p;
}

}  // namespace

void Kernels::attention(const Tensor&, const Tensor&, const Tensor&, const Tensor&, Tensor&,
                        Tensor&, const AttentionArgs&) {
    MDL_ASSERT(false, "attention: this kernel table has no fused attention");
}

void Kernels::attention_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                 const Tensor&, const Tensor&, const Tensor&, Tensor&, Tensor&,
                                 Tensor&, const AttentionArgs&) {
    MDL_ASSERT(false, "attention_backward: this kernel table has no fused attention");
}

Tensor scaled_dot_product_attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in,
                                    const AttentionOptions& options) {
    // Under autocast: in the low dtype, as PyTorch's list has it (core/autocast.h).
    const Tensor q = autocast::cast_low(q_in), k = autocast::cast_low(k_in),
                 v = autocast::cast_low(v_in);
    Prepared p = prepare(q, k, v, options);
    Kernels& kernels = kernels_for(q.device());
    if (!kernels.has_fused_attention(p.args, q.dtype()))
        return attention_composite(q, k, v, options);

    AttentionArgs& args = p.args;
    if (p.dropout_p > 0) {
        Generator& g = options.generator ? *options.generator : default_generator();
        const uint64_t elements = static_cast<uint64_t>(args.batch * args.heads) *
                                  static_cast<uint64_t>(args.lq) * static_cast<uint64_t>(args.lk);
        args.seed = g.seed();
        args.offset = g.reserve((elements + 3) / 4);
    }
    Tensor out = Tensor::empty(q.shape(), q.dtype(), q.device());
    Tensor lse = Tensor::empty({args.batch, args.heads, args.lq},
                               q.dtype() == DType::F64 ? DType::F64 : DType::F32, q.device());
    if (out.numel() > 0) kernels.attention(q, k, v, p.key_mask, out, lse, args);
    if (autograd::should_record({q, k, v})) {
        SavedTensor sq(q, kOp), sk(k, kOp), sv(v, kOp), so(out, kOp);
        Tensor mask = p.key_mask, saved_lse = lse;
        // The backward kernel computes the three gradients in one pass over the tiles.
        autograd::record(
            kOp, {q, k, v}, out,
            [sq, sk, sv, so, mask, saved_lse, args](const Tensor& gy, const std::vector<bool>&) {
                const Tensor& qq = sq.get();
                Tensor gq = Tensor::empty_like(qq), gk = Tensor::empty_like(sk.get()),
                       gv = Tensor::empty_like(sv.get());
                if (gy.numel() > 0)
                    kernels_for(gy.device())
                        .attention_backward(qq, sk.get(), sv.get(), mask, so.get(), saved_lse, gy,
                                            gq, gk, gv, args);
                else {
                    kernels_for(gy.device()).fill(gq, 0.0);
                    kernels_for(gy.device()).fill(gk, 0.0);
                    kernels_for(gy.device()).fill(gv, 0.0);
                }
                return std::vector<Tensor>{gq, gk, gv};
            });
    }
    return out;
}

Tensor attention_composite(const Tensor& q, const Tensor& k, const Tensor& v,
                           const AttentionOptions& options) {
    const Prepared p = prepare(q, k, v, options);
    const AttentionArgs& a = p.args;
    const int64_t BH = a.batch * a.heads;
    Tensor scores = matmul(q.view({BH, a.lq, a.d}), k.view({BH, a.lk, a.d}).transpose(1, 2));
    scores = mul(scores, a.scale).view({a.batch, a.heads, a.lq, a.lk});
    if (p.key_mask.defined() || a.causal) {
        // -inf where a key is hidden: [B, 1, Lq, Lk], built on the host.
        const double inf = std::numeric_limits<double>::infinity();
        std::vector<double> mask_values;
        if (p.key_mask.defined()) mask_values = p.key_mask.to(Device::cpu()).to_vector<double>();
        std::vector<double> bias(static_cast<size_t>(a.batch * a.lq * a.lk), 0.0);
        for (int64_t b = 0; b < a.batch; ++b)
            for (int64_t i = 0; i < a.lq; ++i)
                for (int64_t j = 0; j < a.lk; ++j) {
                    const bool hidden = (!mask_values.empty() &&
                                         mask_values[static_cast<size_t>(b * a.lk + j)] == 0) ||
                                        (a.causal && j > i);
                    if (hidden) bias[static_cast<size_t>((b * a.lq + i) * a.lk + j)] = -inf;
                }
        scores = add(scores, Tensor::from_vector(bias, {a.batch, 1, a.lq, a.lk})
                                 .to(scores.dtype())
                                 .to(scores.device()));
    }
    Tensor probs = softmax(scores, -1);
    if (p.dropout_p > 0) probs = dropout(probs, p.dropout_p, true, options.generator);
    return matmul(probs.view({BH, a.lq, a.lk}), v.view({BH, a.lk, a.d}))
        .view({a.batch, a.heads, a.lq, a.d});
}

}  // namespace minidl
