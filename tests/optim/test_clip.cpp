// tests/optim/test_clip.cpp — clip_grad_norm against torch.nn.utils.clip_grad_norm_ (PyTorch 1.13,
// tests/fixtures/clip_grad_norm_*.json), and the inf / general p norms against direct sums here.
//
// Tolerance: rtol 1e-5, atol 1e-6 (single f32 values; the norm is accumulated in double here and
// in float by PyTorch).
#include <doctest/doctest.h>

#include <cmath>

#include "core/check.h"
#include "optim/clip.h"
#include "tests/support/compare.h"
#include "tests/support/fixtures.h"

using namespace minidl;
using minidl::test::check_close;
using minidl::test::json;
using minidl::test::load_fixture;
using minidl::test::tensor_from_json;
using minidl::test::values_from_json;

TEST_CASE("optim/clip: clip_grad_norm matches PyTorch on clip_grad_norm_*.json") {
    for (const char* name : {"clip_grad_norm_clipped", "clip_grad_norm_not_clipped"}) {
        SUBCASE(name) {
            const json fx = load_fixture(name);
            std::vector<Tensor> params;
            for (const auto& g : fx.at("grads_before")) {
                Tensor grad = tensor_from_json(g, DType::F32);
                Tensor p = Tensor::zeros(grad.shape()).set_requires_grad();
                p.set_grad(grad);
                params.push_back(p);
            }
            // A parameter without a gradient is ignored.
            params.push_back(Tensor::zeros({4}).set_requires_grad());
            const double total =
                optim::clip_grad_norm(params, fx.at("max_norm"), fx.at("norm_type"));
            double err = check_close(std::vector<double>{total},
                                     std::vector<double>{fx.at("returned_total_norm")}, 1e-5, 1e-6,
                                     std::string(name) + " total norm");
            for (size_t i = 0; i < fx.at("grads_after").size(); ++i)
                err = std::max(
                    err, check_close(params[i].grad(), values_from_json(fx.at("grads_after")[i]),
                                     1e-5, 1e-6, std::string(name) + " grad"));
            MESSAGE(std::string(name) << ": max relative error " << err);
        }
    }
}

TEST_CASE("optim/clip: inf and 1-norms, and the empty case") {
    const std::vector<double> g1 = {0.5, -3.0, 2.0, 1.0}, g2 = {-1.5, 0.25};
    auto make = [&] {
        std::vector<Tensor> ps;
        for (const auto* g : {&g1, &g2}) {
            Tensor p = Tensor::zeros({static_cast<int64_t>(g->size())}).set_requires_grad();
            p.set_grad(Tensor::from_vector(*g, {static_cast<int64_t>(g->size())}, DType::F32));
            ps.push_back(p);
        }
        return ps;
    };
    // Expected norms summed here directly.
    double inf_norm = 0.0, one_norm = 0.0;
    for (const auto* g : {&g1, &g2})
        for (double v : *g) {
            inf_norm = std::max(inf_norm, std::abs(v));
            one_norm += std::abs(v);
        }
    {
        std::vector<Tensor> ps = make();
        const double total = optim::clip_grad_norm(ps, 1.5, optim::kInfNorm);
        CHECK(total == doctest::Approx(inf_norm).epsilon(1e-12));
        const double coef = 1.5 / (inf_norm + 1e-6);
        std::vector<double> expected;
        for (double v : g1)
            expected.push_back(v * coef);
        check_close(ps[0].grad(), expected, 1e-6, 1e-7, "inf-norm clipped");
    }
    {
        std::vector<Tensor> ps = make();
        const double total = optim::clip_grad_norm(ps, 100.0, 1.0);
        CHECK(total == doctest::Approx(one_norm).epsilon(1e-6));
        check_close(ps[1].grad(), g2, 0.0, 0.0, "under the limit: unchanged");
    }
    std::vector<Tensor> none = {Tensor::zeros({3}).set_requires_grad()};
    CHECK(optim::clip_grad_norm(none, 1.0) == 0.0);
    std::vector<Tensor> ps = make();
    Tensor(ps[0].grad()).fill_(std::nan(""));
    CHECK_THROWS_AS(optim::clip_grad_norm(ps, 1.0, 2.0, /*error_if_nonfinite=*/true), ValueError);
    CHECK_THROWS_AS(optim::clip_grad_norm(ps, 1.0, -2.0), ValueError);
}
