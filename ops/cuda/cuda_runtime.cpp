// ops/cuda/cuda_runtime.cpp — the CUDA runtime entry points of core/backend.h and the per-device
// state of ops/cuda/cuda_context.h: device discovery, the caching allocator over cudaMalloc, one
// stream and one cuBLAS handle per device.
//
// Discovery: cudaGetDeviceCount is asked once; ANY error counts as "no usable GPU" (machines with
// the toolkit but no driver answer cudaErrorInsufficientDriver (35) or cudaErrorNoDevice (100)),
// and is kept for device_error(), so that a runner can tell "no GPU here" from "a GPU the runtime
// cannot use". Per-device state is created lazily under std::call_once, so threads that drive
// different devices (data-parallel replicas) may start concurrently.
//
// Current device: set_device marks the thread as having chosen one (thread-local), and every
// device this process switches to is marked as having a primary context; DeviceGuard restores the
// previous device only in those cases (cuda_context.h says why). Host synchronisations are
// counted in one process-wide SyncCounter (cuda::host_syncs). Host code compiled by the C++
// compiler: nothing here launches kernels.
#include <array>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/check.h"
#include "ops/cuda/cuda_check.h"
#include "ops/cuda/cuda_context.h"
#include "ops/cuda/cuda_kernels.h"

namespace minidl::cuda {

namespace {

// cudaMalloc/cudaFree under the segment cache of core/allocator.h: cudaMalloc is slow and
// synchronises the device, so few large segments are taken and split.
class CudaAllocator final : public CachingAllocator {
  public:
    explicit CudaAllocator(int index)
        : CachingAllocator("cuda:" + std::to_string(index), Packing::kSegments), index_(index) {}
    ~CudaAllocator() override = default;

  protected:
    void* system_allocate(size_t nbytes) override {
        DeviceGuard guard(index_);
        void* ptr = nullptr;
        const cudaError_t err = cudaMalloc(&ptr, nbytes);
        if (err == cudaErrorMemoryAllocation) {
            // Out of memory: clear the error and let the cache free its blocks and retry.
            (void)cudaGetLastError();
            return nullptr;
        }
        MDL_CUDA_CHECK(err);
        return ptr;
    }
    void system_free(void* ptr) override {
        DeviceGuard guard(index_);
        count_host_sync();
        MDL_CUDA_CHECK(cudaFree(ptr));  // waits for queued work that may still read the block
    }
    // A block freed while another stream uses it (record_stream) waits for this event.
    void* record_event(void* stream) noexcept override {
        const auto s = static_cast<cudaStream_t>(stream);
        try {
            DeviceGuard guard(index_);
            cudaEvent_t e = nullptr;
            if (cudaEventCreateWithFlags(&e, cudaEventDisableTiming) == cudaSuccess) {
                if (cudaEventRecord(e, s) == cudaSuccess) return e;
                (void)cudaEventDestroy(e);
            }
            // No event: wait for the stream here instead, so the block is free when returned.
            count_host_sync();
            (void)cudaStreamSynchronize(s);
        } catch (...) {
            (void)cudaStreamSynchronize(s);  // a guard that could not switch devices
        }
        return nullptr;
    }
    bool event_done(void* event) noexcept override {
        const cudaError_t err = cudaEventQuery(static_cast<cudaEvent_t>(event));
        if (err == cudaErrorNotReady) return false;
        if (err != cudaSuccess) (void)cudaGetLastError();  // a fault: reported by the next check
        return true;
    }
    void wait_event(void* event) noexcept override {
        count_host_sync();
        (void)cudaEventSynchronize(static_cast<cudaEvent_t>(event));
    }
    void release_event(void* event) noexcept override {
        (void)cudaEventDestroy(static_cast<cudaEvent_t>(event));
    }

  private:
    int index_;
};

struct DeviceState {
    explicit DeviceState(int index) : allocator(index) {}
    CudaAllocator allocator;
    std::once_flag stream_once, blas_once;
    std::atomic<bool> has_stream{false};
    cudaStream_t stream = nullptr;
    cublasHandle_t blas = nullptr;
    std::mutex blas_mutex;
    int multiprocessors = 0;
    // Set once this process has made the device current: its primary context exists from then on
    // (cudaSetDevice creates it, CUDA >= 12), so switching back to it costs no memory.
    std::atomic<bool> has_context{false};
    // Pinned staging slots for small host-to-device copies (copy_to_device), used in turn.
    std::mutex staging_mutex;
    struct StagingSlot {
        void* host = nullptr;  // pinned (cudaHostAlloc), `capacity` bytes
        size_t capacity = 0;
        cudaEvent_t copied = nullptr;  // recorded after the slot's last copy was queued
        bool in_flight = false;
    };
    std::array<StagingSlot, 16> staging;
    size_t next_slot = 0;
};

struct Discovery {
    int count = 0;
    std::string error;  // device_error()
};

const Discovery& discovery() {
    static const Discovery d = [] {
        Discovery out;
        const cudaError_t err = cudaGetDeviceCount(&out.count);
        if (err != cudaSuccess) {
            (void)cudaGetLastError();  // not sticky; keep it from surfacing in a later check
            out.count = 0;
            out.error = detail::concat("cudaGetDeviceCount failed: ", cudaGetErrorName(err), " (",
                                       static_cast<int>(err), "): ", cudaGetErrorString(err));
        }
        return out;
    }();
    return d;
}

SyncCounter& syncs() {
    static SyncCounter counter;  // trivially destructible in effect: safe to bump after main
    return counter;
}

// Whether the calling thread chose its device with set_device.
thread_local bool t_chose_device = false;

std::vector<std::unique_ptr<DeviceState>>& device_states() {
    // Leaked on purpose (see cuda_context.h): never destroyed after the runtime is gone.
    static auto* states = [] {
        auto* v = new std::vector<std::unique_ptr<DeviceState>>();
        for (int i = 0; i < device_count(); ++i)
            v->push_back(std::make_unique<DeviceState>(i));
        return v;
    }();
    return *states;
}

DeviceState& state(int index) {
    const int count = device_count();
    MDL_CHECK(index >= 0 && index < count, DeviceError, "cuda:", index,
              " is not available: ", count, " usable CUDA device", count == 1 ? "" : "s",
              count == 0 ? " (no GPU, no driver, or CUDA_VISIBLE_DEVICES hides them)" : "");
    return *device_states()[static_cast<size_t>(index)];
}

DeviceState& state_with_stream(int index) {
    DeviceState& s = state(index);
    std::call_once(s.stream_once, [&] {
        DeviceGuard guard(index);
        MDL_CUDA_CHECK(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking));
        MDL_CUDA_CHECK(
            cudaDeviceGetAttribute(&s.multiprocessors, cudaDevAttrMultiProcessorCount, index));
        s.has_stream.store(true);
    });
    return s;
}

}  // namespace

// ---- core/backend.h ---------------------------------------------------------------------------

bool built_with_cuda() {
    return true;
}

int device_count() {
    return discovery().count;
}

std::string device_error() {
    return discovery().error;
}

std::string device_name(int index) {
    state(index);  // validates the index
    cudaDeviceProp prop{};
    MDL_CUDA_CHECK(cudaGetDeviceProperties(&prop, index));
    return detail::concat(prop.name, " (sm_", prop.major, prop.minor, ")");
}

Allocator& allocator(int index) {
    return state(index).allocator;
}

Kernels& kernels() {
    MDL_CHECK(device_count() > 0, DeviceError,
              "cuda::kernels: no usable CUDA device (no GPU, no driver, or CUDA_VISIBLE_DEVICES "
              "hides them)");
    static CudaKernels instance;
    return instance;
}

void synchronize(int index) {
    DeviceState& s = state_with_stream(index);
    DeviceGuard guard(index);
    MDL_CUDA_CHECK(host_sync(s.stream));
}

void set_device(int index) {
    DeviceState& s = state(index);  // validates the index
    MDL_CUDA_CHECK(cudaSetDevice(index));
    s.has_context.store(true);
    t_chose_device = true;
}

const SyncCounter& host_sync_counter() {
    return syncs();
}

uint64_t host_syncs() {
    return syncs().count();
}

// ---- ops/cuda/cuda_context.h ------------------------------------------------------------------

cudaStream_t stream(int index) {
    return state_with_stream(index).stream;
}

cublasHandle_t blas_handle(int index) {
    DeviceState& s = state_with_stream(index);
    std::call_once(s.blas_once, [&] {
        DeviceGuard guard(index);
        MDL_CUBLAS_CHECK(cublasCreate(&s.blas));
        MDL_CUBLAS_CHECK(cublasSetStream(s.blas, s.stream));
        // F16/BF16 products: split-K partial sums stay in F32 too, so the result is rounded to
        // 16 bits once (the default lets cuBLAS reduce partials in the output type).
        MDL_CUBLAS_CHECK(cublasSetMathMode(
            s.blas, static_cast<cublasMath_t>(CUBLAS_DEFAULT_MATH |
                                              CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)));
    });
    return s.blas;
}

std::mutex& blas_mutex(int index) {
    return state(index).blas_mutex;
}

int multiprocessor_count(int index) {
    return state_with_stream(index).multiprocessors;
}

int device_of(const Tensor& t) {
    MDL_ASSERT(t.device().is_cuda(), "expected a CUDA tensor, got one on ", t.device());
    return t.device().index;
}

DeviceGuard::DeviceGuard(int index) {
    // cudaGetDevice creates no context: on a thread that chose nothing it just answers 0.
    MDL_CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != index) {
        // Decided before switching: whether going back to previous_ would create its context.
        const auto& states = device_states();
        const bool previous_active = previous_ >= 0 &&
                                     static_cast<size_t>(previous_) < states.size() &&
                                     states[static_cast<size_t>(previous_)]->has_context.load();
        MDL_CUDA_CHECK(cudaSetDevice(index));
        restore_ = t_chose_device || previous_active;
    }
    // The guarded code is about to use the device, which creates its context if cudaSetDevice
    // did not (the runtime's default device 0 is made current lazily).
    state(index).has_context.store(true);
}

DeviceGuard::~DeviceGuard() {
    if (restore_) (void)cudaSetDevice(previous_);  // a destructor must not throw
}

cudaError_t host_sync(cudaStream_t s) {
    count_host_sync();
    return cudaStreamSynchronize(s);
}

cudaError_t copy_to_host(void* dst, const void* src, size_t nbytes, cudaStream_t s) {
    const cudaError_t err = cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToHost, s);
    return err != cudaSuccess ? err : host_sync(s);
}

void count_host_sync() {
    syncs().add();
}

cudaError_t copy_to_device(void* dst, const void* src, size_t nbytes, int index) {
    DeviceState& st = state_with_stream(index);
    DeviceGuard guard(index);
    if (nbytes > kMaxStagedCopy) {
        // Large (a dataset, a checkpoint): straight from pageable memory, then a wait, so that
        // the caller may release the source on return.
        const cudaError_t err =
            cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyHostToDevice, st.stream);
        return err != cudaSuccess ? err : host_sync(st.stream);
    }
    std::lock_guard<std::mutex> lock(st.staging_mutex);
    DeviceState::StagingSlot& slot = st.staging[st.next_slot];
    st.next_slot = (st.next_slot + 1) % st.staging.size();
    if (slot.in_flight) {
        // The slot's previous copy was queued 16 copies ago; wait for it only if the GPU has not
        // done it yet (then the host is far ahead of the device, and waiting costs nothing).
        cudaError_t err = cudaEventQuery(slot.copied);
        if (err == cudaErrorNotReady) {
            count_host_sync();
            err = cudaEventSynchronize(slot.copied);
        }
        if (err != cudaSuccess) return err;
        slot.in_flight = false;
    }
    if (slot.copied == nullptr) {
        const cudaError_t err = cudaEventCreateWithFlags(&slot.copied, cudaEventDisableTiming);
        if (err != cudaSuccess) return err;
    }
    if (slot.capacity < nbytes) {
        if (slot.host != nullptr) {
            const cudaError_t err = cudaFreeHost(slot.host);  // the slot's copy is done (above)
            slot.host = nullptr;
            slot.capacity = 0;
            if (err != cudaSuccess) return err;
        }
        // Grown in 64 KiB steps: a training loop's batches settle on one size after a few steps.
        const size_t capacity = (nbytes + 65535) / 65536 * 65536;
        const cudaError_t err = cudaHostAlloc(&slot.host, capacity, cudaHostAllocDefault);
        if (err != cudaSuccess) return err;
        slot.capacity = capacity;
    }
    std::memcpy(slot.host, src, nbytes);  // the caller's buffer is free on return
    cudaError_t err = cudaMemcpyAsync(dst, slot.host, nbytes, cudaMemcpyHostToDevice, st.stream);
    if (err == cudaSuccess) err = cudaEventRecord(slot.copied, st.stream);
    if (err == cudaSuccess) slot.in_flight = true;
    return err;
}

DeviceBuffer::DeviceBuffer(int index, size_t nbytes) : index_(index), nbytes_(nbytes) {
    if (nbytes_ > 0) data_ = allocator(index_).allocate(nbytes_);
}

DeviceBuffer::~DeviceBuffer() {
    if (data_ != nullptr) allocator(index_).deallocate(data_, nbytes_);
}

}  // namespace minidl::cuda

namespace minidl::cuda_detail {

bool sync_after_launch() {
    static const bool on = [] {
        const char* v = std::getenv("MINIDL_CUDA_SYNC");
        return v != nullptr && *v != '\0' && std::string(v) != "0";
    }();
    return on;
}

void launch_check(const char* file, int line) {
    const cudaError_t launched = cudaGetLastError();
    if (launched != cudaSuccess) throw_cuda_error(launched, "kernel launch", file, line);
    if (!sync_after_launch()) return;
    int device = 0;
    MDL_CUDA_CHECK(cudaGetDevice(&device));
    const cudaError_t ran = cuda::host_sync(cuda::stream(device));
    if (ran != cudaSuccess)
        throw_cuda_error(ran, "kernel (MINIDL_CUDA_SYNC=1: waited for it after its launch)", file,
                         line);
}

}  // namespace minidl::cuda_detail

namespace minidl {

// Waits for the streams of every device that has one.
void CudaKernels::synchronize() {
    for (int i = 0; i < cuda::device_count(); ++i) {
        if (cuda::device_states()[static_cast<size_t>(i)]->has_stream.load()) cuda::synchronize(i);
    }
}

}  // namespace minidl
