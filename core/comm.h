// core/comm.h — collective communication between the replicas of a model: the Communicator
// interface and its three engines.
//
// A communicator connects `world_size` ranks (threads, processes or GPUs) numbered 0..N-1. Every
// rank calls the same collectives in the same order with tensors of the same shapes and dtypes:
//   all_reduce(x, op)   in place, x <- op(x_0, ..., x_{N-1}) elementwise on every rank
//                       (Sum, Average = Sum / N, Max, Min)
//   broadcast(x, root)  in place, x <- x_root on every rank
//   barrier()           returns once every rank has entered it
// Engines (none of them home-made networking):
//   in-process  threads of one process meeting at a shared rendezvous (CPU replicas, and several
//               replicas on GPUs where NCCL has no place, e.g. two on one GPU: device tensors are
//               staged through host memory). Each element is reduced in rank order,
//               x_0 + x_1 + ... + x_{N-1}, by one thread and written to every rank, so results are
//               bitwise reproducible and identical on every rank; the ranks reduce disjoint slices
//               of the elements in parallel (reduce-scatter + all-gather in shared memory).
//   MPI         one rank per process (OpenMPI, launched with mpirun), CPU tensors, one machine or
//               many. Non-blocking MPI collectives polled against the deadline.
//   NCCL        GPU tensors (ops/cuda/comm_nccl.cpp): one rank per GPU, either all in one process
//               (nccl::init_all) or one per process, bootstrapped over MPI by broadcasting the
//               ncclUniqueId (nccl::init_rank). Collectives run on the communicator's own
//               stream, made to wait (an event) for the kernels on minidl's stream of the device
//               (cuda::stream) that produced the data; the calling thread waits for each
//               collective to complete. The tensors' blocks are also marked as used on the NCCL
//               stream (Allocator::record_stream, PyTorch's Tensor.record_stream): a block freed
//               while the collective may still read it rejoins the cache only after an event on
//               that stream, so the host wait is not what keeps memory safe, and collectives can
//               stop blocking the host without a change to the allocator.
// Cost model (ring all-reduce, Patarasuk & Yuan 2009; the NCCL and Horovod docs): each rank sends
// and receives 2 (N-1)/N of the bytes, in 2 (N-1) latency-bound steps, so
//   t ~ 2 (N-1)/N * bytes / bandwidth + 2 (N-1) * latency          (docs/data_parallel.md)
//
// Timeouts. MPI and NCCL collectives have none: a peer that stops answering would block its
// partners forever. Every call here has a deadline (CommOptions::timeout_s, default 60 s); past
// it the call throws CommError naming the operation, the rank, the ranks waited for (where the
// engine knows them) and the timeout. A communicator that timed out is broken: its later calls
// throw at once (the engine's state is unknown; an MPI program should then exit non-zero, which
// makes mpirun end the job). abort() breaks it on purpose: a replica that failed calls it so that
// it does not leave its peers waiting (the in-process engine wakes them at once; MPI and NCCL
// peers time out on their own).
//
// References: Li et al., "PyTorch Distributed: Experiences on Accelerating Data Parallel
// Training", VLDB 2020, arXiv:2006.15704 (https://arxiv.org/abs/2006.15704); Sergeev & Del Balso,
// "Horovod", arXiv:1802.05799; NCCL user guide
// (https://docs.nvidia.com/deeplearning/nccl/user-guide/docs/), sections "Communicator creation"
// and "Fault tolerance" (non-blocking communicators, ncclCommGetAsyncError, ncclCommAbort).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/tensor.h"

namespace minidl {

// A collective failed: timed out, aborted by a peer, or the ranks disagreed on what to do.
struct CommError : Error {
    using Error::Error;
};

enum class CommOp { Sum, Average, Max, Min };
const char* comm_op_name(CommOp op);

struct CommOptions {
    // Seconds one collective may wait for the other ranks before throwing CommError.
    double timeout_s = 60.0;
};

class Communicator {
  public:
    virtual ~Communicator() = default;
    Communicator(const Communicator&) = delete;
    Communicator& operator=(const Communicator&) = delete;

    virtual int rank() const = 0;
    virtual int world_size() const = 0;
    // "in-process", "mpi" or "nccl".
    virtual const char* backend() const = 0;

    // In place on every tensor (same shapes, dtypes and order on every rank; F32, F64 or I64 —
    // NCCL also F16/BF16; Average only for floating tensors).
    virtual void all_reduce(const std::vector<Tensor>& tensors, CommOp op = CommOp::Sum) = 0;
    // Copies root's tensors into every other rank's.
    virtual void broadcast(const std::vector<Tensor>& tensors, int root = 0) = 0;
    virtual void barrier() = 0;
    // Breaks this communicator (see the top of this file); `reason` ends up in the CommErrors.
    virtual void abort(const std::string& reason) = 0;
    // Whether a timeout or abort() broke it.
    virtual bool broken() const = 0;

    bool is_main_process() const { return rank() == 0; }
    double timeout_s() const { return options_.timeout_s; }
    void set_timeout(double seconds);

  protected:
    explicit Communicator(CommOptions options);
    // "all_reduce on rank 0 of 2 (mpi)" — how errors name the call.
    std::string where(const char* op) const;
    // The checks every engine shares (defined tensors, supported dtype, the root in range).
    void check_tensors(const char* op, const std::vector<Tensor>& tensors, CommOp reduce,
                       bool allow_half) const;
    void check_root(const char* op, int root) const;

    CommOptions options_;
};

// ---- in-process ---------------------------------------------------------------------------------
// world_size communicators sharing one rendezvous; element r is rank r's (give each to one thread).
std::vector<std::shared_ptr<Communicator>> make_in_process_group(int world_size,
                                                                 CommOptions options = {});

// ---- MPI ----------------------------------------------------------------------------------------
namespace mpi {
// Whether this library was built with MPI (CMake found it).
bool available();
// This process's rank in MPI_COMM_WORLD (a duplicate of it, so that minidl's collectives never
// match the program's own). Initialises MPI on first use (MPI_THREAD_MULTIPLE requested, at least
// SERIALIZED required: a mutex serialises this communicator's calls); MPI is finalised at exit
// unless a communicator broke (a collective may still be pending). Outside mpirun: a world of 1.
// The options apply on the first call. StateError when built without MPI.
std::shared_ptr<Communicator> world(CommOptions options = {});
}  // namespace mpi

// Rank and size announced by the launcher's environment (mpirun: OMPI_COMM_WORLD_RANK/SIZE;
// PMI_RANK/PMI_SIZE for MPICH-style launchers) without initialising anything: 0 and 1 outside.
int launch_rank();
int launch_world_size();
// This process's rank among those of its machine (OMPI_COMM_WORLD_LOCAL_RANK, MPI_LOCALRANKID,
// SLURM_LOCALID): which GPU of the machine it should drive. 0 outside a launcher.
int launch_local_rank();
// True unless this process was launched as a rank other than 0: the one that writes checkpoints,
// reports and logs (PyTorch's is_main_process idiom).
bool is_main_process();

// ---- NCCL ---------------------------------------------------------------------------------------
namespace nccl {
// Whether this library was built with NCCL (CUDA on and nccl.h / libnccl found).
bool available();
// One communicator per device, all in this process (rank i drives devices[i]): what
// ncclCommInitAll does, done as ncclCommInitRankConfig calls in one group so that the
// communicators are non-blocking and every call can time out. Drive each from its own thread.
std::vector<std::shared_ptr<Communicator>> init_all(const std::vector<int>& devices,
                                                    CommOptions options = {});
// One rank per process on `device`: rank 0 creates the ncclUniqueId and `bootstrap` (an MPI
// communicator, say) broadcasts it; rank and size are bootstrap's. `device` becomes the calling
// thread's CUDA device (cuda::set_device): the rank drives it from then on.
std::shared_ptr<Communicator> init_rank(Communicator& bootstrap, int device,
                                        CommOptions options = {});
}  // namespace nccl

}  // namespace minidl
