// tests/support/gpu_status.h — whether minidl_gpu_tests runs, skips or fails, and why.
//
// The rule (docs: DESIGN.md "Testing"): the suite skips (exit 77, CTest's SKIP_RETURN_CODE) only
// when there is nothing to test: a build without CUDA, or a machine without a GPU. A GPU that is
// present but that the CUDA runtime cannot use (driver too old for the toolkit, a driver error,
// every device hidden) is a failure: reporting it as a skip would hide a broken GPU machine
// behind a green CI run. CI machines have nvcc and no GPU, and their runtime answers
// cudaErrorInsufficientDriver (35) or cudaErrorNoDevice (100): that is a skip.
//
// decide_gpu_tests is pure, so the CPU suite tests the rule (tests/core/test_gpu_status.cpp);
// gpu_present() is the probe of the machine that feeds it.
#pragma once

#include <string>

namespace minidl::test {

enum class GpuTestAction { Run, Skip, Fail };

struct GpuTestDecision {
    GpuTestAction action;
    std::string message;  // one line for the runner to print, naming the runtime's error if any
};

// built_with_cuda, device_count and device_error as core/backend.h reports them; gpu_present
// from gpu_present() below. visible_devices: the value of CUDA_VISIBLE_DEVICES, or nullptr when
// unset (quoted in a failure, since hiding every device is a common cause).
GpuTestDecision decide_gpu_tests(bool built_with_cuda, int device_count,
                                 const std::string& device_error, bool gpu_present,
                                 const char* visible_devices);

// True when `nvidia_smi_list` (the output of `nvidia-smi -L`) lists a GPU: a line that starts
// with "GPU " ("GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-...)").
bool lists_gpu(const std::string& nvidia_smi_list);

// Whether this machine has an NVIDIA GPU, whatever CUDA thinks: a /dev/nvidiaN device node
// (N a number: /dev/nvidiactl and /dev/nvidia-uvm exist without a GPU too), or `nvidia-smi -L`
// listing one. `why` receives the evidence, for the runner's message.
bool gpu_present(std::string* why = nullptr);

}  // namespace minidl::test
