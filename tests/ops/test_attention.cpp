// tests/ops/test_attention.cpp — scaled dot-product attention (ops/attention.h): the fused CPU
// kernel against PyTorch (attention_*.json: padding, causal, Lq != Lk; forward and every
// gradient), float64 gradchecks (several tiles, padding, causal), the fused kernel against the
// composite with dropout (the same Philox mask by construction), fully masked rows, 16-bit
// inputs, and bad arguments.
//
// Tolerances: fixtures rtol 1e-5 / atol 1e-6 (F32); fused vs composite rtol 1e-5 / atol 1e-6;
// F16 and BF16 against F32 at 1 % / 3 % in relative L2 norm.
#include <doctest/doctest.h>

#include <cmath>

#include "core/autograd.h"
#include "core/check.h"
#include "core/rng.h"
#include "ops/ops.h"
#include "tests/support/compare.h"
#include "tests/support/fixtures.h"
#include "tests/support/gradcheck.h"

using namespace minidl;
using namespace minidl::test;

namespace {

// Outputs and the gradients of sum(out * up) for q, k and v.
struct Result {
    Tensor out, gq, gk, gv;
};

template <typename Attention>
Result run(const Attention& attention, const Tensor& q0, const Tensor& k0, const Tensor& v0,
           const Tensor& up) {
    Tensor q = q0.clone().set_requires_grad(), k = k0.clone().set_requires_grad(),
           v = v0.clone().set_requires_grad();
    Tensor out = attention(q, k, v);
    sum(mul(out, up.to(out.dtype()))).backward();
    return {out, q.grad(), k.grad(), v.grad()};
}

double rel_l2(const Tensor& a, const Tensor& b) {
    const Tensor a32 = a.to(DType::F32), b32 = b.to(DType::F32);
    return global_l2_norm({a32 - b32}) / global_l2_norm({b32});
}

}  // namespace

TEST_CASE("ops/attention: the fused kernel matches PyTorch (attention_*.json)") {
    for (const std::string name :
         {"attention_padding", "attention_causal", "attention_cross_padding"}) {
        CAPTURE(name);
        const json fx = load_fixture(name);
        AttentionOptions o{.causal = fx.at("causal").get<bool>()};
        if (fx.contains("key_mask")) o.key_mask = tensor_from_json(fx.at("key_mask"));
        const Result r =
            run([&](auto& q, auto& k, auto& v) { return scaled_dot_product_attention(q, k, v, o); },
                tensor_from_json(fx.at("q")), tensor_from_json(fx.at("k")),
                tensor_from_json(fx.at("v")), tensor_from_json(fx.at("upstream")));
        double err = check_close(r.out, values_from_json(fx.at("output")), 1e-5, 1e-6, "output");
        err = std::max(err, check_close(r.gq, values_from_json(fx.at("grad_q")), 1e-5, 1e-6, "dq"));
        err = std::max(err, check_close(r.gk, values_from_json(fx.at("grad_k")), 1e-5, 1e-6, "dk"));
        err = std::max(err, check_close(r.gv, values_from_json(fx.at("grad_v")), 1e-5, 1e-6, "dv"));
        MESSAGE(name << ": max relative error " << err);
    }
}

TEST_CASE("ops/attention: float64 gradcheck over several tiles, with padding and causal") {
    // 70 keys: two key tiles and two query tiles of the kernel (64 rows each).
    const Tensor q = rand64({1, 1, 70, 3}, 1), k = rand64({1, 1, 70, 3}, 2),
                 v = rand64({1, 1, 70, 3}, 3);
    std::vector<double> mask(70, 1.0);
    for (int j = 60; j < 70; ++j)
        mask[static_cast<size_t>(j)] = 0.0;
    const Tensor key_mask = Tensor::from_vector(mask, {1, 70});
    CHECK(gradcheck(
        [&](auto& x) {
            return scaled_dot_product_attention(x[0], x[1], x[2], {.key_mask = key_mask});
        },
        {q, k, v}, {}, "padded, 2 x 2 tiles"));
    const Tensor qc = rand64({2, 2, 6, 4}, 4), kc = rand64({2, 2, 6, 4}, 5),
                 vc = rand64({2, 2, 6, 4}, 6);
    CHECK(gradcheck(
        [&](auto& x) {
            return scaled_dot_product_attention(x[0], x[1], x[2], {.causal = true, .scale = 0.7});
        },
        {qc, kc, vc}, {}, "causal, scale 0.7"));
}

TEST_CASE("ops/attention: fused equals the composite, dropout included (the same Philox mask)") {
    Generator data(11);
    const int64_t B = 2, H = 2, L = 130, D = 16;  // 3 tiles of queries and of keys
    const Tensor q = Tensor::randn({B, H, L, D}, &data), k = Tensor::randn({B, H, L, D}, &data),
                 v = Tensor::randn({B, H, L, D}, &data), up = Tensor::randn({B, H, L, D}, &data);
    std::vector<double> mask(static_cast<size_t>(B * L), 1.0);
    for (int64_t j = 100; j < L; ++j)
        mask[static_cast<size_t>(L + j)] = 0.0;  // batch 1 padded
    const Tensor key_mask = Tensor::from_vector(mask, {B, L});
    for (double p : {0.0, 0.1}) {
        for (bool causal : {false, true}) {
            CAPTURE(p);
            CAPTURE(causal);
            Generator g1(77), g2(77);
            const AttentionOptions o1{
                .key_mask = key_mask, .causal = causal, .dropout_p = p, .generator = &g1};
            AttentionOptions o2 = o1;
            o2.generator = &g2;
            const Result fused =
                run([&](auto& a, auto& b,
                        auto& c) { return scaled_dot_product_attention(a, b, c, o1); },
                    q, k, v, up);
            const Result composite =
                run([&](auto& a, auto& b, auto& c) { return attention_composite(a, b, c, o2); }, q,
                    k, v, up);
            CHECK(g1.state().offset == g2.state().offset);  // the same counters reserved
            check_close(fused.out, composite.out, 1e-5, 1e-6, "output");
            check_close(fused.gq, composite.gq, 1e-5, 1e-6, "dq");
            check_close(fused.gk, composite.gk, 1e-5, 1e-6, "dk");
            check_close(fused.gv, composite.gv, 1e-5, 1e-6, "dv");
        }
    }
    // Not training: no dropout, and no counters reserved.
    Generator g(5);
    const Tensor a = scaled_dot_product_attention(
        q, k, v, {.dropout_p = 0.5, .training = false, .generator = &g});
    CHECK(g.state().offset == 0);
    check_close(a, scaled_dot_product_attention(q, k, v), 0, 0, "eval ignores dropout");
}

TEST_CASE("ops/attention: a row whose keys are all masked gives zeros, not NaN") {
    Generator data(3);
    const Tensor q = Tensor::randn({2, 1, 3, 4}, &data), k = Tensor::randn({2, 1, 5, 4}, &data),
                 v = Tensor::randn({2, 1, 5, 4}, &data);
    const Tensor key_mask =
        Tensor::from_vector(std::vector<int64_t>{1, 1, 0, 0, 0, 0, 0, 0, 0, 0}, {2, 5});
    const Result r =
        run([&](auto& a, auto& b,
                auto& c) { return scaled_dot_product_attention(a, b, c, {.key_mask = key_mask}); },
            q, k, v, Tensor::ones({2, 1, 3, 4}));
    const std::vector<double> out = r.out.to_vector<double>();
    for (size_t i = 0; i < out.size(); ++i) {
        CHECK(std::isfinite(out[i]));
        if (i >= 12) CHECK(out[i] == 0.0);  // batch 1: every key padded
    }
    for (const Tensor& g : {r.gq, r.gk, r.gv})
        for (double x : g.to_vector<double>())
            CHECK(std::isfinite(x));
    // Batch 0 sees keys 0 and 1 only: masked keys get no gradient.
    const std::vector<double> gv = r.gv.to_vector<double>();
    for (int j = 2; j < 5; ++j)
        for (int d = 0; d < 4; ++d)
            CHECK(gv[static_cast<size_t>(j * 4 + d)] == 0.0);
}

TEST_CASE("ops/attention: F16 and BF16 inputs compute in float and stay close to F32") {
    Generator data(8);
    const Tensor q = Tensor::randn({2, 2, 40, 16}, &data), k = Tensor::randn({2, 2, 40, 16}, &data),
                 v = Tensor::randn({2, 2, 40, 16}, &data),
                 up = Tensor::randn({2, 2, 40, 16}, &data);
    auto attend = [](auto& a, auto& b, auto& c) { return scaled_dot_product_attention(a, b, c); };
    const Result f32 = run(attend, q, k, v, up);
    for (DType dt : {DType::F16, DType::BF16}) {
        CAPTURE(dt);
        const Result low = run(attend, q.to(dt), k.to(dt), v.to(dt), up);
        CHECK(low.out.dtype() == dt);
        CHECK(low.gq.dtype() == dt);
        const double bound = dt == DType::F16 ? 0.01 : 0.03;
        CHECK(rel_l2(low.out, f32.out) < bound);
        CHECK(rel_l2(low.gq, f32.gq) < bound);
        CHECK(rel_l2(low.gk, f32.gk) < bound);
        CHECK(rel_l2(low.gv, f32.gv) < bound);
    }
}

TEST_CASE("ops/attention: bad arguments name the argument and the shapes") {
    const Tensor q = Tensor::zeros({2, 2, 3, 4}), k = Tensor::zeros({2, 2, 5, 4});
    CHECK_THROWS_WITH_AS(scaled_dot_product_attention(q, Tensor::zeros({2, 2, 5, 3}), k),
                         doctest::Contains("[2, 2, 5, 3]"), ShapeError);
    CHECK_THROWS_WITH_AS(scaled_dot_product_attention(q, k, Tensor::zeros({2, 2, 4, 4})),
                         doctest::Contains("v must have k's shape"), ShapeError);
    CHECK_THROWS_AS(scaled_dot_product_attention(Tensor::zeros({2, 3, 4}), k, k), ShapeError);
    CHECK_THROWS_WITH_AS(scaled_dot_product_attention(q, k, k, {.causal = true}),
                         doctest::Contains("Lq = 3"), ShapeError);
    CHECK_THROWS_WITH_AS(scaled_dot_product_attention(q, k, k, {.key_mask = Tensor::ones({2, 3})}),
                         doctest::Contains("key_mask must be [B, Lk] = [2, 5]"), ShapeError);
    CHECK_THROWS_AS(scaled_dot_product_attention(q, k, k, {.dropout_p = 1.0}), ValueError);
    CHECK_THROWS_AS(scaled_dot_product_attention(q, k.to(DType::F64), k), DTypeError);
    CHECK_THROWS_AS(scaled_dot_product_attention(Tensor::zeros({2, 2, 3, 4}, DType::I64), k, k),
                    DTypeError);
}
