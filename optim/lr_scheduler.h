// optim/lr_scheduler.h — learning-rate schedules that set the lr of an optimizer's groups, as
// torch.optim.lr_scheduler (PyTorch 1.13, torch/optim/lr_scheduler.py).
//
// Protocol (PyTorch's): constructing a schedule records each group's current lr as its base lr
// and sets the lr for epoch 0; each step() — called after optimizer.step() — advances the epoch
// counter and sets the lr for the new epoch. get_last_lr() is what the last step set.
//   StepLR(step_size, gamma):     lr_e = base * gamma^floor(e / step_size)
//                                 (computed as PyTorch does: multiply the current lr by gamma
//                                 every step_size epochs)
//   CosineAnnealingLR(T_max, eta_min):  SGDR without restarts (Loshchilov & Hutter 2017,
//                                 arXiv:1608.03983, https://arxiv.org/abs/1608.03983),
//                                 lr_e = eta_min + (base - eta_min) (1 + cos(pi e / T_max)) / 2;
//                                 PyTorch's recursive form, which past T_max climbs back up
//   LinearWarmupDecay(warmup, total, min_lr_ratio, decay):  the schedule of BERT-style
//                                 fine-tuning (Hugging Face get_linear_schedule_with_warmup /
//                                 get_cosine_schedule_with_warmup) with a floor:
//                                 e < warmup: lr = base * e / warmup
//                                 else: p = min(1, (e - warmup) / max(1, total - warmup)),
//                                       d = 1 - p (linear) or (1 + cos(pi p)) / 2 (cosine),
//                                       lr = base * (r + (1 - r) d),  r = min_lr_ratio
//   LambdaLR(f):                  lr_e = base * f(e)
// state_dict() holds the epoch counter, the base lrs and the last lrs (metadata); the lambda of
// LambdaLR is code and is not saved. A new schedule (SWALR) derives from LRScheduler and
// implements compute_lr().
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/state_dict.h"
#include "optim/optimizer.h"

namespace minidl::optim {

class LRScheduler {
  public:
    virtual ~LRScheduler() = default;
    LRScheduler(const LRScheduler&) = delete;
    LRScheduler& operator=(const LRScheduler&) = delete;

    // Advances one epoch and sets every group's lr for it.
    void step();
    // The lrs the last step (or the constructor) set, one per group.
    const std::vector<double>& get_last_lr() const { return last_lr_; }
    int64_t last_epoch() const { return last_epoch_; }
    const std::vector<double>& base_lrs() const { return base_lrs_; }

    StateDict state_dict() const;
    // Restores the counters and lrs (the optimizer's lrs come from its own state_dict).
    void load_state_dict(const StateDict& state);

    virtual std::string name() const = 0;

  protected:
    // The constructor of a subclass calls initial_step() once its own fields are set.
    explicit LRScheduler(Optimizer& optimizer);
    void initial_step();

    // The lr of every group for epoch last_epoch_ (already advanced), from base_lrs_ and/or the
    // groups' current lrs (recursive forms).
    virtual std::vector<double> compute_lr() = 0;

    Optimizer& optimizer_;
    std::vector<double> base_lrs_;
    int64_t last_epoch_ = -1;
    int64_t step_count_ = 0;  // steps taken, counting the initial one (PyTorch's _step_count)
    std::vector<double> last_lr_;
};

class StepLR : public LRScheduler {
  public:
    StepLR(Optimizer& optimizer, int64_t step_size, double gamma = 0.1);
    std::string name() const override { return "step_lr"; }

  protected:
    std::vector<double> compute_lr() override;

  private:
    int64_t step_size_;
    double gamma_;
};

class CosineAnnealingLR : public LRScheduler {
  public:
    CosineAnnealingLR(Optimizer& optimizer, int64_t t_max, double eta_min = 0.0);
    std::string name() const override { return "cosine_annealing_lr"; }

  protected:
    std::vector<double> compute_lr() override;

  private:
    int64_t t_max_;
    double eta_min_;
};

enum class DecayShape { Linear, Cosine };

struct LinearWarmupDecayOptions {
    int64_t warmup_steps = 0;
    int64_t total_steps = 1;
    double min_lr_ratio = 0.0;  // the floor, as a fraction of the base lr
    DecayShape decay = DecayShape::Linear;
};

class LinearWarmupDecay : public LRScheduler {
  public:
    LinearWarmupDecay(Optimizer& optimizer, LinearWarmupDecayOptions options);
    std::string name() const override { return "linear_warmup_decay"; }
    // The multiplier of the base lr at `epoch` (the formula at the top of this file).
    double factor(int64_t epoch) const;

  protected:
    std::vector<double> compute_lr() override;

  private:
    LinearWarmupDecayOptions options_;
};

class LambdaLR : public LRScheduler {
  public:
    LambdaLR(Optimizer& optimizer, std::function<double(int64_t)> lr_lambda);
    std::string name() const override { return "lambda_lr"; }

  protected:
    std::vector<double> compute_lr() override;

  private:
    std::function<double(int64_t)> lr_lambda_;
};

}  // namespace minidl::optim
