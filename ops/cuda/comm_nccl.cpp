// ops/cuda/comm_nccl.cpp — the NCCL communicator: one rank per GPU (core/comm.h).
//
// NCCL runs ring and tree all-reduce as CUDA kernels over NVLink, PCIe, InfiniBand or TCP
// sockets (NCCL_SOCKET_IFNAME, NCCL_IB_HCA, ... choose the network; README "Data parallelism").
// Streams: each communicator enqueues its collectives on a stream of its own, made to wait (an
// event) for everything already enqueued on minidl's stream of the device (cuda::stream), i.e.
// for the kernels that produced the data. Kernels enqueued on minidl's stream after that — the
// rest of backward while DistributedDataParallel's communication thread all-reduces a bucket —
// run concurrently with the collective instead of queueing behind it: the overlap of
// communication with computation (PyTorch's DDP uses a separate NCCL stream for the same reason).
// Every call returns only once its collective completed (the deadline below), so later readers
// of the result are ordered after it by the host; meanwhile nothing else touches its tensors (the
// caller does not, by the Communicator contract).
//
// Timeouts (NCCL user guide, "Fault tolerance"): the communicators are created non-blocking
// (ncclConfig_t::blocking = 0), so that no NCCL call can hang the host: a call may return
// ncclInProgress, and ncclCommGetAsyncError is polled until it is no longer in progress. A
// collective is complete when a CUDA event recorded after it on the stream has completed; the host
// polls that event and the communicator's asynchronous error against the deadline. Past it the
// communicator is aborted (ncclCommAbort stops the kernels that wait for the stopped peer) and the
// call throws CommError; the communicator is then broken.
//
// Creation: init_all builds N communicators in one process with ncclCommInitRankConfig calls in a
// group (ncclCommInitAll has no config argument, so it could only make blocking ones); init_rank
// builds one per process after the bootstrap communicator broadcast rank 0's ncclUniqueId.
#if MINIDL_WITH_NCCL

#include <nccl.h>

#include <chrono>
#include <cstring>
#include <mutex>
#include <thread>

#include "core/allocator.h"
#include "core/backend.h"
#include "core/comm.h"
#include "ops/cuda/cuda_check.h"
#include "ops/cuda/cuda_context.h"

namespace minidl {

namespace {

using Clock = std::chrono::steady_clock;

std::string nccl_error(ncclResult_t rc) {
    return detail::concat(ncclGetErrorString(rc), " (ncclResult_t ", static_cast<int>(rc), ")");
}

ncclDataType_t nccl_type(DType d) {
    switch (d) {
        case DType::F32:
            return ncclFloat32;
        case DType::F64:
            return ncclFloat64;
        case DType::F16:
            return ncclFloat16;
        case DType::BF16:
            return ncclBfloat16;
        default:
            return ncclInt64;
    }
}

ncclRedOp_t nccl_op(CommOp op) {
    switch (op) {
        case CommOp::Average:
            return ncclAvg;
        case CommOp::Max:
            return ncclMax;
        case CommOp::Min:
            return ncclMin;
        default:
            return ncclSum;
    }
}

Clock::time_point deadline_after(double seconds) {
    return Clock::now() +
           std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

// A short sleep between polls: the first ones spin (small collectives finish in microseconds).
void pause(int& polls) {
    if (++polls < 100)
        std::this_thread::yield();
    else
        std::this_thread::sleep_for(std::chrono::microseconds(polls < 1000 ? 20 : 200));
}

class NcclCommunicator final : public Communicator {
  public:
    NcclCommunicator(ncclComm_t comm, int rank, int size, int device, CommOptions options)
        : Communicator(options), comm_(comm), rank_(rank), size_(size), device_(device) {
        cuda::DeviceGuard guard(device_);
        const cudaError_t rc = cudaStreamCreateWithFlags(&comm_stream_, cudaStreamNonBlocking);
        if (rc != cudaSuccess) ncclCommAbort(comm_);  // the destructor will not run
        MDL_CUDA_CHECK(rc);
    }

    ~NcclCommunicator() override {
        release();
        cuda::DeviceGuard guard(device_);
        cudaStreamDestroy(comm_stream_);
    }

    int rank() const override { return rank_; }
    int world_size() const override { return size_; }
    const char* backend() const override { return "nccl"; }

    void all_reduce(const std::vector<Tensor>& tensors, CommOp op) override {
        check_tensors("all_reduce", tensors, op, /*allow_half=*/true);
        check_device("all_reduce", tensors);
        collective("all_reduce", tensors, [&](const Tensor& t, cudaStream_t stream) {
            return ncclAllReduce(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()),
                                 nccl_type(t.dtype()), nccl_op(op), comm_, stream);
        });
    }

    void broadcast(const std::vector<Tensor>& tensors, int root) override {
        check_tensors("broadcast", tensors, CommOp::Sum, /*allow_half=*/true);
        check_device("broadcast", tensors);
        check_root("broadcast", root);
        collective("broadcast", tensors, [&](const Tensor& t, cudaStream_t stream) {
            return ncclBroadcast(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()),
                                 nccl_type(t.dtype()), root, comm_, stream);
        });
    }

    // NCCL has no barrier: an all-reduce of one element is one.
    void barrier() override {
        const Tensor one = Tensor::ones({1}, DType::F32, Device::cuda(device_));
        collective("barrier", {one}, [&](const Tensor& t, cudaStream_t stream) {
            return ncclAllReduce(t.data_ptr(), t.data_ptr(), 1, ncclFloat32, ncclSum, comm_,
                                 stream);
        });
    }

    // Marks the communicator broken; a collective in flight on another thread notices at its next
    // poll and aborts the NCCL communicator itself (it is the one using it), else it is done here.
    void abort(const std::string& reason) override {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (broken_) return;
            broken_ = true;
            reason_ = reason;
        }
        std::unique_lock<std::mutex> call(call_mutex_, std::try_to_lock);
        if (call.owns_lock()) abort_nccl();
    }
    bool broken() const override {
        std::lock_guard<std::mutex> lock(mutex_);
        return broken_;
    }

  private:
    // Finalize flushes pending work; a broken or unfinished communicator is aborted instead.
    void release() {
        if (comm_ == nullptr) return;  // aborted (ncclCommAbort frees it)
        cuda::DeviceGuard guard(device_);
        if (!broken_ && ncclCommFinalize(comm_) != ncclInvalidUsage) {
            int polls = 0;
            const auto deadline = deadline_after(timeout_s());
            ncclResult_t state = ncclInProgress;
            while (ncclCommGetAsyncError(comm_, &state) == ncclSuccess && state == ncclInProgress &&
                   Clock::now() < deadline)
                pause(polls);
            if (state == ncclSuccess) {
                ncclCommDestroy(comm_);
                return;
            }
        }
        ncclCommAbort(comm_);
    }

    void check_device(const char* op, const std::vector<Tensor>& tensors) const {
        for (size_t i = 0; i < tensors.size(); ++i)
            MDL_CHECK(tensors[i].device() == Device::cuda(device_), DeviceError, where(op),
                      ": tensor ", i, " is on ", tensors[i].device(),
                      "; this NCCL rank drives cuda:", device_);
    }

    // Call with call_mutex_ held.
    void abort_nccl() {
        if (comm_ == nullptr) return;
        cuda::DeviceGuard guard(device_);
        ncclCommAbort(comm_);
        comm_ = nullptr;
    }

    bool is_broken(std::string* reason = nullptr) const {
        std::lock_guard<std::mutex> lock(mutex_);
        if (reason) *reason = reason_;
        return broken_;
    }

    // Breaks the communicator from inside a collective (call_mutex_ held) and throws.
    [[noreturn]] void fail(const char* op, const std::string& what) {
        const std::string message = detail::concat(where(op), ": ", what);
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (!broken_) {
                broken_ = true;
                reason_ = message;
            }
        }
        abort_nccl();
        throw CommError(message);
    }

    // Throws when abort() was called meanwhile (call_mutex_ held).
    void check_not_aborted(const char* op) {
        std::string reason;
        if (is_broken(&reason)) fail(op, "aborted: " + reason);
    }

    // Waits until the non-blocking communicator has no call in progress.
    void settle(const char* op, Clock::time_point deadline) {
        int polls = 0;
        for (;;) {
            ncclResult_t state = ncclSuccess;
            const ncclResult_t rc = ncclCommGetAsyncError(comm_, &state);
            if (rc != ncclSuccess) fail(op, "ncclCommGetAsyncError failed: " + nccl_error(rc));
            if (state == ncclSuccess) return;
            if (state != ncclInProgress) fail(op, "NCCL error: " + nccl_error(state));
            if (Clock::now() >= deadline) fail(op, timeout_message());
            check_not_aborted(op);
            pause(polls);
        }
    }

    std::string timeout_message() const {
        return detail::concat("timed out after ", timeout_s(),
                              " s waiting for the other rank(s): one of them stopped, deadlocked, "
                              "failed or is slower than the timeout (CommOptions::timeout_s sets "
                              "it); the communicator was aborted");
    }

    template <typename Enqueue>
    void collective(const char* op, const std::vector<Tensor>& tensors, const Enqueue& enqueue) {
        std::lock_guard<std::mutex> call(call_mutex_);
        std::string reason;
        if (is_broken(&reason))
            throw CommError(detail::concat(where(op), ": the communicator is broken: ", reason));
        const auto deadline = deadline_after(timeout_s());
        cuda::DeviceGuard guard(device_);
        // The collective waits for the producers of its data on minidl's stream (see the top).
        cudaStream_t stream = comm_stream_;
        {
            cudaEvent_t ready = nullptr;
            MDL_CUDA_CHECK(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
            const cudaError_t recorded = cudaEventRecord(ready, cuda::stream(device_));
            const cudaError_t waited =
                recorded == cudaSuccess ? cudaStreamWaitEvent(stream, ready, 0) : recorded;
            cudaEventDestroy(ready);  // released once the wait is satisfied
            MDL_CUDA_CHECK(waited);
        }
        ncclResult_t rc = ncclGroupStart();
        for (size_t i = 0; rc == ncclSuccess && i < tensors.size(); ++i)
            if (tensors[i].numel() > 0) rc = enqueue(tensors[i], stream);
        const ncclResult_t end = ncclGroupEnd();
        if (rc != ncclSuccess && rc != ncclInProgress)
            fail(op, "enqueue failed: " + nccl_error(rc));
        if (end != ncclSuccess && end != ncclInProgress)
            fail(op, "ncclGroupEnd failed: " + nccl_error(end));
        settle(op, deadline);
        // The tensors' blocks are used on this stream: when one is freed, the caching allocator
        // reuses it only after the collective (record_stream). The wait below makes that moot
        // today; it is what keeps the blocks safe once collectives no longer block the host.
        for (const Tensor& t : tensors)
            if (t.numel() > 0) allocator_for(t.device()).record_stream(t.storage()->data(), stream);
        // Completion: an event after the collective on its own stream.
        cudaEvent_t done = nullptr;
        MDL_CUDA_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
        MDL_CUDA_CHECK(cudaEventRecord(done, stream));
        int polls = 0;
        for (;;) {
            const cudaError_t q = cudaEventQuery(done);
            if (q == cudaSuccess) {
                cuda::count_host_sync();  // the host waited for the GPU: cuda::host_syncs()
                break;
            }
            if (q != cudaErrorNotReady) {
                cudaEventDestroy(done);
                MDL_CUDA_CHECK(q);
            }
            ncclResult_t state = ncclSuccess;
            ncclCommGetAsyncError(comm_, &state);
            if (state != ncclSuccess && state != ncclInProgress) {
                cudaEventDestroy(done);
                fail(op, "NCCL error: " + nccl_error(state));
            }
            if (Clock::now() >= deadline || is_broken()) {
                cudaEventDestroy(done);
                if (is_broken()) check_not_aborted(op);
                fail(op, timeout_message());
            }
            pause(polls);
        }
        cudaEventDestroy(done);
        for (const Tensor& t : tensors)
            t.bump_version();
    }

    ncclComm_t comm_;  // nullptr once aborted
    int rank_, size_, device_;
    cudaStream_t comm_stream_ = nullptr;  // this communicator's collectives
    std::mutex call_mutex_;               // one collective at a time on this communicator
    mutable std::mutex mutex_;
    bool broken_ = false;
    std::string reason_;
};

ncclConfig_t nonblocking_config() {
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    return config;
}

// Polls a freshly created non-blocking communicator until it is ready. On failure it aborts the
// communicator and sets comm to nullptr, so that no owner aborts it a second time.
void wait_ready(ncclComm_t& comm, int device, Clock::time_point deadline, const char* who) {
    cuda::DeviceGuard guard(device);
    int polls = 0;
    for (;;) {
        ncclResult_t state = ncclSuccess;
        const ncclResult_t rc = ncclCommGetAsyncError(comm, &state);
        if (rc == ncclSuccess && state == ncclSuccess) return;
        if (rc != ncclSuccess || state != ncclInProgress || Clock::now() >= deadline) {
            ncclCommAbort(comm);
            comm = nullptr;
            throw CommError(detail::concat(
                "nccl::", who, ": creating the communicator on cuda:", device, " failed: ",
                rc != ncclSuccess
                    ? nccl_error(rc)
                    : (state != ncclInProgress ? nccl_error(state) : std::string("timed out"))));
        }
        pause(polls);
    }
}

}  // namespace

namespace nccl {

bool available() {
    return true;
}

std::vector<std::shared_ptr<Communicator>> init_all(const std::vector<int>& devices,
                                                    CommOptions options) {
    MDL_CHECK(!devices.empty(), ValueError, "nccl::init_all: no devices");
    for (int d : devices)
        cuda::stream(d);  // validates the index (DeviceError) and creates minidl's stream
    ncclUniqueId id;
    ncclResult_t rc = ncclGetUniqueId(&id);
    MDL_CHECK(rc == ncclSuccess, CommError,
              "nccl::init_all: ncclGetUniqueId failed: ", nccl_error(rc));
    const int n = static_cast<int>(devices.size());
    // Communicators not yet owned by a NcclCommunicator are aborted if anything below throws (a
    // rank that fails to initialise, a timeout), so that no rank's resources outlive the call.
    struct Pending {
        std::vector<ncclComm_t> comms;
        ~Pending() {
            for (ncclComm_t c : comms)
                if (c != nullptr) (void)ncclCommAbort(c);
        }
    } pending{std::vector<ncclComm_t>(devices.size(), nullptr)};
    std::vector<ncclComm_t>& comms = pending.comms;
    ncclConfig_t config = nonblocking_config();
    rc = ncclGroupStart();
    for (int i = 0; rc == ncclSuccess && i < n; ++i) {
        // NCCL binds each communicator to the device current at its init call; the guard then
        // gives the caller its device back instead of leaving it on the last one.
        cuda::DeviceGuard guard(devices[i]);
        rc = ncclCommInitRankConfig(&comms[i], n, id, i, &config);
        if (rc == ncclInProgress) rc = ncclSuccess;
    }
    const ncclResult_t end = ncclGroupEnd();
    MDL_CHECK(rc == ncclSuccess && (end == ncclSuccess || end == ncclInProgress), CommError,
              "nccl::init_all: ncclCommInitRankConfig failed: ",
              nccl_error(rc != ncclSuccess ? rc : end));
    const auto deadline = deadline_after(options.timeout_s);
    for (int i = 0; i < n; ++i)
        wait_ready(comms[i], devices[i], deadline, "init_all");
    std::vector<std::shared_ptr<Communicator>> out;
    for (int i = 0; i < n; ++i) {
        // From here the communicator owns it (its constructor aborts it if it fails itself).
        ncclComm_t comm = comms[static_cast<size_t>(i)];
        comms[static_cast<size_t>(i)] = nullptr;
        out.push_back(std::make_shared<NcclCommunicator>(comm, i, n, devices[i], options));
    }
    return out;
}

std::shared_ptr<Communicator> init_rank(Communicator& bootstrap, int device, CommOptions options) {
    cuda::stream(device);
    // The 128-byte id travels as 16 int64 through the bootstrap communicator (CPU tensors).
    static_assert(sizeof(ncclUniqueId) % sizeof(int64_t) == 0);
    Tensor id_tensor =
        Tensor::zeros({static_cast<int64_t>(sizeof(ncclUniqueId) / sizeof(int64_t))}, DType::I64);
    ncclUniqueId id;
    if (bootstrap.rank() == 0) {
        const ncclResult_t rc = ncclGetUniqueId(&id);
        MDL_CHECK(rc == ncclSuccess, CommError,
                  "nccl::init_rank: ncclGetUniqueId failed: ", nccl_error(rc));
        std::memcpy(id_tensor.data_ptr(), &id, sizeof(id));
    }
    bootstrap.broadcast({id_tensor}, 0);
    std::memcpy(&id, id_tensor.data_ptr(), sizeof(id));

    // A rank drives one device: it becomes the calling thread's device for good (set_device), so
    // that no guard ever switches this process back to GPU 0 and creates a context there.
    cuda::set_device(device);
    ncclConfig_t config = nonblocking_config();
    ncclComm_t comm = nullptr;
    const ncclResult_t rc =
        ncclCommInitRankConfig(&comm, bootstrap.world_size(), id, bootstrap.rank(), &config);
    MDL_CHECK(rc == ncclSuccess || rc == ncclInProgress, CommError, "nccl::init_rank: rank ",
              bootstrap.rank(), ": ncclCommInitRankConfig failed: ", nccl_error(rc));
    wait_ready(comm, device, deadline_after(options.timeout_s), "init_rank");
    return std::make_shared<NcclCommunicator>(comm, bootstrap.rank(), bootstrap.world_size(),
                                              device, options);
}

}  // namespace nccl
}  // namespace minidl

#endif  // MINIDL_WITH_NCCL
