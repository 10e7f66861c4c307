// tricks/distributed.cpp — see distributed.h for the protocol.
//
// Threads. Hooks, packing and unpacking run on the thread that runs backward (the "main"
// thread); the communication thread only all-reduces the flat bucket buffers it is handed. A
// bucket's buffer is written by the main thread before it is queued and read again only after
// the communication thread reported it done, both through the queue's mutex: no tensor is touched
// by two threads at once (tests/dp runs this under ThreadSanitizer).
#include "tricks/distributed.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <numeric>
#include <thread>
#include <utility>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/check.h"
#include "core/rng.h"
#include "optim/optimizer.h"

namespace minidl::tricks {

struct DistributedDataParallel::Bucket {
    std::vector<size_t> params;    // indices into params_
    std::vector<int64_t> offsets;  // where each parameter's gradient starts in `flat`
    int64_t grad_elements = 0;
    Tensor flat;  // [grad_elements + params.size()]: the gradients, then one flag per parameter
    size_t pending = 0;  // parameters not yet ready in the current reduction
};

// The communication thread: all-reduces (average) the buffers it is given, in order. On a CUDA
// model it makes the model's device its own first (cuda::set_device), so that the collectives'
// device guards never switch it back to the default GPU 0.
struct DistributedDataParallel::Pipeline {
    Pipeline(Communicator& comm, Device device)
        : comm_(comm), device_(device), thread_([this] { loop(); }) {}
    ~Pipeline() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stop_ = true;
        }
        wake_.notify_all();
        thread_.join();
    }

    void submit(Tensor flat) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            queue_.push_back(std::move(flat));
            ++submitted_;
        }
        wake_.notify_one();
    }

    // Returns when everything submitted is done; rethrows the first error (a CommError).
    void wait_all() {
        std::unique_lock<std::mutex> lock(mutex_);
        done_.wait(lock, [&] { return completed_ == submitted_; });
        if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
    }

  private:
    void loop() {
        NoGradGuard no_grad;
        // A failure here is every reduction's error (wait_all rethrows it).
        std::exception_ptr setup_error;
        try {
            if (device_.is_cuda()) cuda::set_device(device_.index);
        } catch (...) {
            setup_error = std::current_exception();
        }
        for (;;) {
            Tensor flat;
            bool skip = false;
            {
                std::unique_lock<std::mutex> lock(mutex_);
                wake_.wait(lock, [&] { return stop_ || !queue_.empty(); });
                if (queue_.empty()) return;  // stopping, nothing left
                flat = std::move(queue_.front());
                queue_.pop_front();
                skip = error_ != nullptr;  // the communicator is broken: don't wait again
            }
            std::exception_ptr error = skip ? nullptr : setup_error;
            if (!skip && !error) {
                try {
                    comm_.all_reduce({flat}, CommOp::Average);
                } catch (...) {
                    error = std::current_exception();
                }
            }
            {
                std::lock_guard<std::mutex> lock(mutex_);
                // Moved, not copied: the thread keeps no reference, so the exception is
                // destroyed by whichever thread caught it last, never here while it is read.
                if (error && !error_) error_ = std::move(error);
                ++completed_;
            }
            done_.notify_all();
        }
    }

    Communicator& comm_;
    Device device_;
    std::mutex mutex_;
    std::condition_variable wake_, done_;
    std::deque<Tensor> queue_;
    uint64_t submitted_ = 0, completed_ = 0;
    std::exception_ptr error_;
    bool stop_ = false;
    std::thread thread_;  // last: starts once the members above exist
};

DistributedDataParallel::DistributedDataParallel(nn::Module& module,
                                                 std::shared_ptr<Communicator> comm,
                                                 DDPOptions options)
    : module_(module), comm_(std::move(comm)), options_(options) {
    MDL_CHECK(comm_ != nullptr, StateError, "DistributedDataParallel: no communicator");
    MDL_CHECK(options_.bucket_cap_bytes > 0 && options_.first_bucket_bytes > 0, ValueError,
              "DistributedDataParallel: bucket sizes must be positive, got ",
              options_.bucket_cap_bytes, " and ", options_.first_bucket_bytes);
    std::vector<std::string> names;
    for (const auto& [name, p] : module_.named_parameters())
        if (p.requires_grad()) {
            params_.push_back(p);
            names.push_back(name);
        }
    buffers_ = module_.buffers();
    broadcast_parameters();
    broadcast_buffers();

    // Buckets in reverse registration order; a new one when the cap would be exceeded or the
    // dtype/device changes (a parameter larger than the cap gets a bucket of its own).
    bucket_of_.assign(params_.size(), 0);
    ready_.assign(params_.size(), false);
    int64_t bytes = 0;
    for (size_t k = params_.size(); k-- > 0;) {
        const Tensor& p = params_[k];
        const int64_t cap =
            buckets_.size() <= 1 ? options_.first_bucket_bytes : options_.bucket_cap_bytes;
        const bool fits = !buckets_.empty() && bytes + static_cast<int64_t>(p.nbytes()) <= cap &&
                          bucket_info_.back().dtype == p.dtype() &&
                          params_[buckets_.back().params.front()].device() == p.device();
        if (!fits) {
            buckets_.emplace_back();
            bucket_info_.emplace_back();
            bucket_info_.back().dtype = p.dtype();
            bytes = 0;
        }
        Bucket& b = buckets_.back();
        b.params.push_back(k);
        b.offsets.push_back(b.grad_elements);
        b.grad_elements += p.numel();
        bucket_info_.back().params.push_back(names[k]);
        bucket_info_.back().elements = b.grad_elements;
        bucket_of_[k] = buckets_.size() - 1;
        bytes += static_cast<int64_t>(p.nbytes());
    }
    for (Bucket& b : buckets_) {
        const Tensor& first = params_[b.params.front()];
        b.flat = Tensor::zeros({b.grad_elements + static_cast<int64_t>(b.params.size())},
                               first.dtype(), first.device());
    }
    pipeline_ = std::make_unique<Pipeline>(
        *comm_, buckets_.empty() ? Device::cpu() : buckets_.front().flat.device());
    // Last: nothing may throw once the hooks (which capture `this`) are registered.
    hook_ids_.reserve(params_.size());
    for (size_t k = 0; k < params_.size(); ++k)
        hook_ids_.push_back(autograd::add_post_accumulate_hook(
            params_[k], [this, k](const Tensor&) { on_grad_ready(k); }));
}

DistributedDataParallel::~DistributedDataParallel() {
    for (size_t k = 0; k < params_.size(); ++k)
        autograd::remove_post_accumulate_hook(params_[k], hook_ids_[k]);
    // A reduction left half-done (an exception during backward) may have a collective in flight
    // that the other ranks will never join: abort so that the communication thread returns.
    if (in_reduction_) comm_->abort("DistributedDataParallel destroyed during a reduction");
    pipeline_.reset();
}

DistributedDataParallel::NoSync::NoSync(DistributedDataParallel& ddp)
    : ddp_(ddp), previous_(ddp.require_sync_) {
    ddp_.require_sync_ = false;
}

DistributedDataParallel::NoSync::~NoSync() {
    ddp_.require_sync_ = previous_;
}

std::function<void(bool)> DistributedDataParallel::sync_hook() {
    return [this](bool sync) { require_sync_ = sync; };
}

void DistributedDataParallel::on_grad_ready(size_t k) {
    if (failed_ || !hooks_armed()) return;
    if (!in_reduction_) {
        begin_reduction();
        autograd::queue_callback([this] { on_backward_end(); });
    }
    if (ready_[k]) return;
    ready_[k] = true;
    if (--buckets_[bucket_of_[k]].pending == 0 && options_.overlap) launch_ready_buckets(false);
}

void DistributedDataParallel::begin_reduction() {
    in_reduction_ = true;
    next_launch_ = 0;
    launched_early_ = 0;
    std::fill(ready_.begin(), ready_.end(), false);
    for (Bucket& b : buckets_)
        b.pending = b.params.size();
}

// In index order only: every rank must issue the same all-reduces in the same order.
void DistributedDataParallel::launch_ready_buckets(bool all) {
    while (next_launch_ < buckets_.size() && (all || buckets_[next_launch_].pending == 0)) {
        if (!all) ++launched_early_;
        launch(next_launch_++);
    }
}

void DistributedDataParallel::launch(size_t index) {
    NoGradGuard no_grad;
    Bucket& b = buckets_[index];
    std::vector<double> flags(b.params.size(), 0.0);
    for (size_t j = 0; j < b.params.size(); ++j) {
        const Tensor& grad = params_[b.params[j]].grad();
        Tensor slice = b.flat.narrow0(b.offsets[j], params_[b.params[j]].numel());
        if (grad.defined()) {
            slice.copy_(grad.flatten());
            flags[j] = 1.0;
        } else {
            slice.zero_();
        }
    }
    b.flat.narrow0(b.grad_elements, static_cast<int64_t>(flags.size()))
        .copy_(Tensor::from_vector(flags, {static_cast<int64_t>(flags.size())}));
    pipeline_->submit(b.flat);
}

void DistributedDataParallel::finish_reduction() {
    NoGradGuard no_grad;
    if (!in_reduction_) begin_reduction();
    try {
        launch_ready_buckets(true);
        pipeline_->wait_all();
    } catch (...) {
        in_reduction_ = false;
        failed_ = true;
        throw;
    }
    // Every bucket's "some rank had a gradient" flags, gathered on the device and read in one
    // transfer: one wait for a GPU per step, not one per bucket.
    int64_t flag_count = 0;
    for (const Bucket& b : buckets_)
        flag_count += static_cast<int64_t>(b.params.size());
    const Device device = buckets_.empty() ? Device::cpu() : buckets_.front().flat.device();
    Tensor gathered = Tensor::empty({flag_count}, DType::F64, device);
    int64_t at = 0;
    for (const Bucket& b : buckets_) {
        const auto n = static_cast<int64_t>(b.params.size());
        gathered.narrow0(at, n).copy_(b.flat.narrow0(b.grad_elements, n));
        at += n;
    }
    const std::vector<double> all_flags =
        flag_count > 0 ? gathered.to_vector<double>() : std::vector<double>{};
    at = 0;
    for (Bucket& b : buckets_) {
        const double* flags = all_flags.data() + at;
        at += static_cast<int64_t>(b.params.size());
        for (size_t j = 0; j < b.params.size(); ++j) {
            if (flags[j] <= 0) continue;  // no rank had a gradient for it
            const Tensor& p = params_[b.params[j]];
            const Tensor average = b.flat.narrow0(b.offsets[j], p.numel()).view(p.shape());
            if (Tensor grad = p.grad(); grad.defined())
                grad.copy_(average);
            else
                p.set_grad(average.clone());
        }
    }
    in_reduction_ = false;
}

void DistributedDataParallel::on_backward_end() {
    if (!deferred_finish_) finish_reduction();
}

void DistributedDataParallel::synchronize() {
    MDL_CHECK(!failed_, StateError,
              "DistributedDataParallel::synchronize: an earlier collective failed; the ranks are "
              "out of step");
    finish_reduction();
}

StepResult DistributedDataParallel::train_step(TrainStepConfig& config, int64_t batch_size,
                                               const LossFn& loss_fn) {
    return apply_gradients(config, reduce_gradients(config, batch_size, loss_fn));
}

StepResult DistributedDataParallel::reduce_gradients(TrainStepConfig& config, int64_t batch_size,
                                                     const LossFn& loss_fn) {
    MDL_CHECK(!failed_, StateError,
              "DistributedDataParallel::train_step: an earlier collective failed; the ranks are "
              "out of step");
    MDL_CHECK(config.optimizer != nullptr, StateError,
              "DistributedDataParallel::train_step: no optimizer");
    MDL_CHECK(!config.sync_hook, StateError,
              "DistributedDataParallel::train_step: config.sync_hook must be empty (train_step "
              "sets its own)");
    const bool attack = config.fgm || config.pgd || config.awp || config.freelb;
    const bool overlap = options_.overlap && !attack;

    // Modes for this step, restored however it ends.
    struct Modes {
        DistributedDataParallel& d;
        bool sync, all, finish;
        ~Modes() {
            d.require_sync_ = sync;
            d.deferred_all_ = all;
            d.deferred_finish_ = finish;
        }
    } restore{*this, require_sync_, deferred_all_, deferred_finish_};
    deferred_finish_ = true;  // the reduction ends after the gradient half, not after a backward
    deferred_all_ = !overlap;
    TrainStepConfig c = config;
    if (overlap) c.sync_hook = [this](bool sync) { require_sync_ = sync; };
    c.read_loss = true;  // averaged over the ranks with the overflow flag below

    StepResult part;
    try {
        if (options_.broadcast_buffers && !buffers_.empty()) broadcast_buffers();
        config.optimizer->zero_grad();
        part = accumulate_gradients(c, batch_size, loss_fn);
        finish_reduction();
        // An overflow met by any rank's attack skips the step everywhere; an inf/NaN gradient
        // needs no flag (it survives the average). The loss is averaged for the reports.
        NoGradGuard no_grad;
        const Device device = params_.empty() ? Device::cpu() : params_.front().device();
        Tensor extras = Tensor::from_vector(
            std::vector<double>{part.overflow ? 1.0 : 0.0, part.loss}, {2}, DType::F64, device);
        comm_->all_reduce({extras}, CommOp::Average);
        const std::vector<double> v = extras.to_vector<double>();
        part.overflow = v[0] > 0;
        part.loss = v[1];
    } catch (const std::exception& e) {
        // The ranks are out of step now; wake the peers that wait for this rank where the
        // engine can.
        failed_ = true;
        in_reduction_ = false;
        comm_->abort(detail::concat("rank ", rank(), " failed in train_step: ", e.what()));
        throw;
    }
    return part;
}

void DistributedDataParallel::broadcast_parameters() {
    std::vector<Tensor> data;
    for (const Tensor& p : params_)
        data.push_back(p.detach());
    comm_->broadcast(data, 0);
}

void DistributedDataParallel::broadcast_buffers() {
    comm_->broadcast(buffers_, 0);
}

bool DistributedDataParallel::replicas_identical() {
    // FNV-1a over every byte of the parameters and buffers, in order.
    uint64_t h = 1469598103934665603ull;
    NoGradGuard no_grad;
    for (const auto* list : {&params_, &buffers_})
        for (const Tensor& t : *list) {
            const Tensor host = t.detach().to(Device::cpu());
            const auto* bytes = static_cast<const unsigned char*>(host.data_ptr());
            for (size_t i = 0; i < host.nbytes(); ++i)
                h = (h ^ bytes[i]) * 1099511628211ull;
        }
    const auto v = static_cast<int64_t>(h & ((uint64_t{1} << 62) - 1));
    const Device device = params_.empty() ? Device::cpu() : params_.front().device();
    Tensor t = Tensor::from_vector(std::vector<int64_t>{v, -v}, {2}, DType::I64, device);
    comm_->all_reduce({t}, CommOp::Max);
    const std::vector<int64_t> r = t.to_vector<int64_t>();
    return r[0] == -r[1];  // max(v) == min(v)
}

// ---- DistributedSampler -------------------------------------------------------------------------

namespace {
int64_t samples_per_rank(int64_t size, int world, bool drop_last) {
    if (drop_last && size % world != 0) return (size - world + world - 1) / world;
    return (size + world - 1) / world;
}
}  // namespace

DistributedSampler::DistributedSampler(int64_t size, int rank, int world_size,
                                       DistributedSamplerOptions options)
    : size_(size), rank_(rank), world_size_(world_size), options_(options) {
    MDL_CHECK(world_size >= 1 && rank >= 0 && rank < world_size, IndexError,
              "DistributedSampler: rank ", rank, " out of range for world size ", world_size);
    MDL_CHECK(size >= 0, ValueError, "DistributedSampler: negative data set size ", size);
    num_samples_ = samples_per_rank(size, world_size, options.drop_last);
}

std::vector<int64_t> DistributedSampler::indices() const {
    std::vector<int64_t> order;
    if (options_.shuffle) {
        Generator gen(options_.seed + static_cast<uint64_t>(epoch_));
        order = gen.randperm(size_);
    } else {
        order.resize(static_cast<size_t>(size_));
        std::iota(order.begin(), order.end(), int64_t{0});
    }
    return shard(order, rank_, world_size_, options_.drop_last);
}

std::vector<int64_t> DistributedSampler::shard(const std::vector<int64_t>& order, int rank,
                                               int world_size, bool drop_last) {
    MDL_CHECK(world_size >= 1 && rank >= 0 && rank < world_size, IndexError,
              "DistributedSampler::shard: rank ", rank, " out of range for world size ",
              world_size);
    const auto n = static_cast<int64_t>(order.size());
    if (n == 0) return {};
    const int64_t total = samples_per_rank(n, world_size, drop_last) * world_size;
    std::vector<int64_t> padded(order.begin(), order.begin() + std::min(n, total));
    for (int64_t k = 0; static_cast<int64_t>(padded.size()) < total; ++k)
        padded.push_back(order[static_cast<size_t>(k % n)]);  // PyTorch's wrap-around padding
    std::vector<int64_t> out;
    for (int64_t i = rank; i < total; i += world_size)
        out.push_back(padded[static_cast<size_t>(i)]);
    return out;
}

}  // namespace minidl::tricks
