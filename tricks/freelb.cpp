// tricks/freelb.cpp — see freelb.h.
#include "tricks/freelb.h"

#include <cmath>

#include "core/autograd.h"
#include "core/check.h"
#include "ops/elementwise.h"
#include "ops/reduce.h"

namespace minidl::tricks {

namespace {
void check_options(const FreeLBOptions& o) {
    MDL_CHECK(o.steps >= 1, ValueError, "FreeLB: steps must be at least 1, got ", o.steps);
    MDL_CHECK(o.adv_lr >= 0 && o.init_mag >= 0 && o.max_norm >= 0, ValueError,
              "FreeLB: adv_lr, init_mag and max_norm must be non-negative");
}

// The token mask's shape against the embedding output's: [B, T] of [B, T, C].
void check_token_mask(const Tensor& mask, const Tensor& out) {
    const Shape& s = out.shape();
    const bool ok = s.size() == 3 && mask.shape() == Shape({s[0], s[1]});
    MDL_CHECK(ok, ShapeError, "FreeLB: set_token_mask's mask has shape ", shape_str(mask.shape()),
              ", but the embedding output is ", shape_str(s),
              s.size() == 3 ? ": expected " + shape_str({s[0], s[1]}) + ", its [B, T]"
                            : ": a token mask needs the output [B, T, C]");
}

// delta_0 = u * m * init_mag / sqrt(max(L_b * C, 1)) with L_b = sum_t m[b, t] (see freelb.h). The
// scale is computed in double and rounded once to the arithmetic type of `out`, and the product
// runs in that type, as u.mul_(init_mag / sqrt(d)) does: a mask of ones gives the unmasked delta_0
// bit for bit.
Tensor masked_initial_delta(const Tensor& u, const Tensor& mask, const Tensor& out,
                            double init_mag) {
    const int64_t B = out.shape()[0], T = out.shape()[1], C = out.shape()[2];
    const Tensor m = mask.to(out.device());
    const Tensor dims = sum(m.to(DType::F64), 1, /*keepdim=*/true) * static_cast<double>(C);
    const Tensor scale =
        rdiv(init_mag, sqrt(maximum(dims, Tensor::full({}, 1.0, DType::F64, out.device()))));
    const DType acc = out.dtype() == DType::F64 ? DType::F64 : DType::F32;
    return ((u * m.to(out.dtype()).view({B, T, 1})) * scale.to(acc).view({B, 1, 1}))
        .to(out.dtype());
}

}  // namespace

Tensor per_example_norm(const Tensor& x, double floor) {
    NoGradGuard no_grad;
    const int64_t B = x.shape()[0];
    Tensor sq = sum(square(x.view({B, -1})), 1, /*keepdim=*/true);  // [B, 1]
    Shape s(x.dim(), 1);
    s[0] = B;
    return maximum(sqrt(sq), Tensor::full({}, floor, sq.dtype(), sq.device())).view(s);
}

FreeLB::FreeLB(nn::EmbeddingBag& layer, FreeLBOptions options)
    : set_hook_([&layer](auto h) { layer.set_output_hook(std::move(h)); }),
      options_(options),
      generator_(options.seed),
      per_token_(false) {
    check_options(options_);
}

FreeLB::FreeLB(nn::Embedding& layer, FreeLBOptions options)
    : set_hook_([&layer](auto h) { layer.set_output_hook(std::move(h)); }),
      options_(options),
      generator_(options.seed),
      per_token_(true) {
    check_options(options_);
}

void FreeLB::set_token_mask(Tensor mask) {
    MDL_CHECK(
        !mask.defined() || per_token_, ValueError, "FreeLB: set_token_mask's mask (shape ",
        shape_str(mask.defined() ? mask.shape() : Shape{}),
        ") needs the per-token form (nn::Embedding, delta [B, T, C]); this FreeLB perturbs an "
        "nn::EmbeddingBag's output, one delta [B, C] per bag, which has no tokens to mask");
    token_mask_ = std::move(mask);
}

AttackResult FreeLB::run(const std::function<Tensor()>& forward_loss,
                         const std::function<void(const Tensor&)>& backward) {
    AttackResult result;
    result.perturbed = options_.init_mag > 0;  // the first pass is already off the clean point
    Tensor delta;                              // created on the first pass, from the output's shape
    set_hook_([&](const Tensor& out) {
        if (!delta.defined()) {
            NoGradGuard no_grad;
            if (token_mask_.defined()) check_token_mask(token_mask_, out);
            if (initial_delta_.defined()) {
                MDL_CHECK(initial_delta_.shape() == out.shape(), ShapeError,
                          "FreeLB: set_initial_delta's shape ", shape_str(initial_delta_.shape()),
                          " differs from the embedding output's ", shape_str(out.shape()));
                delta = initial_delta_.to(out.device()).to(out.dtype()).clone();
                initial_delta_ = Tensor();
            } else {
                Tensor u;
                if (initial_draw_.defined()) {
                    MDL_CHECK(initial_draw_.shape() == out.shape(), ShapeError,
                              "FreeLB: set_initial_draw's shape ", shape_str(initial_draw_.shape()),
                              " differs from the embedding output's ", shape_str(out.shape()));
                    u = initial_draw_.to(out.device()).to(out.dtype()).clone();
                    initial_draw_ = Tensor();
                } else {
                    u = Tensor::rand(out.shape(), &generator_, out.dtype(), out.device(), -1.0,
                                     1.0);
                }
                if (token_mask_.defined()) {
                    delta = masked_initial_delta(u, token_mask_, out, options_.init_mag);
                } else {
                    const double d =
                        static_cast<double>(out.numel() / std::max<int64_t>(out.shape()[0], 1));
                    delta = u;
                    delta.mul_(options_.init_mag / std::sqrt(std::max(d, 1.0)));
                }
            }
            delta.set_requires_grad(true);
        }
        return out + delta;
    });
    // Remove the hook however this ends.
    struct Unhook {
        FreeLB* self;
        ~Unhook() { self->set_hook_(nullptr); }
    } unhook{this};

    const Generator::State rng = default_generator().state();  // same dropout mask every pass
    const double inv_k = 1.0 / static_cast<double>(options_.steps);
    for (int t = 0; t < options_.steps; ++t) {
        default_generator().set_state(rng);
        if (delta.defined()) delta.set_grad(Tensor());
        backward(forward_loss() * inv_k);
        if (t == options_.steps - 1) break;
        MDL_CHECK(delta.defined(), StateError,
                  "FreeLB: the embedding layer's output was never computed by forward_loss()");
        const Tensor g = delta.grad();
        // The loss does not depend on the embeddings: nothing to ascend, but the remaining
        // passes must still run (each back-propagates loss / K).
        if (!g.defined()) continue;
        NoGradGuard no_grad;
        const Tensor norm = per_example_norm(g, 1e-8);
        if (!std::isfinite(sum(norm).item())) {
            result.nonfinite = true;
            break;
        }
        Tensor next = delta.detach() + g / norm * options_.adv_lr;
        if (options_.max_norm > 0) {
            const Tensor dn = per_example_norm(next, 1e-12);
            next = next * minimum(rdiv(options_.max_norm, dn),
                                  Tensor::full({}, 1.0, dn.dtype(), dn.device()));
        }
        delta = next.detach();
        delta.set_requires_grad(true);
        if (options_.adv_lr > 0) result.perturbed = true;
    }
    return result;
}

}  // namespace minidl::tricks
