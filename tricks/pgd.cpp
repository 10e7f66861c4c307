// tricks/pgd.cpp — see pgd.h.
#include "tricks/pgd.h"

#include <cmath>

#include "core/autograd.h"
#include "core/check.h"
#include "core/row_grad.h"
#include "ops/elementwise.h"
#include "ops/reduce.h"

namespace minidl::tricks {

PGD::PGD(nn::Module& model, PGDOptions options)
    : model_(model), options_(std::move(options)), selection_(model, options_.filter, "PGD") {
    MDL_CHECK(options_.epsilon >= 0 && options_.alpha >= 0, ValueError,
              "PGD: epsilon and alpha must be non-negative, got ", options_.epsilon, " and ",
              options_.alpha);
    MDL_CHECK(options_.steps >= 1, ValueError, "PGD: steps must be at least 1, got ",
              options_.steps);
}

void PGD::backup_grad() {
    NoGradGuard no_grad;
    all_grad_backup_.clear();
    all_row_grad_backup_.clear();
    for (const Tensor& p : model_.parameters()) {
        if (const RowGrad* rg = row_grad(p)) {  // kept as rows: .grad() would make it dense
            all_row_grad_backup_.push_back({rg->rows, rg->values.clone()});
            all_grad_backup_.emplace_back();
            continue;
        }
        all_row_grad_backup_.emplace_back();
        all_grad_backup_.push_back(p.grad().defined() ? p.grad().clone() : Tensor());
    }
}

void PGD::restore_grad() {
    const std::vector<Tensor> params = model_.parameters();
    MDL_CHECK(all_grad_backup_.size() == params.size(), StateError,
              "PGD: restore_grad() without backup_grad()");
    for (size_t i = 0; i < params.size(); ++i) {
        RowGrad& rows = all_row_grad_backup_[i];
        if (rows.rows.defined()) {
            params[i].set_grad(Tensor());
            autograd::accumulate_row_grad(params[i], std::move(rows));
        } else {
            params[i].set_grad(all_grad_backup_[i]);
        }
    }
    all_grad_backup_.clear();
    all_row_grad_backup_.clear();
}

AttackResult PGD::attack(bool is_first_attack) {
    MDL_CHECK(is_first_attack || selection_.has_value_backup(), StateError,
              "PGD: the first attack of a step must have is_first_attack = true");
    AttackResult result;
    // The first step follows this micro-batch's own clean gradient; later steps see only the
    // adversarial gradient of the previous step (the model was zero_grad()ed in between).
    const AscentDirections d =
        ascent_directions(selection_, /*own=*/is_first_attack, /*allow_rows=*/true);
    if (is_first_attack) {
        selection_.clear_mark();
        selection_.backup_values(d.rows);
    }
    if (!d.finite) {
        result.nonfinite = true;
        return result;
    }
    NoGradGuard no_grad;
    for (size_t i = 0; i < selection_.size(); ++i) {
        if (d.norms[i] == 0.0 || options_.alpha == 0.0) continue;
        // E += alpha * g / ||g||, over the touched rows while they are the backed-up ones
        Tensor p = selection_.params()[i].second;
        if (selection_.keep_rows_for_step(i, d.rows[i])) {
            row_axpy(options_.alpha / d.norms[i], d.rows[i], d.grads[i], p);
            p.bump_version();  // as add_ does
        } else {
            p.add_(d.rows[i].defined() ? densify({d.rows[i], d.grads[i]}, p.shape()) : d.grads[i],
                   options_.alpha / d.norms[i]);
        }
        project(i);
        result.perturbed = true;
    }
    return result;
}

// E <- E0 + epsilon (E - E0) / ||E - E0|| when ||E - E0|| > epsilon.
void PGD::project(size_t i) {
    NoGradGuard no_grad;
    Tensor p = selection_.params()[i].second;
    const Tensor& e0 = selection_.backed_up_value(i);
    if (const Tensor& rows = selection_.backed_up_rows(i); rows.defined()) {
        // Only these rows have moved: elsewhere E - E0 is +0.0, which adds nothing to the norm
        // (row_distance_sum_squares keeps the dense order) and leaves E0 + 0 * c = E.
        const double norm = std::sqrt(row_distance_sum_squares(rows, e0, p));
        if (norm > options_.epsilon) {
            row_project(rows, e0, options_.epsilon / norm, p);
            p.bump_version();
        }
        return;
    }
    const Tensor r = p - e0;
    const double norm = global_l2_norm({r});
    if (norm > options_.epsilon) p.copy_(e0 + r * (options_.epsilon / norm));
}

void PGD::restore() {
    selection_.restore_values();
}

AttackResult PGD::run(const std::function<void()>& adversarial_backward) {
    AttackResult total;
    backup_grad();
    // On an exception: E back to E0 and the clean gradients back, as before the attack.
    struct Undo {
        PGD* self;
        ~Undo() {
            if (self->selection_.has_value_backup()) self->selection_.restore_values();
            if (!self->all_grad_backup_.empty()) self->restore_grad();
        }
    } undo{this};
    for (int t = 0; t < options_.steps; ++t) {
        const AttackResult r = attack(t == 0);
        total.perturbed |= r.perturbed;
        total.nonfinite |= r.nonfinite;
        if (t != options_.steps - 1)
            model_.zero_grad();
        else
            restore_grad();
        adversarial_backward();
    }
    restore();
    return total;
}

}  // namespace minidl::tricks
