// tests/tricks/test_freelb.cpp — FreeLB against the authors' loop run by PyTorch
// (tests/fixtures/make_trick_fixtures.py), per token after an nn::Embedding: one attack with the
// GLUE defaults (freelb_attack.json: the loss of every pass and the accumulated gradients), one
// whose max_norm rescaling binds (freelb_attack_maxnorm.json), a 4-step Adam trajectory through
// train_step (freelb_trajectory.json; delta_0 of each step replayed from the fixture), and
// init_mag = adv_lr = 0 (the clean gradient). The token mask: a right-padded batch against the
// authors' masked loop (freelb_attack_masked.json: the raw U(-1, 1) draw replayed, the mask and the
// per-example scale applied by minidl; the deltas of every pass and the gradients compared), a
// mask of ones giving the unmasked run bit for bit, the mask set per micro-batch from train_step's
// loss callback, and the errors (a mask of the wrong shape, a mask on the EmbeddingBag form).
//
// Tolerances: one attack rtol 1e-5 / atol 1e-6 (f32 ops); trajectories rtol 1e-4 / atol 1e-6.
#include <doctest/doctest.h>

#include "core/autograd.h"
#include "optim/adam.h"
#include "tests/support/token_model.h"
#include "tricks/freelb.h"
#include "tricks/train_step.h"

using namespace minidl;
using namespace minidl::test;

namespace {

tricks::FreeLBOptions options_of(const json& fx) {
    return {.steps = fx.at("steps"),
            .adv_lr = fx.at("adv_lr"),
            .init_mag = fx.at("init_mag"),
            .max_norm = fx.at("max_norm")};
}

// One FreeLB run that also records the perturbation each pass sees: the hooked embedding output
// minus the clean one (`clean` holds the same weights without the hook).
struct RecordedRun {
    std::vector<double> pass_losses;
    std::vector<Tensor> deltas;
    tricks::AttackResult result;
};

RecordedRun run_recorded(tricks::FreeLB& freelb, TokenModel& net, TokenModel& clean,
                         const TokenBatch& batch) {
    RecordedRun rec;
    rec.result = freelb.run(
        [&] {
            {
                NoGradGuard no_grad;
                rec.deltas.push_back(net.embedding->forward(batch.ids) -
                                     clean.embedding->forward(batch.ids));
            }
            Tensor loss = batch.loss(net);
            rec.pass_losses.push_back(loss.item());
            return loss;
        },
        [](const Tensor& l) { l.backward(); });
    return rec;
}

}  // namespace

TEST_CASE(
    "tricks/freelb: one attack matches the authors' loop, max_norm branch included "
    "(freelb_attack*.json)") {
    for (const std::string name : {"freelb_attack", "freelb_attack_maxnorm"}) {
        CAPTURE(name);
        const json fx = load_fixture(name);
        TokenModel net;
        load_init(net, fx);
        const TokenBatch batch = token_batch(fx);
        const std::vector<Tensor> w0 = weights(net);
        tricks::FreeLB freelb(*net.embedding, options_of(fx));
        freelb.set_initial_delta(tensor_from_json(fx.at("delta0")));
        std::vector<double> pass_losses;
        const tricks::AttackResult r = freelb.run(
            [&] {
                Tensor loss = batch.loss(net);
                pass_losses.push_back(loss.item());
                return loss;
            },
            [](const Tensor& l) { l.backward(); });
        CHECK(r.perturbed);
        double err = check_close(pass_losses, fx.at("pass_losses").get<std::vector<double>>(), 1e-5,
                                 1e-6, "pass losses");
        err = std::max(err, check_grads(net, fx.at("grads_after"), 1e-5, 1e-6, "gradient after"));
        // The weights were never touched, and the hook is gone: a forward is the clean one.
        CHECK(all_bitwise_equal(weights(net), w0));
        TokenModel clean;
        load_init(clean, fx);
        CHECK(batch.loss(net).item() == batch.loss(clean).item());
        MESSAGE(name << ": max relative error " << err);
    }
}

TEST_CASE(
    "tricks/freelb: Adam + FreeLB trajectory through train_step matches PyTorch "
    "(freelb_trajectory.json)") {
    const json fx = load_fixture("freelb_trajectory");
    TokenModel net;
    load_init(net, fx);
    optim::Adam opt(net.parameters(), {.lr = fx.at("lr")});
    tricks::FreeLB freelb(*net.embedding, options_of(fx));
    tricks::TrainStepConfig cfg{.optimizer = &opt, .freelb = &freelb};
    std::vector<double> losses;
    for (const json& b : fx.at("batches")) {
        const TokenBatch batch = token_batch(b);
        freelb.set_initial_delta(tensor_from_json(b.at("delta0")));
        losses.push_back(tricks::train_step(cfg, batch.size(), [&](int64_t begin, int64_t end) {
                             return batch.slice(begin, end).loss(net);
                         }).loss);
    }
    double err = check_close(losses, fx.at("losses").get<std::vector<double>>(), 1e-4, 1e-6,
                             "losses (first pass)");
    err = std::max(err, check_state(net, fx.at("final"), 1e-4, 1e-6, "final"));
    MESSAGE("freelb_trajectory: max relative error " << err);
}

TEST_CASE("tricks/freelb: with init_mag and adv_lr 0 the K passes give the clean gradient") {
    const json fx = load_fixture("freelb_attack");
    TokenModel net;
    load_init(net, fx);
    const TokenBatch batch = token_batch(fx);
    batch.loss(net).backward();
    const std::vector<Tensor> clean = gradients(net);
    net.zero_grad();
    tricks::FreeLB freelb(*net.embedding, {.steps = 3, .adv_lr = 0.0, .init_mag = 0.0});
    int passes = 0;
    const tricks::AttackResult r = freelb.run(
        [&] {
            ++passes;
            return batch.loss(net);
        },
        [](const Tensor& l) { l.backward(); });
    CHECK(passes == 3);
    CHECK_FALSE(r.perturbed);
    const std::vector<Tensor> after = gradients(net);
    for (size_t i = 0; i < clean.size(); ++i)
        check_close(after[i], clean[i], 1e-6, 1e-7, "3 passes of loss / 3 = the clean gradient");
    CHECK_THROWS_AS(
        [&] {
            tricks::FreeLB bad(*net.embedding);
            bad.set_initial_delta(Tensor::zeros({2, 2}));
            bad.run([&] { return batch.loss(net); }, [](const Tensor& l) { l.backward(); });
        }(),
        ShapeError);
}

TEST_CASE(
    "tricks/freelb: a right-padded batch with its token mask matches the authors' masked loop "
    "(freelb_attack_masked.json)") {
    const json fx = load_fixture("freelb_attack_masked");
    TokenModel net, clean;
    load_init(net, fx);
    load_init(clean, fx);
    const TokenBatch batch = token_batch(fx);
    const Tensor mask = tensor_from_json(fx.at("mask"));  // I64 [4, 6]
    REQUIRE(mask.dtype() == DType::I64);
    tricks::FreeLB freelb(*net.embedding, options_of(fx));
    freelb.set_token_mask(mask);
    freelb.set_initial_draw(tensor_from_json(fx.at("draw")));
    const RecordedRun r = run_recorded(freelb, net, clean, batch);
    CHECK(r.result.perturbed);
    REQUIRE(r.deltas.size() == 3);
    // delta_0 = draw * mask * init_mag / sqrt(length * C), then two unmasked ascent steps. The
    // recorded delta is (E + delta) - E in f32, off by up to half an ulp of E + delta (~2.4e-7
    // here), which atol covers; its relative error is large only where delta is tiny.
    double delta_abs = 0, delta_rel = 0;
    for (size_t t = 0; t < r.deltas.size(); ++t) {
        const json& expected = t == 0 ? fx.at("delta0") : fx.at("deltas").at(t - 1);
        const CloseResult c =
            compare_close(r.deltas[t].to_vector<double>(), values_from_json(expected), 1e-5, 1e-6);
        INFO("delta_" << t << ": " << c.message);
        CHECK(c.ok);
        delta_abs = std::max(delta_abs, c.max_abs_error);
        delta_rel = std::max(delta_rel, c.max_rel_error);
    }
    double err = check_close(r.pass_losses, fx.at("pass_losses").get<std::vector<double>>(), 1e-5,
                             1e-6, "pass losses");
    err = std::max(err, check_grads(net, fx.at("grads_after"), 1e-5, 1e-6, "gradient after"));
    // Exactly zero at padding before the first step, not after it (the ascent is not masked).
    const std::vector<double> m = values_from_json(fx.at("mask"));
    const std::vector<double> d0 = r.deltas[0].to_vector<double>();
    const std::vector<double> d1 = r.deltas[1].to_vector<double>();
    size_t padded = 0, moved = 0;
    for (size_t i = 0; i < d0.size(); ++i) {
        if (m[i / 8] != 0) continue;
        ++padded;
        CHECK(d0[i] == 0.0);
        moved += d1[i] != 0.0;
    }
    CHECK(padded == 8 * (2 + 4 + 1));
    CHECK(moved > 0);
    CHECK(freelb.token_mask().defined());  // kept for the following runs
    MESSAGE(
        "freelb_attack_masked (rtol 1e-5, atol 1e-6): pass losses and gradients max relative "
        "error "
        << err << "; deltas max absolute error " << delta_abs << ", max relative error "
        << delta_rel);
}

TEST_CASE("tricks/freelb: a token mask of ones gives the unmasked run bit for bit") {
    const json fx = load_fixture("freelb_attack");  // ids [4, 5], no padding
    const TokenBatch batch = token_batch(fx);
    // 0.9 / sqrt(40) in f32 arithmetic rounds differently from its double value rounded to f32
    // (0.6 / sqrt(40) does not): the per-example scale must be rounded as the unmasked one is.
    for (const auto& [dtype, init_mag] :
         {std::pair{DType::I64, 0.6}, std::pair{DType::F32, 0.6}, std::pair{DType::I64, 0.9}}) {
        CAPTURE(dtype);
        CAPTURE(init_mag);
        TokenModel plain, masked;
        load_init(plain, fx);
        load_init(masked, fx);
        const tricks::FreeLBOptions options{
            .steps = 2, .adv_lr = 0.1, .init_mag = init_mag, .seed = 5};
        tricks::FreeLB a(*plain.embedding, options);
        tricks::FreeLB b(*masked.embedding, options);
        b.set_token_mask(Tensor::ones({4, 5}, dtype));
        const auto backward = [](const Tensor& l) { l.backward(); };
        for (int run = 0; run < 2; ++run) {  // the mask stays for the second run
            std::vector<double> la, lb;
            a.run(
                [&] {
                    Tensor l = batch.loss(plain);
                    la.push_back(l.item());
                    return l;
                },
                backward);
            b.run(
                [&] {
                    Tensor l = batch.loss(masked);
                    lb.push_back(l.item());
                    return l;
                },
                backward);
            CHECK(la == lb);
            CHECK(all_bitwise_equal(gradients(plain), gradients(masked)));
        }
        b.set_token_mask(Tensor());
        CHECK_FALSE(b.token_mask().defined());
    }
}

TEST_CASE(
    "tricks/freelb: the token mask set in train_step's loss callback follows the micro-batch") {
    const json fx = load_fixture("freelb_attack_masked");
    const TokenBatch batch = token_batch(fx);
    const Tensor mask = tensor_from_json(fx.at("mask"));
    const Tensor draw = tensor_from_json(fx.at("draw"));
    // By hand: each half of the batch its own run, with its rows of the mask and of the draw.
    TokenModel by_hand;
    load_init(by_hand, fx);
    {
        tricks::FreeLB freelb(*by_hand.embedding, options_of(fx));
        for (int64_t begin : {0, 2}) {
            const TokenBatch half = batch.slice(begin, begin + 2);
            freelb.set_token_mask(mask.narrow0(begin, 2));
            freelb.set_initial_draw(draw.narrow0(begin, 2));
            freelb.run([&] { return half.loss(by_hand) * 0.5; },
                       [](const Tensor& l) { l.backward(); });
        }
    }
    TokenModel net;
    load_init(net, fx);
    tricks::FreeLB freelb(*net.embedding, options_of(fx));
    tricks::TrainStepConfig cfg{.freelb = &freelb, .accum_steps = 2};
    tricks::accumulate_gradients(cfg, batch.size(), [&](int64_t begin, int64_t end) {
        freelb.set_token_mask(mask.narrow0(begin, end - begin));
        freelb.set_initial_draw(draw.narrow0(begin, end - begin));
        return batch.slice(begin, end).loss(net);
    });
    const std::vector<Tensor> expected = gradients(by_hand), got = gradients(net);
    for (size_t i = 0; i < got.size(); ++i)
        check_close(got[i], expected[i], 1e-6, 1e-7, "accumulate_gradients vs by hand");
}

TEST_CASE("tricks/freelb: token mask errors name FreeLB, the argument and the shapes") {
    const json fx = load_fixture("freelb_attack");  // ids [4, 5]: the output is [4, 5, 8]
    TokenModel net, clean;
    load_init(net, fx);
    load_init(clean, fx);
    const TokenBatch batch = token_batch(fx);
    const auto backward = [](const Tensor& l) { l.backward(); };
    for (const Shape& wrong : {Shape{4, 6}, Shape{5, 4}, Shape{4}, Shape{4, 5, 1}, Shape{2, 5}}) {
        CAPTURE(shape_str(wrong));
        tricks::FreeLB freelb(*net.embedding);
        freelb.set_token_mask(Tensor::ones(wrong));  // the shape is known only at hook time
        const std::string message = "FreeLB: set_token_mask's mask has shape " + shape_str(wrong) +
                                    ", but the embedding output is [4, 5, 8]: expected [4, 5]";
        CHECK_THROWS_WITH_AS(freelb.run([&] { return batch.loss(net); }, backward),
                             doctest::Contains(message.c_str()), ShapeError);
        // The hook is gone: a forward is the clean one.
        CHECK(batch.loss(net).item() == batch.loss(clean).item());
    }

    nn::EmbeddingBag bag(20, 8);
    tricks::FreeLB per_bag(bag);
    CHECK_THROWS_WITH_AS(per_bag.set_token_mask(Tensor::ones({4, 5})),
                         doctest::Contains("FreeLB: set_token_mask's mask (shape [4, 5]) needs the "
                                           "per-token form (nn::Embedding"),
                         ValueError);
    CHECK_FALSE(per_bag.token_mask().defined());
    CHECK_NOTHROW(per_bag.set_token_mask(Tensor()));  // no mask: nothing to refuse
}
