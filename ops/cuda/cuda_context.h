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
//
// Host-blocking waits go through host_sync / copy_to_host / count_host_sync below, so that
// cuda::host_syncs() (core/backend.h) counts every one: a raw cudaStreamSynchronize in a kernel
// file would be a wait the counter misses.
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

// Makes `index` the calling thread's current device for the guard's lifetime. Replica threads
// each drive their own device, so every entry point takes one. On exit it restores the previous
// device only when that device is known to have a primary context already: the thread chose it
// with cuda::set_device, or minidl has used it in this process. Otherwise the previous device is
// merely the runtime's default, 0, and switching back to it would create GPU 0's primary context
// (hundreds of MB, CUDA >= 12) in a process that never uses GPU 0; the thread is then left on
// `index`, which no minidl code depends on, since every entry point takes its own guard.
class DeviceGuard {
  public:
    explicit DeviceGuard(int index);
    ~DeviceGuard();
    DeviceGuard(const DeviceGuard&) = delete;
    DeviceGuard& operator=(const DeviceGuard&) = delete;

  private:
    int previous_ = -1;
    bool restore_ = false;
};

// ---- counted host synchronisation (cuda::host_syncs) ----
// Each returns the runtime's status for MDL_CUDA_CHECK at the call site, which then names the
// file and line of the wait: MDL_CUDA_CHECK(cuda::host_sync(s)).

// cudaStreamSynchronize(s), counted.
cudaError_t host_sync(cudaStream_t s);
// Device-to-host copy of `nbytes` queued on `s`, complete on return (cudaMemcpyAsync, then a wait
// on `s`): one counted synchronisation.
cudaError_t copy_to_host(void* dst, const void* src, size_t nbytes, cudaStream_t s);
// Counts a host-blocking wait done by other means (polling an event until it completes, cudaFree).
void count_host_sync();

// Host-to-device copy of `nbytes` from pageable host memory to device `index`, queued on its
// stream; the source may be reused or released on return. Up to kMaxStagedCopy bytes (a training
// batch's ids, offsets and labels) the bytes are first copied into one of the device's 16 pinned
// staging slots, from which the DMA runs while the host goes on: no wait, unless the slot's copy
// of 16 copies ago is still queued. Larger copies go straight from pageable memory and wait (one
// counted synchronisation).
inline constexpr size_t kMaxStagedCopy = size_t{1} << 20;
cudaError_t copy_to_device(void* dst, const void* src, size_t nbytes, int index);

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
