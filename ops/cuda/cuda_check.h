// ops/cuda/cuda_check.h — turning CUDA runtime and cuBLAS status codes into exceptions.
//
//   MDL_CUDA_CHECK(cudaMemcpyAsync(...));     throws DeviceError on anything but cudaSuccess
//   MDL_CUBLAS_CHECK(cublasGemmEx(...));      throws DeviceError on anything but SUCCESS
//
// The message names the call as written, the library's error name and string, and the file and
// line: "cudaSetDevice(7) failed: cudaErrorInvalidDevice (invalid device ordinal) at
// ops/cuda/cuda_runtime.cpp:42". Kernel launches report their errors through the next runtime
// call, so every launch is followed by MDL_CUDA_LAUNCH_CHECK() (ops/cuda/cuda_common.cuh), which
// calls launch_check below. All three macros are single statements (do { } while (0)).
//
// MINIDL_CUDA_SYNC=1 (read once per process): the launch check also waits for the launched
// kernel and checks its outcome, so that a fault inside a kernel (an illegal address, a device
// assert) is reported at the launch that caused it, not at whatever call happens to come next.
// Slow — every launch becomes a host synchronisation, counted by cuda::host_syncs() — so for
// debugging only, like PyTorch's CUDA_LAUNCH_BLOCKING=1.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "core/check.h"

namespace minidl::cuda_detail {

// Also resets the runtime's "last error" (cudaGetLastError), so that a failed call that the caller
// recovers from is not reported again by the next launch check.
[[noreturn]] inline void throw_cuda_error(cudaError_t err, const char* call, const char* file,
                                          int line) {
    (void)cudaGetLastError();
    throw DeviceError(detail::concat(call, " failed: ", cudaGetErrorName(err), " (",
                                     cudaGetErrorString(err), ") at ", file, ":", line));
}

[[noreturn]] inline void throw_cublas_error(cublasStatus_t status, const char* call,
                                            const char* file, int line) {
    throw DeviceError(detail::concat(call, " failed: ", cublasGetStatusName(status), " (",
                                     cublasGetStatusString(status), ") at ", file, ":", line));
}

// True when MINIDL_CUDA_SYNC is set to anything but "" or "0"; the environment is read once.
bool sync_after_launch();

// The check after a kernel launch: the launch's own error, then, under MINIDL_CUDA_SYNC=1, the
// kernel's outcome (a wait on the current device's minidl stream, where every kernel runs).
// Throws DeviceError naming `file`:`line`, the launch site.
void launch_check(const char* file, int line);

}  // namespace minidl::cuda_detail

#define MDL_CUDA_CHECK(expr)                                                                      \
    do {                                                                                          \
        const cudaError_t mdl_cuda_status_ = (expr);                                              \
        if (mdl_cuda_status_ != cudaSuccess)                                                      \
            ::minidl::cuda_detail::throw_cuda_error(mdl_cuda_status_, #expr, __FILE__, __LINE__); \
    } while (0)

#define MDL_CUBLAS_CHECK(expr)                                                             \
    do {                                                                                   \
        const cublasStatus_t mdl_cublas_status_ = (expr);                                  \
        if (mdl_cublas_status_ != CUBLAS_STATUS_SUCCESS)                                   \
            ::minidl::cuda_detail::throw_cublas_error(mdl_cublas_status_, #expr, __FILE__, \
                                                      __LINE__);                           \
    } while (0)
