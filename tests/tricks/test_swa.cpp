// tests/tricks/test_swa.cpp — SWA against PyTorch: the running equal average
// (swa_averaged_model.json), SWALR's cos/linear annealing (lr_swalr_*.json), update_bn, the
// torchcontrib-style swap, and invariances (the average of a constant is the constant).
#include <doctest/doctest.h>

#include "core/kernels.h"
#include "nn/batch_norm.h"
#include "nn/linear.h"
#include "ops/elementwise.h"
#include "optim/sgd.h"
#include "tests/support/compare.h"
#include "tests/support/tiny_model.h"
#include "tricks/swa.h"

using namespace minidl;
using namespace minidl::test;

namespace {
struct BareLinear : nn::Cloneable<BareLinear> {
    BareLinear() { reset(); }
    void reset() override {
        fc = register_module("fc", std::make_shared<nn::Linear>(3, 2, /*bias=*/false));
    }
    std::shared_ptr<nn::Linear> fc;
};

struct WithBatchNorm : nn::Cloneable<WithBatchNorm, nn::UnaryModule> {
    WithBatchNorm() { reset(); }
    void reset() override {
        fc = register_module("fc", std::make_shared<nn::Linear>(4, 3));
        bn = register_module("bn", std::make_shared<nn::BatchNorm1d>(3));
    }
    Tensor forward(const Tensor& x) override { return bn->forward(fc->forward(x)); }
    std::shared_ptr<nn::Linear> fc;
    std::shared_ptr<nn::BatchNorm1d> bn;
};
}  // namespace

TEST_CASE("tricks/swa: AveragedModel keeps PyTorch's running equal average") {
    const json fx = load_fixture("swa_averaged_model");
    BareLinear m;
    tricks::AveragedModel swa(m);
    for (const auto& snap : fx.at("snapshots")) {
        {
            NoGradGuard no_grad;
            m.fc->weight.copy_(tensor_from_json(snap));
        }
        CHECK(swa.update_parameters(m));
    }
    CHECK(swa.n_averaged() == fx.at("n_averaged").get<int64_t>());
    const double err = check_close(swa.module().state_dict().at("fc.weight"),
                                   values_from_json(fx.at("average")), 1e-5, 1e-6, "average");
    MESSAGE("swa_averaged_model: max relative error " << err);
}

TEST_CASE("tricks/swa: SWALR anneals like PyTorch (cos and linear)") {
    for (const auto& [name, strategy] :
         {std::pair{"lr_swalr_cos_anneal4_swalr0.05", tricks::AnnealStrategy::Cos},
          std::pair{"lr_swalr_linear_anneal4_swalr0.05", tricks::AnnealStrategy::Linear}}) {
        SUBCASE(name) {
            const json fx = load_fixture(name);
            Tensor p = Tensor::zeros({1}).set_requires_grad();
            optim::SGD opt({p}, {.lr = fx.at("base_lr")});
            tricks::SWALR sched(opt,
                                {.swa_lr = 0.05, .anneal_epochs = 4, .anneal_strategy = strategy});
            std::vector<double> lrs;
            for (size_t i = 0; i < fx.at("lr_before_each_step").size(); ++i) {
                lrs.push_back(opt.param_groups()[0].lr);
                opt.step();
                sched.step();
            }
            const double err = check_close(
                lrs, fx.at("lr_before_each_step").get<std::vector<double>>(), 1e-12, 1e-15, name);
            MESSAGE(std::string(name) << ": max relative error " << err);
        }
    }
}

TEST_CASE("tricks/swa: the average of a constant is the constant, swap twice restores") {
    TinyModel m;
    tricks::AveragedModel swa(m);
    for (int i = 0; i < 5; ++i)
        swa.update_parameters(m);
    for (const auto& [name, p] : m.named_parameters())
        check_close(swa.module().state_dict().at(name), p, 1e-6, 1e-7, name);
    TinyModel other;
    const Tensor live = other.fc1->weight.clone();
    swa.swap_swa_sgd(other);
    CHECK(bitwise_equal(other.fc1->weight, m.fc1->weight));
    swa.swap_swa_sgd(other);
    CHECK(bitwise_equal(other.fc1->weight, live));
}

TEST_CASE("tricks/swa: bound to an optimizer, a skipped step does not enter the average twice") {
    TinyModel m;
    optim::SGD opt(m.parameters(), {.lr = 0.1});
    tricks::AveragedModel swa(m, {}, &opt);
    CHECK(swa.update_parameters(m));        // the first update always counts
    CHECK_FALSE(swa.update_parameters(m));  // no step since
    for (Tensor p : m.parameters())
        p.set_grad(Tensor::ones_like(p));
    opt.step();
    CHECK(swa.update_parameters(m));
    CHECK(swa.n_averaged() == 2);
}

TEST_CASE("tricks/swa: update_bn recomputes BatchNorm statistics over the whole data") {
    WithBatchNorm m;
    tricks::AveragedModel swa(m);
    swa.update_parameters(m);
    Generator gen(4);
    std::vector<Tensor> batches;
    for (int i = 0; i < 3; ++i)
        batches.push_back(Tensor::randn({5, 4}, &gen));
    auto& avg = swa.module_as<WithBatchNorm>();
    avg.eval();
    tricks::update_bn(avg, [&] {
        for (const Tensor& x : batches)
            avg.forward(x);
    });
    CHECK_FALSE(avg.is_training());  // mode restored
    CHECK(avg.bn->momentum() == std::optional<double>(0.1));
    // Cumulative average of the per-batch means = the mean of the whole data (equal batches).
    NoGradGuard no_grad;
    Tensor all = concat(batches, 0);
    Tensor h = avg.fc->forward(all);
    check_close(avg.bn->running_mean, mean(h, 0), 1e-5, 1e-6, "running mean");
    // running_var: the cumulative average of the batches' unbiased variances (PyTorch's rule with
    // momentum None), computed here in double.
    const int64_t C = h.shape()[1];
    std::vector<double> var_avg(static_cast<size_t>(C), 0.0);
    for (const Tensor& x : batches) {
        const std::vector<double> hb = avg.fc->forward(x).to_vector<double>();
        const int64_t n = x.shape()[0];
        for (int64_t c = 0; c < C; ++c) {
            double m = 0, ss = 0;
            for (int64_t i = 0; i < n; ++i)
                m += hb[static_cast<size_t>(i * C + c)] / n;
            for (int64_t i = 0; i < n; ++i) {
                const double d = hb[static_cast<size_t>(i * C + c)] - m;
                ss += d * d;
            }
            var_avg[static_cast<size_t>(c)] += ss / static_cast<double>(n - 1) / batches.size();
        }
    }
    check_close(avg.bn->running_var, var_avg, 1e-5, 1e-6, "running var");
    CHECK(avg.bn->num_batches_tracked.item() == 3.0);
}

TEST_CASE("tricks/swa: state_dict round trip") {
    TinyModel m;
    tricks::AveragedModel a(m);
    a.update_parameters(m);
    a.update_parameters(m);
    tricks::AveragedModel b(TinyModel{});
    b.load_state_dict(a.state_dict());
    CHECK(b.n_averaged() == 2);
    CHECK(bitwise_equal(b.module().state_dict().at("fc2.bias"),
                        a.module().state_dict().at("fc2.bias")));
}

TEST_CASE("tricks/swa: the one-pass average is bitwise the three ops, in every float dtype") {
    // swa_update rounds (current - average), its quotient by n + 1 and the sum each to the
    // dtype, as sub, div and add do. 257 elements: the CUDA kernel's packs and a tail.
    Generator gen(11);
    for (DType dt : {DType::F32, DType::F64, DType::F16, DType::BF16}) {
        CAPTURE(dt);
        for (int64_t n : {1, 2, 3, 7, 1000}) {
            CAPTURE(n);
            Tensor avg = Tensor::randn({257}, &gen).to(dt);
            const Tensor cur =
                Tensor::randn({257}, &gen, DType::F32, Device::cpu(), 0.5, 3.0).to(dt);
            Tensor composite;
            {
                NoGradGuard no_grad;
                composite = avg + (cur - avg) / static_cast<double>(n + 1);
            }
            kernels_for(avg.device()).swa_update(avg, cur, n);
            CHECK(avg.dtype() == dt);
            CHECK(bitwise_equal(avg, composite));
        }
    }
    Tensor a = Tensor::zeros({4});
    CHECK_THROWS_WITH_AS(kernels_for(a.device()).swa_update(a, Tensor::zeros({4}, DType::F64), 1),
                         doctest::Contains("swa_update: average f32 [4]"), std::exception);
}
