// nn/batch_norm.cpp — BatchNorm1d composed of differentiable ops (math in nn/batch_norm.h;
// reference: torch/nn/modules/batchnorm.py and the CPU batch_norm in ATen's Normalization.cpp).
#include "nn/batch_norm.h"

#include "core/check.h"
#include "ops/elementwise.h"
#include "ops/reduce.h"

namespace minidl::nn {

namespace {

void check_momentum(const std::optional<double>& momentum) {
    MDL_CHECK(!momentum || (*momentum >= 0.0 && *momentum <= 1.0), ValueError,
              "BatchNorm1d: momentum must be in [0, 1] (or nullopt for a cumulative average), got ",
              momentum.value_or(0.0));
}

}  // namespace

BatchNorm1d::BatchNorm1d(int64_t num_features, double eps, std::optional<double> momentum,
                         bool affine, bool track_running_stats)
    : num_features_(num_features),
      eps_(eps),
      momentum_(momentum),
      affine_(affine),
      track_running_stats_(track_running_stats) {
    MDL_CHECK(num_features > 0, ValueError, "BatchNorm1d: num_features must be positive, got ",
              num_features);
    MDL_CHECK(eps >= 0.0, ValueError, "BatchNorm1d: eps must be non-negative, got ", eps);
    check_momentum(momentum);
    reset();
}

void BatchNorm1d::set_momentum(std::optional<double> momentum) {
    check_momentum(momentum);
    momentum_ = momentum;
}

void BatchNorm1d::reset() {
    const Shape c{num_features_};
    weight = affine_ ? register_parameter("weight", Tensor::empty(c)) : Tensor();
    bias = affine_ ? register_parameter("bias", Tensor::empty(c)) : Tensor();
    if (track_running_stats_) {
        running_mean = register_buffer("running_mean", Tensor::zeros(c));
        running_var = register_buffer("running_var", Tensor::ones(c));
        num_batches_tracked = register_buffer("num_batches_tracked", Tensor::zeros({}, DType::I64));
    } else {
        running_mean = running_var = num_batches_tracked = Tensor();
    }
    reset_parameters();
}

void BatchNorm1d::reset_running_stats() {
    if (!track_running_stats_) return;
    NoGradGuard no_grad;
    running_mean.zero_();
    running_var.fill_(1.0);
    num_batches_tracked.zero_();
}

void BatchNorm1d::reset_parameters() {
    reset_running_stats();
    if (!affine_) return;
    init::ones_(weight);
    init::zeros_(bias);
}

Tensor BatchNorm1d::forward(const Tensor& x) {
    MDL_CHECK(x.defined() && (x.dim() == 2 || x.dim() == 3) && x.size(1) == num_features_,
              ShapeError, "BatchNorm1d: expected input [N, ", num_features_, "] or [N, ",
              num_features_, ", L], got ", x.defined() ? shape_str(x.shape()) : "(undefined)");
    // Per-channel statistics broadcast against x: [1, C] or [1, C, 1].
    const Shape stat_shape = x.dim() == 2 ? Shape{1, num_features_} : Shape{1, num_features_, 1};
    const int64_t n = x.numel() / num_features_;
    const bool use_batch_stats = is_training() || !track_running_stats_;

    Tensor centered, var;
    if (use_batch_stats) {
        MDL_CHECK(!is_training() || n > 1, ValueError,
                  "BatchNorm1d: expected more than 1 value per channel when training, got input ",
                  shape_str(x.shape()));
        // Mean over N (and L): with equal counts per row, the mean of means is the mean.
        Tensor mu = x.dim() == 2 ? mean(x, 0, true) : mean(mean(x, 2, true), 0, true);
        centered = x - mu;
        Tensor sq = centered * centered;
        var = x.dim() == 2 ? mean(sq, 0, true) : mean(mean(sq, 2, true), 0, true);
        if (is_training() && track_running_stats_) {
            NoGradGuard no_grad;
            const double batches = num_batches_tracked.item() + 1.0;
            num_batches_tracked.fill_(batches);
            const double factor = momentum_ ? *momentum_ : 1.0 / batches;
            const double unbias = static_cast<double>(n) / static_cast<double>(n - 1);
            const Tensor batch_mean = mu.detach().view({num_features_}).to(running_mean.dtype());
            const Tensor batch_var = var.detach().view({num_features_}).to(running_var.dtype());
            running_mean.mul_(1.0 - factor).add_(batch_mean, factor);
            running_var.mul_(1.0 - factor).add_(batch_var, factor * unbias);
        }
    } else {
        centered = x - running_mean.view(stat_shape).to(x.dtype());
        var = running_var.view(stat_shape).to(x.dtype());
    }
    Tensor y = centered * pow(var + eps_, -0.5);
    if (affine_) y = y * weight.view(stat_shape) + bias.view(stat_shape);
    return y;
}

}  // namespace minidl::nn
