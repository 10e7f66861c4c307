// tricks/fgm.cpp — see fgm.h.
#include "tricks/fgm.h"

#include <cmath>

#include "core/autograd.h"
#include "core/check.h"
#include "core/row_grad.h"

namespace minidl::tricks {

FGM::FGM(nn::Module& model, FGMOptions options)
    : options_(std::move(options)), selection_(model, options_.filter, "FGM") {
    MDL_CHECK(options_.epsilon >= 0 && std::isfinite(options_.epsilon), ValueError,
              "FGM: epsilon must be a finite non-negative number, got ", options_.epsilon);
}

AttackResult FGM::attack() {
    AttackResult result;
    // A row-sparse gradient (the embedding table's, core/row_grad.h) is used as its rows: the
    // norm, the backup, the step and the restore touch only the rows the batch looked up, with
    // the dense results bitwise (row_sum_squares, row_axpy).
    const AscentDirections d = ascent_directions(selection_, /*own=*/true, /*allow_rows=*/true);
    selection_.clear_mark();
    selection_.backup_values(d.rows);
    if (!d.finite) {
        result.nonfinite = true;
        return result;
    }
    NoGradGuard no_grad;
    for (size_t i = 0; i < selection_.size(); ++i) {
        if (d.norms[i] == 0.0 || options_.epsilon == 0.0) continue;
        // E += epsilon * g / ||g||  (one fused axpy pass, over the touched rows when row-sparse)
        Tensor p = selection_.params()[i].second;
        if (d.rows[i].defined()) {
            row_axpy(options_.epsilon / d.norms[i], d.rows[i], d.grads[i], p);
            p.bump_version();  // as add_ does
        } else {
            p.add_(d.grads[i], options_.epsilon / d.norms[i]);
        }
        result.perturbed = true;
    }
    return result;
}

void FGM::restore() {
    selection_.restore_values();
}

AttackResult FGM::run(const std::function<void()>& adversarial_backward) {
    const AttackResult result = attack();
    const ScopedRestore restore(selection_);
    adversarial_backward();
    return result;
}

}  // namespace minidl::tricks
