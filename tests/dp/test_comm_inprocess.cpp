// tests/dp/test_comm_inprocess.cpp — the in-process communicator: sums in rank order (bitwise the
// same on every rank, element by element across the reducer's chunks), average/max/min, broadcast,
// barrier, disagreeing calls, timeouts.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <limits>
#include <thread>

#include "core/comm.h"
#include "tests/dp/rank_threads.h"
#include "tests/support/compare.h"

using namespace minidl;
using namespace minidl::test;

TEST_CASE("dp/comm_inprocess: all_reduce sums in rank order, identical on every rank") {
    // (1e8 - 1e8) + 1 is 1; in the reverse order, (1 - 1e8) + 1e8 is 0 in f32 (1 - 1e8 rounds to
    // -1e8).
    const std::vector<float> x = {1e8f, -1e8f, 1.0f};
    auto comms = make_in_process_group(3);
    std::vector<Tensor> out(3), ints(3), doubles(3);
    run_ranks(3, [&](int r) {
        out[r] = Tensor::from_vector(std::vector<float>{x[r], static_cast<float>(r)}, {2});
        ints[r] = Tensor::from_vector(std::vector<int64_t>{r, 10 * r}, {2});
        doubles[r] = Tensor::from_vector(std::vector<double>{0.5 * r}, {1});
        comms[r]->all_reduce({out[r], ints[r], doubles[r]}, CommOp::Sum);
    });
    for (int r = 0; r < 3; ++r) {
        CAPTURE(r);
        CHECK(out[r].to_vector<float>() == std::vector<float>{1.0f, 3.0f});
        CHECK(ints[r].to_vector<int64_t>() == std::vector<int64_t>{3, 30});
        CHECK(doubles[r].to_vector<double>() == std::vector<double>{1.5});
        CHECK(bitwise_equal(out[r], out[0]));
    }
}

TEST_CASE("dp/comm_inprocess: average, max, min (a NaN wins), large tensors in slices") {
    auto comms = make_in_process_group(2);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::vector<Tensor> avg(2), mx(2), mn(2), big(2);
    const int64_t n = 100003;  // not a multiple of the world size: uneven slices
    run_ranks(2, [&](int r) {
        avg[r] = Tensor::from_vector(std::vector<float>{r == 0 ? 1.0f : 2.0f, 3.0f}, {2});
        mx[r] =
            Tensor::from_vector(std::vector<float>{r == 0 ? 1.0f : 5.0f, r == 0 ? nan : 1.0f}, {2});
        mn[r] = Tensor::from_vector(std::vector<int64_t>{r == 0 ? -4 : 7}, {1});
        big[r] = Tensor::full({n}, r + 1.0);
        comms[r]->all_reduce({avg[r]}, CommOp::Average);
        comms[r]->all_reduce({mx[r]}, CommOp::Max);
        comms[r]->all_reduce({mn[r]}, CommOp::Min);
        comms[r]->all_reduce({big[r]}, CommOp::Sum);
    });
    for (int r = 0; r < 2; ++r) {
        CHECK(avg[r].to_vector<float>() == std::vector<float>{1.5f, 3.0f});
        CHECK(mx[r].to_vector<float>()[0] == 5.0f);
        CHECK(std::isnan(mx[r].to_vector<float>()[1]));
        CHECK(mn[r].to_vector<int64_t>() == std::vector<int64_t>{-4});
        const std::vector<float> b = big[r].to_vector<float>();
        CHECK(std::all_of(b.begin(), b.end(), [](float v) { return v == 3.0f; }));
    }
}

TEST_CASE("dp/comm_inprocess: broadcast from any root, barrier, a world of one") {
    auto comms = make_in_process_group(3);
    std::vector<Tensor> t(3);
    run_ranks(3, [&](int r) {
        t[r] = Tensor::full({4}, 10.0 * r, DType::F64);
        comms[r]->broadcast({t[r]}, 1);
        comms[r]->barrier();
    });
    for (int r = 0; r < 3; ++r)
        CHECK(t[r].to_vector<double>() == std::vector<double>(4, 10.0));

    auto one = make_in_process_group(1);
    Tensor x = Tensor::full({3}, 2.0);
    one[0]->all_reduce({x}, CommOp::Average);
    CHECK(x.to_vector<float>() == std::vector<float>(3, 2.0f));
    CHECK(one[0]->is_main_process());
}

TEST_CASE("dp/comm_inprocess: ranks that disagree all get the same error, and the group lives on") {
    auto comms = make_in_process_group(2);
    std::vector<std::string> errors(2);
    run_ranks(2, [&](int r) {
        Tensor t = Tensor::zeros({r == 0 ? 3 : 4});
        try {
            comms[r]->all_reduce({t});
        } catch (const CommError& e) {
            errors[r] = e.what();
        }
    });
    for (int r = 0; r < 2; ++r) {
        CHECK(errors[r].find("disagree") != std::string::npos);
        CHECK(errors[r].find("[3]") != std::string::npos);
        CHECK(errors[r].find("[4]") != std::string::npos);
    }
    CHECK_FALSE(comms[0]->broken());
    std::vector<Tensor> t(2);
    run_ranks(2, [&](int r) {
        t[r] = Tensor::ones({2});
        comms[r]->all_reduce({t[r]});
    });
    CHECK(t[1].to_vector<float>() == std::vector<float>{2.0f, 2.0f});
}

TEST_CASE("dp/comm_inprocess: a rank that never comes makes the others throw within the timeout") {
    auto comms = make_in_process_group(3, {.timeout_s = 0.3});
    std::vector<std::string> errors(3);
    std::vector<double> seconds(3);
    run_ranks(3, [&](int r) {
        if (r == 2) return;  // stops answering
        const auto start = std::chrono::steady_clock::now();
        Tensor t = Tensor::ones({2});
        try {
            comms[r]->all_reduce({t});
        } catch (const CommError& e) {
            errors[r] = e.what();
        }
        seconds[r] =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    });
    // The first to time out names the op, itself, the missing rank and the timeout; the other
    // is woken by it (at the latest at its own deadline).
    const bool zero_first = errors[0].find("timed out") != std::string::npos;
    const std::string& first = errors[zero_first ? 0 : 1];
    CHECK(first.find("all_reduce on rank") != std::string::npos);
    CHECK(first.find("timed out after 0.3 s waiting for rank(s) 2") != std::string::npos);
    CHECK(errors[zero_first ? 1 : 0].find("rank(s) 2") != std::string::npos);
    for (int r = 0; r < 2; ++r) {
        CHECK(seconds[r] >= 0.25);
        CHECK(seconds[r] < 5.0);
    }
    // The group is broken: every later call throws at once, on every rank.
    CHECK(comms[2]->broken());
    Tensor t = Tensor::ones({1});
    CHECK_THROWS_WITH_AS(comms[2]->all_reduce({t}), doctest::Contains("broken"), CommError);
}

TEST_CASE("dp/comm_inprocess: abort wakes the peers at once, and bad arguments") {
    auto comms = make_in_process_group(2, {.timeout_s = 30});
    std::string error;
    double seconds = 0;
    run_ranks(2, [&](int r) {
        if (r == 1) {
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
            comms[1]->abort("replica 1 failed");
            return;
        }
        const auto start = std::chrono::steady_clock::now();
        try {
            comms[0]->barrier();
        } catch (const CommError& e) {
            error = e.what();
        }
        seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    });
    CHECK(error.find("aborted by rank 1: replica 1 failed") != std::string::npos);
    CHECK(seconds < 5.0);

    auto fresh = make_in_process_group(2);
    Tensor i = Tensor::zeros({2}, DType::I64);
    CHECK_THROWS_WITH_AS(fresh[0]->all_reduce({i}, CommOp::Average),
                         doctest::Contains("average of the integer tensor"), DTypeError);
    CHECK_THROWS_AS(fresh[0]->broadcast({i}, 2), IndexError);
    CHECK_THROWS_AS(make_in_process_group(0), ValueError);
    CHECK_THROWS_AS(fresh[0]->set_timeout(0), ValueError);
}

TEST_CASE("dp/comm_inprocess: every element reduced in rank order, across chunk and slice edges") {
    // 3 ranks, 5000 elements: uneven slices of ~1667, each several of the reducer's chunks of 1024;
    // distinct values, so that an element reduced with its neighbour's or out of order shows.
    constexpr int world = 3;
    constexpr int64_t n = 5000;
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::vector<std::vector<float>> x(world, std::vector<float>(n));
    for (int r = 0; r < world; ++r)
        for (int64_t e = 0; e < n; ++e)
            x[r][e] = (e % 97 == 13 && r == 1) ? nan : std::sin(0.37f * e + r) * 1000.0f;
    std::vector<float> sum(n), avg(n), mx(n);
    for (int64_t e = 0; e < n; ++e) {
        sum[e] = (x[0][e] + x[1][e]) + x[2][e];
        avg[e] = sum[e] / 3.0f;
        mx[e] = std::isnan(x[1][e]) ? nan : std::max(std::max(x[0][e], x[1][e]), x[2][e]);
    }
    auto comms = make_in_process_group(world);
    std::vector<Tensor> s(world), a(world), a2(world), m(world);
    run_ranks(world, [&](int r) {
        s[r] = Tensor::from_vector(x[r], {n});
        a[r] = s[r].clone();
        a2[r] = s[r].clone();
        m[r] = s[r].clone();
        comms[r]->all_reduce({s[r]}, CommOp::Sum);
        comms[r]->all_reduce({a[r], a2[r]}, CommOp::Average);  // two tensors in one call
        comms[r]->all_reduce({m[r]}, CommOp::Max);
    });
    auto bits = [](const std::vector<float>& v) {
        std::vector<uint32_t> out(v.size());
        std::memcpy(out.data(), v.data(), v.size() * sizeof(float));
        return out;
    };
    for (int r = 0; r < world; ++r) {
        CAPTURE(r);
        CHECK(bits(s[r].to_vector<float>()) == bits(sum));
        CHECK(bits(a[r].to_vector<float>()) == bits(avg));
        CHECK(bits(a2[r].to_vector<float>()) == bits(avg));
        CHECK(bits(m[r].to_vector<float>()) == bits(mx));
    }
}
