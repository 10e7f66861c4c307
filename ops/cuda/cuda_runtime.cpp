// ops/cuda/cuda_runtime.cpp — the CUDA runtime entry points of core/backend.h and the per-device
// state of ops/cuda/cuda_context.h: device discovery, the caching allocator over cudaMalloc, one
// stream and one cuBLAS handle per device.
//
// Discovery: cudaGetDeviceCount is asked once; ANY error counts as "no usable GPU" (machines with
// the toolkit but no driver answer cudaErrorInsufficientDriver (35) or cudaErrorNoDevice (100)).
// Per-device state is created lazily under std::call_once, so threads that drive different
// devices (data-parallel replicas) may start concurrently. Host code compiled by the C++
// compiler: nothing here launches kernels.
#include <atomic>
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
        MDL_CUDA_CHECK(cudaFree(ptr));  // waits for queued work that may still read the block
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
};

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
    static const int count = [] {
        int n = 0;
        if (cudaGetDeviceCount(&n) != cudaSuccess) {
            (void)cudaGetLastError();  // not sticky; keep it from surfacing in a later check
            return 0;
        }
        return n;
    }();
    return count;
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
    MDL_CUDA_CHECK(cudaStreamSynchronize(s.stream));
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
    MDL_CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != index) {
        MDL_CUDA_CHECK(cudaSetDevice(index));
        switched_ = true;
    }
}

DeviceGuard::~DeviceGuard() {
    if (switched_) (void)cudaSetDevice(previous_);  // a destructor must not throw
}

DeviceBuffer::DeviceBuffer(int index, size_t nbytes) : index_(index), nbytes_(nbytes) {
    if (nbytes_ > 0) data_ = allocator(index_).allocate(nbytes_);
}

DeviceBuffer::~DeviceBuffer() {
    if (data_ != nullptr) allocator(index_).deallocate(data_, nbytes_);
}

}  // namespace minidl::cuda

namespace minidl {

// Waits for the streams of every device that has one.
void CudaKernels::synchronize() {
    for (int i = 0; i < cuda::device_count(); ++i) {
        if (cuda::device_states()[static_cast<size_t>(i)]->has_stream.load()) cuda::synchronize(i);
    }
}

}  // namespace minidl
