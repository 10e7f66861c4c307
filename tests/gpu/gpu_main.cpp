// tests/gpu/gpu_main.cpp — the runner of minidl_gpu_tests, the CUDA parity suite.
//
// Exits 77 — CTest's SKIP_RETURN_CODE for this test — when no CUDA device is usable: a build
// without the CUDA backend, or a machine without a GPU or a driver (cuda::device_count() is 0 on
// any runtime error). doctest 2.4.9 has no runtime skip, hence the separate executable.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include "core/backend.h"
#include "tests/support/device.h"

// tests/device/ runs on CUDA device 0 here (tests/test_main.cpp runs it on the CPU).
minidl::Device minidl::test::test_device() { return minidl::Device::cuda(0); }

int main(int argc, char** argv) {
    if (minidl::cuda::device_count() == 0) {
        std::printf("no usable CUDA device: skipped (%s)\n",
                    minidl::cuda::built_with_cuda()
                        ? "built with CUDA, but the runtime finds no GPU or no driver"
                        : "built without CUDA; configure with -DMINIDL_CUDA=ON");
        return 77;
    }
    std::printf("minidl_gpu_tests on %s\n", minidl::cuda::device_name(0).c_str());
    doctest::Context context(argc, argv);
    return context.run();
}
