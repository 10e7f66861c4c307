// tricks/awp.cpp — see awp.h.
#include "tricks/awp.h"

#include <cmath>

#include "core/autograd.h"
#include "core/check.h"
#include "core/row_grad.h"
#include "ops/elementwise.h"
#include "ops/reduce.h"

namespace minidl::tricks {

namespace {
constexpr double kNormEpsilon = 1e-6;
}

AWP::AWP(nn::Module& model, AWPOptions options)
    : model_(model),
      options_(std::move(options)),
      selection_(model, options_.filter, "AWP"),
      params_(model.parameters()) {
    MDL_CHECK(options_.adv_lr >= 0 && std::isfinite(options_.adv_lr) && options_.adv_eps >= 0 &&
                  std::isfinite(options_.adv_eps),
              ValueError, "AWP: adv_lr and adv_eps must be finite and non-negative, got ",
              options_.adv_lr, " and ", options_.adv_eps);
    MDL_CHECK(options_.steps >= 1, ValueError, "AWP: steps must be at least 1, got ",
              options_.steps);
    for (const auto& [name, p] : selection_.params()) {
        size_t j = 0;
        while (j < params_.size() && !params_[j].is_same(p))
            ++j;
        MDL_ASSERT(j < params_.size(), "AWP: selected parameter ", name, " not among parameters()");
        selected_index_.push_back(j);
    }
}

void AWP::begin_micro_batch() {
    NoGradGuard no_grad;
    grads_before_.clear();
    for (const Tensor& p : params_)
        grads_before_.push_back(p.grad().defined() ? p.grad().clone() : Tensor());
    marked_ = true;
}

Tensor AWP::own_gradient(size_t selected) const {
    const size_t j = selected_index_[selected];
    const Tensor& g = params_[j].grad();
    if (!marked_ || !g.defined() || !grads_before_[j].defined()) return g;
    NoGradGuard no_grad;
    return g - grads_before_[j];
}

void AWP::drop_micro_batch_gradients(bool last) {
    if (!marked_) {
        model_.zero_grad();
        return;
    }
    for (size_t j = 0; j < params_.size(); ++j) {
        Tensor& before = grads_before_[j];
        params_[j].set_grad(last || !before.defined() ? std::move(before) : before.clone());
    }
}

AttackResult AWP::ascend(const AscentDirections& d) {
    AttackResult result;
    if (!d.finite) {
        result.nonfinite = true;
        return result;
    }
    NoGradGuard no_grad;
    for (size_t i = 0; i < selection_.size(); ++i) {
        if (d.norms[i] == 0.0 || options_.adv_lr == 0.0) continue;
        Tensor w = selection_.params()[i].second;
        const double w_norm = global_l2_norm({w});
        const double step = options_.adv_lr * (w_norm + kNormEpsilon) / (d.norms[i] + kNormEpsilon);
        // The layer-wise bound needs ||w0|| of the whole tensor: it keeps the dense backup.
        const bool on_rows = options_.bound == AWPBound::Elementwise
                                 ? selection_.keep_rows_for_step(i, d.rows[i])
                                 : selection_.keep_rows_for_step(i, Tensor());
        const Tensor& w0 = selection_.backed_up_value(i);
        if (on_rows) {
            // Only the touched rows move; elsewhere w = w0 and the clamp leaves w0 as it is.
            const Tensor& rows = d.rows[i];
            row_axpy(step, rows, d.grads[i], w);
            row_clamp_relative(rows, w0, options_.adv_eps, w);
            w.bump_version();  // as add_ and copy_ do
            result.perturbed = true;
            continue;
        }
        w.add_(d.rows[i].defined() ? densify({d.rows[i], d.grads[i]}, w.shape()) : d.grads[i],
               step);
        if (options_.bound == AWPBound::Elementwise) {
            const Tensor radius = abs(w0) * options_.adv_eps;
            w.copy_(clamp(w, w0 - radius, w0 + radius));
        } else {
            const Tensor v = w - w0;
            const double v_norm = global_l2_norm({v});
            const double radius = options_.adv_eps * global_l2_norm({w0});
            if (v_norm > radius) w.copy_(w0 + v * (radius / v_norm));
        }
        result.perturbed = true;
    }
    return result;
}

AttackResult AWP::run(const std::function<void()>& adversarial_backward) {
    AttackResult total;
    // However this ends, the next micro-batch starts unmarked and with the weights restored.
    struct Unmark {
        AWP* self;
        ~Unmark() {
            self->grads_before_.clear();
            self->marked_ = false;
        }
    } unmark{this};
    auto directions = [&] {
        // Without a mark this micro-batch's gradient is the whole .grad(), which may stay rows.
        if (!marked_) return ascent_directions(selection_, /*own=*/false, /*allow_rows=*/true);
        return ascent_directions(selection_.size(), [&](size_t i) { return own_gradient(i); });
    };
    AscentDirections d = directions();
    selection_.backup_values(d.rows);
    const ScopedRestore restore(selection_);
    for (int t = 0; t < options_.steps; ++t) {
        const AttackResult r = ascend(d);
        total.perturbed |= r.perturbed;
        total.nonfinite |= r.nonfinite;
        const bool last = t == options_.steps - 1;
        drop_micro_batch_gradients(last);
        adversarial_backward();
        if (!last) d = directions();
    }
    return total;
}

}  // namespace minidl::tricks
