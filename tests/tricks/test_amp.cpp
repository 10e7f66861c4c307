// tests/tricks/test_amp.cpp — autocast (amp_bf16_linear_ce.json: PyTorch's CPU bf16 autocast),
// the GradScaler state machine (grad_scaler_pattern.json replays PyTorch's update rule), injected
// overflows, and the pitfalls that must raise.
#include <doctest/doctest.h>

#include <limits>
#include <optional>

#include "optim/sgd.h"
#include "tests/support/compare.h"
#include "tests/support/tiny_model.h"
#include "tricks/amp.h"
#include "tricks/ema.h"

using namespace minidl;
using namespace minidl::test;

namespace {
struct LinearOnly : nn::Cloneable<LinearOnly> {
    LinearOnly() { reset(); }
    void reset() override { fc = register_module("fc", std::make_shared<nn::Linear>(8, 3)); }
    std::shared_ptr<nn::Linear> fc;
};

void set_grads(const std::vector<Tensor>& params, double value) {
    NoGradGuard no_grad;
    for (const Tensor& p : params)
        p.set_grad(Tensor::full(p.shape(), value, p.dtype()));
}
}  // namespace

TEST_CASE("tricks/amp: bf16 autocast of linear + cross-entropy matches PyTorch") {
    const json fx = load_fixture("amp_bf16_linear_ce");
    LinearOnly m;
    StateDict sd;
    sd.tensors["fc.weight"] = tensor_from_json(fx.at("weight"));
    sd.tensors["fc.bias"] = tensor_from_json(fx.at("bias"));
    m.load_state_dict(sd);
    Tensor logits, loss;
    {
        amp::Autocast ac(DType::BF16);
        logits = m.fc->forward(tensor_from_json(fx.at("x")));
        loss = cross_entropy(logits, tensor_from_json(fx.at("labels")));
    }
    CHECK(logits.dtype() == DType::BF16);  // torch.bfloat16
    CHECK(loss.dtype() == DType::F32);     // torch.float32
    loss.backward();
    CHECK(m.fc->weight.grad().dtype() == DType::F32);  // master weights get F32 gradients
    // bf16 keeps 8 significant bits: relative tolerance 1.6e-2 (2^-6), as the fixture notes.
    double err = check_close(logits, values_from_json(fx.at("logits")), 1.6e-2, 1e-3, "logits");
    err = std::max(err,
                   check_close({loss.item()}, {fx.at("loss").get<double>()}, 1.6e-2, 1e-3, "loss"));
    err = std::max(err, check_close(m.fc->weight.grad(), values_from_json(fx.at("weight_grad")),
                                    1.6e-2, 1e-3, "weight grad"));
    err = std::max(err, check_close(m.fc->bias.grad(), values_from_json(fx.at("bias_grad")), 1.6e-2,
                                    1e-3, "bias grad"));
    MESSAGE("amp_bf16_linear_ce: max relative error " << err);
    CHECK_FALSE(autocast::is_enabled());  // the scope restored the state
}

TEST_CASE("tricks/amp: autocast keeps range-sensitive ops in F32 and nests") {
    Tensor x = Tensor::randn({4, 5});
    amp::Autocast outer(DType::F16);
    Tensor h = matmul(x, Tensor::randn({5, 5}));
    CHECK(h.dtype() == DType::F16);
    CHECK(softmax(h, 1).dtype() == DType::F32);
    CHECK(log_softmax(h, 1).dtype() == DType::F32);
    CHECK(sum(h).dtype() == DType::F32);
    CHECK(layer_norm(h, {5}).dtype() == DType::F32);
    CHECK(exp(h).dtype() == DType::F32);
    CHECK(relu(h).dtype() == DType::F16);  // elementwise ops keep their input's dtype
    {
        amp::Autocast off(DType::F16, false);
        CHECK(matmul(x, x.t()).dtype() == DType::F32);
    }
    CHECK(autocast::is_enabled());
}

TEST_CASE("tricks/amp: GradScaler follows PyTorch's rule step by step (grad_scaler_pattern)") {
    const json fx = load_fixture("grad_scaler_pattern");
    TinyModel net;
    optim::SGD opt(net.parameters(), {.lr = 0.1});
    amp::GradScaler scaler({.init_scale = fx.at("init_scale"),
                            .growth_factor = fx.at("growth_factor"),
                            .backoff_factor = fx.at("backoff_factor"),
                            .growth_interval = fx.at("growth_interval")});
    const auto infs = fx.at("found_inf_each_step").get<std::vector<bool>>();
    const auto stepped = fx.at("optimizer_stepped").get<std::vector<bool>>();
    const auto scales = fx.at("scale_after_each_update").get<std::vector<double>>();
    for (size_t i = 0; i < infs.size(); ++i) {
        CAPTURE(i);
        const Tensor before = net.fc1->weight.clone();
        const int64_t steps_before = opt.step_count();
        set_grads(net.parameters(), scaler.get_scale());
        if (infs[i]) {  // one overflowed element in one gradient
            NoGradGuard no_grad;
            Tensor g = net.fc2->bias.grad();
            g.copy_(Tensor::from_vector(std::vector<float>{1.0f, INFINITY}, {2}));
        }
        CHECK(scaler.step(opt) == stepped[i]);
        scaler.update();
        CHECK(scaler.get_scale() == scales[i]);  // powers of two: exact
        CHECK(opt.step_count() == steps_before + (stepped[i] ? 1 : 0));
        if (!stepped[i]) CHECK(bitwise_equal(net.fc1->weight, before));
        if (stepped[i])  // unscaled gradient 1, lr 0.1
            check_close(net.fc1->weight, before - 0.1, 1e-6, 1e-6, "SGD step on unscaled grads");
    }
}

TEST_CASE("tricks/amp: an injected overflow skips everything and backs off") {
    TinyModel net;
    optim::SGD opt(net.parameters(), {.lr = 0.1});
    tricks::EMA ema(net, {.decay = 0.9, .optimizer = &opt});
    amp::GradScaler scaler;
    const StateDict before = net.state_dict();
    std::vector<Tensor> snapshot;
    for (const Tensor& p : net.parameters())
        snapshot.push_back(p.clone());
    set_grads(net.parameters(), std::numeric_limits<double>::quiet_NaN());
    CHECK_FALSE(scaler.step(opt));
    scaler.update();
    CHECK_FALSE(ema.update());
    CHECK(ema.num_updates() == 0);
    CHECK(opt.step_count() == 0);
    CHECK(scaler.get_scale() == 32768.0);
    const std::vector<Tensor> params = net.parameters();
    for (size_t i = 0; i < params.size(); ++i)
        CHECK(bitwise_equal(params[i], snapshot[i]));
}

TEST_CASE("tricks/amp: unscale twice or step twice in one iteration raises") {
    TinyModel net;
    optim::SGD opt(net.parameters(), {.lr = 0.1});
    amp::GradScaler scaler;
    set_grads(net.parameters(), 1.0);
    scaler.unscale_(opt);
    CHECK_THROWS_WITH_AS(scaler.unscale_(opt), doctest::Contains("already"), StateError);
    CHECK(scaler.step(opt));
    CHECK_THROWS_WITH_AS(scaler.step(opt), doctest::Contains("already"), StateError);
    scaler.update();
    set_grads(net.parameters(), 1.0);
    CHECK(scaler.step(opt));  // a new iteration
}

TEST_CASE("tricks/amp: clipping through the scaler unscales first, exactly once") {
    TinyModel net;
    optim::SGD opt(net.parameters(), {.lr = 0.0});
    amp::GradScaler scaler({.init_scale = 1024.0});
    set_grads(net.parameters(), 1024.0 * 3.0);  // unscaled: every element is 3
    int64_t numel = 0;
    for (const Tensor& p : net.parameters())
        numel += p.numel();
    const double norm = scaler.clip_grad_norm(opt, 1.0);
    check_close({norm}, {3.0 * std::sqrt(static_cast<double>(numel))}, 1e-6, 0, "pre-clip norm");
    CHECK(scaler.step(opt));  // does not unscale again
    double total = 0;
    for (const Tensor& p : net.parameters())
        for (double g : p.grad().to_vector<double>())
            total += g * g;
    check_close({std::sqrt(total)}, {1.0}, 1e-5, 0, "clipped norm");
}

TEST_CASE(
    "tricks/amp: a disabled scaler is the identity, and BF16 needs no scaling where F16 "
    "does") {
    LinearOnly m;
    amp::GradScaler off({.enabled = false});
    Tensor loss = Tensor::scalar(2.0);
    CHECK(off.scale(loss).is_same(loss));
    CHECK(off.get_scale() == 1.0);
    optim::SGD sgd(m.parameters(), {.lr = 1.0});
    set_grads(m.parameters(), std::numeric_limits<double>::infinity());
    CHECK(off.step(sgd));  // no inf check: the step is taken, as PyTorch's disabled scaler does
    off.update();
    CHECK(off.get_scale() == 1.0);

    // Gradients of about 1e-9 at the 16-bit linear's output: below F16's smallest subnormal
    // (6e-8), they flush to zero in an unscaled F16 backward (the reason F16 needs a loss
    // scaler), while BF16, with F32's exponent range, keeps them.
    Generator gen(3);
    const Tensor x = Tensor::randn({4, 8}, &gen);
    auto weight_grad = [&](std::optional<DType> dtype) {
        m.zero_grad();
        Tensor y;
        {
            amp::Autocast ac(dtype.value_or(DType::BF16), dtype.has_value());
            y = m.fc->forward(x);
        }
        (sum(y.to(DType::F32)) * 1e-9).backward();
        return m.fc->weight.grad().clone();
    };
    const Tensor f32 = weight_grad(std::nullopt);
    const Tensor f16 = weight_grad(DType::F16);
    const Tensor bf16 = weight_grad(DType::BF16);
    CHECK(global_l2_norm({f32}) > 0);
    CHECK(global_l2_norm({f16}) == 0.0);  // lost without a scaler
    // Each element is a sum of 4 products rounded to 8 bits: within 3 % in relative L2 norm.
    CHECK(global_l2_norm({bf16 - f32}) < 0.03 * global_l2_norm({f32}));
}

TEST_CASE("tricks/amp: state_dict round trip") {
    amp::GradScaler a({.init_scale = 256.0, .growth_interval = 3});
    TinyModel net;
    optim::SGD opt(net.parameters(), {.lr = 0.1});
    for (int i = 0; i < 2; ++i) {
        set_grads(net.parameters(), 1.0);
        a.step(opt);
        a.update();
    }
    amp::GradScaler b({.growth_interval = 3});
    b.load_state_dict(a.state_dict());
    CHECK(b.get_scale() == 256.0);
    CHECK(b.growth_tracker() == 2);
}
