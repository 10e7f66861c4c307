// nn/init.h — in-place parameter initialisers, as torch.nn.init.
//
// Each fills a tensor from a Generator (default: default_generator()), under a NoGradGuard, and
// returns the same handle. The bounds follow PyTorch (torch/nn/init.py):
//   fan_in = shape[1] * prod(shape[2:]),  fan_out = shape[0] * prod(shape[2:])   (dim >= 2)
//   kaiming_uniform_(a): U(-b, b), b = gain * sqrt(3 / fan),  gain = sqrt(2 / (1 + a^2)) for
//                        leaky_relu (He et al. 2015, arXiv:1502.01852); Linear uses a = sqrt(5),
//                        which gives b = 1 / sqrt(fan_in)
//   xavier_uniform_(gain): U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out))
//                        (Glorot & Bengio 2010, https://proceedings.mlr.press/v9/glorot10a.html)
// The numbers differ from PyTorch's (a different generator); the distributions are the same.
//
// Cloning a module re-runs its reset(), whose draws would be thrown away (the clone copies the
// original's values). SkipRandomInitGuard makes the random initialisers of this thread leave the
// tensor untouched and draw nothing, so that clone() does not advance the generator: a run is
// reproducible whether or not it clones models (data-parallel replicas, SWA's averaged model).
// Custom modules keep that property by initialising through these functions.
#pragma once

#include <cstdint>
#include <utility>

#include "core/rng.h"
#include "core/tensor.h"

namespace minidl::nn::init {

enum class FanMode { FanIn, FanOut };
enum class Nonlinearity { Linear, Relu, LeakyRelu, Tanh, Sigmoid };

// (fan_in, fan_out) of a weight of at least 2 dims; throws ShapeError for fewer.
std::pair<int64_t, int64_t> calculate_fan_in_and_fan_out(const Tensor& t);
// PyTorch's recommended gain for a nonlinearity (param: the negative slope of LeakyRelu).
double calculate_gain(Nonlinearity nonlinearity, double param = 0.01);

Tensor uniform_(Tensor t, double low = 0.0, double high = 1.0, Generator* gen = nullptr);
Tensor normal_(Tensor t, double mean = 0.0, double std = 1.0, Generator* gen = nullptr);
Tensor constant_(Tensor t, double value);
Tensor zeros_(Tensor t);
Tensor ones_(Tensor t);
Tensor kaiming_uniform_(Tensor t, double a = 0.0, FanMode mode = FanMode::FanIn,
                        Nonlinearity nonlinearity = Nonlinearity::LeakyRelu,
                        Generator* gen = nullptr);
Tensor xavier_uniform_(Tensor t, double gain = 1.0, Generator* gen = nullptr);

// While one lives, uniform_/normal_/kaiming_uniform_/xavier_uniform_ in this thread neither
// write nor draw. Nests.
class SkipRandomInitGuard {
  public:
    SkipRandomInitGuard();
    ~SkipRandomInitGuard();
    SkipRandomInitGuard(const SkipRandomInitGuard&) = delete;
    SkipRandomInitGuard& operator=(const SkipRandomInitGuard&) = delete;

  private:
    bool previous_;
};
bool random_init_skipped();

}  // namespace minidl::nn::init
