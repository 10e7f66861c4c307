// core/comm_inprocess.cpp — the in-process communicator: N threads of one process meeting at a
// shared rendezvous (core/comm.h).
//
// Protocol of one collective, for rank r of N:
//   1. stage: CPU tensors are used in place; device tensors are copied to host buffers;
//   2. publish the call (op, tensors) in slot r and wait at the rendezvous until all N arrived;
//   3. every rank checks that all slots describe the same call (op, count, shapes, dtypes) — all
//      read the same slots, so all reach the same verdict and throw together on a mismatch;
//   4. rank r reduces the r-th slice of every tensor's elements: acc = x_0[e] (op) x_1[e] ... in
//      rank order (Average: the sum divided by N), and writes acc into every rank's buffer. The
//      slices are disjoint, so no element is read or written by two threads; the reduction order
//      is fixed, so results are bitwise reproducible and the same on every rank;
//   5. wait at the rendezvous again (nobody returns — and modifies its tensors — while another
//      rank still reads them), then copy staged buffers back to the device.
// A broadcast is the same with step 4 replaced by "non-roots copy the root's buffers"; a barrier
// is step 2 alone. The mutex + condition variable of the rendezvous order every write of step 4
// before every read after step 5 (what ThreadSanitizer checks in tests/dp).
//
// Waiting has a deadline: past it the waiter marks the group broken with a message naming the
// operation, itself, the ranks that never arrived and the timeout, wakes everybody and throws
// CommError; every later call on any rank of the group throws at once.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>

#include "core/autograd.h"
#include "core/comm.h"

namespace minidl {

namespace {

using Clock = std::chrono::steady_clock;

struct Call {
    const char* op = "";
    CommOp reduce = CommOp::Sum;
    int root = 0;
    std::vector<Tensor> host;  // the tensors as host buffers (the tensors themselves on CPU)
};

class Rendezvous {
  public:
    explicit Rendezvous(int world) : world_(world), arrived_(world, false), calls_(world) {}

    int world() const { return world_; }

    // Publishes rank's call (step 2). Shared: a rank that gives up (timeout) must not free buffers
    // that a slower peer may still touch.
    void set_call(int rank, std::shared_ptr<Call> call) {
        std::lock_guard<std::mutex> lock(mutex_);
        calls_[rank] = std::move(call);
    }
    // Read between the two meetings only, when no slot changes.
    const Call& call(int rank) const { return *calls_[rank]; }

    // Returns once all ranks arrived at this meeting; throws CommError on timeout or when the
    // group is (or becomes) broken.
    void meet(int rank, const std::string& where, double timeout_s) {
        const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                                 std::chrono::duration<double>(timeout_s));
        std::unique_lock<std::mutex> lock(mutex_);
        throw_if_broken(where);
        const uint64_t generation = generation_;
        arrived_[rank] = true;
        if (++count_ == world_) {
            count_ = 0;
            std::fill(arrived_.begin(), arrived_.end(), false);
            ++generation_;
            cv_.notify_all();
            return;
        }
        while (generation_ == generation && !broken_) {
            if (cv_.wait_until(lock, deadline) == std::cv_status::timeout &&
                generation_ == generation && !broken_) {
                std::string missing;
                for (int q = 0; q < world_; ++q)
                    if (!arrived_[q]) missing += (missing.empty() ? "" : ", ") + std::to_string(q);
                break_group(detail::concat(where, ": timed out after ", timeout_s,
                                           " s waiting for rank(s) ", missing,
                                           " (stopped, deadlocked, failed or slower than the "
                                           "timeout; CommOptions::timeout_s sets it)"));
                throw CommError(reason_);
            }
        }
        if (generation_ == generation) throw_if_broken(where);
    }

    void abort(const std::string& reason) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!broken_) break_group(reason);
    }
    bool broken() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return broken_;
    }

  private:
    void break_group(std::string reason) {
        broken_ = true;
        reason_ = std::move(reason);
        cv_.notify_all();
    }
    void throw_if_broken(const std::string& where) const {
        if (broken_)
            throw CommError(detail::concat(where, ": the in-process group is broken: ", reason_));
    }

    const int world_;
    mutable std::mutex mutex_;
    std::condition_variable cv_;
    int count_ = 0;
    uint64_t generation_ = 0;
    std::vector<bool> arrived_;
    std::vector<std::shared_ptr<Call>> calls_;
    bool broken_ = false;
    std::string reason_;
};

// Elements [begin, end) of every rank's buffer <- their reduction, each element computed as
// (((x_0 op x_1) op x_2) ...) in rank order, then / N for Average. Chunk by chunk, each loop
// running over the elements of a chunk: the same operations per element as an element-at-a-time
// loop (bitwise the same results), but vectorised by the compiler. The element-at-a-time loop
// (the rank loop inside) took 5-10 ms for the 7.1 MB gradient of the text classifier on the
// 2-core development machine, this one 0.3-0.6 ms (docs/data_parallel.md, section 8).
template <typename T>
void reduce_slice(const std::vector<T*>& buffers, int64_t begin, int64_t end, CommOp op,
                  int world) {
    constexpr int64_t kChunk = 1024;
    T acc[kChunk];
    for (int64_t c = begin; c < end; c += kChunk) {
        const int64_t n = std::min(kChunk, end - c);
        std::memcpy(acc, buffers[0] + c, static_cast<size_t>(n) * sizeof(T));
        for (int q = 1; q < world; ++q) {
            const T* x = buffers[static_cast<size_t>(q)] + c;
            if (op == CommOp::Sum || op == CommOp::Average) {
                for (int64_t i = 0; i < n; ++i)
                    acc[i] = acc[i] + x[i];
            } else {
                for (int64_t i = 0; i < n; ++i) {
                    // A NaN wins (v != v only for NaN): a non-finite value must not vanish.
                    if (acc[i] != acc[i]) continue;
                    if (x[i] != x[i] || (op == CommOp::Max ? x[i] > acc[i] : x[i] < acc[i]))
                        acc[i] = x[i];
                }
            }
        }
        if (op == CommOp::Average) {
            const T by = static_cast<T>(world);
            for (int64_t i = 0; i < n; ++i)
                acc[i] = acc[i] / by;
        }
        for (int q = 0; q < world; ++q)
            std::memcpy(buffers[static_cast<size_t>(q)] + c, acc,
                        static_cast<size_t>(n) * sizeof(T));
    }
}

class InProcessCommunicator final : public Communicator {
  public:
    InProcessCommunicator(std::shared_ptr<Rendezvous> rendezvous, int rank, CommOptions options)
        : Communicator(options), rendezvous_(std::move(rendezvous)), rank_(rank) {}

    int rank() const override { return rank_; }
    int world_size() const override { return rendezvous_->world(); }
    const char* backend() const override { return "in-process"; }

    void all_reduce(const std::vector<Tensor>& tensors, CommOp op) override {
        check_tensors("all_reduce", tensors, op, /*allow_half=*/false);
        auto call = make_call("all_reduce", op, 0, tensors);
        run(call, tensors, [&] {
            const int world = world_size();
            for (size_t i = 0; i < tensors.size(); ++i) {
                const int64_t n = tensors[i].numel();
                const int64_t begin = n * rank_ / world, end = n * (rank_ + 1) / world;
                switch (tensors[i].dtype()) {
                    case DType::F32:
                        reduce_slice(buffers<float>(i), begin, end, op, world);
                        break;
                    case DType::F64:
                        reduce_slice(buffers<double>(i), begin, end, op, world);
                        break;
                    default:
                        reduce_slice(buffers<int64_t>(i), begin, end, op, world);
                        break;
                }
            }
        });
    }

    void broadcast(const std::vector<Tensor>& tensors, int root) override {
        check_tensors("broadcast", tensors, CommOp::Sum, /*allow_half=*/true);
        check_root("broadcast", root);
        auto call = make_call("broadcast", CommOp::Sum, root, tensors);
        run(call, tensors, [&] {
            if (rank_ == root) return;
            for (size_t i = 0; i < tensors.size(); ++i) {
                const Tensor& src = rendezvous_->call(root).host[i];
                const Tensor& dst = call->host[i];
                if (src.nbytes() > 0) std::memcpy(dst.data_ptr(), src.data_ptr(), src.nbytes());
            }
        });
    }

    void barrier() override {
        run(make_call("barrier", CommOp::Sum, 0, {}), {}, [] {});
    }

    void abort(const std::string& reason) override {
        rendezvous_->abort(detail::concat("aborted by rank ", rank_, ": ", reason));
    }
    bool broken() const override { return rendezvous_->broken(); }

  private:
    // Step 1. A rank that cannot stage (a device error) breaks the group rather than leave its
    // peers waiting out the timeout.
    std::shared_ptr<Call> make_call(const char* op, CommOp reduce, int root,
                                    const std::vector<Tensor>& tensors) {
        auto call = std::make_shared<Call>();
        call->op = op;
        call->reduce = reduce;
        call->root = root;
        try {
            NoGradGuard no_grad;
            for (const Tensor& t : tensors)
                call->host.push_back(t.device().is_cpu() ? t.detach()
                                                         : t.detach().to(Device::cpu()));
        } catch (const std::exception& e) {
            abort(detail::concat(where(op), " failed to stage its tensors: ", e.what()));
            throw;
        }
        return call;
    }

    template <typename T>
    std::vector<T*> buffers(size_t i) const {
        std::vector<T*> out;
        for (int q = 0; q < world_size(); ++q)
            out.push_back(static_cast<T*>(rendezvous_->call(q).host[i].data_ptr()));
        return out;
    }

    // Steps 2-5 around `work` (step 4).
    template <typename Work>
    void run(const std::shared_ptr<Call>& call, const std::vector<Tensor>& tensors,
             const Work& work) {
        const std::string here = where(call->op);
        rendezvous_->set_call(rank_, call);
        rendezvous_->meet(rank_, here, timeout_s());
        // A mismatch fails the call on every rank alike (all read the same slots); all still meet
        // again, so that nobody frees a slot another rank is reading, and the group stays usable.
        const std::string mismatch = check_same_call();
        if (mismatch.empty()) work();
        rendezvous_->meet(rank_, here, timeout_s());
        rendezvous_->set_call(rank_, nullptr);
        MDL_CHECK(mismatch.empty(), CommError, here,
                  ": the ranks disagree on the call: ", mismatch);
        NoGradGuard no_grad;
        for (size_t i = 0; i < tensors.size(); ++i) {
            if (tensors[i].device().is_cpu())
                tensors[i].bump_version();
            else
                tensors[i].detach().copy_(call->host[i]);
        }
    }

    // Step 3: what differs between the ranks' calls ("" when nothing).
    std::string check_same_call() const {
        const Call& first = rendezvous_->call(0);
        for (int q = 1; q < world_size(); ++q) {
            const Call& c = rendezvous_->call(q);
            std::string problem;
            if (std::string(c.op) != first.op)
                problem = detail::concat("rank 0 called ", first.op, ", rank ", q, " ", c.op);
            else if (c.reduce != first.reduce || c.root != first.root)
                problem = detail::concat("rank 0 asked for ", comm_op_name(first.reduce), " (root ",
                                         first.root, "), rank ", q, " for ", comm_op_name(c.reduce),
                                         " (root ", c.root, ")");
            else if (c.host.size() != first.host.size())
                problem = detail::concat("rank 0 passed ", first.host.size(), " tensors, rank ", q,
                                         " ", c.host.size());
            for (size_t i = 0; problem.empty() && i < c.host.size(); ++i)
                if (c.host[i].shape() != first.host[i].shape() ||
                    c.host[i].dtype() != first.host[i].dtype())
                    problem = detail::concat("tensor ", i, " is ", first.host[i].dtype(), " ",
                                             shape_str(first.host[i].shape()), " on rank 0 but ",
                                             c.host[i].dtype(), " ", shape_str(c.host[i].shape()),
                                             " on rank ", q);
            if (!problem.empty()) return problem;
        }
        return {};
    }

    std::shared_ptr<Rendezvous> rendezvous_;
    int rank_;
};

}  // namespace

std::vector<std::shared_ptr<Communicator>> make_in_process_group(int world_size,
                                                                 CommOptions options) {
    MDL_CHECK(world_size >= 1, ValueError,
              "make_in_process_group: world_size must be at least 1, got ", world_size);
    auto rendezvous = std::make_shared<Rendezvous>(world_size);
    std::vector<std::shared_ptr<Communicator>> out;
    for (int r = 0; r < world_size; ++r)
        out.push_back(std::make_shared<InProcessCommunicator>(rendezvous, r, options));
    return out;
}

}  // namespace minidl
