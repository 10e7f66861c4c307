// tests/support/device.h — the device the tests/device/ suites run on.
//
// Those suites are written once against a Device and compiled into both test executables:
// minidl_tests defines test_device() as the CPU (so every case runs in CI, and the CPU-vs-device
// comparisons compare the CPU with itself), minidl_gpu_tests as CUDA device 0 (where they compare
// the GPU with the CPU, at the tolerance of each dtype).
#pragma once

#include "core/device.h"

namespace minidl::test {

Device test_device();

}  // namespace minidl::test
