// core/backend.h — the CUDA runtime entry points the device-independent code needs.
//
// Implemented in ops/cuda/cuda_runtime.cpp when the CUDA backend is built, and by
// ops/cuda/cuda_stub.cpp otherwise, where every call that would need a GPU throws
// DeviceError("built without CUDA; configure with -DMINIDL_CUDA=ON"); the queries (device_count,
// device_error, host_syncs) answer "none" there instead of throwing.
#pragma once

#include <cstdint>
#include <string>

#include "core/allocator.h"
#include "core/kernels.h"
#include "core/sync_counter.h"

namespace minidl::cuda {

// True when this library was compiled with the CUDA backend.
bool built_with_cuda();
// Number of usable CUDA devices: 0 without the backend, without a driver or on any runtime error
// (CI machines have the toolkit but no driver: cudaGetDeviceCount fails there, e.g. error 35).
int device_count();
inline bool is_available() {
    return device_count() > 0;
}
// Why device_count() is 0, when the runtime said why: "cudaGetDeviceCount failed:
// cudaErrorInsufficientDriver (35): CUDA driver version is insufficient for CUDA runtime
// version". Empty when the runtime answered without an error, and in a build without CUDA. An
// error on a machine without a GPU is expected; on a machine with one it is a fault to report
// (tests/gpu/gpu_main.cpp tells the two apart).
std::string device_error();
// "NVIDIA H100 80GB HBM3 (sm_90)".
std::string device_name(int index);

Allocator& allocator(int index);
Kernels& kernels();
void synchronize(int index);

// Makes `index` the calling thread's CUDA device, once, at the start of a thread that drives one
// device: a data-parallel replica thread, a DDP rank or its communication thread. Without it the
// thread has "chosen" no device, and minidl's device guards then switch to the device they need
// without switching back to the default device 0 afterwards, because switching to a device
// creates its primary context (hundreds of MB on every rank that never touches GPU 0). After it,
// every guard restores `index` on exit. Throws DeviceError for a device that does not exist, and
// in a build without CUDA (call it only for a CUDA device: Device::is_cuda()).
void set_device(int index);

// Host-blocking synchronisations performed by the CUDA backend since the process started, from
// every thread: stream and device synchronisations, device-to-host reads (each ends in a wait),
// host-to-device copies over 1 MiB (smaller ones go through pinned staging slots and wait only
// when the slot's copy of 16 copies ago has not run yet), waits for NCCL collectives, cudaFree
// (it waits for the device), and the per-launch waits of MINIDL_CUDA_SYNC=1.
// 0 in a build without CUDA. Each is a point where the CPU stops queueing work for the GPU.
uint64_t host_syncs();
const SyncCounter& host_sync_counter();

// The host synchronisations between its construction and count(), from every thread:
//   cuda::HostSyncScope scope;  train_step();  CHECK(scope.count() <= 1);
class HostSyncScope : public SyncScope {
  public:
    HostSyncScope() : SyncScope(host_sync_counter()) {}
};

}  // namespace minidl::cuda
