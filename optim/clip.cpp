// optim/clip.cpp — clip_grad_norm (math in optim/clip.h).
#include "optim/clip.h"

#include <cmath>
#include <map>

#include "core/autograd.h"
#include "core/check.h"
#include "core/kernels.h"
#include "ops/elementwise.h"
#include "ops/reduce.h"

namespace minidl::optim {

namespace {

// sum over every element of |g|^p, in double per tensor.
double sum_abs_pow(const std::vector<Tensor>& grads, double p) {
    double total = 0.0;
    for (const Tensor& g : grads)
        total += sum(pow(abs(g.to(DType::F64)), p)).item();
    return total;
}

}  // namespace

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm, double norm_type,
                      bool error_if_nonfinite) {
    MDL_CHECK(norm_type > 0.0, ValueError, "clip_grad_norm: norm_type must be positive, got ",
              norm_type);
    MDL_CHECK(max_norm >= 0.0, ValueError, "clip_grad_norm: max_norm must be non-negative, got ",
              max_norm);
    NoGradGuard no_grad;
    std::vector<Tensor> grads;
    for (const Tensor& p : params)
        if (p.defined() && p.grad().defined() && p.grad().numel() > 0) grads.push_back(p.grad());
    if (grads.empty()) return 0.0;

    double total = 0.0;
    if (std::isinf(norm_type)) {
        for (const Tensor& g : grads)
            total = std::max(total, max(abs(g)).item());
    } else if (norm_type == 2.0) {
        // One sum_squares call per device: the partial sums stay in double.
        std::map<std::string, std::vector<Tensor>> by_device;
        for (const Tensor& g : grads)
            by_device[g.device().str()].push_back(g);
        double squares = 0.0;
        for (const auto& [device, gs] : by_device)
            squares += kernels_for(gs.front().device()).sum_squares(gs);
        total = std::sqrt(squares);
    } else {
        total = std::pow(sum_abs_pow(grads, norm_type), 1.0 / norm_type);
    }
    MDL_CHECK(!error_if_nonfinite || std::isfinite(total), ValueError,
              "clip_grad_norm: the total norm of order ", norm_type, " is ", total,
              "; the gradients cannot be clipped (error_if_nonfinite is set)");

    const double coef = max_norm / (total + 1e-6);
    // PyTorch multiplies by min(coef, 1) always; a factor of 1 changes nothing, so that case is
    // skipped. A NaN total gives a NaN coefficient and NaN gradients, as in PyTorch.
    if (!(coef >= 1.0))
        for (Tensor g : grads)
            g.mul_(std::min(coef, 1.0));
    return total;
}

}  // namespace minidl::optim
