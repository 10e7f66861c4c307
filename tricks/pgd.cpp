// tricks/pgd.cpp — see pgd.h.
#include "tricks/pgd.h"

#include <cmath>

#include "core/autograd.h"
#include "core/check.h"
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
    for (const Tensor& p : model_.parameters())
        all_grad_backup_.push_back(p.grad().defined() ? p.grad().clone() : Tensor());
}

void PGD::restore_grad() {
    const std::vector<Tensor> params = model_.parameters();
    MDL_CHECK(all_grad_backup_.size() == params.size(), StateError,
              "PGD: restore_grad() without backup_grad()");
    for (size_t i = 0; i < params.size(); ++i) params[i].set_grad(all_grad_backup_[i]);
    all_grad_backup_.clear();
}

AttackResult PGD::attack(bool is_first_attack) {
    AttackResult result;
    if (is_first_attack) selection_.backup_values();
    MDL_CHECK(selection_.has_value_backup(), StateError,
              "PGD: the first attack of a step must have is_first_attack = true");
    NoGradGuard no_grad;
    for (size_t i = 0; i < selection_.size(); ++i) {
        // The first step follows this micro-batch's own clean gradient; later steps see only the
        // adversarial gradient of the previous step (the model was zero_grad()ed in between).
        const Tensor g = is_first_attack ? selection_.own_gradient(i)
                                         : selection_.params()[i].second.grad();
        if (!g.defined()) continue;
        const double norm = global_l2_norm({g});
        if (!std::isfinite(norm)) {
            result.nonfinite = true;
            continue;
        }
        if (norm == 0.0 || options_.alpha == 0.0) continue;
        Tensor(selection_.params()[i].second).add_(g, options_.alpha / norm);
        result.perturbed = true;
    }
    if (is_first_attack) selection_.clear_mark();
    project();
    return result;
}

void PGD::project() {
    NoGradGuard no_grad;
    for (size_t i = 0; i < selection_.size(); ++i) {
        Tensor p = selection_.params()[i].second;
        const Tensor r = p - selection_.backed_up_value(i);
        const double norm = global_l2_norm({r});
        if (norm > options_.epsilon)
            p.copy_(selection_.backed_up_value(i) + r * (options_.epsilon / norm));
    }
}

void PGD::restore() { selection_.restore_values(); }

AttackResult PGD::run(const std::function<void()>& adversarial_backward) {
    AttackResult total;
    backup_grad();
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
