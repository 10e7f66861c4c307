// examples/text_classifier/train.cpp — see train.h.
#include "examples/text_classifier/train.h"

#include <chrono>
#include <cmath>
#include <optional>
#include <sstream>

#include "core/backend.h"
#include "core/check.h"
#include "core/comm.h"
#include "core/finite.h"
#include "examples/text_classifier/progress.h"
#include "nn/bert.h"
#include "ops/loss.h"
#include "optim/adam.h"
#include "optim/adamw.h"
#include "optim/lr_scheduler.h"
#include "optim/optimizer.h"
#include "tricks/amp.h"
#include "tricks/awp.h"
#include "tricks/data_parallel.h"
#include "tricks/distributed.h"
#include "tricks/ema.h"
#include "tricks/fgm.h"
#include "tricks/freelb.h"
#include "tricks/pgd.h"
#include "tricks/swa.h"
#include "tricks/train_step.h"

namespace textclf {

using minidl::Device;
using minidl::DType;
using minidl::StateDict;
using minidl::Tensor;
using minidl::ValueError;
using json = nlohmann::json;
namespace tricks = minidl::tricks;

// ---- the trainer ------------------------------------------------------------------------------

namespace {
// An adversarial trick for the model, or under --replicas one per replica (each attacks its own
// copy with its own shard's gradient); `make` builds one for a given copy of the model.
template <typename Attack>
std::shared_ptr<Attack> make_attack(
    tricks::DataParallel* dp, minidl::nn::Module& model,
    const std::function<std::unique_ptr<Attack>(minidl::nn::Module&)>& make) {
    return dp ? dp->make_attack<Attack>(make) : std::shared_ptr<Attack>(make(model));
}

// What of a step is not finite: "" when everything is, else "loss (nan)", "gradient", ... When
// the step left its loss on the device (loss_on_device), it is read into r.loss here, in the same
// transfer as the gradients' check: one wait for the GPU instead of two.
std::string nonfinite_part(tricks::StepResult& r, bool loss_on_device,
                           const std::vector<Tensor>& params) {
    std::optional<bool> grads_finite;
    if (loss_on_device && r.loss_tensor.defined())
        grads_finite = minidl::grads_all_finite(params, r.loss_tensor, r.loss);
    if (std::isnan(r.loss)) return "loss (NaN)";
    if (std::isinf(r.loss)) return r.loss > 0 ? "loss (inf)" : "loss (-inf)";
    if (r.overflow) return "gradient (met by the adversarial attack)";
    if (!(grads_finite ? *grads_finite : minidl::grads_all_finite(params))) return "gradient";
    return "";
}
}  // namespace

Trainer::Trainer(TrainConfig config, const PreparedData& data, const std::string& init_from)
    : config_(std::move(config)),
      data_(&data),
      device_(resolve_device(config_.device)),
      data_gen_(config_.seed + kDataSeedOffset) {
    validate(config_);
    MDL_CHECK(data.train.size() > 0, ValueError, "Trainer: no training documents");
    const ModelConfig mc =
        model_config(config_, data.vocab.size(), static_cast<int64_t>(data.classes().size()));
    const bool transformer = mc.kind == ModelKind::Transformer;
    MDL_CHECK(data.format.bert == transformer, ValueError, "Trainer: the data was prepared for ",
              data.format.bert ? "the transformer" : "the bag model", ", not for --model ",
              config_.model);
    MDL_CHECK(!transformer || data.format.max_len == config_.max_len, ValueError,
              "Trainer: the data was encoded with max_len ", data.format.max_len,
              ", not --max-len ", config_.max_len);
    minidl::manual_seed(config_.seed);  // PyTorch's torch.manual_seed(seed); Model(...)
    model_ = make_model(mc);
    if (!init_from.empty()) load_weights(*model_, init_from);
    // --distributed on GPUs: rank k of a machine drives its k-th GPU (unless --device cuda:N).
    if (config_.distributed && device_.is_cuda() && config_.device == "cuda")
        device_ = Device::cuda(minidl::launch_local_rank() % minidl::cuda::device_count());
    // A rank drives one GPU: it becomes this thread's device before anything is allocated there,
    // so that no device guard ever switches the process back to GPU 0 (and creates a context on
    // it in every rank).
    if (config_.distributed && device_.is_cuda()) minidl::cuda::set_device(device_.index);
    model_->to(device_);
    if (config_.replicas > 1) {  // replica r on the r-th device from --device on
        std::vector<Device> devices;
        for (int64_t r = 0; r < config_.replicas; ++r)
            devices.push_back(device_.is_cpu()
                                  ? device_
                                  : Device::cuda(static_cast<int>((device_.index + r) %
                                                                  minidl::cuda::device_count())));
        dp_ = std::make_unique<tricks::DataParallel>(
            *model_, tricks::DataParallelOptions{.devices = devices});
    }
    if (config_.distributed) {  // MPI between the processes; NCCL between their GPUs
        std::shared_ptr<minidl::Communicator> comm = minidl::mpi::world();
        if (device_.is_cuda()) comm = minidl::nccl::init_rank(*comm, device_.index);
        ddp_ = std::make_unique<tricks::DistributedDataParallel>(*model_, comm);
        MDL_CHECK(config_.batch % ddp_->world_size() == 0, ValueError, "--batch ", config_.batch,
                  " must be a multiple of the number of processes, ", ddp_->world_size());
    }
    if (transformer) {
        // Hugging Face's fine-tuning groups: decay everything but biases and LayerNorm weights.
        std::vector<Tensor> decay, plain;
        for (const auto& [name, p] : model_->named_parameters())
            (minidl::nn::takes_weight_decay(name) ? decay : plain).push_back(p);
        optimizer_ = std::make_unique<minidl::optim::AdamW>(
            std::vector<minidl::optim::ParamGroupOptions>{
                {decay, std::nullopt, config_.weight_decay}, {plain, std::nullopt, 0.0}},
            minidl::optim::AdamWOptions{.lr = config_.lr, .weight_decay = config_.weight_decay});
    } else {
        optimizer_ = std::make_unique<minidl::optim::Adam>(
            model_->parameters(), minidl::optim::AdamOptions{.lr = config_.lr});
    }
    // The adversarial tricks' target table: the write-up's `word_embeddings` for the
    // transformer (not its position and token-type tables), the bag's `embedding`.
    const tricks::ParamFilter table{.contains = transformer ? "word_embeddings" : "embedding"};
    using minidl::nn::Module;
    if (config_.fgm > 0)
        fgm_ = make_attack<tricks::FGM>(dp_.get(), *model_, [&](Module& m) {
            return std::make_unique<tricks::FGM>(
                m, tricks::FGMOptions{.epsilon = config_.fgm, .filter = table});
        });
    if (config_.pgd)
        pgd_ = make_attack<tricks::PGD>(dp_.get(), *model_, [&](Module& m) {
            return std::make_unique<tricks::PGD>(
                m, tricks::PGDOptions{.epsilon = config_.pgd_eps,
                                      .alpha = config_.pgd_alpha,
                                      .steps = static_cast<int>(config_.pgd_steps),
                                      .filter = table});
        });
    if (config_.freelb)
        freelb_ = make_attack<tricks::FreeLB>(dp_.get(), *model_, [&](Module& m) {
            // Under --replicas one per replica, in replica order. Each draws its own noise (seed
            // + r; with one seed, equal shards would get equal delta_0), and each generator is
            // part of the checkpoint.
            const auto r = static_cast<uint64_t>(freelb_replicas_.size());
            const tricks::FreeLBOptions options{.steps = static_cast<int>(config_.freelb_steps),
                                                .adv_lr = config_.freelb_lr,
                                                .init_mag = config_.freelb_init,
                                                .max_norm = config_.freelb_max_norm,
                                                .seed = config_.seed + r};
            // The bag model: per bag, on the mean embedding; the transformer: per token, on
            // the word embeddings' output.
            auto attack =
                transformer
                    ? std::make_unique<tricks::FreeLB>(
                          dynamic_cast<TransformerClassifier&>(m).word_embeddings(), options)
                    : std::make_unique<tricks::FreeLB>(*dynamic_cast<BagClassifier&>(m).embedding,
                                                       options);
            freelb_replicas_.push_back(attack.get());
            return attack;
        });
    if (config_.awp)
        awp_ = make_attack<tricks::AWP>(dp_.get(), *model_, [&](Module& m) {
            return std::make_unique<tricks::AWP>(
                m, tricks::AWPOptions{.adv_lr = config_.awp_lr, .adv_eps = config_.awp_eps});
        });
    if (config_.ema > 0)
        ema_ = std::make_unique<tricks::EMA>(
            *model_,
            tricks::EMAOptions{
                .decay = config_.ema, .warmup = config_.ema_warmup, .optimizer = optimizer_.get()});
    if (config_.swa_start > 0) {
        swa_ = std::make_unique<tricks::AveragedModel>(*model_, tricks::AveragedModel::AverageFn{},
                                                       optimizer_.get());
        // One epoch of annealing: the epochs after swa_start train at swa_lr.
        swa_lr_ = std::make_unique<tricks::SWALR>(
            *optimizer_, tricks::SWALROptions{.swa_lr = config_.swa_lr.value_or(config_.lr),
                                              .anneal_epochs = 1});
    }
    if (config_.amp == "f16") scaler_ = std::make_unique<minidl::amp::GradScaler>();
    if (transformer) {
        // T optimizer steps in the whole run (every rank takes the same number), W of warm-up.
        const int64_t docs = ddp_
                                 ? (data.train.size() + ddp_->world_size() - 1) / ddp_->world_size()
                                 : data.train.size();
        const int64_t per_step = ddp_ ? config_.batch / ddp_->world_size() : config_.batch;
        const int64_t total = config_.epochs * ((docs + per_step - 1) / per_step);
        const auto warmup =
            static_cast<int64_t>(std::floor(config_.warmup * static_cast<double>(total)));
        schedule_ = std::make_unique<minidl::optim::LinearWarmupDecay>(
            *optimizer_,
            minidl::optim::LinearWarmupDecayOptions{.warmup_steps = warmup, .total_steps = total});
    }
    epoch_gen_state_ = data_gen_.state();
    const int64_t K = mc.classes;
    test_ = to_doc_tensors(data.test, device_, K, transformer);
    val_ = to_doc_tensors(data.val, device_, K, transformer);
}

Trainer::~Trainer() = default;

double Trainer::train_s() const {
    double s = 0;
    for (const auto& r : history_)
        s += r.time_s;
    return s;
}

std::shared_ptr<TextClassifier> Trainer::evaluation_model() {
    if (swa_ && swa_->n_averaged() > 0) {
        // BatchNorm statistics of the average would be recomputed here; this model has none.
        TextClassifier& avg = swa_->module_as<TextClassifier>();
        tricks::update_bn(avg, [&] {
            for (int64_t b = 0; b < data_->train.size(); b += config_.eval_batch) {
                ModelBatch mb;
                std::vector<int64_t> rows;
                for (int64_t r = b; r < std::min(data_->train.size(), b + config_.eval_batch); ++r)
                    rows.push_back(r);
                gather_batch(data_->train, rows, device_, mb, data_->format.bert);
                avg.forward(mb.slice(0, mb.size));
            }
        });
        return minidl::nn::clone(avg);
    }
    if (ema_) {
        auto swapped = ema_->apply_shadow();
        return minidl::nn::clone(*model_);
    }
    return model_;
}

bool Trainer::run(const TrainHooks& hooks) {
    while (epoch_ < config_.epochs) {
        bool stopped = false;
        run_epoch(hooks, stopped);
        if (stopped) {
            if (hooks.checkpoint) hooks.checkpoint();
            return false;
        }
        finish_epoch(hooks);
    }
    return true;
}

void Trainer::run_epoch(const TrainHooks& hooks, bool& stopped) {
    const EncodedDocs& train = data_->train;
    // The epoch's order: drawn from the state saved when the previous epoch ended (or at
    // construction), so a run resumed anywhere in this epoch redraws the same order.
    data_gen_.set_state(epoch_gen_state_);
    std::vector<int64_t> order = data_gen_.randperm(train.size());
    // --distributed: this rank's even shard of the order (every rank the same number of
    // samples, hence of steps) and its 1/N of every batch.
    int64_t batch = config_.batch;
    if (ddp_) {
        order = tricks::DistributedSampler::shard(order, ddp_->rank(), ddp_->world_size());
        batch /= ddp_->world_size();
    }
    const auto N = static_cast<int64_t>(order.size());
    const int64_t num_batches = (N + batch - 1) / batch;
    const int64_t window = std::max<int64_t>(1, num_batches / 10);

    tricks::TrainStepConfig step;
    step.optimizer = optimizer_.get();
    step.fgm = fgm_.get();
    step.pgd = pgd_.get();
    step.awp = awp_.get();
    step.freelb = freelb_.get();
    step.scaler = scaler_.get();
    step.accum_steps = config_.accum;
    step.clip_norm = config_.clip;
    step.ema = ema_.get();
    if (!config_.amp.empty()) step.autocast = config_.amp == "f16" ? DType::F16 : DType::BF16;
    // Without a scaler or replicas, the loss stays on the device until the non-finite check reads
    // it with the gradients' flag (nonfinite_part).
    step.read_loss = scaler_ != nullptr || dp_ || ddp_;
    model_->train();
    if (hooks.progress) hooks.progress->begin_epoch(epoch_ + 1, config_.epochs, N, epoch_samples_);

    ModelBatch mb;
    auto loss_fn = [&](int64_t begin, int64_t end) {
        const ModelBatch::Slice s = mb.slice(begin, end);
        // FreeLB on the transformer: delta_0 zero at padding, scaled by the real length.
        if (freelb_ && s.mask.defined()) freelb_->set_token_mask(s.mask);
        Tensor loss = minidl::cross_entropy(model_->forward(s), s.labels);
        return hooks.map_loss ? hooks.map_loss(loss) : loss;
    };
    // --replicas: replica r's forward on its samples, called from its own thread.
    auto replica_loss_fn = [&](int r, int64_t begin, int64_t end) {
        const ModelBatch::Slice s = mb.slice(begin, end);
        const Device d = dp_->device(r);
        if (!freelb_replicas_.empty() && s.mask.defined())
            freelb_replicas_[static_cast<size_t>(r)]->set_token_mask(s.mask.to(d));
        Tensor loss =
            minidl::cross_entropy(dp_->replica<TextClassifier>(r).forward(s.to(d)), s.labels.to(d));
        return hooks.map_loss ? hooks.map_loss(loss) : loss;
    };
    auto t0 = std::chrono::steady_clock::now();
    for (; batch_ < num_batches; ++batch_) {
        if (hooks.should_stop && hooks.should_stop()) {
            stopped = true;
            break;
        }
        const int64_t start = batch_ * batch;
        const int64_t len = std::min(batch, N - start);
        const minidl::cuda::HostSyncScope syncs;  // the CPU's waits for the GPU in this step
        gather_batch(train, std::span<const int64_t>(order).subspan(start, len), device_, mb,
                     data_->format.bert);
        tricks::StepResult r;
        std::string nonfinite;  // what was not finite ("" when all was)
        if (scaler_) {          // the scaler skips non-finite steps itself
            r = ddp_  ? ddp_->train_step(step, mb.size, loss_fn)
                : dp_ ? dp_->train_step(step, mb.size, replica_loss_fn)
                      : tricks::train_step(step, mb.size, loss_fn);
        } else {
            // train_step's two halves (tricks/train_step.h) with the check between them, so that
            // a skipped batch reaches no weight, moment, EMA or schedule. Under data parallelism
            // the first half ends with the reduction: every replica or rank checks the same
            // reduced gradient and loss, so all of them skip, or stop, alike.
            if (ddp_) {
                r = ddp_->reduce_gradients(step, mb.size, loss_fn);
            } else if (dp_) {
                r = dp_->reduce_gradients(step, mb.size, replica_loss_fn);
            } else {
                optimizer_->zero_grad();
                r = tricks::accumulate_gradients(step, mb.size, loss_fn);
            }
            nonfinite = nonfinite_part(r, !step.read_loss, optimizer_->parameters());
            if (nonfinite.empty()) {
                r = tricks::apply_gradients(step, r);
                if (dp_) dp_->sync_replicas();  // the replicas take the primary's new weights
            }
        }
        // The warm-up schedule follows the optimizer steps until SWALR takes over the lr.
        if (schedule_ && nonfinite.empty() && !(swa_ && epoch_ >= config_.swa_start))
            schedule_->step();
        ++global_step_;
        ++epoch_steps_;
        step_host_syncs_ += syncs.count();
        ++counted_steps_;
        if (!r.stepped) ++epoch_skipped_;
        if (!nonfinite.empty()) {
            MDL_CHECK(config_.on_nonfinite == "skip", minidl::NonFiniteError, "non-finite ",
                      nonfinite, " at epoch ", epoch_ + 1, ", global step ", global_step_,
                      " (batch ", batch_ + 1, " of ", num_batches,
                      "): training stopped; no checkpoint or model is written from this state "
                      "(--on-nonfinite skip skips such batches instead)");
            ++epoch_nonfinite_;
            optimizer_->zero_grad();  // leave no NaN behind in .grad()
        } else {
            epoch_loss_sum_ += r.loss * static_cast<double>(len);
            epoch_samples_ += len;
            window_sum_ += r.loss;
            ++window_n_;
        }
        if (window_n_ > 0 && (window_n_ == window || batch_ + 1 == num_batches)) {
            const double x = static_cast<double>(epoch_) +
                             static_cast<double>(batch_ + 1) / static_cast<double>(num_batches);
            curve_.emplace_back(x, window_sum_ / static_cast<double>(window_n_));
            window_sum_ = 0;
            window_n_ = 0;
        }
        if (hooks.progress) {
            const double elapsed =
                epoch_time_ +
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            hooks.progress->update(
                epoch_samples_,
                epoch_samples_ > 0 ? epoch_loss_sum_ / static_cast<double>(epoch_samples_) : 0.0,
                elapsed);
        }
    }
    epoch_time_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void Trainer::finish_epoch(const TrainHooks& hooks) {
    EpochRecord r;
    r.epoch = epoch_ + 1;
    r.loss = epoch_samples_ > 0 ? epoch_loss_sum_ / static_cast<double>(epoch_samples_) : 0.0;
    r.time_s = epoch_time_;
    r.samples_per_s = epoch_time_ > 0 ? static_cast<double>(epoch_samples_) / epoch_time_ : 0.0;
    r.steps = epoch_steps_;
    r.skipped_steps = epoch_skipped_;
    r.nonfinite_skipped = epoch_nonfinite_;
    if (swa_ && r.epoch >= config_.swa_start) {
        swa_->update_parameters(*model_);
        swa_lr_->step();
    }
    r.lr = optimizer_->param_groups()[0].lr;
    std::shared_ptr<TextClassifier> eval_model = evaluation_model();
    const Metrics test = evaluate(*eval_model, test_, config_.eval_batch);
    r.test_loss = test.loss;
    r.test_accuracy = test.accuracy;
    r.test_macro_f1 = test.macro_f1;
    if (val_.size() > 0) r.val_accuracy = evaluate(*eval_model, val_, config_.eval_batch).accuracy;
    history_.push_back(r);
    ++epoch_;
    batch_ = 0;
    epoch_gen_state_ = data_gen_.state();
    epoch_loss_sum_ = epoch_time_ = 0;
    epoch_samples_ = epoch_steps_ = epoch_skipped_ = epoch_nonfinite_ = 0;
    if (hooks.progress) hooks.progress->end_epoch(r);
    if (hooks.checkpoint) hooks.checkpoint();
}

// ---- state ------------------------------------------------------------------------------------

namespace {

void put_generator(StateDict& sd, const std::string& key, const minidl::Generator::State& s) {
    sd.metadata[key + ".seed"] = std::to_string(s.seed);
    sd.metadata[key + ".offset"] = std::to_string(s.offset);
}

// rng.freelb (replica 0's, the only one without --replicas), rng.freelb.1 ... (the others').
std::string freelb_generator_key(size_t replica) {
    std::string key = "rng.freelb";
    if (replica > 0) {
        key += '.';
        key += std::to_string(replica);
    }
    return key;
}

minidl::Generator::State get_generator(const StateDict& sd, const std::string& key) {
    return {std::stoull(sd.meta(key + ".seed")), std::stoull(sd.meta(key + ".offset"))};
}

}  // namespace

StateDict Trainer::state_dict() const {
    using minidl::optim::format_double;
    StateDict sd;
    sd.merge(model_->state_dict(), "model.");
    sd.merge(optimizer_->state_dict(), "optimizer.");
    if (ema_) sd.merge(ema_->state_dict(), "ema.");
    if (swa_) {
        sd.merge(swa_->state_dict(), "swa.");
        sd.merge(swa_lr_->state_dict(), "swa_lr.");
    }
    if (scaler_) sd.merge(scaler_->state_dict(), "scaler.");
    if (schedule_) sd.merge(schedule_->state_dict(), "schedule.");
    put_generator(sd, "rng.default", minidl::default_generator().state());
    put_generator(sd, "rng.data", data_gen_.state());
    put_generator(sd, "rng.epoch", epoch_gen_state_);
    for (size_t r = 0; r < freelb_replicas_.size(); ++r)
        put_generator(sd, freelb_generator_key(r), freelb_replicas_[r]->generator().state());
    auto& m = sd.metadata;
    m["position.epoch"] = std::to_string(epoch_);
    m["position.batch"] = std::to_string(batch_);
    m["position.global_step"] = std::to_string(global_step_);
    m["epoch.loss_sum"] = format_double(epoch_loss_sum_);
    m["epoch.time_s"] = format_double(epoch_time_);
    m["epoch.samples"] = std::to_string(epoch_samples_);
    m["epoch.steps"] = std::to_string(epoch_steps_);
    m["epoch.skipped"] = std::to_string(epoch_skipped_);
    m["epoch.nonfinite"] = std::to_string(epoch_nonfinite_);
    m["curve.window_sum"] = format_double(window_sum_);
    m["curve.window_n"] = std::to_string(window_n_);
    json hist = json::array(), curve = json::array();
    for (const auto& r : history_)
        hist.push_back(to_json(r));
    // Curve values as exact text, so that a resumed run's record matches bit for bit.
    for (const auto& [x, y] : curve_)
        curve.push_back({format_double(x), format_double(y)});
    m["history"] = hist.dump();
    m["curve"] = curve.dump();
    m["config"] = to_json(config_).dump();
    return sd;
}

void Trainer::load_state_dict(const StateDict& sd) {
    using minidl::optim::parse_double;
    // Checked first: a checkpoint of another configuration would load but train differently.
    TrainConfig saved = train_config_from_json(json::parse(sd.meta("config", "checkpoint")));
    // The device and the evaluation batch do not change the trajectory (a GPU checkpoint
    // resumes on a CPU); everything else must match.
    saved.device = config_.device;
    saved.eval_batch = config_.eval_batch;
    saved.on_nonfinite = config_.on_nonfinite;  // a finite run is the same under either policy
    const json saved_json = to_json(saved), ours = to_json(config_);
    if (saved_json != ours) {
        std::string key;  // the first setting that differs, by name
        for (const auto& [k, v] : saved_json.items())
            if (key.empty() && (!ours.contains(k) || ours[k] != v)) key = k;
        for (const auto& [k, v] : ours.items())
            if (key.empty() && !saved_json.contains(k)) key = k;
        throw minidl::StateError(minidl::detail::concat(
            "Trainer::load_state_dict: the checkpoint was written with another configuration: ",
            key, " is ", saved_json.value(key, json()).dump(), " in the checkpoint and ",
            ours.value(key, json()).dump(), " in this run (checkpoint: ", saved_json.dump(), ")"));
    }
    model_->load_state_dict(sd.sub("model."));
    optimizer_->load_state_dict(sd.sub("optimizer."));
    if (ema_) ema_->load_state_dict(sd.sub("ema."));
    if (swa_) {
        swa_->load_state_dict(sd.sub("swa."));
        swa_lr_->load_state_dict(sd.sub("swa_lr."));
    }
    if (scaler_) scaler_->load_state_dict(sd.sub("scaler."));
    if (schedule_) schedule_->load_state_dict(sd.sub("schedule."));
    minidl::default_generator().set_state(get_generator(sd, "rng.default"));
    data_gen_.set_state(get_generator(sd, "rng.data"));
    epoch_gen_state_ = get_generator(sd, "rng.epoch");
    for (size_t r = 0; r < freelb_replicas_.size(); ++r)
        freelb_replicas_[r]->generator().set_state(get_generator(sd, freelb_generator_key(r)));
    auto i64 = [&](const char* key) { return std::stoll(sd.meta(key, "checkpoint")); };
    auto f64 = [&](const char* key) { return parse_double(sd.meta(key, "checkpoint"), key); };
    epoch_ = i64("position.epoch");
    batch_ = i64("position.batch");
    global_step_ = i64("position.global_step");
    epoch_loss_sum_ = f64("epoch.loss_sum");
    epoch_time_ = f64("epoch.time_s");
    epoch_samples_ = i64("epoch.samples");
    epoch_steps_ = i64("epoch.steps");
    epoch_skipped_ = i64("epoch.skipped");
    epoch_nonfinite_ = sd.metadata.count("epoch.nonfinite") ? i64("epoch.nonfinite") : 0;
    window_sum_ = f64("curve.window_sum");
    window_n_ = i64("curve.window_n");
    history_.clear();
    for (const auto& r : json::parse(sd.meta("history", "checkpoint")))
        history_.push_back(epoch_record_from_json(r));
    curve_.clear();
    for (const auto& p : json::parse(sd.meta("curve", "checkpoint")))
        curve_.emplace_back(parse_double(p.at(0).get<std::string>(), "curve"),
                            parse_double(p.at(1).get<std::string>(), "curve"));
}

}  // namespace textclf
