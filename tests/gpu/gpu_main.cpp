// tests/gpu/gpu_main.cpp — the runner of minidl_gpu_tests, the CUDA parity suite.
//
// Before running anything it decides, by tests/support/gpu_status.h's rule, whether to run:
//   exit 77 (CTest's SKIP_RETURN_CODE: skipped) when there is nothing to test — a build without
//     the CUDA backend, or a machine without a GPU (no /dev/nvidiaN, nvidia-smi lists none);
//   exit 1 (failed) when a GPU is present but the CUDA runtime cannot use it — a driver error
//     must not read as a skip;
// and prints the runtime's error (cuda::device_error()) either way. doctest 2.4.9 has no runtime
// skip, hence the separate executable.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/backend.h"
#include "core/kernels.h"
#include "tests/support/device.h"
#include "tests/support/gpu_status.h"

// tests/device/ runs on CUDA device 0 here (tests/test_main.cpp runs it on the CPU).
minidl::Device minidl::test::test_device() {
    return minidl::Device::cuda(0);
}

int main(int argc, char** argv) {
    namespace cuda = minidl::cuda;
    using minidl::test::GpuTestAction;
    const int count = cuda::device_count();
    std::string evidence;
    // Probe the machine only when CUDA found nothing: a working GPU needs no second opinion.
    const bool present = count == 0 && minidl::test::gpu_present(&evidence);
    const minidl::test::GpuTestDecision decision =
        minidl::test::decide_gpu_tests(cuda::built_with_cuda(), count, cuda::device_error(),
                                       present, std::getenv("CUDA_VISIBLE_DEVICES"));
    switch (decision.action) {
        case GpuTestAction::Skip:
            std::printf("minidl_gpu_tests %s%s%s\n", decision.message.c_str(),
                        evidence.empty() ? "" : "; ", evidence.c_str());
            return 77;
        case GpuTestAction::Fail:
            std::fprintf(stderr, "minidl_gpu_tests %s [%s]\n", decision.message.c_str(),
                         evidence.c_str());
            return 1;
        case GpuTestAction::Run:
            break;
    }
    std::printf("minidl_gpu_tests on %s\n", cuda::device_name(0).c_str());
    doctest::Context context(argc, argv);
    const int rc = context.run();
    // A fault of a kernel that nothing waited for would otherwise be lost at exit: one checked
    // wait for everything queued.
    try {
        minidl::kernels_for(minidl::Device::cuda(0)).synchronize();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "minidl_gpu_tests: an asynchronous CUDA fault at exit: %s\n",
                     e.what());
        return 1;
    }
    return rc;
}
