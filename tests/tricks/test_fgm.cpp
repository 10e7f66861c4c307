// tests/tricks/test_fgm.cpp — FGM against PyTorch: one attack (fgm_attack.json) and whole Adam
// trajectories with FGM, alone (e2e_adam_fgm.json) and with 2-step gradient accumulation, where
// each micro-batch's attack follows its own clean gradient (e2e_adam_fgm_accum2.json); at epsilon 0
// (fgm_epsilon0.json: the adversarial pass still runs); non-finite norms; a throwing pass.
//
// Tolerances: single attack rtol 1e-5 / atol 1e-6 (f32 ops); trajectories rtol 1e-4 / atol 1e-6.
#include <doctest/doctest.h>

#include <limits>

#include "core/autograd.h"
#include "nn/embedding.h"
#include "nn/linear.h"
#include "optim/adam.h"
#include "tests/support/compare.h"
#include "tests/support/tiny_model.h"
#include "tests/support/token_model.h"
#include "tricks/fgm.h"

using namespace minidl;
using namespace minidl::test;

namespace {

// logits = head(mean over tokens of embedding(ids)), the fixture's model.
struct MeanEmbeddingModel : nn::Cloneable<MeanEmbeddingModel> {
    MeanEmbeddingModel() { reset(); }
    void reset() override {
        embedding = register_module("embedding", std::make_shared<nn::Embedding>(6, 4));
        head = register_module("head", std::make_shared<nn::Linear>(4, 3));
    }
    Tensor forward(const Tensor& ids) { return head->forward(mean(embedding->forward(ids), 1)); }
    std::shared_ptr<nn::Embedding> embedding;
    std::shared_ptr<nn::Linear> head;
};

// Trains TinyModel with Adam on a fixture's batches: per step zero_grad, then for each of
// `accum` micro-batches the clean backward of loss / accum and, with FGM, the attack, the
// adversarial backward and the restore; then the optimizer step.
std::vector<double> train_fixture(const json& fx, TinyModel& net, tricks::FGM* fgm, int accum) {
    optim::Adam opt(net.parameters(), {.lr = fx.at("lr")});
    const std::vector<FixtureBatch> batches = load_batches(fx);
    std::vector<double> losses;
    for (size_t step = 0; step * accum < batches.size(); ++step) {
        opt.zero_grad();
        for (int mb = 0; mb < accum; ++mb) {
            const FixtureBatch& b = batches[step * accum + mb];
            if (fgm) fgm->begin_micro_batch();
            Tensor loss = cross_entropy(net.forward(b.ids, b.offsets), b.labels);
            losses.push_back(loss.item());
            (loss / static_cast<double>(accum)).backward();
            if (fgm) {
                fgm->attack();
                (cross_entropy(net.forward(b.ids, b.offsets), b.labels) /
                 static_cast<double>(accum))
                    .backward();
                fgm->restore();
            }
        }
        opt.step();
    }
    return losses;
}

double check_trajectory(const json& fx, const std::vector<double>& losses, nn::Module& net) {
    double err =
        check_close(losses, fx.at("losses").get<std::vector<double>>(), 1e-4, 1e-6, "losses");
    const StateDict final_state = net.state_dict();
    for (const auto& [name, t] : fx.at("final").items())
        err = std::max(err, check_close(final_state.at(name), values_from_json(t), 1e-4, 1e-6,
                                        "final " + name));
    return err;
}

}  // namespace

TEST_CASE("tricks/fgm: one attack matches PyTorch (fgm_attack.json) and restores bitwise") {
    const json fx = load_fixture("fgm_attack");
    MeanEmbeddingModel model;
    StateDict init;
    for (const char* name : {"embedding.weight", "head.weight", "head.bias"})
        init.tensors[name] = tensor_from_json(fx.at(name));
    model.load_state_dict(init);
    const Tensor ids = tensor_from_json(fx.at("ids")), labels = tensor_from_json(fx.at("labels"));
    const Tensor w0 = model.embedding->weight.clone();

    Tensor loss = cross_entropy(model.forward(ids), labels);
    double err =
        check_close({loss.item()}, {fx.at("loss_clean").get<double>()}, 1e-5, 1e-6, "clean loss");
    loss.backward();
    for (const auto& [name, p] : model.named_parameters())
        err = std::max(err, check_close(p.grad(), values_from_json(fx.at("grads_clean").at(name)),
                                        1e-5, 1e-6, "clean grad " + name));

    tricks::FGM fgm(model, {.epsilon = fx.at("epsilon")});
    const tricks::AttackResult r = fgm.attack();
    CHECK(r.perturbed);
    CHECK_FALSE(r.nonfinite);
    err = std::max(
        err, check_close(model.embedding->weight - w0, values_from_json(fx.at("perturbation")),
                         1e-5, 1e-6, "perturbation"));
    Tensor adv = cross_entropy(model.forward(ids), labels);
    err = std::max(err, check_close({adv.item()}, {fx.at("loss_adversarial").get<double>()}, 1e-5,
                                    1e-6, "adversarial loss"));
    adv.backward();
    for (const auto& [name, p] : model.named_parameters())
        err = std::max(
            err, check_close(p.grad(), values_from_json(fx.at("grads_accumulated").at(name)), 1e-5,
                             1e-6, "accumulated grad " + name));
    fgm.restore();
    CHECK(bitwise_equal(model.embedding->weight, w0));
    CHECK_THROWS_AS(fgm.restore(), StateError);  // no second restore without an attack
    MESSAGE("fgm_attack: max relative error " << err);
}

TEST_CASE("tricks/fgm: Adam + FGM trajectory matches PyTorch (e2e_adam_fgm.json)") {
    const json fx = load_fixture("e2e_adam_fgm");
    TinyModel net;
    load_init(net, fx);
    tricks::FGM fgm(net, {.epsilon = fx.at("fgm_epsilon")});
    const std::vector<double> losses = train_fixture(fx, net, &fgm, 1);
    MESSAGE("e2e_adam_fgm: max relative error " << check_trajectory(fx, losses, net));
}

TEST_CASE(
    "tricks/fgm: with accumulation each micro-batch attacks along its own gradient "
    "(e2e_adam_fgm_accum2.json)") {
    const json fx = load_fixture("e2e_adam_fgm_accum2");
    TinyModel net;
    load_init(net, fx);
    tricks::FGM fgm(net, {.epsilon = fx.at("fgm_epsilon")});
    const std::vector<double> losses = train_fixture(fx, net, &fgm, 2);
    MESSAGE("e2e_adam_fgm_accum2: max relative error " << check_trajectory(fx, losses, net));

    // Without begin_micro_batch the second micro-batch would follow the accumulated gradient:
    // a different trajectory, which the fixture rejects.
    TinyModel wrong;
    load_init(wrong, fx);
    tricks::FGM naive(wrong, {.epsilon = fx.at("fgm_epsilon")});
    optim::Adam opt(wrong.parameters(), {.lr = fx.at("lr")});
    const std::vector<FixtureBatch> batches = load_batches(fx);
    for (size_t step = 0; step < 6; ++step) {
        opt.zero_grad();
        for (int mb = 0; mb < 2; ++mb) {
            const FixtureBatch& b = batches[step * 2 + mb];
            (cross_entropy(wrong.forward(b.ids, b.offsets), b.labels) / 2.0).backward();
            naive.attack();
            (cross_entropy(wrong.forward(b.ids, b.offsets), b.labels) / 2.0).backward();
            naive.restore();
        }
        opt.step();
    }
    const CloseResult r =
        compare_close(wrong.state_dict().at("embedding.weight").to_vector<double>(),
                      values_from_json(fx.at("final").at("embedding.weight")), 1e-4, 1e-6);
    CHECK_FALSE(r.ok);
}

TEST_CASE(
    "tricks/fgm: at epsilon 0 the adversarial pass still runs: twice the clean gradient "
    "(fgm_epsilon0.json)") {
    const json fx = load_fixture("fgm_epsilon0");
    TokenModel net;
    load_init(net, fx);
    const TokenBatch batch = token_batch(fx);
    batch.loss(net).backward();
    double err = check_grads(net, fx.at("grads_clean"), 1e-5, 1e-6, "clean grad");
    const std::vector<Tensor> clean = gradients(net), w0 = weights(net);
    tricks::FGM fgm(net, {.epsilon = 0.0});
    int passes = 0;
    const tricks::AttackResult r = fgm.run([&] {
        batch.loss(net).backward();
        ++passes;
    });
    CHECK(passes == 1);
    CHECK_FALSE(r.perturbed);
    err = std::max(err, check_grads(net, fx.at("grads_after"), 1e-5, 1e-6, "gradient after"));
    std::vector<Tensor> twice;
    for (const Tensor& g : clean)
        twice.push_back(g * 2.0);
    CHECK(all_bitwise_equal(gradients(net), twice));
    CHECK(all_bitwise_equal(weights(net), w0));
    MESSAGE("fgm_epsilon0: max relative error " << err);
}

TEST_CASE("tricks/fgm: a zero norm moves nothing, a non-finite one on any tensor moves none") {
    TinyModel net;
    tricks::FGM fgm(net);
    const Tensor w0 = net.embedding->weight.clone();
    net.embedding->weight.set_grad(Tensor::zeros_like(w0));
    tricks::AttackResult r = fgm.attack();
    CHECK_FALSE(r.perturbed);
    CHECK_FALSE(r.nonfinite);
    CHECK(bitwise_equal(net.embedding->weight, w0));
    fgm.restore();

    // Two selected tensors: the first (embedding.weight) with a finite gradient, the second
    // (fc1.weight) overflowed. Checking each norm just before moving its tensor would already
    // have moved the first.
    tricks::FGM both(net, {.filter = {.predicate = [](const std::string& name, const Tensor&) {
                               return name == "embedding.weight" || name == "fc1.weight";
                           }}});
    REQUIRE(both.selection().params()[0].first == "embedding.weight");
    const std::vector<Tensor> before = weights(net);
    {
        NoGradGuard no_grad;
        net.embedding->weight.set_grad(Tensor::ones_like(w0));
        Tensor g = Tensor::zeros_like(net.fc1->weight.detach());
        g.fill_(std::numeric_limits<double>::infinity());
        net.fc1->weight.set_grad(g);
    }
    r = both.attack();
    CHECK_FALSE(r.perturbed);
    CHECK(r.nonfinite);
    CHECK(all_bitwise_equal(weights(net), before));
    both.restore();
    CHECK(all_bitwise_equal(weights(net), before));
}

TEST_CASE("tricks/fgm: an adversarial pass that throws leaves the table restored") {
    TinyModel net;
    net.embedding->weight.set_grad(Tensor::ones_like(net.embedding->weight.detach()));
    const Tensor w0 = net.embedding->weight.clone();
    tricks::FGM fgm(net);
    bool moved = false;
    CHECK_THROWS_AS(fgm.run([&] {
        moved = !bitwise_equal(net.embedding->weight, w0);
        throw ValueError("adversarial pass failed");
    }),
                    ValueError);
    CHECK(moved);
    CHECK(bitwise_equal(net.embedding->weight, w0));
}

TEST_CASE("tricks/fgm: parameters are chosen by name, with exclusions and predicates") {
    TinyModel net;
    CHECK(tricks::FGM(net).selection().size() == 1);
    CHECK_THROWS_WITH_AS(tricks::FGM(net, {.filter = {.contains = "word_embeddings"}}),
                         doctest::Contains("embedding.weight"), StateError);
    CHECK_THROWS_AS(tricks::FGM(net, {.filter = {.contains = "embedding", .exclude = {"embed"}}}),
                    StateError);
    tricks::FGM by_predicate(net, {.filter = {.predicate = [](const std::string& n, const Tensor&) {
                                       return n.find("fc") == 0;
                                   }}});
    CHECK(by_predicate.selection().size() == 4);
}
