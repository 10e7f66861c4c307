// tests/test_main.cpp — the doctest runner of the CPU suite (every test file links into it).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include "tests/support/device.h"

// tests/device/ runs on the CPU here (tests/gpu/gpu_main.cpp runs it on CUDA).
minidl::Device minidl::test::test_device() { return Device::cpu(); }
