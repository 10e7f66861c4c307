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
      generator_(options.seed) {
    check_options(options_);
}

FreeLB::FreeLB(nn::Embedding& layer, FreeLBOptions options)
    : set_hook_([&layer](auto h) { layer.set_output_hook(std::move(h)); }),
      options_(options),
      generator_(options.seed) {
    check_options(options_);
}

AttackResult FreeLB::run(const std::function<Tensor()>& forward_loss,
                         const std::function<void(const Tensor&)>& backward) {
    AttackResult result;
    result.perturbed = options_.init_mag > 0;  // the first pass is already off the clean point
    Tensor delta;                              // created on the first pass, from the output's shape
    set_hook_([&](const Tensor& out) {
        if (!delta.defined()) {
            NoGradGuard no_grad;
            if (initial_delta_.defined()) {
                MDL_CHECK(initial_delta_.shape() == out.shape(), ShapeError,
                          "FreeLB: set_initial_delta's shape ", shape_str(initial_delta_.shape()),
                          " differs from the embedding output's ", shape_str(out.shape()));
                delta = initial_delta_.to(out.device()).to(out.dtype()).clone();
                initial_delta_ = Tensor();
            } else {
                const double d =
                    static_cast<double>(out.numel() / std::max<int64_t>(out.shape()[0], 1));
                delta =
                    Tensor::rand(out.shape(), &generator_, out.dtype(), out.device(), -1.0, 1.0);
                delta.mul_(options_.init_mag / std::sqrt(std::max(d, 1.0)));
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
