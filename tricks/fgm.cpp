// tricks/fgm.cpp — see fgm.h.
#include "tricks/fgm.h"

#include <cmath>

#include "core/autograd.h"
#include "core/check.h"
#include "ops/reduce.h"

namespace minidl::tricks {

FGM::FGM(nn::Module& model, FGMOptions options)
    : options_(std::move(options)), selection_(model, options_.filter, "FGM") {
    MDL_CHECK(options_.epsilon >= 0 && std::isfinite(options_.epsilon), ValueError,
              "FGM: epsilon must be a finite non-negative number, got ", options_.epsilon);
}

AttackResult FGM::attack() {
    AttackResult result;
    selection_.backup_values();
    NoGradGuard no_grad;
    for (size_t i = 0; i < selection_.size(); ++i) {
        const Tensor g = selection_.own_gradient(i);
        if (!g.defined()) continue;
        const double norm = global_l2_norm({g});
        if (!std::isfinite(norm)) {
            result.nonfinite = true;
            continue;
        }
        if (norm == 0.0 || options_.epsilon == 0.0) continue;
        // E += epsilon * g / ||g||  (one fused axpy pass)
        Tensor(selection_.params()[i].second).add_(g, options_.epsilon / norm);
        result.perturbed = true;
    }
    selection_.clear_mark();
    return result;
}

void FGM::restore() { selection_.restore_values(); }

}  // namespace minidl::tricks
