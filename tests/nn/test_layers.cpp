// tests/nn/test_layers.cpp — the layers: PyTorch's parameter names, shapes and initial
// distributions, forward passes against the ops they wrap, Sequential, Dropout's mode, and
// BatchNorm1d (statistics computed independently here in double, running-stat updates, eval,
// the cumulative average, and a finite-difference gradient check).
#include <doctest/doctest.h>

#include <cmath>

#include "core/autograd.h"
#include "core/check.h"
#include "core/rng.h"
#include "nn/activation.h"
#include "nn/batch_norm.h"
#include "nn/dropout.h"
#include "nn/embedding.h"
#include "nn/init.h"
#include "nn/layer_norm.h"
#include "nn/linear.h"
#include "nn/sequential.h"
#include "ops/ops.h"
#include "tests/support/compare.h"
#include "tests/support/gradcheck.h"

using namespace minidl;
using minidl::test::bitwise_equal;
using minidl::test::check_close;

namespace {

std::vector<std::string> param_names(const nn::Module& m) {
    std::vector<std::string> out;
    for (const auto& e : m.named_parameters())
        out.push_back(e.first);
    return out;
}

double max_abs(const Tensor& t) {
    double m = 0.0;
    for (double v : t.to_vector<double>())
        m = std::max(m, std::abs(v));
    return m;
}

struct Moments {
    double mean, stddev;
};
Moments moments(const Tensor& t) {
    const std::vector<double> v = t.to_vector<double>();
    double s = 0.0, s2 = 0.0;
    for (double x : v)
        s += x;
    const double mean = s / static_cast<double>(v.size());
    for (double x : v)
        s2 += (x - mean) * (x - mean);
    return {mean, std::sqrt(s2 / static_cast<double>(v.size()))};
}

}  // namespace

TEST_CASE("nn/linear: names, shapes and the U(-1/sqrt(in), 1/sqrt(in)) initialisation") {
    manual_seed(1);
    nn::Linear fc(64, 300);
    CHECK(param_names(fc) == std::vector<std::string>{"weight", "bias"});
    CHECK(fc.weight.shape() == Shape{300, 64});
    CHECK(fc.bias.shape() == Shape{300});
    const double bound = 1.0 / std::sqrt(64.0);
    // Within the bound, and filling it: U(-b, b) has max |x| close to b and std b / sqrt(3).
    CHECK(max_abs(fc.weight) <= bound);
    CHECK(max_abs(fc.weight) > 0.99 * bound);
    CHECK(max_abs(fc.bias) <= bound);
    CHECK(max_abs(fc.bias) > 0.9 * bound);
    const Moments w = moments(fc.weight);
    CHECK(std::abs(w.mean) < 0.03 * bound);  // standard error 0.004 b
    CHECK(std::abs(w.stddev - bound / std::sqrt(3.0)) < 0.02 * bound);

    nn::Linear no_bias(4, 3, false);
    CHECK(param_names(no_bias) == std::vector<std::string>{"weight"});
    CHECK_FALSE(no_bias.bias.defined());

    const Tensor x = Tensor::rand({5, 64});
    CHECK(bitwise_equal(fc.forward(x), linear(x, fc.weight, fc.bias)));
    CHECK_THROWS_WITH_AS(fc.forward(Tensor::rand({5, 63})), doctest::Contains("[5, 63]"),
                         ShapeError);
    CHECK_THROWS_AS(nn::Linear(0, 3), ValueError);
}

TEST_CASE("nn/init: distributions and bounds") {
    Generator gen(77);
    Tensor t = Tensor::empty({200, 100});
    nn::init::kaiming_uniform_(t, 0.0, nn::init::FanMode::FanIn, nn::init::Nonlinearity::Relu,
                               &gen);
    const double kaiming = std::sqrt(2.0) * std::sqrt(3.0 / 100.0);
    CHECK(max_abs(t) <= kaiming);
    CHECK(max_abs(t) > 0.99 * kaiming);
    nn::init::xavier_uniform_(t, 1.0, &gen);
    const double xavier = std::sqrt(6.0 / 300.0);
    CHECK(max_abs(t) <= xavier);
    CHECK(max_abs(t) > 0.99 * xavier);
    nn::init::normal_(t, 2.0, 0.5, &gen);
    const Moments n = moments(t);
    CHECK(std::abs(n.mean - 2.0) < 0.02);  // 20000 draws: standard error 0.0035
    CHECK(std::abs(n.stddev - 0.5) < 0.02);
    nn::init::zeros_(t);
    CHECK(max_abs(t) == 0.0);
    nn::init::ones_(t);
    CHECK(moments(t).mean == 1.0);

    // The same generator state gives the same draws; a skipped init draws nothing.
    Generator a(5), b(5);
    Tensor ta = nn::init::uniform_(Tensor::empty({7}), -1.0, 1.0, &a);
    {
        nn::init::SkipRandomInitGuard skip;
        Tensor untouched = Tensor::zeros({7});
        nn::init::normal_(untouched, 0.0, 1.0, &b);
        CHECK(max_abs(untouched) == 0.0);
    }
    CHECK(b.state().offset == 0);
    CHECK(bitwise_equal(nn::init::uniform_(Tensor::empty({7}), -1.0, 1.0, &b), ta));
    CHECK_THROWS_AS(nn::init::xavier_uniform_(Tensor::empty({3})), ShapeError);
    CHECK_THROWS_AS(nn::init::uniform_(Tensor::zeros({3}, DType::I64)), DTypeError);
}

TEST_CASE("nn/embedding: N(0, 1) table, zero padding row, forward equals the op") {
    manual_seed(2);
    nn::Embedding emb(500, 40, /*padding_idx=*/3);
    CHECK(param_names(emb) == std::vector<std::string>{"weight"});
    CHECK(emb.weight.shape() == Shape{500, 40});
    const Moments m = moments(emb.weight);  // 20000 draws (40 of them the zero row)
    CHECK(std::abs(m.mean) < 0.03);
    CHECK(std::abs(m.stddev - 1.0) < 0.03);
    for (double v : emb.weight.narrow0(3, 1).to_vector<double>())
        CHECK(v == 0.0);
    CHECK(max_abs(emb.weight.narrow0(4, 1)) > 0.0);

    const Tensor ids = Tensor::from_vector(std::vector<int64_t>{3, 0, 7, 3}, {2, 2});
    const Tensor y = emb.forward(ids);
    CHECK(y.shape() == Shape{2, 2, 40});
    CHECK(bitwise_equal(y, embedding(emb.weight, ids, 3)));
    y.backward(Tensor::ones({2, 2, 40}));
    for (double v : emb.weight.grad().narrow0(3, 1).to_vector<double>())
        CHECK(v == 0.0);
    CHECK_THROWS_AS(nn::Embedding(10, 4, 10), IndexError);
}

TEST_CASE("nn/embedding_bag: offsets and 2-d forms, padding row") {
    manual_seed(4);
    nn::EmbeddingBag bag(20, 8, BagMode::Mean, /*padding_idx=*/0);
    for (double v : bag.weight.narrow0(0, 1).to_vector<double>())
        CHECK(v == 0.0);
    const Tensor ids = Tensor::from_vector(std::vector<int64_t>{1, 2, 3, 4, 5, 6}, {6});
    const Tensor offsets = Tensor::from_vector(std::vector<int64_t>{0, 2, 4}, {3});
    const Tensor y = bag(ids, offsets);
    CHECK(y.shape() == Shape{3, 8});
    CHECK(bitwise_equal(y, embedding_bag(bag.weight, ids, offsets, BagMode::Mean, 0)));
    const Tensor y2 = bag(ids.view({3, 2}));
    CHECK(bitwise_equal(y2, embedding_bag(bag.weight, ids.view({3, 2}), BagMode::Mean, 0)));
    CHECK(bag.type_name() == "EmbeddingBag");
}

TEST_CASE("nn/layer_norm: ones/zeros affine parameters and the op's output") {
    nn::LayerNorm ln({6});
    CHECK(param_names(ln) == std::vector<std::string>{"weight", "bias"});
    for (double v : ln.weight.to_vector<double>())
        CHECK(v == 1.0);
    for (double v : ln.bias.to_vector<double>())
        CHECK(v == 0.0);
    const Tensor x = Tensor::rand({4, 6});
    CHECK(bitwise_equal(ln.forward(x), layer_norm(x, {6}, ln.weight, ln.bias, 1e-5)));
    nn::LayerNorm plain({6}, 1e-5, false);
    CHECK(plain.named_parameters().empty());
    CHECK(bitwise_equal(plain.forward(x), layer_norm(x, {6})));
}

TEST_CASE("nn/dropout: drops and rescales in training, identity in eval") {
    nn::Dropout drop(0.5);
    const Tensor x = Tensor::ones({1000});
    const std::vector<double> y = drop.forward(x).to_vector<double>();
    int zeros = 0;
    for (double v : y) {
        CHECK((v == 0.0 || v == 2.0));
        zeros += v == 0.0;
    }
    CHECK(zeros > 400);
    CHECK(zeros < 600);
    drop.eval();
    CHECK(bitwise_equal(drop.forward(x), x));
    CHECK_THROWS_AS(nn::Dropout(1.5), ValueError);
}

TEST_CASE("nn/sequential: children named 0, 1, ... and the chained forward") {
    manual_seed(6);
    auto fc1 = std::make_shared<nn::Linear>(4, 8);
    auto fc2 = std::make_shared<nn::Linear>(8, 2);
    nn::Sequential seq{fc1, std::make_shared<nn::GELU>(GeluApproximation::Tanh)};
    seq.push_back(fc2);
    seq.push_back(std::make_shared<nn::Tanh>());
    CHECK(seq.size() == 4);
    CHECK(param_names(seq) == std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias"});
    const Tensor x = Tensor::rand({3, 4});
    const Tensor expected = tanh(fc2->forward(gelu(fc1->forward(x), GeluApproximation::Tanh)));
    CHECK(bitwise_equal(seq.forward(x), expected));
    CHECK(bitwise_equal(seq(x), expected));
    auto copy = nn::clone(seq);
    CHECK(copy->size() == 4);
    CHECK(bitwise_equal(copy->forward(x), expected));
    CHECK_FALSE((*copy)[0]->named_parameters()[0].second.is_same_memory(fc1->weight));
    CHECK_THROWS_AS(seq[4], IndexError);
    // The example of nn/sequential.h.
    nn::Sequential mlp{std::make_shared<nn::Linear>(4, 8), std::make_shared<nn::ReLU>()};
    mlp.push_back(std::make_shared<nn::Linear>(8, 2));
    CHECK(param_names(mlp) == std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias"});
    CHECK(mlp.forward(x).shape() == Shape{3, 2});
}

TEST_CASE("nn/batch_norm: training statistics, running updates, eval, cumulative average") {
    nn::BatchNorm1d bn(3);
    const std::vector<std::string> buffers = {"running_mean", "running_var", "num_batches_tracked"};
    std::vector<std::string> got;
    for (const auto& e : bn.named_buffers())
        got.push_back(e.first);
    CHECK(got == buffers);
    CHECK(param_names(bn) == std::vector<std::string>{"weight", "bias"});

    // x [N, C, L]: statistics per channel over N and L, computed here directly in double.
    Generator gen(8);
    const Tensor x = Tensor::rand({4, 3, 5}, &gen, DType::F32, Device::cpu(), -2.0, 3.0);
    const std::vector<double> xv = x.to_vector<double>();
    std::vector<double> mean(3, 0.0), var(3, 0.0);
    const double n = 20.0;
    for (int64_t b = 0; b < 4; ++b)
        for (int64_t c = 0; c < 3; ++c)
            for (int64_t l = 0; l < 5; ++l)
                mean[c] += xv[(b * 3 + c) * 5 + l] / n;
    for (int64_t b = 0; b < 4; ++b)
        for (int64_t c = 0; c < 3; ++c)
            for (int64_t l = 0; l < 5; ++l)
                var[c] += std::pow(xv[(b * 3 + c) * 5 + l] - mean[c], 2) / n;
    std::vector<double> expected(xv.size());
    for (int64_t b = 0; b < 4; ++b)
        for (int64_t c = 0; c < 3; ++c)
            for (int64_t l = 0; l < 5; ++l) {
                const int64_t i = (b * 3 + c) * 5 + l;
                expected[i] = (xv[i] - mean[c]) / std::sqrt(var[c] + 1e-5);
            }
    check_close(bn.forward(x), expected, 1e-5, 1e-5, "training output");
    std::vector<double> rm(3), rv(3);
    for (int c = 0; c < 3; ++c) {
        rm[c] = 0.1 * mean[c];
        rv[c] = 0.9 + 0.1 * var[c] * n / (n - 1.0);  // the unbiased variance
    }
    check_close(bn.running_mean, rm, 1e-5, 1e-7, "running_mean");
    check_close(bn.running_var, rv, 1e-5, 1e-7, "running_var");
    CHECK(bn.num_batches_tracked.item() == 1.0);

    // Eval normalises with the running statistics and updates nothing.
    bn.eval();
    std::vector<double> eval_expected(xv.size());
    for (int64_t i = 0; i < static_cast<int64_t>(xv.size()); ++i) {
        const int64_t c = (i / 5) % 3;
        eval_expected[i] = (xv[i] - rm[c]) / std::sqrt(rv[c] + 1e-5);
    }
    check_close(bn.forward(x), eval_expected, 1e-5, 1e-5, "eval output");
    check_close(bn.running_mean, rm, 1e-5, 1e-7, "running_mean after eval");
    CHECK(bn.num_batches_tracked.item() == 1.0);

    // momentum = nullopt: the running stats are the plain average over the batches seen.
    bn.train();
    bn.set_momentum(std::nullopt);
    bn.reset_running_stats();
    const Tensor x2 = x * 2.0 + 1.0;
    bn.forward(x);
    bn.forward(x2);
    std::vector<double> avg(3);
    for (int c = 0; c < 3; ++c)
        avg[c] = (mean[c] + (2.0 * mean[c] + 1.0)) / 2.0;
    check_close(bn.running_mean, avg, 1e-5, 1e-6, "cumulative running_mean");
    CHECK(bn.num_batches_tracked.item() == 2.0);

    // [N, C] input and errors.
    nn::BatchNorm1d bn2(4);
    CHECK(bn2.forward(Tensor::rand({6, 4})).shape() == Shape{6, 4});
    CHECK_THROWS_WITH_AS(bn2.forward(Tensor::rand({6, 5})), doctest::Contains("[6, 5]"),
                         ShapeError);
    CHECK_THROWS_AS(bn2.forward(Tensor::rand({1, 4})), ValueError);
    bn2.eval();
    CHECK(bn2.forward(Tensor::rand({1, 4})).shape() == Shape{1, 4});
}

TEST_CASE("nn/batch_norm: backward matches finite differences (training and eval)") {
    for (int64_t dims : {2, 3}) {
        for (bool training : {true, false}) {
            CAPTURE(dims);
            CAPTURE(training);
            nn::BatchNorm1d bn(3);
            bn.to(DType::F64);
            {
                // Non-trivial affine parameters and running statistics.
                NoGradGuard no_grad;
                bn.weight.copy_(test::rand64({3}, 31, 0.5, 1.5));
                bn.bias.copy_(test::rand64({3}, 32));
                bn.running_mean.copy_(test::rand64({3}, 33));
                bn.running_var.copy_(test::rand64({3}, 34, 0.5, 2.0));
            }
            bn.train(training);
            const Shape shape = dims == 2 ? Shape{5, 3} : Shape{4, 3, 2};
            const Tensor x = test::rand64(shape, 35);
            test::gradcheck([&](const std::vector<Tensor>& in) { return bn.forward(in[0]); },
                            {x, bn.weight, bn.bias}, {}, "batch_norm");
        }
    }
}
