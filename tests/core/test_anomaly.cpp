// tests/core/test_anomaly.cpp — anomaly mode (core/anomaly.h): the first NaN/inf of a forward or
// backward throws NonFiniteError naming the op, its shapes and dtypes (and for backward the input
// index and the forward call); off, NaN passes silently; the environment variable; scopes nest
// and restore; process-wide (replica threads see it); the graph and grad state stay usable after
// the exception.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <thread>

#include "core/anomaly.h"
#include "core/autograd.h"
#include "core/check.h"
#include "core/row_grad.h"
#include "ops/elementwise.h"
#include "ops/embedding.h"
#include "ops/reduce.h"
#include "tests/support/compare.h"

using namespace minidl;
using minidl::test::check_close;

namespace {

Tensor leaf(const std::vector<double>& v, const Shape& shape, DType dtype = DType::F32) {
    return Tensor::from_vector(v, shape, dtype).set_requires_grad();
}

// The message of the NonFiniteError that fn throws ("" when it throws none).
template <typename F>
std::string anomaly_message(F&& fn) {
    try {
        fn();
    } catch (const NonFiniteError& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST_CASE("core/anomaly: a NaN in a forward output names the op, the shapes and the dtypes") {
    AnomalyMode on;
    SUBCASE("log of a negative") {
        Tensor x = leaf({1, -2, 3, 4}, {2, 2});
        const std::string m = anomaly_message([&] { (void)log(x); });
        CAPTURE(m);
        CHECK(m.find("forward of log") != std::string::npos);
        CHECK(m.find("1 NaN of 4 elements (the first at flat index 1)") != std::string::npos);
        CHECK(m.find("output [2, 2] f32 cpu") != std::string::npos);
        CHECK(m.find("input 0: [2, 2] f32 cpu (finite)") != std::string::npos);
    }
    SUBCASE("0/0, with broadcasting") {
        Tensor a = leaf({0, 1, 2, 0, 1, 2}, {2, 3}, DType::F64);
        Tensor b = leaf({0, 1, 1}, {3}, DType::F64);
        const std::string m = anomaly_message([&] { (void)div(a, b); });
        CAPTURE(m);
        CHECK(m.find("forward of div") != std::string::npos);
        CHECK(m.find("2 NaN of 6 elements (the first at flat index 0)") != std::string::npos);
        CHECK(m.find("input 0: [2, 3] f64 cpu (finite), input 1: [3] f64 cpu (finite)") !=
              std::string::npos);
    }
    SUBCASE("an input that is already NaN is named as such") {
        Tensor x = leaf({1, std::nan("")}, {2});
        const std::string m = anomaly_message([&] { (void)(x * 2.0); });
        CAPTURE(m);
        CHECK(m.find("input 0: [2] f32 cpu (1 NaN of 2 elements") != std::string::npos);
    }
}

TEST_CASE("core/anomaly: an inf in a forward output throws") {
    AnomalyMode on;
    Tensor x = leaf({1, 100}, {2});  // e^100 overflows f32
    const std::string m = anomaly_message([&] { (void)exp(x); });
    CAPTURE(m);
    CHECK(m.find("forward of exp produced 1 inf of 2 elements (the first at flat index 1)") !=
          std::string::npos);
    CHECK_THROWS_AS((void)exp(x), NonFiniteError);
    CHECK_THROWS_AS((void)exp(x), Error);  // a minidl::Error like every other
}

TEST_CASE("core/anomaly: a non-finite gradient from a finite forward names the backward") {
    AnomalyMode on;
    SUBCASE("sqrt at 0: an infinite derivative times a zero gradient is NaN") {
        Tensor x = leaf({0, 4}, {2}, DType::F64);
        Tensor y = sum(sqrt(x) * 0.0);  // forward 0: finite
        CHECK(y.item() == 0.0);
        const std::string m = anomaly_message([&] { y.backward(); });
        CAPTURE(m);
        CHECK(m.find("backward of sqrt produced 1 NaN of 2 elements (the first at flat index 0)") !=
              std::string::npos);
        CHECK(m.find("gradient of its input 0 [2] f64 cpu") != std::string::npos);
        CHECK(m.find("created by sqrt(input 0: [2] f64 cpu)") != std::string::npos);
        CHECK(m.find("the gradient it received, [2] f64 cpu, is finite") != std::string::npos);
    }
    SUBCASE("the gradient of the second input of a binary op") {
        Tensor a = leaf({1, 2}, {2});
        Tensor b = leaf({3, 0}, {2});
        Tensor y = sum(a * sqrt(b));  // d/db = a / (2 sqrt b): inf at b = 0
        const std::string m = anomaly_message([&] { y.backward(); });
        CAPTURE(m);
        CHECK(m.find("backward of sqrt produced 1 inf") != std::string::npos);
        // The gradient sqrt received came from mul's backward, finite.
        CHECK(m.find("is finite") != std::string::npos);
    }
    SUBCASE("a row-sparse table gradient names the embedding op") {
        Tensor w = leaf({1, 2, 3, 4, 5, 6}, {3, 2});
        Tensor ids = Tensor::from_vector(std::vector<int64_t>{0, 2}, {2});
        Tensor offsets = Tensor::from_vector(std::vector<int64_t>{0}, {1});
        Tensor bag = embedding_bag(w, ids, offsets, BagMode::Sum);
        const Tensor nan_grad = Tensor::from_vector(std::vector<float>{1, NAN}, {1, 2});
        const std::string m = anomaly_message([&] { bag.backward(nan_grad); });
        CAPTURE(m);
        CHECK(m.find("backward of embedding_bag") != std::string::npos);
        CHECK(m.find("input 0 [3, 2] f32 cpu") != std::string::npos);
        if (row_sparse_grads()) CHECK(m.find("row-sparse") != std::string::npos);
        CHECK(m.find("the gradient it received, [1, 2] f32 cpu, is 1 NaN") != std::string::npos);
    }
}

TEST_CASE("core/anomaly: off, NaN and inf pass silently") {
    AnomalyMode off(false);
    Tensor x = leaf({-1, 0}, {2}, DType::F64);
    Tensor y;
    CHECK_NOTHROW(y = log(x));
    CHECK(std::isnan(y.to_vector<double>()[0]));
    CHECK(std::isinf(y.to_vector<double>()[1]));
    Tensor z = sum(sqrt(x * -1.0) * 0.0);
    CHECK_NOTHROW(z.backward());
    CHECK(std::isnan(x.grad().to_vector<double>()[1]));  // the NaN reached the leaf unchecked
}

TEST_CASE("core/anomaly: scopes nest and restore the previous mode") {
    const bool initial = AnomalyMode::is_enabled();
    {
        AnomalyMode on;
        CHECK(AnomalyMode::is_enabled());
        {
            AnomalyMode off(false);
            CHECK_FALSE(AnomalyMode::is_enabled());
            CHECK_NOTHROW((void)log(leaf({-1}, {1})));
            {
                AnomalyMode inner;
                CHECK(AnomalyMode::is_enabled());
                CHECK_THROWS_AS((void)log(leaf({-1}, {1})), NonFiniteError);
            }
            CHECK_FALSE(AnomalyMode::is_enabled());
        }
        CHECK(AnomalyMode::is_enabled());
    }
    CHECK(AnomalyMode::is_enabled() == initial);
    // An exception unwinding through a scope restores it too.
    try {
        AnomalyMode on;
        (void)log(leaf({-1}, {1}));
    } catch (const NonFiniteError&) {
    }
    CHECK(AnomalyMode::is_enabled() == initial);
}

TEST_CASE("core/anomaly: the mode is process-wide (a replica thread sees it)") {
    AnomalyMode on;
    bool thrown = false;
    std::thread replica([&] {
        try {
            (void)log(leaf({-1}, {1}));
        } catch (const NonFiniteError&) {
            thrown = true;
        }
    });
    replica.join();
    CHECK(thrown);
}

TEST_CASE("core/anomaly: after the exception the graph and grad state are usable") {
    AnomalyMode on;
    Tensor x = leaf({0, 4}, {2}, DType::F64);
    // Forward: the failing op records nothing; grad mode is as it was.
    CHECK_THROWS_AS((void)log(x - 1.0), NonFiniteError);
    CHECK(GradMode::is_enabled());
    // Backward: the pass stops; grad mode and the engine's per-thread state are restored.
    Tensor y = sum(sqrt(x) * 0.0);
    CHECK_THROWS_AS(y.backward(), NonFiniteError);
    CHECK(GradMode::is_enabled());
    CHECK_THROWS_AS(autograd::queue_callback([] {}), StateError);  // no pass is running
    // A fresh step on the same leaf gives the right gradient, still under anomaly mode.
    x.set_grad(Tensor());
    Tensor z = sum(x * x);  // dz/dx = 2x
    z.backward();
    check_close(x.grad(), {0, 8}, 0, 0, "a new graph after the anomaly");
    // A graph built before the failure is still differentiable.
    Tensor a = leaf({1, 2}, {2}, DType::F64);
    Tensor before = sum(a * 3.0);
    CHECK_THROWS_AS((void)log(a - 5.0), NonFiniteError);
    before.backward();
    check_close(a.grad(), {3, 3}, 0, 0, "a graph recorded before the failing op");
}

TEST_CASE("core/anomaly: MINIDL_DETECT_ANOMALY values") {
    using autograd::anomaly::env_requests;
    for (const char* on : {"1", "true", "TRUE", "on", "yes"})
        CHECK(env_requests(on));
    for (const char* off : {"0", "", "false", "off", "no", "2"})
        CHECK_FALSE(env_requests(off));
    CHECK_FALSE(env_requests(nullptr));
}

TEST_CASE("core/anomaly: the mode starts as MINIDL_DETECT_ANOMALY says") {
    // Run in this process (variable unset: off) and, by the next case, in a child with it set.
    const bool requested = autograd::anomaly::env_requests(std::getenv("MINIDL_DETECT_ANOMALY"));
    CHECK(AnomalyMode::is_enabled() == requested);
    if (requested) CHECK_THROWS_AS((void)log(leaf({-1}, {1})), NonFiniteError);
}

TEST_CASE("core/anomaly: MINIDL_DETECT_ANOMALY=1 turns the mode on for the whole process") {
    const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
    char out_template[] = "/tmp/minidl_anomaly_XXXXXX";
    const int fd = ::mkstemp(out_template);
    REQUIRE(fd >= 0);
    ::close(fd);
    std::fflush(nullptr);  // the child must not repeat what this process has buffered
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::setenv("MINIDL_DETECT_ANOMALY", "1", 1);
        if (!std::freopen(out_template, "w", stdout)) ::_exit(126);
        const std::string filter =
            "-tc=core/anomaly: the mode starts as MINIDL_DETECT_ANOMALY says";
        ::execl(self.c_str(), self.c_str(), filter.c_str(), static_cast<char*>(nullptr));
        ::_exit(127);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    std::ifstream f(out_template);
    const std::string out((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    std::filesystem::remove(out_template);
    CAPTURE(out);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    // The child ran exactly that case (a filter matching nothing would also exit 0).
    CHECK(out.find("test cases: 1 | 1 passed") != std::string::npos);
}
