// tests/ops/test_gradcheck.cpp — float64 finite-difference checks of every differentiable op's
// backward (tests/support/gradcheck.h: whole Jacobian, eps 1e-6, atol 1e-5, rtol 1e-3), over
// several shapes each, broadcasting included. Inputs are drawn away from kinks where an op has one.
#include <doctest/doctest.h>

#include "core/autograd.h"
#include "ops/ops.h"
#include "tests/support/gradcheck.h"

using namespace minidl;
using minidl::test::gradcheck;
using minidl::test::rand64;

namespace {
Tensor ids64(std::vector<int64_t> v, Shape s) {
    return Tensor::from_vector(v, s);
}
// Values in [0.5, 1.5] or [-1.5, -0.5]: away from 0 (relu/abs kinks, log/div poles).
Tensor away_from_zero(const Shape& s, uint64_t seed) {
    NoGradGuard no_grad;
    Tensor u = rand64(s, seed, 0.5, 1.5);
    Tensor sign = rand64(s, seed + 1000, -1, 1);
    std::vector<double> a = u.to_vector<double>(), b = sign.to_vector<double>();
    for (size_t i = 0; i < a.size(); ++i)
        a[i] = b[i] < 0 ? -a[i] : a[i];
    Tensor t = Tensor::from_vector(a, s, DType::F64);
    t.set_requires_grad(true);
    return t;
}
}  // namespace

TEST_CASE("ops/gradcheck: binary elementwise ops, with broadcasting") {
    const std::vector<std::pair<Shape, Shape>> shapes = {
        {{3, 4}, {3, 4}}, {{3, 4}, {4}}, {{2, 1, 3}, {4, 1}}, {{5}, {}}, {{1, 3}, {2, 1}}};
    for (const auto& [sa, sb] : shapes) {
        SUBCASE((shape_str(sa) + " with " + shape_str(sb)).c_str()) {
            Tensor a = rand64(sa, 1), b = away_from_zero(sb, 2);
            gradcheck([](auto& x) { return x[0] + x[1]; }, {a, b}, {}, "add");
            gradcheck([](auto& x) { return x[0] - x[1]; }, {a, b}, {}, "sub");
            gradcheck([](auto& x) { return x[0] * x[1]; }, {a, b}, {}, "mul");
            gradcheck([](auto& x) { return x[0] / x[1]; }, {a, b}, {}, "div");
            // maximum/minimum: a in [-1, 1], b shifted by 3 or -3 never ties with a.
            Tensor far = rand64(sb, 3, 2.0, 3.0);
            gradcheck([](auto& x) { return maximum(x[0], x[1]); }, {a, far}, {}, "maximum");
            gradcheck([](auto& x) { return minimum(x[0], x[1]); }, {a, far}, {}, "minimum");
        }
    }
}

TEST_CASE("ops/gradcheck: unary and scalar elementwise ops") {
    for (const Shape& s : {Shape{7}, Shape{2, 3}, Shape{}}) {
        SUBCASE(shape_str(s).c_str()) {
            Tensor x = away_from_zero(s, 4);
            Tensor pos = rand64(s, 5, 0.5, 2.0);
            gradcheck([](auto& v) { return neg(v[0]); }, {x}, {}, "neg");
            gradcheck([](auto& v) { return exp(v[0]); }, {x}, {}, "exp");
            gradcheck([](auto& v) { return log(v[0]); }, {pos}, {}, "log");
            gradcheck([](auto& v) { return sqrt(v[0]); }, {pos}, {}, "sqrt");
            gradcheck([](auto& v) { return abs(v[0]); }, {x}, {}, "abs");
            gradcheck([](auto& v) { return square(v[0]); }, {x}, {}, "square");
            gradcheck([](auto& v) { return relu(v[0]); }, {x}, {}, "relu");
            gradcheck([](auto& v) { return gelu(v[0]); }, {x}, {}, "gelu");
            gradcheck([](auto& v) { return gelu(v[0], GeluApproximation::Tanh); }, {x}, {},
                      "gelu tanh");
            gradcheck([](auto& v) { return tanh(v[0]); }, {x}, {}, "tanh");
            gradcheck([](auto& v) { return sigmoid(v[0]); }, {x}, {}, "sigmoid");
            gradcheck([](auto& v) { return v[0] + 2.5; }, {x}, {}, "add scalar");
            gradcheck([](auto& v) { return v[0] - 2.5; }, {x}, {}, "sub scalar");
            gradcheck([](auto& v) { return v[0] * -1.5; }, {x}, {}, "mul scalar");
            gradcheck([](auto& v) { return v[0] / 3.0; }, {x}, {}, "div scalar");
            gradcheck([](auto& v) { return 2.0 - v[0]; }, {x}, {}, "rsub");
            gradcheck([](auto& v) { return 2.0 / v[0]; }, {x}, {}, "rdiv");
            gradcheck([](auto& v) { return pow(v[0], 3.0); }, {x}, {}, "pow 3");
            gradcheck([](auto& v) { return pow(v[0], 0.5); }, {pos}, {}, "pow 0.5");
            gradcheck([](auto& v) { return pow(v[0], 0.0); }, {x}, {}, "pow 0");
        }
    }
}

TEST_CASE("ops/gradcheck: clamp routes the gradient inside the bounds only") {
    Tensor x = rand64({6}, 6, -2, 2);
    Tensor lo = Tensor::full({6}, -0.9, DType::F64), hi = Tensor::full({6}, 0.9, DType::F64);
    // Keep x away from the bounds themselves.
    {
        NoGradGuard g;
        std::vector<double> v = {-1.7, -0.5, 0.2, 0.6, 1.3, 1.95};
        x.copy_(Tensor::from_vector(v, {6}, DType::F64));
    }
    gradcheck([&](auto& v) { return clamp(v[0], lo, hi); }, {x}, {}, "clamp");
}

TEST_CASE("ops/gradcheck: at a tie and on clamp's bounds the gradient is PyTorch's") {
    // torch.maximum/minimum split a tie's gradient evenly; torch.clamp passes it to x on the
    // bounds themselves, to lo below them and to hi above (values from torch 1.13).
    Tensor a = Tensor::from_vector(std::vector<double>{1.0, 2.0, 3.0}, {3}, DType::F64);
    Tensor b = Tensor::from_vector(std::vector<double>{1.0, 5.0, 0.0}, {3}, DType::F64);
    a.set_requires_grad(true);
    b.set_requires_grad(true);
    sum(maximum(a, b) + minimum(a, b) * 3.0).backward();
    CHECK(a.grad().to_vector<double>() == std::vector<double>{2.0, 3.0, 1.0});
    CHECK(b.grad().to_vector<double>() == std::vector<double>{2.0, 1.0, 3.0});

    Tensor x = Tensor::from_vector(std::vector<double>{-0.5, 0.5, 0.0, -2.0, 2.0}, {5}, DType::F64);
    Tensor lo = Tensor::full({5}, -0.5, DType::F64), hi = Tensor::full({5}, 0.5, DType::F64);
    for (Tensor* t : {&x, &lo, &hi})
        t->set_requires_grad(true);
    sum(clamp(x, lo, hi)).backward();
    CHECK(x.grad().to_vector<double>() == std::vector<double>{1, 1, 1, 0, 0});
    CHECK(lo.grad().to_vector<double>() == std::vector<double>{0, 0, 0, 1, 0});
    CHECK(hi.grad().to_vector<double>() == std::vector<double>{0, 0, 0, 0, 1});
}

TEST_CASE("ops/gradcheck: reductions over all elements and over each dim") {
    Tensor x = rand64({3, 4, 5}, 7);
    gradcheck([](auto& v) { return sum(v[0]); }, {x}, {}, "sum all");
    gradcheck([](auto& v) { return mean(v[0]); }, {x}, {}, "mean all");
    gradcheck([](auto& v) { return max(v[0]); }, {x}, {}, "max all");
    gradcheck([](auto& v) { return norm(v[0]); }, {x}, {}, "norm");
    for (int64_t d : {0, 1, 2, -1}) {
        for (bool keep : {false, true}) {
            SUBCASE(("dim " + std::to_string(d) + (keep ? " keepdim" : "")).c_str()) {
                gradcheck([=](auto& v) { return sum(v[0], d, keep); }, {x}, {}, "sum dim");
                gradcheck([=](auto& v) { return mean(v[0], d, keep); }, {x}, {}, "mean dim");
                gradcheck([=](auto& v) { return max(v[0], d, keep); }, {x}, {}, "max dim");
            }
        }
    }
}

TEST_CASE("ops/gradcheck: softmax and log_softmax along every dim") {
    Tensor x = rand64({2, 3, 4}, 8, -2, 2);
    for (int64_t d : {0, 1, 2}) {
        SUBCASE(("dim " + std::to_string(d)).c_str()) {
            gradcheck([=](auto& v) { return softmax(v[0], d); }, {x}, {}, "softmax");
            gradcheck([=](auto& v) { return log_softmax(v[0], d); }, {x}, {}, "log_softmax");
        }
    }
}

TEST_CASE("ops/gradcheck: cross_entropy with every reduction, label smoothing, ignore_index") {
    Tensor logits = rand64({4, 5}, 9, -2, 2);
    Tensor targets = ids64({2, 0, 4, 1}, {4});
    Tensor with_ignored = ids64({2, -100, 4, 1}, {4});
    for (Reduction r : {Reduction::Mean, Reduction::Sum, Reduction::None}) {
        for (double ls : {0.0, 0.2}) {
            CAPTURE(ls);
            gradcheck(
                [&](auto& v) {
                    return cross_entropy(v[0], targets, {r, ls});
                },
                {logits}, {}, "cross_entropy");
            gradcheck(
                [&](auto& v) {
                    return cross_entropy(v[0], with_ignored, {r, ls});
                },
                {logits}, {}, "cross_entropy ignore_index");
        }
    }
}

TEST_CASE("ops/gradcheck: matmul 2-d, batched, shared operands, 1-d") {
    const std::vector<std::pair<Shape, Shape>> shapes = {
        {{3, 4}, {4, 2}}, {{2, 3, 4}, {2, 4, 5}}, {{2, 3, 4}, {4, 5}}, {{3, 4}, {2, 4, 5}},
        {{4}, {4, 3}},    {{3, 4}, {4}},          {{4}, {4}}};
    for (const auto& [sa, sb] : shapes) {
        SUBCASE((shape_str(sa) + " @ " + shape_str(sb)).c_str()) {
            gradcheck([](auto& v) { return matmul(v[0], v[1]); }, {rand64(sa, 10), rand64(sb, 11)},
                      {}, "matmul");
        }
    }
}

TEST_CASE("ops/gradcheck: linear with and without bias, 2-d and 3-d inputs") {
    Tensor w = rand64({3, 4}, 12), b = rand64({3}, 13);
    for (const Shape& xs : {Shape{5, 4}, Shape{2, 3, 4}, Shape{4}}) {
        SUBCASE(shape_str(xs).c_str()) {
            Tensor x = rand64(xs, 14);
            gradcheck([](auto& v) { return linear(v[0], v[1], v[2]); }, {x, w, b}, {}, "linear");
            gradcheck([](auto& v) { return linear(v[0], v[1]); }, {x, w}, {}, "linear no bias");
        }
    }
}

TEST_CASE("ops/gradcheck: embedding and embedding_bag (sum, mean, padding, empty bags)") {
    Tensor w = rand64({6, 3}, 15);
    Tensor ids = ids64({1, 3, 3, 0, 5, 2}, {2, 3});
    gradcheck([&](auto& v) { return embedding(v[0], ids); }, {w}, {}, "embedding");
    {
        // padding_idx: the forward still reads row 3 but its gradient is zero by definition (as
        // PyTorch), so finite differences do not apply to it; compare with the unpadded gradient.
        Tensor g_plain, g_pad;
        w.set_grad(Tensor());  // the gradcheck above left its last gradient
        embedding(w, ids).backward(Tensor::ones({2, 3, 3}, DType::F64));
        g_plain = w.grad().clone();
        w.set_grad(Tensor());
        embedding(w, ids, 3).backward(Tensor::ones({2, 3, 3}, DType::F64));
        g_pad = w.grad();
        w.set_grad(Tensor());
        const std::vector<double> a = g_plain.to_vector<double>(), b = g_pad.to_vector<double>();
        for (int64_t i = 0; i < 18; ++i) {
            CAPTURE(i);
            CHECK(b[i] == (i / 3 == 3 ? 0.0 : a[i]));
        }
        CHECK(a[9] == 2.0);  // row 3 appears twice in ids
    }
    Tensor bag_ids = ids64({1, 3, 3, 0, 2, 4, 5}, {7});
    Tensor offsets = ids64({0, 4, 4, 5}, {4});  // bag 1 is empty
    for (BagMode mode : {BagMode::Sum, BagMode::Mean}) {
        gradcheck([&](auto& v) { return embedding_bag(v[0], bag_ids, offsets, mode); }, {w}, {},
                  "embedding_bag");
        gradcheck([&](auto& v) { return embedding_bag(v[0], bag_ids, offsets, mode, 3); }, {w}, {},
                  "embedding_bag padding 3");
        gradcheck([&](auto& v) { return embedding_bag(v[0], ids, mode); }, {w}, {},
                  "embedding_bag 2-d ids");
    }
}

TEST_CASE("ops/gradcheck: layer_norm over one and two trailing dims, with and without affine") {
    Tensor x = rand64({3, 2, 4}, 16);
    Tensor w1 = rand64({4}, 17), b1 = rand64({4}, 18);
    Tensor w2 = rand64({2, 4}, 19), b2 = rand64({2, 4}, 20);
    gradcheck([](auto& v) { return layer_norm(v[0], {4}, v[1], v[2]); }, {x, w1, b1}, {},
              "layer_norm [4]");
    gradcheck(
        [](auto& v) {
            return layer_norm(v[0], {2, 4}, v[1], v[2]);
        },
        {x, w2, b2}, {}, "layer_norm [2, 4]");
    gradcheck([](auto& v) { return layer_norm(v[0], {4}); }, {x}, {}, "layer_norm no affine");
    gradcheck(
        [](auto& v) {
            return layer_norm(v[0], {2, 4}, Tensor(), v[1]);
        },
        {x, b2}, {}, "layer_norm bias only");
}

TEST_CASE("ops/gradcheck: dropout (fixed mask), shape ops and casts") {
    Tensor x = rand64({3, 4}, 21);
    gradcheck(
        [](auto& v) {
            Generator g(5);  // the same mask at every evaluation
            return dropout(v[0], 0.4, true, &g);
        },
        {x}, {}, "dropout");
    Tensor y = rand64({3, 2}, 22), z = rand64({3, 1}, 23);
    gradcheck([](auto& v) { return concat({v[0], v[1], v[2]}, 1); }, {x, y, z}, {}, "concat");
    gradcheck([](auto& v) { return concat({v[0], v[0]}, 0); }, {x}, {}, "concat twice");
    gradcheck([](auto& v) { return stack({v[0], v[1]}, 1); }, {x, rand64({3, 4}, 24)}, {}, "stack");
    gradcheck([](auto& v) { return slice(v[0], 1, 1, 3); }, {x}, {}, "slice");
    gradcheck(
        [](auto& v) {
            return index_select(v[0], 1, ids64({3, 0, 3}, {3}));
        },
        {x}, {}, "index_select");
    gradcheck([](auto& v) { return v[0].transpose(0, 1); }, {x}, {}, "transpose");
    gradcheck([](auto& v) { return v[0].view({2, 6}); }, {x}, {}, "view");
    gradcheck([](auto& v) { return v[0].narrow0(1, 2); }, {x}, {}, "narrow0");
    gradcheck([](auto& v) { return v[0].clone() * 2.0; }, {x}, {}, "clone");
    gradcheck(
        [](auto& v) {
            return unsqueeze(squeeze(v[0].view({3, 1, 4}), 1), 0);
        },
        {x}, {}, "squeeze/unsqueeze");
    gradcheck([](auto& v) { return v[0].to(DType::F32).to(DType::F64); }, {x},
              {.eps = 1e-3, .atol = 1e-4, .rtol = 1e-3}, "cast through f32");
}
