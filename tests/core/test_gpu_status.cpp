// tests/core/test_gpu_status.cpp — the rule by which minidl_gpu_tests runs, skips (exit 77) or
// fails (tests/support/gpu_status.h), and what the CUDA runtime's discovery reports on this
// machine (core/backend.h: device_count, device_error, set_device). Runs in the CPU suite, so the
// rule is checked where CI has no GPU; tests/gpu/gpu_main.cpp applies it.
#include <doctest/doctest.h>

#include <string>

#include "core/backend.h"
#include "core/check.h"
#include "tests/support/gpu_status.h"

using namespace minidl;
using test::decide_gpu_tests;
using test::GpuTestAction;

namespace {
const std::string kNoDriver =
    "cudaGetDeviceCount failed: cudaErrorInsufficientDriver (35): CUDA driver version is "
    "insufficient for CUDA runtime version";
}  // namespace

TEST_CASE("tests/gpu_status: a usable device runs the suite") {
    CHECK(decide_gpu_tests(true, 1, "", true, nullptr).action == GpuTestAction::Run);
    CHECK(decide_gpu_tests(true, 8, "", true, "0,1").action == GpuTestAction::Run);
}

TEST_CASE("tests/gpu_status: nothing to test skips") {
    SUBCASE("built without CUDA, even on a GPU machine") {
        const auto d = decide_gpu_tests(false, 0, "", true, nullptr);
        CHECK(d.action == GpuTestAction::Skip);
        CHECK(d.message.find("-DMINIDL_CUDA=ON") != std::string::npos);
    }
    SUBCASE("no GPU: the runtime's error is expected and quoted") {
        const auto d = decide_gpu_tests(true, 0, kNoDriver, false, nullptr);
        CHECK(d.action == GpuTestAction::Skip);
        CHECK(d.message.find("no GPU on this machine") != std::string::npos);
        CHECK(d.message.find("cudaErrorInsufficientDriver (35)") != std::string::npos);
    }
    SUBCASE("no GPU and no error") {
        const auto d = decide_gpu_tests(true, 0, "", false, nullptr);
        CHECK(d.action == GpuTestAction::Skip);
        CHECK(d.message.find("0 devices") != std::string::npos);
    }
}

TEST_CASE("tests/gpu_status: a GPU that CUDA cannot use fails") {
    SUBCASE("driver error") {
        const auto d = decide_gpu_tests(true, 0, kNoDriver, true, nullptr);
        CHECK(d.action == GpuTestAction::Fail);
        CHECK(d.message.find("a GPU is present but CUDA cannot use it") != std::string::npos);
        CHECK(d.message.find("cudaErrorInsufficientDriver (35)") != std::string::npos);
        CHECK(d.message.find("CUDA_VISIBLE_DEVICES") == std::string::npos);
    }
    SUBCASE("every device hidden: the variable is quoted") {
        const auto d = decide_gpu_tests(
            true, 0, "cudaGetDeviceCount failed: cudaErrorNoDevice (100): no CUDA-capable device",
            true, "");
        CHECK(d.action == GpuTestAction::Fail);
        CHECK(d.message.find("CUDA_VISIBLE_DEVICES=\"\"") != std::string::npos);
    }
    SUBCASE("no error, still no device") {
        CHECK(decide_gpu_tests(true, 0, "", true, nullptr).action == GpuTestAction::Fail);
    }
}

TEST_CASE("tests/gpu_status: nvidia-smi -L output lists a GPU only on a GPU line") {
    CHECK(test::lists_gpu("GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1234)\n"));
    CHECK(test::lists_gpu("GPU 0: A\nGPU 1: B\n"));
    CHECK_FALSE(test::lists_gpu(""));
    CHECK_FALSE(test::lists_gpu(
        "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n"));
    CHECK_FALSE(test::lists_gpu("No devices found.\n"));
    CHECK_FALSE(test::lists_gpu("  GPU 0 indented is not a listing\n"));
}

TEST_CASE("core/backend: device_error explains a device count of 0") {
    const std::string error = cuda::device_error();
    CAPTURE(error);
    if (!cuda::built_with_cuda() || cuda::device_count() > 0) {
        CHECK(error.empty());
    } else if (!error.empty()) {
        // The runtime's name and number for the code, then its sentence.
        CHECK(error.rfind("cudaGetDeviceCount failed: cudaError", 0) == 0);
        CHECK(error.find("): ") != std::string::npos);
    }
    CHECK(cuda::device_error() == error);  // asked once, answered the same every time
}

TEST_CASE("core/backend: set_device refuses a device that does not exist") {
    const int count = cuda::device_count();
    CHECK_THROWS_AS(cuda::set_device(count), DeviceError);
    CHECK_THROWS_AS(cuda::set_device(-1), DeviceError);
}
