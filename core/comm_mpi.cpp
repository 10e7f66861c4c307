// core/comm_mpi.cpp — the MPI communicator: one rank per process, CPU tensors (core/comm.h).
//
// OpenMPI (Debian's libopenmpi-dev) carries the bytes: shared memory between processes of one
// machine, TCP/InfiniBand between machines, with its tuned all-reduce algorithms (ring, recursive
// doubling, Rabenseifner's reduce-scatter + all-gather, chosen by message size). MPI has no
// timeout, so every collective is started non-blocking (MPI_Iallreduce / MPI_Ibcast /
// MPI_Ibarrier, one request per tensor, all in flight together) and completed by polling
// MPI_Testall — polling is also what drives MPI's progress engine — until it finishes or the
// deadline passes. Past the deadline the call throws CommError and the communicator is broken: a
// collective request cannot be cancelled (MPI 3.1, section 5.12), so its buffers may still be
// written, and MPI_Finalize at exit is skipped (it would wait for the stopped peer). The program
// should exit non-zero; mpirun then ends the job.
//
// Determinism: MPI_SUM over floats in OpenMPI reduces each element in a fixed order for a given
// world size and message size, and every rank receives the same bits (the all-reduce algorithms
// compute each element once and distribute it, or combine pairs commutatively), so replicas stay
// bitwise identical; the order differs from the in-process engine's for more than 2 ranks.
// Average = MPI_SUM, then a division by N on every rank (the same bits everywhere).
//
// Threads: MPI_THREAD_MULTIPLE is requested; SERIALIZED suffices because a mutex serialises this
// communicator's calls (DistributedDataParallel issues them from its communication thread while
// the main thread may call barrier()).
#include <algorithm>
#include <chrono>
#include <climits>
#include <mutex>
#include <thread>

#include "core/comm.h"

#if MINIDL_WITH_MPI
#include <mpi.h>
#endif

namespace minidl {

#if MINIDL_WITH_MPI
namespace {

using Clock = std::chrono::steady_clock;

// MPI's lifetime in this process: initialised by the first mpi::world() call, finalised at exit
// unless a communicator broke (or the program initialised MPI itself and owns its end).
class MpiRuntime {
  public:
    static MpiRuntime& get() {
        static MpiRuntime runtime;
        return runtime;
    }
    void mark_broken() { broken_ = true; }

  private:
    MpiRuntime() {
        int initialized = 0;
        MPI_Initialized(&initialized);
        if (initialized) {
            owner_ = false;
            MPI_Query_thread(&provided_);
        } else {
            const int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided_);
            MDL_CHECK(rc == MPI_SUCCESS, StateError, "mpi::world: MPI_Init_thread failed (", rc,
                      ")");
            owner_ = true;
        }
        MDL_CHECK(provided_ >= MPI_THREAD_SERIALIZED, StateError,
                  "mpi::world: the MPI library provides thread level ", provided_,
                  ", minidl needs at least MPI_THREAD_SERIALIZED");
    }
    ~MpiRuntime() {
        int finalized = 0;
        MPI_Finalized(&finalized);
        if (owner_ && !broken_ && !finalized) MPI_Finalize();
    }
    bool owner_ = false;
    bool broken_ = false;
    int provided_ = 0;
};

MPI_Datatype mpi_type(DType d) {
    switch (d) {
        case DType::F32:
            return MPI_FLOAT;
        case DType::F64:
            return MPI_DOUBLE;
        default:
            return MPI_INT64_T;
    }
}

MPI_Op mpi_op(CommOp op) {
    switch (op) {
        case CommOp::Max:
            return MPI_MAX;
        case CommOp::Min:
            return MPI_MIN;
        default:
            return MPI_SUM;
    }
}

std::string mpi_error_string(int code) {
    char text[MPI_MAX_ERROR_STRING];
    int length = 0;
    MPI_Error_string(code, text, &length);
    return std::string(text, static_cast<size_t>(length));
}

class MpiCommunicator final : public Communicator {
  public:
    explicit MpiCommunicator(CommOptions options) : Communicator(options) {
        MpiRuntime::get();
        MPI_Comm_dup(MPI_COMM_WORLD, &comm_);
        // Errors come back as return codes (and become exceptions), not as a job abort.
        MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
        MPI_Comm_rank(comm_, &rank_);
        MPI_Comm_size(comm_, &size_);
    }

    int rank() const override { return rank_; }
    int world_size() const override { return size_; }
    const char* backend() const override { return "mpi"; }

    void all_reduce(const std::vector<Tensor>& tensors, CommOp op) override {
        check_tensors("all_reduce", tensors, op, /*allow_half=*/false);
        check_host("all_reduce", tensors);
        std::lock_guard<std::mutex> lock(mutex_);
        throw_if_broken("all_reduce");
        std::vector<MPI_Request> requests(tensors.size(), MPI_REQUEST_NULL);
        for (size_t i = 0; i < tensors.size(); ++i)
            check_rc("all_reduce",
                     MPI_Iallreduce(MPI_IN_PLACE, tensors[i].data_ptr(), count(tensors[i]),
                                    mpi_type(tensors[i].dtype()), mpi_op(op), comm_, &requests[i]));
        wait("all_reduce", requests);
        for (const Tensor& t : tensors) {
            if (op == CommOp::Average) {
                if (t.dtype() == DType::F32)
                    divide(t.data<float>(), t.numel(), static_cast<float>(size_));
                else
                    divide(t.data<double>(), t.numel(), static_cast<double>(size_));
            }
            t.bump_version();
        }
    }

    void broadcast(const std::vector<Tensor>& tensors, int root) override {
        check_tensors("broadcast", tensors, CommOp::Sum, /*allow_half=*/false);
        check_host("broadcast", tensors);
        check_root("broadcast", root);
        std::lock_guard<std::mutex> lock(mutex_);
        throw_if_broken("broadcast");
        std::vector<MPI_Request> requests(tensors.size(), MPI_REQUEST_NULL);
        for (size_t i = 0; i < tensors.size(); ++i)
            check_rc("broadcast",
                     MPI_Ibcast(tensors[i].data_ptr(), count(tensors[i]),
                                mpi_type(tensors[i].dtype()), root, comm_, &requests[i]));
        wait("broadcast", requests);
        for (const Tensor& t : tensors)
            t.bump_version();
    }

    void barrier() override {
        std::lock_guard<std::mutex> lock(mutex_);
        throw_if_broken("barrier");
        std::vector<MPI_Request> requests(1, MPI_REQUEST_NULL);
        check_rc("barrier", MPI_Ibarrier(comm_, &requests[0]));
        wait("barrier", requests);
    }

    // MPI cannot wake the peers: they time out on their own.
    void abort(const std::string& reason) override {
        std::lock_guard<std::mutex> lock(state_mutex_);
        if (!broken_) {
            broken_ = true;
            reason_ = reason;
            MpiRuntime::get().mark_broken();
        }
    }
    bool broken() const override {
        std::lock_guard<std::mutex> lock(state_mutex_);
        return broken_;
    }

  private:
    template <typename T>
    static void divide(T* p, int64_t n, T by) {
        for (int64_t i = 0; i < n; ++i)
            p[i] = p[i] / by;
    }

    void check_host(const char* op, const std::vector<Tensor>& tensors) const {
        for (size_t i = 0; i < tensors.size(); ++i)
            MDL_CHECK(tensors[i].device().is_cpu(), DeviceError, where(op), ": tensor ", i,
                      " is on ", tensors[i].device(),
                      "; the MPI communicator takes CPU tensors (GPU tensors: nccl::init_rank)");
    }

    int count(const Tensor& t) const {
        MDL_CHECK(t.numel() <= INT_MAX, ShapeError, where("collective"), ": ", t.numel(),
                  " elements exceed MPI's int count; split the tensor");
        return static_cast<int>(t.numel());
    }

    void check_rc(const char* op, int rc) {
        if (rc == MPI_SUCCESS) return;
        const std::string message =
            detail::concat(where(op), ": MPI error ", rc, ": ", mpi_error_string(rc));
        abort(message);
        throw CommError(message);
    }

    void throw_if_broken(const char* op) const {
        std::lock_guard<std::mutex> lock(state_mutex_);
        if (broken_)
            throw CommError(detail::concat(where(op), ": the communicator is broken: ", reason_));
    }

    // Polls the requests until they complete or the deadline passes. The first ~100 us spin
    // (small collectives finish there); then the sleep grows to 1 ms, which bounds the added
    // latency while leaving the core to the compute threads.
    void wait(const char* op, std::vector<MPI_Request>& requests) {
        const auto start = Clock::now();
        const auto deadline = start + std::chrono::duration_cast<Clock::duration>(
                                          std::chrono::duration<double>(timeout_s()));
        auto pause = std::chrono::microseconds(0);
        for (;;) {
            int done = 0;
            check_rc(op, MPI_Testall(static_cast<int>(requests.size()), requests.data(), &done,
                                     MPI_STATUSES_IGNORE));
            if (done) return;
            const auto now = Clock::now();
            if (now >= deadline) {
                std::string others;
                for (int q = 0; q < size_; ++q)
                    if (q != rank_) others += (others.empty() ? "" : ", ") + std::to_string(q);
                const std::string message = detail::concat(
                    where(op), ": timed out after ", timeout_s(),
                    " s waiting for the other rank(s) (", others,
                    "): one of them stopped, deadlocked, failed or is slower than the timeout "
                    "(CommOptions::timeout_s sets it)");
                abort(message);
                throw CommError(message);
            }
            if (now - start > std::chrono::microseconds(100)) {
                pause = std::min(std::chrono::microseconds(1000),
                                 pause + std::chrono::microseconds(20));
                std::this_thread::sleep_for(pause);
            } else {
                std::this_thread::yield();
            }
        }
    }

    MPI_Comm comm_ = MPI_COMM_NULL;
    int rank_ = 0, size_ = 1;
    std::mutex mutex_;  // one collective at a time
    mutable std::mutex state_mutex_;
    bool broken_ = false;
    std::string reason_;
};

}  // namespace

namespace mpi {
bool available() {
    return true;
}
std::shared_ptr<Communicator> world(CommOptions options) {
    static std::mutex mutex;
    static std::shared_ptr<Communicator> world;
    std::lock_guard<std::mutex> lock(mutex);
    if (!world) world = std::make_shared<MpiCommunicator>(options);
    return world;
}
}  // namespace mpi

#else  // built without MPI

namespace mpi {
bool available() {
    return false;
}
std::shared_ptr<Communicator> world(CommOptions) {
    throw StateError(
        "mpi::world: built without MPI; install OpenMPI (Debian: libopenmpi-dev openmpi-bin, "
        "scripts/setup.sh) and reconfigure");
}
}  // namespace mpi

#endif

}  // namespace minidl
