// tests/device/test_device_reference.cpp — every op_* case of tests/fixtures (values computed by
// PyTorch 1.13, see tests/fixtures/make_fixtures.py) on test_device(): forward value and the
// gradient of sum(output * upstream) for each floating input, in F32. Runs on the CPU in
// minidl_tests and on CUDA in minidl_gpu_tests.
//
// Tolerance: rtol 1e-5, atol 1e-6 — the fixtures are f32 results themselves, so agreement is
// limited by f32 rounding of both computations (different summation orders differ by a few ulp).
#include <doctest/doctest.h>

#include <functional>
#include <map>

#include "ops/ops.h"
#include "tests/support/compare.h"
#include "tests/support/device.h"
#include "tests/support/fixtures.h"

using namespace minidl;
using minidl::test::check_close;
using minidl::test::json;
using minidl::test::load_fixture;
using minidl::test::tensor_from_json;
using minidl::test::values_from_json;

namespace {

using OpFn = std::function<Tensor(const std::vector<Tensor>&, const json&)>;

Tensor int_input(const json& ints, const char* name) {
    // On the device under test: ops refuse ids on another device than their table or logits.
    return tensor_from_json(ints.at(name)).to(minidl::test::test_device());
}

const std::map<std::string, OpFn>& cases() {
    static const std::map<std::string, OpFn> table = {
        {"op_matmul", [](auto& x, auto&) { return matmul(x[0], x[1]); }},
        {"op_linear", [](auto& x, auto&) { return linear(x[0], x[1], x[2]); }},
        {"op_add_broadcast", [](auto& x, auto&) { return x[0] + x[1]; }},
        {"op_mul", [](auto& x, auto&) { return x[0] * x[1]; }},
        {"op_relu", [](auto& x, auto&) { return relu(x[0]); }},
        {"op_gelu", [](auto& x, auto&) { return gelu(x[0]); }},
        {"op_gelu_tanh", [](auto& x, auto&) { return gelu(x[0], GeluApproximation::Tanh); }},
        {"op_tanh", [](auto& x, auto&) { return tanh(x[0]); }},
        {"op_sigmoid", [](auto& x, auto&) { return sigmoid(x[0]); }},
        {"op_sum_dim1", [](auto& x, auto&) { return sum(x[0], 1); }},
        {"op_mean_all", [](auto& x, auto&) { return mean(x[0]); }},
        {"op_log_softmax", [](auto& x, auto&) { return log_softmax(x[0], -1); }},
        {"op_softmax", [](auto& x, auto&) { return softmax(x[0], -1); }},
        {"op_layer_norm", [](auto& x, auto&) { return layer_norm(x[0], {6}, x[1], x[2], 1e-5); }},
        {"op_embedding",
         [](auto& x, auto& ints) { return embedding(x[0], int_input(ints, "ids")); }},
        {"op_embedding_padding_idx0",
         [](auto& x, auto& ints) { return embedding(x[0], int_input(ints, "ids"), 0); }},
        {"op_embedding_bag_mean",
         [](auto& x, auto& ints) {
             return embedding_bag(x[0], int_input(ints, "ids"), int_input(ints, "offsets"),
                                  BagMode::Mean);
         }},
        {"op_embedding_bag_sum",
         [](auto& x, auto& ints) {
             return embedding_bag(x[0], int_input(ints, "ids"), int_input(ints, "offsets"),
                                  BagMode::Sum);
         }},
        {"op_cross_entropy_ls0",
         [](auto& x, auto& ints) { return cross_entropy(x[0], int_input(ints, "labels")); }},
        {"op_cross_entropy_ls0.1",
         [](auto& x, auto& ints) {
             return cross_entropy(x[0], int_input(ints, "labels"), {.label_smoothing = 0.1});
         }},
    };
    return table;
}

}  // namespace

TEST_CASE("device/reference: every op fixture matches PyTorch (forward and gradients)") {
    const Device device = minidl::test::test_device();
    for (const auto& [name, fn] : cases()) {
        SUBCASE(name.c_str()) {
            const json fx = load_fixture(name);
            std::vector<Tensor> inputs;
            for (const auto& j : fx.at("inputs"))
                inputs.push_back(tensor_from_json(j, DType::F32, device).set_requires_grad());
            const json ints = fx.contains("int_inputs") ? fx.at("int_inputs") : json::object();
            Tensor out = fn(inputs, ints);
            const double fwd =
                check_close(out, values_from_json(fx.at("output")), 1e-5, 1e-6, name + " forward");
            CHECK(out.shape() == minidl::test::shape_from_json(fx.at("output")));
            CHECK(out.device() == device);
            out.backward(tensor_from_json(fx.at("upstream"), DType::F32, device));
            double worst = fwd;
            for (size_t i = 0; i < inputs.size(); ++i) {
                REQUIRE(inputs[i].grad().defined());
                worst = std::max(
                    worst, check_close(inputs[i].grad(), values_from_json(fx.at("input_grads")[i]),
                                       1e-5, 1e-6, name + " grad of input " + std::to_string(i)));
            }
            MESSAGE(name << " on " << device.str() << ": max relative error " << worst);
        }
    }
}
