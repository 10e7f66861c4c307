// tricks/data_parallel.cpp — see data_parallel.h for the step and why it is shaped so.
#include "tricks/data_parallel.h"

#include <condition_variable>
#include <cstring>
#include <exception>
#include <mutex>
#include <thread>

#include "core/autograd.h"
#include "core/backend.h"
#include "core/check.h"
#include "optim/optimizer.h"
#include "tricks/awp.h"
#include "tricks/fgm.h"
#include "tricks/freelb.h"
#include "tricks/pgd.h"

namespace minidl::tricks {

// R-1 persistent threads; replica 0 runs on the calling thread. run(fn) calls fn(r) for every r
// in parallel and returns when all are done; their exceptions are collected per replica. A
// thread of a CUDA replica makes its device current once, before any work (cuda::set_device);
// the calling thread's device is the caller's business and is left alone.
class DataParallel::Workers {
  public:
    explicit Workers(const std::vector<Device>& devices) : errors_(devices.size()) {
        for (int r = 1; r < static_cast<int>(devices.size()); ++r)
            threads_.emplace_back(
                [this, r, device = devices[static_cast<size_t>(r)]] { loop(r, device); });
    }
    ~Workers() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stop_ = true;
        }
        wake_.notify_all();
        for (auto& t : threads_)
            t.join();
    }

    // Runs fn on every replica; returns each replica's exception (null when it succeeded).
    std::vector<std::exception_ptr> run(const std::function<void(int)>& fn) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            job_ = &fn;
            busy_ = static_cast<int>(threads_.size());
            std::fill(errors_.begin(), errors_.end(), nullptr);
            ++generation_;
        }
        wake_.notify_all();
        std::exception_ptr mine;
        try {
            fn(0);
        } catch (...) {
            mine = std::current_exception();
        }
        std::unique_lock<std::mutex> lock(mutex_);
        done_.wait(lock, [&] { return busy_ == 0; });
        errors_[0] = mine;
        job_ = nullptr;
        return errors_;
    }

  private:
    void loop(int r, Device device) {
        // A failure here (the device vanished) is reported by every job this replica is given.
        std::exception_ptr setup_error;
        try {
            if (device.is_cuda()) cuda::set_device(device.index);
        } catch (...) {
            setup_error = std::current_exception();
        }
        uint64_t seen = 0;
        for (;;) {
            const std::function<void(int)>* job = nullptr;
            {
                std::unique_lock<std::mutex> lock(mutex_);
                wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
                if (stop_) return;
                seen = generation_;
                job = job_;
            }
            std::exception_ptr error = setup_error;
            if (!error) {
                try {
                    (*job)(r);
                } catch (...) {
                    error = std::current_exception();
                }
            }
            std::lock_guard<std::mutex> lock(mutex_);
            errors_[static_cast<size_t>(r)] = error;
            if (--busy_ == 0) done_.notify_one();
        }
    }

    std::vector<std::thread> threads_;
    std::mutex mutex_;
    std::condition_variable wake_, done_;
    const std::function<void(int)>* job_ = nullptr;
    uint64_t generation_ = 0;
    int busy_ = 0;
    bool stop_ = false;
    std::vector<std::exception_ptr> errors_;
};

namespace {

std::vector<Tensor> trainable(const nn::Module& m) {
    std::vector<Tensor> out;
    for (const auto& [name, p] : m.named_parameters())
        if (p.requires_grad()) out.push_back(p);
    return out;
}

// The most informative of the replicas' errors: the first that is not a CommError (a replica
// that failed on its own), else the first CommError (the others were woken by its abort).
void rethrow_first(const std::vector<std::exception_ptr>& errors) {
    std::exception_ptr comm_error;
    for (const auto& e : errors) {
        if (!e) continue;
        try {
            std::rethrow_exception(e);
        } catch (const CommError&) {
            if (!comm_error) comm_error = e;
        } catch (...) {
            std::rethrow_exception(e);
        }
    }
    if (comm_error) std::rethrow_exception(comm_error);
}

bool same_bytes(const Tensor& a, const Tensor& b) {
    NoGradGuard no_grad;
    const Tensor ha = a.detach().to(Device::cpu()), hb = b.detach().to(Device::cpu());
    return ha.dtype() == hb.dtype() && ha.shape() == hb.shape() &&
           (ha.nbytes() == 0 || std::memcmp(ha.data_ptr(), hb.data_ptr(), ha.nbytes()) == 0);
}

}  // namespace

DataParallel::DataParallel(nn::Module& model, DataParallelOptions options)
    : options_(std::move(options)) {
    const int R = static_cast<int>(options_.devices.size());
    MDL_CHECK(R >= 1, ValueError, "DataParallel: no devices");
    model.to(options_.devices[0]);
    // Replica 0 is the caller's model, not owned here.
    replicas_.push_back(std::shared_ptr<nn::Module>(&model, [](nn::Module*) {}));
    for (int r = 1; r < R; ++r) {
        std::shared_ptr<nn::Module> copy = model.clone();
        copy->to(options_.devices[static_cast<size_t>(r)]);
        replicas_.push_back(std::move(copy));
    }
    for (const auto& m : replicas_) {
        params_.push_back(trainable(*m));
        buffers_.push_back(m->buffers());
    }
    make_comms();
    workers_ = std::make_unique<Workers>(options_.devices);
    remember_versions();
}

DataParallel::~DataParallel() = default;

void DataParallel::make_comms() {
    const int R = num_replicas();
    bool distinct_gpus = true;
    std::vector<int> gpus;
    for (const Device& d : options_.devices) {
        if (!d.is_cuda()) distinct_gpus = false;
        for (int g : gpus)
            if (d.is_cuda() && g == d.index) distinct_gpus = false;
        gpus.push_back(d.index);
    }
    const bool use_nccl =
        options_.comm == ReplicaComm::NCCL ||
        (options_.comm == ReplicaComm::Auto && distinct_gpus && R > 1 && nccl::available());
    if (use_nccl) {
        MDL_CHECK(distinct_gpus, DeviceError,
                  "DataParallel: the NCCL communicator needs every replica on its own GPU; use "
                  "ReplicaComm::InProcess for CPU replicas or several replicas on one GPU");
        comms_ = nccl::init_all(gpus, options_.comm_options);
    } else {
        comms_ = make_in_process_group(R, options_.comm_options);
    }
}

nn::Module& DataParallel::replica(int r) {
    MDL_CHECK(r >= 0 && r < num_replicas(), IndexError, "DataParallel::replica: index ", r,
              " out of range for ", num_replicas(), " replicas");
    return *replicas_[static_cast<size_t>(r)];
}

Device DataParallel::device(int r) const {
    MDL_CHECK(r >= 0 && r < num_replicas(), IndexError, "DataParallel::device: index ", r,
              " out of range for ", num_replicas(), " replicas");
    return options_.devices[static_cast<size_t>(r)];
}

Communicator& DataParallel::comm(int r) {
    MDL_CHECK(r >= 0 && r < num_replicas(), IndexError, "DataParallel::comm: index ", r,
              " out of range for ", num_replicas(), " replicas");
    return *comms_[static_cast<size_t>(r)];
}

std::pair<int64_t, int64_t> DataParallel::shard(int r, int64_t n) const {
    const int64_t R = num_replicas();
    int64_t begin = 0;
    for (int64_t q = 0; q < r; ++q)
        begin += n / R + (q < n % R ? 1 : 0);
    return {begin, begin + n / R + (r < n % R ? 1 : 0)};
}

void DataParallel::run_parallel(const std::function<void(int)>& fn) {
    rethrow_first(workers_->run(fn));
}

template <typename Attack>
Attack* DataParallel::sibling(Attack* primary, int r, const char* field) const {
    if (primary == nullptr) return nullptr;
    auto it = attacks_.find(primary);
    MDL_CHECK(it != attacks_.end(), StateError, "DataParallel::train_step: config.", field,
              " was not made by DataParallel::make_attack; every replica needs its own attack "
              "on its own copy of the weights");
    return static_cast<Attack*>(it->second[static_cast<size_t>(r)].get());
}

StepResult DataParallel::train_step(TrainStepConfig& config, int64_t batch_size,
                                    const ReplicaLossFn& loss_fn) {
    // 4: the update half on the primary.
    StepResult result = apply_gradients(config, reduce_gradients(config, batch_size, loss_fn));

    // 5: the replicas take the primary's new weights.
    sync_replicas();
    if (options_.check_replicas)
        MDL_ASSERT(replicas_identical(), "DataParallel: a replica differs from the primary");
    return result;
}

StepResult DataParallel::reduce_gradients(TrainStepConfig& config, int64_t batch_size,
                                          const ReplicaLossFn& loss_fn) {
    MDL_CHECK(config.optimizer != nullptr, StateError, "DataParallel::train_step: no optimizer");
    MDL_CHECK(!config.sync_hook, StateError,
              "DataParallel::train_step: config.sync_hook must be empty (the replicas communicate "
              "once per step, after their last micro-batch)");
    MDL_CHECK(batch_size >= 1, ValueError, "DataParallel::train_step: empty batch (", batch_size,
              " samples)");
    const int R = num_replicas();
    std::vector<TrainStepConfig> configs(static_cast<size_t>(R), config);
    for (int r = 0; r < R; ++r) {
        TrainStepConfig& c = configs[static_cast<size_t>(r)];
        c.fgm = sibling(config.fgm, r, "fgm");
        c.pgd = sibling(config.pgd, r, "pgd");
        c.awp = sibling(config.awp, r, "awp");
        c.freelb = sibling(config.freelb, r, "freelb");
        // The update half is the primary's alone.
        c.optimizer = nullptr;
        c.ema = nullptr;
        c.scheduler = nullptr;
        c.read_loss = true;  // the replicas' losses are summed on the host below
    }
    if (comms_.front()->broken()) make_comms();  // an earlier step failed part-way
    if (primary_changed()) sync_replicas();

    // 1 + 2: the gradient half on every replica, in parallel, without communication.
    config.optimizer->zero_grad();
    std::vector<StepResult> parts(static_cast<size_t>(R));
    auto gradient_half = [&](int r) {
        replicas_[static_cast<size_t>(r)]->zero_grad();
        const auto [begin, end] = shard(r, batch_size);
        if (end == begin) return;  // fewer samples than replicas
        parts[static_cast<size_t>(r)] = accumulate_gradients(
            configs[static_cast<size_t>(r)], end - begin,
            [&](int64_t b, int64_t e) { return loss_fn(r, begin + b, begin + e); }, batch_size);
    };
    if (config.freelb) {
        // FreeLB replays the process-wide default generator between its passes (the same dropout
        // masks each pass): replicas doing that at once would race on it and on each other's
        // masks. With FreeLB the replicas therefore take turns, in replica order (deterministic).
        for (int r = 0; r < R; ++r)
            gradient_half(r);
    } else {
        run_parallel(gradient_half);
    }

    // A parameter that got a gradient on some replica needs one on all (zeros) for the
    // all-reduce; one that got none anywhere keeps none (the optimizer then skips it).
    const size_t P = params_.front().size();
    std::vector<size_t> reduced;
    for (size_t i = 0; i < P; ++i) {
        bool any = false;
        for (int r = 0; r < R; ++r)
            any = any || params_[static_cast<size_t>(r)][i].grad().defined();
        if (!any) continue;
        reduced.push_back(i);
        for (int r = 0; r < R; ++r) {
            const Tensor& p = params_[static_cast<size_t>(r)][i];
            if (!p.grad().defined()) p.set_grad(Tensor::zeros_like(p.detach()));
        }
    }

    // 3: sum of the gradients, in parallel (each replica drives its own rank).
    run_parallel([&](int r) {
        std::vector<Tensor> grads;
        for (size_t i : reduced)
            grads.push_back(params_[static_cast<size_t>(r)][i].grad());
        try {
            comms_[static_cast<size_t>(r)]->all_reduce(grads, CommOp::Sum);
        } catch (const CommError&) {
            throw;
        } catch (const std::exception& e) {
            comms_[static_cast<size_t>(r)]->abort(e.what());
            throw;
        }
    });

    StepResult total;
    for (const StepResult& part : parts) {
        total.loss += part.loss;
        total.overflow = total.overflow || part.overflow;
    }
    return total;
}

void DataParallel::sync_replicas() {
    run_parallel([&](int r) {
        if (r == 0) return;
        NoGradGuard no_grad;
        const auto& dst = params_[static_cast<size_t>(r)];
        for (size_t i = 0; i < dst.size(); ++i)
            dst[i].detach().copy_(params_.front()[i]);
        const auto& dst_buffers = buffers_[static_cast<size_t>(r)];
        for (size_t i = 0; i < dst_buffers.size(); ++i)
            dst_buffers[i].detach().copy_(buffers_.front()[i]);
    });
    remember_versions();
}

bool DataParallel::replicas_identical() const {
    for (size_t r = 1; r < replicas_.size(); ++r) {
        for (size_t i = 0; i < params_[r].size(); ++i)
            if (!same_bytes(params_[r][i], params_[0][i])) return false;
        for (size_t i = 0; i < buffers_[r].size(); ++i)
            if (!same_bytes(buffers_[r][i], buffers_[0][i])) return false;
    }
    return true;
}

// A tensor's memory and version identify its contents: copy_/load_state_dict bump the version,
// Module::to and set_data change the memory.
void DataParallel::remember_versions() {
    synced_versions_.clear();
    for (const auto* list : {&params_.front(), &buffers_.front()})
        for (const Tensor& t : *list)
            synced_versions_.emplace_back(t.data_ptr(), t.version());
}

bool DataParallel::primary_changed() const {
    size_t k = 0;
    for (const auto* list : {&params_.front(), &buffers_.front()})
        for (const Tensor& t : *list) {
            if (k >= synced_versions_.size() || synced_versions_[k].first != t.data_ptr() ||
                synced_versions_[k].second != t.version())
                return true;
            ++k;
        }
    return k != synced_versions_.size();
}

}  // namespace minidl::tricks
