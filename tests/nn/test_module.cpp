// tests/nn/test_module.cpp — Module: registration, dotted names and their order, modes,
// placement, state dicts (round trip, strict errors that leave the module unchanged), cloning,
// and a user-written module (the example of nn/module.h, compiled here).
#include <doctest/doctest.h>

#include "core/autograd.h"
#include "core/check.h"
#include "core/rng.h"
#include "nn/activation.h"
#include "nn/batch_norm.h"
#include "nn/embedding.h"
#include "nn/linear.h"
#include "nn/module.h"
#include "nn/sequential.h"
#include "ops/ops.h"
#include "tests/support/compare.h"

using namespace minidl;
using minidl::test::bitwise_equal;

namespace {

// The user-written module of nn/module.h's header comment.
struct TwoLayer : nn::Cloneable<TwoLayer, nn::UnaryModule> {
    TwoLayer(int64_t in, int64_t hidden, int64_t out) : in_(in), hidden_(hidden), out_(out) {
        reset();
    }
    void reset() override {
        fc1 = register_module("fc1", std::make_shared<nn::Linear>(in_, hidden_));
        fc2 = register_module("fc2", std::make_shared<nn::Linear>(hidden_, out_));
    }
    Tensor forward(const Tensor& x) override { return fc2->forward(relu(fc1->forward(x))); }
    int64_t in_, hidden_, out_;
    std::shared_ptr<nn::Linear> fc1, fc2;
};

// Deeper nesting, a buffer, a Sequential child: names like PyTorch's "encoder.layers.0.norm.bias".
struct Block : nn::Cloneable<Block, nn::UnaryModule> {
    Block() { reset(); }
    void reset() override {
        norm = register_module("norm", std::make_shared<nn::BatchNorm1d>(3));
        proj = register_module("proj", std::make_shared<nn::Linear>(3, 3, false));
    }
    Tensor forward(const Tensor& x) override { return proj->forward(norm->forward(x)); }
    std::shared_ptr<nn::BatchNorm1d> norm;
    std::shared_ptr<nn::Linear> proj;
};

struct Encoder : nn::Cloneable<Encoder, nn::Module> {
    Encoder() { reset(); }
    void reset() override {
        scale = register_parameter("scale", Tensor::ones({3}));
        layers = register_module("layers", std::make_shared<nn::Sequential>());
        layers->push_back(std::make_shared<Block>());
        layers->push_back(std::make_shared<nn::ReLU>());
        layers->push_back(std::make_shared<Block>());
    }
    Tensor scale;
    std::shared_ptr<nn::Sequential> layers;
};

struct Model : nn::Cloneable<Model, nn::Module> {
    Model() { reset(); }
    void reset() override {
        embedding = register_module("embedding", std::make_shared<nn::Embedding>(10, 3));
        encoder = register_module("encoder", std::make_shared<Encoder>());
        head = register_module("head", std::make_shared<nn::Linear>(3, 2));
    }
    std::shared_ptr<nn::Embedding> embedding;
    std::shared_ptr<Encoder> encoder;
    std::shared_ptr<nn::Linear> head;
};

std::vector<std::string> names(const nn::Module::NamedTensors& entries) {
    std::vector<std::string> out;
    for (const auto& e : entries)
        out.push_back(e.first);
    return out;
}

}  // namespace

TEST_CASE("nn/module: named_parameters and named_buffers use PyTorch's dotted names and order") {
    Model m;
    const std::vector<std::string> params = {"embedding.weight",
                                             "encoder.scale",
                                             "encoder.layers.0.norm.weight",
                                             "encoder.layers.0.norm.bias",
                                             "encoder.layers.0.proj.weight",
                                             "encoder.layers.2.norm.weight",
                                             "encoder.layers.2.norm.bias",
                                             "encoder.layers.2.proj.weight",
                                             "head.weight",
                                             "head.bias"};
    CHECK(names(m.named_parameters()) == params);
    CHECK(m.parameters().size() == params.size());
    const std::vector<std::string> buffers = {
        "encoder.layers.0.norm.running_mean",        "encoder.layers.0.norm.running_var",
        "encoder.layers.0.norm.num_batches_tracked", "encoder.layers.2.norm.running_mean",
        "encoder.layers.2.norm.running_var",         "encoder.layers.2.norm.num_batches_tracked"};
    CHECK(names(m.named_buffers()) == buffers);
    CHECK(names(m.named_parameters(/*recurse=*/false)).empty());
    CHECK(names(m.encoder->named_parameters(false)) == std::vector<std::string>{"scale"});

    std::vector<std::string> children;
    for (const auto& [name, child] : m.named_children())
        children.push_back(name);
    CHECK(children == std::vector<std::string>{"embedding", "encoder", "head"});
    std::vector<std::string> modules;
    for (const auto& [name, module] : m.named_modules())
        modules.push_back(name);
    CHECK(modules.size() == 12);  // self, embedding, encoder, layers, 0, 0.norm, 0.proj, 1, 2, ...
    CHECK(modules[0].empty());
    CHECK(modules[5] == "encoder.layers.0.norm");

    // The state dict holds both, under the same names.
    const StateDict sd = m.state_dict();
    CHECK(sd.tensors.size() == params.size() + buffers.size());
    for (const auto& n : params)
        CHECK(sd.contains(n));
    for (const auto& n : buffers)
        CHECK(sd.contains(n));
    for (const auto& p : m.parameters())
        CHECK(p.requires_grad());
    for (const auto& b : m.buffers())
        CHECK_FALSE(b.requires_grad());
}

TEST_CASE("nn/module: registration rejects bad names and non-leaf parameters") {
    nn::Module m;
    m.register_parameter("w", Tensor::ones({2}));
    CHECK_THROWS_WITH_AS(m.register_parameter("w", Tensor::ones({2})),
                         doctest::Contains("'w' is already registered"), StateError);
    CHECK_THROWS_AS(m.register_buffer("w", Tensor::ones({2})), StateError);
    CHECK_THROWS_AS(m.register_module("w", std::make_shared<nn::ReLU>()), StateError);
    CHECK_THROWS_AS(m.register_parameter("a.b", Tensor::ones({2})), ValueError);
    CHECK_THROWS_AS(m.register_parameter("", Tensor::ones({2})), ValueError);
    Tensor leaf = Tensor::ones({2}).set_requires_grad();
    CHECK_THROWS_WITH_AS(m.register_parameter("v", leaf * 2.0), doctest::Contains("mul"),
                         StateError);
    CHECK_THROWS_AS(m.register_parameter("i", Tensor::zeros({2}, DType::I64)), DTypeError);
    // Frozen parameters are listed but do not require grad.
    Tensor frozen = m.register_parameter("frozen", Tensor::ones({2}), /*requires_grad=*/false);
    CHECK_FALSE(frozen.requires_grad());
    CHECK(m.named_parameters().size() == 2);
    // A tied tensor is one parameter, but saved under both names.
    m.register_parameter("tied", m.named_parameters()[0].second);
    CHECK(m.named_parameters().size() == 2);
    CHECK(m.state_dict().tensors.size() == 3);
    CHECK_THROWS_WITH_AS(m.clone(), doctest::Contains("Cloneable"), StateError);
}

TEST_CASE("nn/module: state_dict round trip restores every value") {
    manual_seed(11);
    Model a;
    manual_seed(12);
    Model b;
    CHECK_FALSE(bitwise_equal(a.head->weight, b.head->weight));
    // Buffers too: a training forward gives a's BatchNorm statistics values of their own.
    a.encoder->layers->forward(Tensor::rand({5, 3}));
    b.load_state_dict(a.state_dict());
    const StateDict sa = a.state_dict(), sb = b.state_dict();
    for (const auto& [name, t] : sa.tensors) {
        CAPTURE(name);
        CHECK(bitwise_equal(t, sb.tensors.at(name)));
        CHECK_FALSE(t.is_same_memory(sb.tensors.at(name)));  // copied, not aliased
    }
    // The module's own handles were written, not replaced.
    CHECK(bitwise_equal(b.head->weight, a.head->weight));
}

TEST_CASE("nn/module: load_state_dict checks everything first and changes nothing on error") {
    manual_seed(3);
    TwoLayer m(4, 8, 2);
    const StateDict before = nn::clone(m)->state_dict();
    auto unchanged = [&] {
        const StateDict now = m.state_dict();
        for (const auto& [name, t] : before.tensors)
            if (!bitwise_equal(t, now.tensors.at(name))) return false;
        return true;
    };
    StateDict good;
    for (const auto& [name, t] : m.state_dict().tensors)
        good.tensors[name] = t.clone() + 1.0;

    SUBCASE("a wrong shape names the key and both shapes, even when other keys come first") {
        StateDict bad = good;
        bad.tensors["fc2.weight"] = Tensor::zeros({3, 8});
        CHECK_THROWS_WITH_AS(m.load_state_dict(bad),
                             doctest::Contains("'fc2.weight': checkpoint [3, 8], module [2, 8]"),
                             ShapeError);
        CHECK_THROWS_AS(m.load_state_dict(bad, /*strict=*/false), ShapeError);
        CHECK(unchanged());
    }
    SUBCASE("a missing key") {
        StateDict bad = good;
        bad.tensors.erase("fc1.bias");
        CHECK_THROWS_WITH_AS(m.load_state_dict(bad), doctest::Contains("missing key 'fc1.bias'"),
                             StateError);
        CHECK(unchanged());
        m.load_state_dict(bad, /*strict=*/false);  // the others load
        CHECK(bitwise_equal(m.fc1->weight, good.tensors.at("fc1.weight")));
        CHECK(bitwise_equal(m.fc1->bias, before.tensors.at("fc1.bias")));
    }
    SUBCASE("an unexpected key") {
        StateDict bad = good;
        bad.tensors["fc3.weight"] = Tensor::zeros({1});
        CHECK_THROWS_WITH_AS(m.load_state_dict(bad),
                             doctest::Contains("unexpected key 'fc3.weight'"), StateError);
        CHECK(unchanged());
        m.load_state_dict(bad, /*strict=*/false);
        CHECK(bitwise_equal(m.fc2->bias, good.tensors.at("fc2.bias")));
    }
    SUBCASE("an integer tensor for a floating parameter") {
        StateDict bad = good;
        bad.tensors["fc1.bias"] = Tensor::zeros({8}, DType::I64);
        CHECK_THROWS_AS(m.load_state_dict(bad), DTypeError);
        CHECK(unchanged());
    }
    SUBCASE("other floating dtypes are converted, as PyTorch's copy_") {
        StateDict f64;
        for (const auto& [name, t] : good.tensors)
            f64.tensors[name] = t.to(DType::F64);
        m.load_state_dict(f64);
        CHECK(m.fc1->weight.dtype() == DType::F32);
        CHECK(bitwise_equal(m.fc1->weight, good.tensors.at("fc1.weight")));
    }
}

TEST_CASE("nn/module: clone is an independent deep copy and draws nothing from the generator") {
    manual_seed(5);
    auto original = std::make_shared<TwoLayer>(4, 8, 3);
    original->eval();
    const Tensor x = Tensor::rand({2, 4});
    const Generator::State rng_before = default_generator().state();
    auto copy = nn::clone(*original);
    const Generator::State rng_after = default_generator().state();
    CHECK(rng_before.offset == rng_after.offset);

    // Same structure, names, values and flags; own storage for everything.
    CHECK(names(copy->named_parameters()) == names(original->named_parameters()));
    CHECK_FALSE(copy->is_training());
    CHECK_FALSE(copy->fc1->is_training());
    const std::vector<Tensor> from = original->parameters(), to = copy->parameters();
    for (size_t i = 0; i < from.size(); ++i) {
        const Tensor& a = from[i];
        const Tensor& b = to[i];
        CHECK(bitwise_equal(a, b));
        CHECK_FALSE(a.is_same_memory(b));
        CHECK(b.requires_grad());
    }
    CHECK(copy->fc1.get() != original->fc1.get());
    CHECK(copy->fc1->weight.is_same(copy->named_parameters()[0].second));
    CHECK(bitwise_equal(copy->forward(x), original->forward(x)));

    // Changing the clone leaves the original alone.
    const Tensor original_out = original->forward(x);
    {
        NoGradGuard no_grad;
        copy->fc1->weight.add_(Tensor::ones({8, 4}));
    }
    CHECK(bitwise_equal(original->forward(x), original_out));
    CHECK_FALSE(bitwise_equal(copy->forward(x), original_out));
    // Gradients go to the clone's parameters only.
    copy->forward(x).backward(Tensor::ones({2, 3}));
    CHECK(copy->fc1->weight.grad().defined());
    CHECK_FALSE(original->fc1->weight.grad().defined());
}

TEST_CASE("nn/module: clone of nested modules, Sequential and buffers") {
    manual_seed(9);
    Model m;
    m.encoder->layers->train();
    m.encoder->layers->forward(Tensor::rand({6, 3}));  // running stats move away from 0 and 1
    m.head->eval();
    auto c = nn::clone(m);
    const StateDict sm = m.state_dict(), sc = c->state_dict();
    REQUIRE(sm.tensors.size() == sc.tensors.size());
    for (const auto& [name, t] : sm.tensors) {
        CAPTURE(name);
        CHECK(bitwise_equal(t, sc.tensors.at(name)));
        CHECK_FALSE(t.is_same_memory(sc.tensors.at(name)));
    }
    CHECK(c->is_training());
    CHECK_FALSE(c->head->is_training());
    CHECK(c->encoder->layers->size() == 3);
    // The clone's Sequential holds the clone's blocks.
    CHECK((*c->encoder->layers)[0].get() != (*m.encoder->layers)[0].get());
}

TEST_CASE("nn/module: train and eval propagate to every descendant") {
    Model m;
    auto flags = [&] {
        std::vector<bool> out;
        for (const auto& [name, module] : m.named_modules())
            out.push_back(module->is_training());
        return out;
    };
    for (bool f : flags())
        CHECK(f);
    m.eval();
    for (bool f : flags())
        CHECK_FALSE(f);
    m.encoder->train();
    CHECK_FALSE(m.is_training());
    CHECK(m.encoder->layers->named_children()[0].second->is_training());
    m.train();
    for (bool f : flags())
        CHECK(f);
}

TEST_CASE("nn/module: to(DType) converts floating tensors in place of the same handles") {
    Model m;
    const std::vector<Tensor> handles = m.parameters();
    const Tensor counter = m.named_buffers()[2].second;  // num_batches_tracked
    const Tensor before = m.head->weight.clone();
    m.head->weight.set_grad(Tensor::ones({2, 3}));
    m.to(DType::F64);
    for (size_t i = 0; i < handles.size(); ++i) {
        CHECK(handles[i].is_same(m.parameters()[i]));
        CHECK(handles[i].dtype() == DType::F64);
        CHECK(handles[i].requires_grad());
    }
    CHECK(counter.dtype() == DType::I64);
    CHECK(m.head->weight.grad().dtype() == DType::F64);
    test::check_close(m.head->weight, before.to_vector<double>(), 0.0, 0.0, "f32 -> f64 exact");
    m.to(DType::F32);
    CHECK(bitwise_equal(m.head->weight, before));
    m.to(Device::cpu());  // already there: nothing changes
    CHECK(handles[0].is_same(m.parameters()[0]));
    CHECK_THROWS_AS(m.to(DType::I64), DTypeError);
}

TEST_CASE("nn/module: zero_grad drops or zeroes every gradient") {
    TwoLayer m(3, 4, 2);
    m.forward(Tensor::rand({5, 3})).backward(Tensor::ones({5, 2}));
    for (const auto& p : m.parameters())
        REQUIRE(p.grad().defined());
    m.zero_grad(/*set_to_none=*/false);
    for (const auto& p : m.parameters()) {
        REQUIRE(p.grad().defined());
        for (double v : p.grad().to_vector<double>())
            CHECK(v == 0.0);
    }
    m.zero_grad();
    for (const auto& p : m.parameters())
        CHECK_FALSE(p.grad().defined());
}

TEST_CASE("nn/module: a user-written module trains, clones and round-trips its state") {
    manual_seed(21);
    auto net = std::make_shared<TwoLayer>(4, 6, 2);
    const Tensor x = Tensor::rand({3, 4});
    const Tensor y = net->forward(x);
    CHECK(y.shape() == Shape{3, 2});
    const StateDict sd = net->state_dict();
    CHECK(names(net->named_parameters()) ==
          std::vector<std::string>{"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"});
    auto other = std::make_shared<TwoLayer>(4, 6, 2);
    CHECK_FALSE(bitwise_equal(other->forward(x), y));
    other->load_state_dict(sd);
    CHECK(bitwise_equal(other->forward(x), y));
    CHECK(bitwise_equal(nn::clone(*net)->forward(x), y));
    // Through the generic interface too.
    std::shared_ptr<nn::UnaryModule> as_unary = net;
    CHECK(bitwise_equal((*as_unary)(x), y));
}
