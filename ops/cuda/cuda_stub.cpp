// ops/cuda/cuda_stub.cpp — the CUDA entry points of a build without the CUDA backend.
//
// Compiled only when CUDA is off (-DMINIDL_CUDA=OFF or no CUDA compiler found): the library still
// links, reports no GPU (no error: there is no runtime to have one, and no synchronisation), and
// every attempt to use one throws DeviceError with the fix — set_device included, so that a
// caller asking for a CUDA device in such a build learns why it cannot have one.
#include "core/backend.h"
#include "core/check.h"

namespace minidl::cuda {

namespace {
[[noreturn]] void unavailable(const char* what) {
    throw DeviceError(
        detail::concat(what, ": built without CUDA; configure with -DMINIDL_CUDA=ON"));
}
}  // namespace

bool built_with_cuda() {
    return false;
}
int device_count() {
    return 0;
}
std::string device_name(int) {
    unavailable("cuda::device_name");
}
Allocator& allocator(int) {
    unavailable("cuda::allocator");
}
Kernels& kernels() {
    unavailable("cuda::kernels");
}
void synchronize(int) {
    unavailable("cuda::synchronize");
}
void set_device(int) {
    unavailable("cuda::set_device");
}
std::string device_error() {
    return {};
}
const SyncCounter& host_sync_counter() {
    static const SyncCounter never;  // nothing ever synchronises without CUDA
    return never;
}
uint64_t host_syncs() {
    return 0;
}

}  // namespace minidl::cuda
