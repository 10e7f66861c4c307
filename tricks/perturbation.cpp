// tricks/perturbation.cpp — parameter selection, backup and restore (see perturbation.h).
#include "tricks/perturbation.h"

#include <algorithm>
#include <cmath>

#include "core/autograd.h"
#include "core/check.h"
#include "core/row_grad.h"
#include "ops/elementwise.h"
#include "ops/reduce.h"

namespace minidl::tricks {

bool ParamFilter::matches(const std::string& name, const Tensor& param) const {
    if (predicate) return predicate(name, param);
    if (!contains.empty() && name.find(contains) == std::string::npos) return false;
    for (const auto& ex : exclude)
        if (!ex.empty() && name.find(ex) != std::string::npos) return false;
    return true;
}

ParamSelection::ParamSelection(nn::Module& model, ParamFilter filter, const char* who) : who_(who) {
    std::string names;
    for (auto& [name, p] : model.named_parameters()) {
        names += (names.empty() ? "" : ", ") + name;
        if (p.requires_grad() && filter.matches(name, p)) params_.emplace_back(name, p);
    }
    MDL_CHECK(!params_.empty(), StateError, who_, ": no parameter matches the filter (contains '",
              filter.contains, "'); the model has: ", names);
}

void ParamSelection::backup_values(const std::vector<Tensor>& rows) {
    NoGradGuard no_grad;
    value_backup_.clear();
    value_rows_.assign(params_.size(), Tensor());
    for (size_t i = 0; i < params_.size(); ++i) {
        const Tensor& p = params_[i].second;
        if (i < rows.size() && rows[i].defined()) {
            value_rows_[i] = rows[i];
            value_backup_.push_back(gather_rows(p, rows[i]));
        } else {
            value_backup_.push_back(p.detach().clone());
        }
    }
}

void ParamSelection::restore_values() {
    MDL_CHECK(has_value_backup(), StateError, who_,
              ": restore() without a backup (attack() was not called, or restore() ran twice)");
    NoGradGuard no_grad;
    for (size_t i = 0; i < params_.size(); ++i) {
        Tensor p = params_[i].second;
        if (value_rows_[i].defined()) {
            scatter_rows(value_backup_[i], value_rows_[i], p);
            p.bump_version();  // as copy_ does: saved tensors of the old values are stale
        } else {
            p.copy_(value_backup_[i]);
        }
    }
    value_backup_.clear();
    value_rows_.clear();
}

bool ParamSelection::keep_rows_for_step(size_t i, const Tensor& rows) {
    MDL_CHECK(i < value_rows_.size(), StateError, who_, ": a step without a value backup");
    const Tensor& saved_rows = value_rows_[i];
    if (!saved_rows.defined()) return false;
    if (rows.defined() && rows.numel() == saved_rows.numel() &&
        std::equal(rows.data<int64_t>(), rows.data<int64_t>() + rows.numel(),
                   saved_rows.data<int64_t>()))
        return true;
    NoGradGuard no_grad;
    Tensor whole = params_[i].second.detach().clone();
    scatter_rows(value_backup_[i], saved_rows, whole);
    value_backup_[i] = std::move(whole);
    value_rows_[i] = Tensor();
    return false;
}

void ParamSelection::backup_gradients() {
    NoGradGuard no_grad;
    grad_backup_.clear();
    for (auto& [name, p] : params_)
        grad_backup_.push_back(p.grad().defined() ? p.grad().clone() : Tensor());
}

void ParamSelection::restore_gradients() {
    MDL_CHECK(grad_backup_.size() == params_.size(), StateError, who_,
              ": restore_grad() without backup_grad()");
    for (size_t i = 0; i < params_.size(); ++i)
        params_[i].second.set_grad(grad_backup_[i]);
    grad_backup_.clear();
}

void ParamSelection::mark_gradients() {
    NoGradGuard no_grad;
    marked_.clear();
    for (auto& [name, p] : params_)
        marked_.push_back(p.grad().defined() ? p.grad().clone() : Tensor());
}

Tensor ParamSelection::own_gradient(size_t i) const {
    const Tensor& g = params_.at(i).second.grad();
    if (!g.defined() || marked_.empty() || !marked_.at(i).defined()) return g;
    NoGradGuard no_grad;
    return g - marked_[i];
}

AscentDirections ascent_directions(size_t count, const std::function<Tensor(size_t)>& gradient) {
    NoGradGuard no_grad;
    AscentDirections d;
    for (size_t i = 0; i < count; ++i) {
        Tensor g = gradient(i);
        const double norm = g.defined() ? global_l2_norm({g}) : 0.0;
        d.finite = d.finite && std::isfinite(norm);
        d.grads.push_back(std::move(g));
        d.rows.emplace_back();
        d.norms.push_back(norm);
    }
    return d;
}

AscentDirections ascent_directions(const ParamSelection& selection, bool own, bool allow_rows) {
    if (!allow_rows || (own && selection.marked()))
        return ascent_directions(selection.size(), [&](size_t i) {
            return own ? selection.own_gradient(i) : selection.params()[i].second.grad();
        });
    NoGradGuard no_grad;
    AscentDirections d;
    for (const auto& [name, p] : selection.params()) {
        double norm = 0;
        if (const RowGrad* rg = row_grad(p)) {  // read as rows: .grad() would make it dense
            norm = std::sqrt(row_sum_squares(rg->rows, rg->values, p.size(1)));
            d.grads.push_back(rg->values);
            d.rows.push_back(rg->rows);
        } else {
            const Tensor& g = p.grad();
            if (g.defined()) norm = global_l2_norm({g});
            d.grads.push_back(g);
            d.rows.emplace_back();
        }
        d.finite = d.finite && std::isfinite(norm);
        d.norms.push_back(norm);
    }
    return d;
}

}  // namespace minidl::tricks
