// tests/dp/test_autograd_hooks.cpp — the two engine hooks data parallelism overlaps communication
// with (core/autograd.h): post-accumulate hooks fire once per backward pass per leaf, after its
// last contribution; queue_callback runs at the end of the pass.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "core/autograd.h"
#include "core/check.h"
#include "ops/ops.h"

using namespace minidl;

TEST_CASE("dp/autograd_hooks: a leaf used twice fires once, after both contributions") {
    Tensor x = Tensor::from_vector(std::vector<float>{1, 2}, {2}).set_requires_grad();
    Tensor w = Tensor::from_vector(std::vector<float>{3, 4}, {2}).set_requires_grad();
    std::vector<std::string> events;
    std::vector<float> seen;
    const uint64_t id = autograd::add_post_accumulate_hook(x, [&](const Tensor& leaf) {
        events.push_back("x");
        seen = leaf.grad().to_vector<float>();
    });
    autograd::add_post_accumulate_hook(w, [&](const Tensor&) {
        events.push_back("w");
        autograd::queue_callback([&] { events.push_back("end"); });
    });
    // d/dx sum(x * x + x * w) = 2x + w: two edges into x (three, counting x * x's two inputs).
    sum(x * x + x * w).backward();
    CHECK(seen == std::vector<float>{5, 8});
    REQUIRE(events.size() == 3);
    CHECK(std::count(events.begin(), events.end(), "x") == 1);
    CHECK(events.back() == "end");  // after every hook of the pass

    // A second pass fires again (and accumulates); a removed hook does not.
    events.clear();
    autograd::remove_post_accumulate_hook(x, id);
    sum(x * w).backward();
    CHECK(events == std::vector<std::string>{"w", "end"});
    CHECK(x.grad().to_vector<float>() == std::vector<float>{8, 12});
}

TEST_CASE("dp/autograd_hooks: a root leaf, branches without gradient, and misuse") {
    Tensor x = Tensor::ones({2}).set_requires_grad();
    int fired = 0;
    autograd::add_post_accumulate_hook(x, [&](const Tensor&) { ++fired; });
    x.backward(Tensor::ones({2}));
    CHECK(fired == 1);
    CHECK_THROWS_WITH_AS(autograd::queue_callback([] {}),
                         doctest::Contains("no backward pass is running"), StateError);
    CHECK_THROWS_AS(autograd::add_post_accumulate_hook(x * 2.0, [](const Tensor&) {}), StateError);
}
