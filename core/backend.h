// core/backend.h — the CUDA runtime entry points the device-independent code needs.
//
// Implemented in ops/cuda/cuda_runtime.cu when the CUDA backend is built, and by
// ops/cuda/cuda_stub.cpp otherwise, where every call that would need a GPU throws
// DeviceError("built without CUDA; configure with -DMINIDL_CUDA=ON").
#pragma once

#include <string>

#include "core/allocator.h"
#include "core/kernels.h"

namespace minidl::cuda {

// True when this library was compiled with the CUDA backend.
bool built_with_cuda();
// Number of usable CUDA devices: 0 without the backend, without a driver or on any runtime error
// (CI machines have the toolkit but no driver: cudaGetDeviceCount fails there, e.g. error 35).
int device_count();
inline bool is_available() {
    return device_count() > 0;
}
// "NVIDIA H100 80GB HBM3 (sm_90)".
std::string device_name(int index);

Allocator& allocator(int index);
Kernels& kernels();
void synchronize(int index);

}  // namespace minidl::cuda
