// ops/cuda/cuda_context.h — the per-device CUDA state the kernel files share.
//
// Every device gets, on first use, one non-blocking stream that runs all of minidl's work for it
// (kernels, copies, cuBLAS calls) in order — which is what lets the caching allocator hand a freed
// block to the next allocation at once — and, on the first matrix product, one cuBLAS handle bound
// to that stream. Entry points validate the device index and throw DeviceError for a device that
// does not exist. Nothing here is ever destroyed: tensors held by static objects may be freed
// after main returns, when the CUDA runtime may already be gone.
//
// Code that runs its own work on minidl's tensors (NCCL collectives, say) should enqueue it on
// cuda::stream(index) to stay ordered with the kernels.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <mutex>

#include "core/tensor.h"

namespace minidl::cuda {

// The stream of device `index`.
cudaStream_t stream(int index);
// The cuBLAS handle of device `index`, bound to stream(index). A handle is not safe for concurrent
// use: hold blas_mutex(index) around calls that use it.
cublasHandle_t blas_handle(int index);
std::mutex& blas_mutex(int index);
// Streaming multiprocessors of device `index` (sizes persistent grids).
int multiprocessor_count(int index);

// The device index of a CUDA tensor (MDL_ASSERTs that it is one).
int device_of(const Tensor& t);

// Makes `index` the calling thread's current device for the guard's lifetime, then restores the
// previous one. Replica threads each drive their own device, so every entry point takes one.
class DeviceGuard {
  public:
    explicit DeviceGuard(int index);
    ~DeviceGuard();
    DeviceGuard(const DeviceGuard&) = delete;
    DeviceGuard& operator=(const DeviceGuard&) = delete;

  private:
    int previous_ = -1;
    bool switched_ = false;
};

// A scratch buffer on device `index` from its caching allocator, returned to the cache when the
// buffer goes out of scope. Safe while kernels that use it are still queued: the next owner of the
// block can only use it from later work on the same stream.
class DeviceBuffer {
  public:
    DeviceBuffer(int index, size_t nbytes);
    ~DeviceBuffer();
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;

    void* data() const { return data_; }
    template <typename T>
    T* as() const {
        return static_cast<T*>(data_);
    }

  private:
    int index_;
    size_t nbytes_;
    void* data_ = nullptr;
};

}  // namespace minidl::cuda
