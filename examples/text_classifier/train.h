// examples/text_classifier/train.h — the training loop: every trick one flag away, every step
// through tricks::train_step, and a state that can be saved and resumed bitwise.
//
// Per epoch e = 1..E:
//   order = data generator .randperm(N)                (the generator's state before the draw is
//                                                       the epoch's "data position")
//   for each batch of `batch` documents in that order:
//       train_step: zero_grad; K micro-batches (--accum) weighted n_j / N, each
//                   { autocast } loss = CE(model(batch), labels); backward (scaled)
//                   + the adversarial pass of FGM / PGD / FreeLB / AWP; clip; step (or skip on
//                   an AMP overflow); EMA update          (the order is tricks/train_step.h's)
//   if e >= swa_start: SWA average <- the weights (AveragedModel bound to the optimizer);
//                      SWALR anneals the lr to swa_lr over one epoch, then holds it
//   evaluate the evaluation weights on the test (and val) documents; checkpoint
// The bag model trains with Adam at a constant lr. The transformer (--model transformer) trains
// as BERT is fine-tuned: AdamW with weight decay on every parameter but biases and LayerNorm
// weights (two parameter groups, Hugging Face's rule, nn::takes_weight_decay), the lr warmed up
// linearly from 0 over the first W = floor(warmup * T) of the run's T optimizer steps and decayed
// linearly towards 0 after (Hugging Face's get_linear_schedule_with_warmup: the first step runs
// at lr 0), stepped after every optimizer step (AMP-skipped ones too, as Hugging Face's loop;
// not after a batch --on-nonfinite skip leaves out); with --swa-start, SWALR takes the lr over
// after that epoch.
// The evaluation weights are the SWA average once it has one, else the EMA shadow, else the
// live weights (SWA wins when both are on). update_bn is called on the average as the SWA recipe
// says; without BatchNorm it changes nothing.
//
// Randomness: the model is initialised from the default generator seeded with `seed`; the data
// order comes from a separate Generator(seed + kDataSeedOffset), so init and order are
// independent streams; FreeLB draws from its own generator (seeded with `seed`). All of it is in
// the checkpoint, so an interrupted run resumes bitwise (tests/examples/test_text_classifier.cpp).
// Stopping (Ctrl-C) is polled at step boundaries: the state is then a valid resume point.
//
// Non-finite values (without a loss scaler; with --amp f16 the GradScaler skips such steps
// itself): after each batch's backward passes, before the optimizer step, the loss (free: the
// step computes it) and every gradient (one read pass, row-sparse gradients as their rows:
// core/finite.h) are checked. --on-nonfinite stop (the default) throws NonFiniteError naming the
// epoch and the global step; skip leaves that batch out: no weight, Adam moment, EMA, SWA or
// schedule changes, its loss is left out of the epoch's mean, and it is counted
// (EpochRecord::nonfinite_skipped). Under --replicas and --distributed the check reads the reduced
// gradient and the averaged loss (DataParallel / DistributedDataParallel::reduce_gradients), the
// same on every replica and rank, so all of them stop or skip alike.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/device.h"
#include "core/rng.h"
#include "core/state_dict.h"
#include "examples/text_classifier/dataset.h"
#include "examples/text_classifier/evaluate.h"
#include "examples/text_classifier/model.h"

namespace minidl::optim {
class Adam;
class LRScheduler;
class LinearWarmupDecay;
}  // namespace minidl::optim
namespace minidl::amp {
class GradScaler;
}
namespace minidl::tricks {
class FGM;
class PGD;
class FreeLB;
class AWP;
class EMA;
class AveragedModel;
class DataParallel;
class DistributedDataParallel;
}  // namespace minidl::tricks

namespace textclf {

inline constexpr uint64_t kDataSeedOffset = 0x9E3779B97F4A7C15ull;  // 2^64 / golden ratio

struct TrainConfig {
    int64_t epochs = 5;
    int64_t batch = 32;  // the effective batch: samples per optimizer step
    double lr = 1e-3;    // Adam
    uint64_t seed = 0;
    std::string device = "cpu";     // "cpu", "cuda", "cuda:N"
    std::string model = "bag";      // "bag" or "transformer" (model.h)
    int64_t dim = 64, hidden = 64;  // bag: embedding and MLP widths; transformer: hidden (128)
    // Transformer only (BERT-Tiny's shape; the [CLS] ... [SEP] cap; AdamW and its schedule;
    // activation checkpointing of every encoder layer, tricks/checkpoint.h).
    int64_t layers = 2, heads = 2, intermediate = 512, max_len = 128;
    double warmup = 0.1, weight_decay = 0.01;
    bool checkpoint_activations = false;
    // Adversarial training (at most one): FGM epsilon (0 = off), PGD, FreeLB, AWP.
    double fgm = 0.0;
    bool pgd = false;
    double pgd_eps = 1.0, pgd_alpha = 0.3;
    int64_t pgd_steps = 3;
    bool freelb = false;
    int64_t freelb_steps = 2;
    double freelb_lr = 0.1, freelb_init = 0.6, freelb_max_norm = 0.0;
    bool awp = false;
    double awp_lr = 1.0, awp_eps = 0.01;
    // Weight averaging: EMA decay (0 = off), SWA from the end of epoch swa_start (0 = off).
    double ema = 0.0;
    bool ema_warmup = false;
    int64_t swa_start = 0;
    std::optional<double> swa_lr;  // default: lr (a constant lr through the averaging)
    // Speed / memory: AMP ("", "f16" = autocast F16 + GradScaler, "bf16" = autocast BF16),
    // micro-batches per step, gradient-norm clipping (0 = off).
    std::string amp;
    int64_t accum = 1;
    double clip = 0.0;
    // Data parallelism: --replicas N copies of the model in this process, one thread each
    // (tricks/data_parallel.h; on GPUs one per device from --device on), or --distributed: one
    // rank per process under mpirun, each training on its 1/N of every batch
    // (tricks/distributed.h). At most one of the two.
    int64_t replicas = 1;
    bool distributed = false;
    int64_t eval_batch = 512;
    // What a non-finite loss or gradient does (see the top of this file): "stop" or "skip".
    std::string on_nonfinite = "stop";
};

// Throws ValueError naming the flag for an impossible combination or value.
void validate(const TrainConfig& config);
// The model's kind and shape (vocabulary and classes from the data).
ModelConfig model_config(const TrainConfig& config, int64_t vocab, int64_t classes);
// The input format the config's model reads.
InputFormat input_format(const TrainConfig& config);
nlohmann::json to_json(const TrainConfig& config);
TrainConfig train_config_from_json(const nlohmann::json& j);
// "baseline", or the tricks joined by '+': "fgm(eps=1)+ema(0.999)".
std::string describe_tricks(const TrainConfig& config);
// Device::parse, with a clear error when CUDA is asked for but unusable.
minidl::Device resolve_device(const std::string& name);

struct EpochRecord {
    int64_t epoch = 0;  // 1-based
    double loss = 0;    // mean clean training loss over the epoch's samples
    double time_s = 0;  // training time of the epoch (evaluation excluded)
    double samples_per_s = 0;
    int64_t steps = 0, skipped_steps = 0;  // skipped: AMP overflow or a non-finite batch
    int64_t nonfinite_skipped = 0;         // of those, batches skipped by --on-nonfinite skip
    double lr = 0;                         // the lr at the end of the epoch
    double test_loss = 0, test_accuracy = 0, test_macro_f1 = 0;  // evaluation weights
    std::optional<double> val_accuracy;
};
nlohmann::json to_json(const EpochRecord& r);
EpochRecord epoch_record_from_json(const nlohmann::json& j);

class ProgressBar;

struct TrainHooks {
    std::function<bool()> should_stop;  // polled before every step
    std::function<void()> checkpoint;   // after every epoch, and when stopping
    ProgressBar* progress = nullptr;
    // Applied to every micro-batch's loss before backward (a test seam: inject a NaN).
    std::function<minidl::Tensor(const minidl::Tensor& loss)> map_loss;
};

class Trainer {
  public:
    // `init_from`: a weights file (model.safetensors) loaded before the tricks register the
    // weights (the EMA shadow starts from it).
    Trainer(TrainConfig config, const PreparedData& data, const std::string& init_from = "");
    ~Trainer();
    Trainer(const Trainer&) = delete;
    Trainer& operator=(const Trainer&) = delete;

    // Trains up to config.epochs. Returns false when hooks.should_stop() ended it early (the
    // state is then a resume point), true when every epoch is done.
    bool run(const TrainHooks& hooks = {});

    // The weights to evaluate and publish (see the top of this file). The live model itself when
    // no averaging is on; otherwise a fresh copy.
    std::shared_ptr<TextClassifier> evaluation_model();
    TextClassifier& model() { return *model_; }
    const TrainConfig& config() const { return config_; }
    minidl::Device device() const { return device_; }
    const DocTensors& test_docs() const { return test_; }
    const DocTensors& val_docs() const { return val_; }

    const std::vector<EpochRecord>& history() const { return history_; }
    // (epoch fraction, mean loss over the window) points, about 10 per epoch.
    const std::vector<std::pair<double, double>>& loss_curve() const { return curve_; }
    int64_t epochs_done() const { return epoch_; }
    int64_t global_step() const { return global_step_; }
    double train_s() const;  // the training time of the finished epochs
    // Host synchronisations with the GPU per training step, batch upload included, over the steps
    // of this process (0 on the CPU; core/backend.h's cuda::host_syncs says what counts).
    double host_syncs_per_step() const {
        return counted_steps_ > 0
                   ? static_cast<double>(step_host_syncs_) / static_cast<double>(counted_steps_)
                   : 0.0;
    }

    // Everything a resumed run needs (see checkpoint.h for the file): model, optimizer, tricks,
    // generators, position, history. Tensors alias the live state: save before training on.
    minidl::StateDict state_dict() const;
    void load_state_dict(const minidl::StateDict& state);

  private:
    void run_epoch(const TrainHooks& hooks, bool& stopped);
    void finish_epoch(const TrainHooks& hooks);

    TrainConfig config_;
    const PreparedData* data_;
    minidl::Device device_;
    std::shared_ptr<TextClassifier> model_;
    std::unique_ptr<minidl::optim::Adam> optimizer_;              // AdamW for the transformer
    std::unique_ptr<minidl::optim::LinearWarmupDecay> schedule_;  // the transformer's
    // Data parallelism (null unless --replicas N > 1 / --distributed).
    std::unique_ptr<minidl::tricks::DataParallel> dp_;
    std::unique_ptr<minidl::tricks::DistributedDataParallel> ddp_;
    // Shared with dp_, which gives every replica its own copy.
    std::shared_ptr<minidl::tricks::FGM> fgm_;
    std::shared_ptr<minidl::tricks::PGD> pgd_;
    std::shared_ptr<minidl::tricks::FreeLB> freelb_;
    std::shared_ptr<minidl::tricks::AWP> awp_;
    std::vector<minidl::tricks::FreeLB*> freelb_replicas_;  // [0] is freelb_; one per replica
    std::unique_ptr<minidl::tricks::EMA> ema_;
    std::unique_ptr<minidl::tricks::AveragedModel> swa_;
    std::unique_ptr<minidl::optim::LRScheduler> swa_lr_;
    std::unique_ptr<minidl::amp::GradScaler> scaler_;
    DocTensors test_, val_;

    minidl::Generator data_gen_;
    minidl::Generator::State epoch_gen_state_{};
    int64_t epoch_ = 0;        // epochs completed
    int64_t batch_ = 0;        // next batch of the current epoch
    int64_t global_step_ = 0;  // train_step calls
    // The current epoch so far (saved so that a mid-epoch resume ends with the same record).
    double epoch_loss_sum_ = 0, epoch_time_ = 0;
    int64_t epoch_samples_ = 0, epoch_steps_ = 0, epoch_skipped_ = 0, epoch_nonfinite_ = 0;
    uint64_t step_host_syncs_ = 0;  // not checkpointed: a figure of this process
    int64_t counted_steps_ = 0;
    double window_sum_ = 0;
    int64_t window_n_ = 0;
    std::vector<EpochRecord> history_;
    std::vector<std::pair<double, double>> curve_;
};

}  // namespace textclf
