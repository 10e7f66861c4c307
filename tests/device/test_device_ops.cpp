// tests/device/test_device_ops.cpp — every op, forward and backward through autograd, on
// test_device() against the CPU, for every floating dtype it accepts.
//
// Inputs are drawn on the CPU (16-bit values drawn directly, so both sides see the same bits),
// copied to the device as leaves, the op runs on both, and a fixed random upstream gradient is
// back-propagated. Outputs and input gradients must agree at the dtype's tolerance:
//   F64 rtol 1e-12 / atol 1e-12, F32 1e-5 / 1e-6, F16 2e-3 / 1e-3, BF16 1.6e-2 / 1e-2
// (one or two roundings apart), multiplied by 8 for results that sum many terms (matmul, linear,
// reductions, the gradients of broadcasts and of embeddings), whose rounding grows with the count.
// In minidl_tests test_device() is the CPU: the comparison is then exact, and what this file
// checks there is that every case runs.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/check.h"
#include "core/finite.h"
#include "core/rng.h"
#include "ops/ops.h"
#include "tests/support/compare.h"
#include "tests/support/device.h"

using namespace minidl;
using minidl::test::compare_close;
using minidl::test::test_device;

namespace {

struct Tol {
    double rtol, atol;
};

Tol tolerance(DType dtype, double factor) {
    switch (dtype) {
        case DType::F64:
            return {1e-12 * factor, 1e-12 * factor};
        case DType::F32:
            return {1e-5 * factor, 1e-6 * factor};
        case DType::F16:
            return {2e-3 * factor, 1e-3 * factor};
        default:
            return {1.6e-2 * factor, 1e-2 * factor};
    }
}

// Uniform on [low, high) on the CPU, drawn in F32 and rounded to `dtype` once.
Tensor draw(const Shape& shape, DType dtype, uint64_t seed, double low, double high) {
    Generator g(seed);
    return Tensor::rand(shape, &g, DType::F32, Device::cpu(), low, high).to(dtype);
}

Tensor ids(std::vector<int64_t> v) {
    const int64_t n = static_cast<int64_t>(v.size());
    return Tensor::from_vector(v, {n});
}

struct InputSpec {
    Shape shape;
    double low = -1.0, high = 1.0;
};

struct OpCase {
    std::string name;
    std::vector<InputSpec> inputs;
    // The op on floating inputs xs; `device` is where they live (for integer side inputs).
    std::function<Tensor(const std::vector<Tensor>& xs, Device device)> fn;
    double factor = 1.0;  // tolerance multiplier for results that sum many terms
    bool f64_only_exact = false;
};

void check_same(const Tensor& got, const Tensor& want, Tol tol, const std::string& what) {
    INFO(what);
    REQUIRE(got.defined());
    REQUIRE(want.defined());
    CHECK(got.shape() == want.shape());
    CHECK(got.dtype() == want.dtype());
    const auto r = compare_close(got.to(Device::cpu()).to_vector<double>(),
                                 want.to_vector<double>(), tol.rtol, tol.atol);
    INFO(r.message);
    CHECK(r.ok);
}

// Runs one case for one dtype on the CPU and on the test device and compares.
void run_case(const OpCase& c, DType dtype) {
    const Device device = test_device();
    const std::string what = c.name + " " + std::string(dtype_name(dtype)) + " on " + device.str();
    std::vector<Tensor> cpu_in, dev_in;
    for (size_t i = 0; i < c.inputs.size(); ++i) {
        const InputSpec& s = c.inputs[i];
        const Tensor x = draw(s.shape, dtype, 100 + i, s.low, s.high);
        cpu_in.push_back(x.clone().set_requires_grad());
        dev_in.push_back(x.to(device).set_requires_grad());
    }
    const Tensor y_cpu = c.fn(cpu_in, Device::cpu());
    const Tensor y_dev = c.fn(dev_in, device);
    CHECK(y_dev.device() == device);
    const Tol tol = tolerance(y_cpu.dtype(), c.factor);
    check_same(y_dev, y_cpu, tol, what + " forward");
    if (!y_cpu.requires_grad()) return;
    const Tensor upstream = draw(y_cpu.shape(), y_cpu.dtype(), 7, -1.0, 1.0);
    y_cpu.backward(upstream);
    y_dev.backward(upstream.to(device));
    for (size_t i = 0; i < cpu_in.size(); ++i) {
        if (!cpu_in[i].grad().defined()) continue;
        check_same(dev_in[i].grad(), cpu_in[i].grad(), tolerance(dtype, 8 * c.factor),
                   what + " grad of input " + std::to_string(i));
    }
}

const std::vector<OpCase>& op_cases() {
    using V = const std::vector<Tensor>&;
    static const std::vector<OpCase> cases = {
        {"add broadcast", {{{5, 33}}, {{33}}}, [](V x, Device) { return x[0] + x[1]; }},
        {"sub broadcast", {{{4, 1, 7}}, {{3, 1}}}, [](V x, Device) { return x[0] - x[1]; }},
        {"mul", {{{6, 65}}, {{6, 65}}}, [](V x, Device) { return x[0] * x[1]; }},
        {"div", {{{6, 65}}, {{65}, 0.5, 2.0}}, [](V x, Device) { return x[0] / x[1]; }},
        {"maximum", {{{6, 17}}, {{6, 17}}}, [](V x, Device) { return maximum(x[0], x[1]); }},
        {"minimum", {{{6, 17}}, {{17}}}, [](V x, Device) { return minimum(x[0], x[1]); }},
        {"scalar ops", {{{129}}}, [](V x, Device) { return (2.0 - x[0] * 3.0 + 1.5) / 2.0; }},
        {"rdiv", {{{129}, 0.5, 2.0}}, [](V x, Device) { return 1.0 / x[0]; }},
        {"pow", {{{129}, 0.5, 2.0}}, [](V x, Device) { return pow(x[0], 1.7); }},
        {"exp", {{{257}}}, [](V x, Device) { return exp(x[0]); }},
        {"log", {{{257}, 0.5, 3.0}}, [](V x, Device) { return log(x[0]); }},
        {"sqrt", {{{257}, 0.5, 3.0}}, [](V x, Device) { return sqrt(x[0]); }},
        {"abs", {{{257}}}, [](V x, Device) { return abs(x[0]); }},
        {"relu", {{{257}}}, [](V x, Device) { return relu(x[0]); }},
        {"gelu", {{{257}}}, [](V x, Device) { return gelu(x[0]); }},
        {"gelu tanh", {{{257}}}, [](V x, Device) { return gelu(x[0], GeluApproximation::Tanh); }},
        {"tanh", {{{257}}}, [](V x, Device) { return tanh(x[0]); }},
        {"sigmoid", {{{257}}}, [](V x, Device) { return sigmoid(x[0]); }},
        {"sum all", {{{31, 33}}}, [](V x, Device) { return sum(x[0]); }, 8},
        {"sum dim", {{{7, 9, 11}}}, [](V x, Device) { return sum(x[0], 1); }, 2},
        {"mean dim keepdim", {{{7, 9, 11}}}, [](V x, Device) { return mean(x[0], 2, true); }, 2},
        {"max dim", {{{7, 9, 11}}}, [](V x, Device) { return max(x[0], 0); }},
        {"softmax", {{{5, 37}, -3, 3}}, [](V x, Device) { return softmax(x[0], 1); }},
        {"log_softmax", {{{5, 37}, -3, 3}}, [](V x, Device) { return log_softmax(x[0], 1); }},
        {"softmax middle dim", {{{3, 5, 4}, -3, 3}}, [](V x, Device) { return softmax(x[0], 1); }},
        {"cross_entropy",
         {{{6, 11}, -3, 3}},
         [](V x, Device d) {
             return cross_entropy(x[0], ids({0, 10, 3, -100, 7, 7}).to(d),
                                  {.label_smoothing = 0.1});
         },
         2},
        {"matmul", {{{9, 40}}, {{40, 13}}}, [](V x, Device) { return matmul(x[0], x[1]); }, 4},
        {"matmul batched",
         {{{3, 5, 20}}, {{3, 20, 6}}},
         [](V x, Device) { return matmul(x[0], x[1]); },
         4},
        {"matmul shared",
         {{{3, 5, 20}}, {{20, 6}}},
         [](V x, Device) { return matmul(x[0], x[1]); },
         4},
        {"linear",
         {{{2, 7, 24}}, {{10, 24}}, {{10}}},
         [](V x, Device) { return linear(x[0], x[1], x[2]); },
         4},
        {"embedding",
         {{{12, 9}}},
         [](V x, Device d) {
             return embedding(x[0], ids({1, 3, 3, 0, 11, 2}).view({2, 3}).to(d), 0);
         },
         2},
        {"embedding_bag mean",
         {{{12, 9}}},
         [](V x, Device d) {
             return embedding_bag(x[0], ids({1, 3, 3, 0, 11, 2, 5}).to(d), ids({0, 4, 4, 5}).to(d),
                                  BagMode::Mean);
         },
         2},
        {"embedding_bag sum padding",
         {{{12, 9}}},
         [](V x, Device d) {
             return embedding_bag(x[0], ids({1, 3, 3, 0, 11, 2, 5}).to(d), ids({0, 4, 4, 5}).to(d),
                                  BagMode::Sum, 3);
         },
         2},
        {"layer_norm",
         {{{6, 48}}, {{48}}, {{48}}},
         [](V x, Device) { return layer_norm(x[0], {48}, x[1], x[2]); },
         2},
        {"dropout (same Philox mask)",
         {{{300}}},
         [](V x, Device) {
             Generator g(9);
             return dropout(x[0], 0.3, true, &g);
         }},
        {"concat",
         {{{3, 4}}, {{3, 5}}},
         [](V x, Device) {
             return concat({x[0], x[1]}, 1);
         }},
        {"slice", {{{6, 7}}}, [](V x, Device) { return slice(x[0], 1, 2, 5); }},
        {"index_select",
         {{{6, 7}}},
         [](V x, Device d) {
             return index_select(x[0], 0, ids({5, 0, 5, 2}).to(d));
         },
         2},
        {"transpose", {{{5, 7, 3}}}, [](V x, Device) { return x[0].transpose(0, 2); }},
        {"narrow0 view", {{{6, 4}}}, [](V x, Device) { return x[0].narrow0(2, 3).view({12}); }},
        {"cast round trip", {{{33}}}, [](V x, Device) { return x[0].to(DType::F32) * 2.0; }},
    };
    return cases;
}

}  // namespace

TEST_CASE("device/ops: every op matches the CPU, forward and backward, in every float dtype") {
    int ran = 0;
    for (const OpCase& c : op_cases()) {
        for (DType dtype : {DType::F32, DType::F64, DType::F16, DType::BF16}) {
            CAPTURE(c.name);
            CAPTURE(dtype);
            run_case(c, dtype);
            ++ran;
        }
    }
    CHECK(ran == static_cast<int>(op_cases().size()) * 4);
}

TEST_CASE("device/ops: bad ids raise IndexError on the host before any kernel runs") {
    const Device device = test_device();
    Tensor w = Tensor::ones({5, 3}).to(device).set_requires_grad();
    CHECK_THROWS_WITH_AS(embedding(w, ids({0, 5}).to(device)), doctest::Contains("ids[1] = 5"),
                         IndexError);
    CHECK_THROWS_AS(embedding_bag(w, ids({-1}).to(device), ids({0}).to(device)), IndexError);
    CHECK_THROWS_AS(cross_entropy(Tensor::zeros({2, 3}).to(device), ids({0, 3}).to(device)),
                    IndexError);
    // The device is still usable afterwards (no poisoned context).
    Tensor y = embedding(w, ids({4, 0}).to(device));
    y.backward(Tensor::ones({2, 3}).to(device));
    CHECK(w.grad().to(Device::cpu()).to_vector<double>()[12] == 1.0);
}

TEST_CASE("device/ops: grads_all_finite finds one NaN or inf on the device and changes nothing") {
    const Device device = test_device();
    for (DType dtype : {DType::F32, DType::F64, DType::F16, DType::BF16}) {
        CAPTURE(dtype);
        Tensor w = Tensor::zeros({3000}, dtype).to(device).set_requires_grad();
        Tensor b = Tensor::zeros({7}, dtype).to(device).set_requires_grad();
        CHECK(grads_all_finite({w, b}));  // no gradients yet
        std::vector<double> values(3000);
        for (size_t i = 0; i < values.size(); ++i)
            values[i] = (i % 2 ? -1.0 : 1.0) * 1e-3 * i;
        const Tensor finite = Tensor::from_vector(values, {3000}).to(dtype);
        w.set_grad(finite.to(device));
        b.set_grad(Tensor::ones({7}, dtype).to(device));
        CHECK(grads_all_finite({w, b}));
        // The check rewrites nothing: the gradient keeps its bits.
        CHECK(minidl::test::bitwise_equal(w.grad().to(Device::cpu()), finite));
        for (double bad : {std::nan(""), double{INFINITY}, -double{INFINITY}}) {
            for (int64_t at : {int64_t{0}, int64_t{2999}}) {
                CAPTURE(bad);
                CAPTURE(at);
                std::vector<double> v = values;
                v[static_cast<size_t>(at)] = bad;
                w.set_grad(Tensor::from_vector(v, {3000}).to(dtype).to(device));
                CHECK_FALSE(grads_all_finite({w, b}));
                CHECK(grads_all_finite({b}));
            }
        }
    }
}

TEST_CASE("device/ops: grads_all_finite reads a value with the flag, in one wait for a GPU") {
    const Device device = test_device();
    Tensor w = Tensor::zeros({3000}, DType::F32).to(device).set_requires_grad();
    w.set_grad(Tensor::ones({3000}, DType::F32).to(device));
    const Tensor loss = Tensor::scalar(0.625, DType::F32, device);
    double value = 0.0;
    {
        const cuda::HostSyncScope syncs;
        CHECK(grads_all_finite({w}, loss, value));
        // One read for the flag and the value together on a GPU; none on the CPU.
        CHECK(syncs.count() == (device.is_cuda() ? 1u : 0u));
    }
    CHECK(value == 0.625);
    // A non-finite gradient: false, and the value is still read.
    std::vector<float> g(3000, 1.0f);
    g[1234] = std::nanf("");
    w.set_grad(Tensor::from_vector(g, {3000}).to(device));
    value = 0.0;
    CHECK_FALSE(grads_all_finite({w}, loss, value));
    CHECK(value == 0.625);
    // A NaN value with finite gradients, a value on the host, an F64 value.
    w.set_grad(Tensor::ones({3000}, DType::F32).to(device));
    CHECK(grads_all_finite({w}, Tensor::scalar(std::nan(""), DType::F64, device), value));
    CHECK(std::isnan(value));
    CHECK(grads_all_finite({w}, Tensor::scalar(-2.5, DType::F64), value));
    CHECK(value == -2.5);
    CHECK(grads_all_finite({}, Tensor::scalar(4.0, DType::F64, device), value));
    CHECK(value == 4.0);
    CHECK_THROWS_AS(grads_all_finite({w}, Tensor::zeros({2}, DType::F32, device), value),
                    ShapeError);
}
