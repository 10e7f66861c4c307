// nn/batch_norm.h — batch normalisation over a batch of C-channel features, as
// torch.nn.BatchNorm1d.
//
// Ioffe & Szegedy 2015, arXiv:1502.03167 (https://arxiv.org/abs/1502.03167). Input [N, C] or
// [N, C, L]; statistics per channel c over the other dims (n = N or N * L values):
//   training:  mu = mean(x),  var = mean((x - mu)^2)   (biased, for normalising)
//              running_mean = (1 - f) running_mean + f mu
//              running_var  = (1 - f) running_var  + f var * n / (n - 1)   (unbiased)
//              with f = momentum, or f = 1 / num_batches_tracked when momentum is nullopt
//              (PyTorch's momentum=None: the cumulative average, what SWA's update_bn uses)
//   eval:      mu = running_mean, var = running_var
//   y = (x - mu) / sqrt(var + eps) * weight + bias
// Parameters "weight" (ones) and "bias" (zeros) with affine; buffers "running_mean" (zeros),
// "running_var" (ones) and "num_batches_tracked" (I64 0-d) with track_running_stats (without,
// batch statistics are used in eval mode too). The forward pass is composed of differentiable
// ops (mean, sub, mul, pow), so the gradient — including the terms through mu and var — comes
// from their backward; tests/nn/test_layers.cpp checks it against finite differences.
#pragma once

#include <optional>

#include "nn/module.h"

namespace minidl::nn {

class BatchNorm1d : public Cloneable<BatchNorm1d, UnaryModule> {
  public:
    explicit BatchNorm1d(int64_t num_features, double eps = 1e-5,
                         std::optional<double> momentum = 0.1, bool affine = true,
                         bool track_running_stats = true);

    void reset() override;
    void reset_parameters();     // running stats reset, weight = 1, bias = 0
    void reset_running_stats();  // running_mean = 0, running_var = 1, num_batches_tracked = 0
    Tensor forward(const Tensor& x) override;
    std::string type_name() const override { return "BatchNorm1d"; }

    int64_t num_features() const { return num_features_; }
    double eps() const { return eps_; }
    const std::optional<double>& momentum() const { return momentum_; }
    void set_momentum(std::optional<double> momentum);
    bool affine() const { return affine_; }
    bool track_running_stats() const { return track_running_stats_; }

    Tensor weight, bias;                                    // [C], with affine
    Tensor running_mean, running_var, num_batches_tracked;  // [C], [C], [] (I64)

  private:
    int64_t num_features_;
    double eps_;
    std::optional<double> momentum_;
    bool affine_, track_running_stats_;
};

}  // namespace minidl::nn
