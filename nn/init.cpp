// nn/init.cpp — parameter initialisers (formulas in nn/init.h; reference: torch/nn/init.py).
#include "nn/init.h"

#include <cmath>

#include "core/autograd.h"
#include "core/check.h"
#include "core/kernels.h"

namespace minidl::nn::init {

namespace {

thread_local bool t_skip_random_init = false;

void check_floating(const char* op, const Tensor& t) {
    MDL_CHECK(t.defined(), StateError, op, ": the tensor is undefined");
    MDL_CHECK(is_floating(t.dtype()), DTypeError, op, ": expected a floating tensor, got ",
              t.dtype(), " of shape ", shape_str(t.shape()));
}

}  // namespace

SkipRandomInitGuard::SkipRandomInitGuard() : previous_(t_skip_random_init) {
    t_skip_random_init = true;
}
SkipRandomInitGuard::~SkipRandomInitGuard() {
    t_skip_random_init = previous_;
}
bool random_init_skipped() {
    return t_skip_random_init;
}

std::pair<int64_t, int64_t> calculate_fan_in_and_fan_out(const Tensor& t) {
    MDL_CHECK(t.defined() && t.dim() >= 2, ShapeError,
              "calculate_fan_in_and_fan_out: needs a tensor of at least 2 dims, got shape ",
              t.defined() ? shape_str(t.shape()) : std::string("(undefined)"));
    // Dims after the first two are a convolution's receptive field.
    int64_t receptive = 1;
    for (int64_t d = 2; d < t.dim(); ++d)
        receptive *= t.size(d);
    return {t.size(1) * receptive, t.size(0) * receptive};
}

double calculate_gain(Nonlinearity nonlinearity, double param) {
    switch (nonlinearity) {
        case Nonlinearity::Linear:
        case Nonlinearity::Sigmoid:
            return 1.0;
        case Nonlinearity::Tanh:
            return 5.0 / 3.0;
        case Nonlinearity::Relu:
            return std::sqrt(2.0);
        case Nonlinearity::LeakyRelu:
            return std::sqrt(2.0 / (1.0 + param * param));
    }
    return 1.0;
}

Tensor uniform_(Tensor t, double low, double high, Generator* gen) {
    check_floating("uniform_", t);
    MDL_CHECK(low <= high, ValueError, "uniform_: low must not exceed high, got low=", low,
              " high=", high);
    if (random_init_skipped()) return t;
    NoGradGuard no_grad;
    Generator& g = gen ? *gen : default_generator();
    const uint64_t offset = g.reserve((static_cast<uint64_t>(t.numel()) + 3) / 4);
    if (t.numel() > 0) kernels_for(t.device()).uniform(t, low, high, g.seed(), offset);
    t.bump_version();
    return t;
}

Tensor normal_(Tensor t, double mean, double std, Generator* gen) {
    check_floating("normal_", t);
    MDL_CHECK(std >= 0.0, ValueError, "normal_: std must be non-negative, got ", std);
    if (random_init_skipped()) return t;
    NoGradGuard no_grad;
    Generator& g = gen ? *gen : default_generator();
    const uint64_t offset = g.reserve((static_cast<uint64_t>(t.numel()) + 3) / 4);
    if (t.numel() > 0) kernels_for(t.device()).normal(t, mean, std, g.seed(), offset);
    t.bump_version();
    return t;
}

Tensor constant_(Tensor t, double value) {
    check_floating("constant_", t);
    NoGradGuard no_grad;
    t.fill_(value);
    return t;
}
Tensor zeros_(Tensor t) {
    return constant_(std::move(t), 0.0);
}
Tensor ones_(Tensor t) {
    return constant_(std::move(t), 1.0);
}

Tensor kaiming_uniform_(Tensor t, double a, FanMode mode, Nonlinearity nonlinearity,
                        Generator* gen) {
    check_floating("kaiming_uniform_", t);
    const auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
    const int64_t fan = mode == FanMode::FanIn ? fan_in : fan_out;
    MDL_CHECK(fan > 0, ShapeError, "kaiming_uniform_: fan is 0 for shape ", shape_str(t.shape()));
    const double std = calculate_gain(nonlinearity, a) / std::sqrt(static_cast<double>(fan));
    const double bound = std::sqrt(3.0) * std;  // U(-b, b) has standard deviation b / sqrt(3)
    return uniform_(std::move(t), -bound, bound, gen);
}

Tensor xavier_uniform_(Tensor t, double gain, Generator* gen) {
    check_floating("xavier_uniform_", t);
    const auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(t);
    MDL_CHECK(fan_in + fan_out > 0, ShapeError, "xavier_uniform_: fans are 0 for shape ",
              shape_str(t.shape()));
    const double bound = gain * std::sqrt(6.0 / static_cast<double>(fan_in + fan_out));
    return uniform_(std::move(t), -bound, bound, gen);
}

}  // namespace minidl::nn::init
