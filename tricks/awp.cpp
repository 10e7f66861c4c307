// tricks/awp.cpp — see awp.h.
#include "tricks/awp.h"

#include <cmath>

#include "core/autograd.h"
#include "core/check.h"
#include "ops/elementwise.h"
#include "ops/reduce.h"

namespace minidl::tricks {

namespace {
constexpr double kNormEpsilon = 1e-6;
}

AWP::AWP(nn::Module& model, AWPOptions options)
    : options_(std::move(options)), selection_(model, options_.filter, "AWP") {
    MDL_CHECK(options_.adv_lr >= 0 && options_.adv_eps >= 0, ValueError,
              "AWP: adv_lr and adv_eps must be non-negative, got ", options_.adv_lr, " and ",
              options_.adv_eps);
}

AttackResult AWP::attack() {
    AttackResult result;
    selection_.backup_values();
    NoGradGuard no_grad;
    for (size_t i = 0; i < selection_.size(); ++i) {
        const Tensor g = selection_.own_gradient(i);
        if (!g.defined()) continue;
        const double g_norm = global_l2_norm({g});
        if (!std::isfinite(g_norm)) {
            result.nonfinite = true;
            continue;
        }
        if (g_norm == 0.0 || options_.adv_lr == 0.0) continue;
        Tensor w = selection_.params()[i].second;
        const Tensor& w0 = selection_.backed_up_value(i);
        const double w_norm = global_l2_norm({w0});
        w.add_(g, options_.adv_lr * (w_norm + kNormEpsilon) / (g_norm + kNormEpsilon));
        // The trust region w0 +- adv_eps |w0|, elementwise.
        const Tensor radius = abs(w0) * options_.adv_eps;
        w.copy_(clamp(w, w0 - radius, w0 + radius));
        result.perturbed = true;
    }
    selection_.clear_mark();
    return result;
}

void AWP::restore() { selection_.restore_values(); }

}  // namespace minidl::tricks
