// tricks/train_step.cpp — see train_step.h for the order of operations and why.
#include "tricks/train_step.h"

#include <limits>

#include "core/autocast.h"
#include "core/autograd.h"
#include "core/check.h"
#include "ops/elementwise.h"
#include "optim/clip.h"
#include "optim/lr_scheduler.h"
#include "optim/optimizer.h"
#include "tricks/amp.h"
#include "tricks/awp.h"
#include "tricks/ema.h"
#include "tricks/fgm.h"
#include "tricks/freelb.h"
#include "tricks/grad_accum.h"
#include "tricks/pgd.h"

namespace minidl::tricks {

namespace {
void check_config(const TrainStepConfig& c) {
    const int adversaries =
        (c.fgm != nullptr) + (c.pgd != nullptr) + (c.awp != nullptr) + (c.freelb != nullptr);
    MDL_CHECK(adversaries <= 1, StateError,
              "train_step: at most one adversarial trick per step, got ", adversaries);
    MDL_CHECK(!c.autocast || is_half(*c.autocast), DTypeError,
              "train_step: autocast dtype must be f16 or bf16, got ", *c.autocast);
}
}  // namespace

StepResult train_step(TrainStepConfig& c, int64_t batch_size, const LossFn& loss_fn) {
    MDL_CHECK(c.optimizer != nullptr, StateError, "train_step: no optimizer");
    check_config(c);  // before zero_grad: a bad configuration changes nothing
    MDL_CHECK(batch_size >= 1, ValueError, "train_step: empty batch (", batch_size,
              " samples); nothing was changed");
    c.optimizer->zero_grad();
    return apply_gradients(c, accumulate_gradients(c, batch_size, loss_fn));
}

StepResult accumulate_gradients(TrainStepConfig& c, int64_t batch_size, const LossFn& loss_fn,
                                int64_t denominator) {
    check_config(c);
    MDL_CHECK(denominator >= 0, ValueError,
              "accumulate_gradients: the weight denominator must be >= 0, got ", denominator);

    StepResult result;
    const GradAccumulator accumulator(c.accum_steps);
    std::vector<MicroBatch> plan = accumulator.plan(batch_size);
    if (denominator > 0 && denominator != batch_size)  // a shard of a larger global batch
        for (MicroBatch& mb : plan)
            mb.weight = static_cast<double>(mb.end - mb.begin) / static_cast<double>(denominator);
    const bool accumulating = plan.size() > 1;

    // Forward of one micro-batch under autocast (when set), weighted by its share; the first pass
    // of a micro-batch also adds weight * loss to the step's loss, on the loss's device.
    Tensor loss_sum;
    auto weighted_loss = [&](const MicroBatch& mb, bool clean) {
        Tensor loss;
        {
            amp::Autocast ac(c.autocast.value_or(DType::BF16), c.autocast.has_value());
            loss = loss_fn(mb.begin, mb.end);
        }
        MDL_CHECK(loss.defined() && loss.numel() == 1, ShapeError,
                  "train_step: loss_fn must return the mean loss (one element)");
        if (clean) {
            // In double, as loss.item() then the host's sum would be: the same bits.
            NoGradGuard no_grad;
            const Tensor term = loss.detach().to(DType::F64).reshape({}) * mb.weight;
            loss_sum = loss_sum.defined() ? loss_sum + term : term;
        }
        return GradAccumulator::weight_loss(loss, mb);
    };
    auto backward = [&](const Tensor& loss) {
        (c.scaler ? c.scaler->scale(loss) : loss).backward();
    };

    for (const MicroBatch& mb : plan) {
        if (c.sync_hook) c.sync_hook(mb.last);
        // The attacks follow this micro-batch's own gradient (grad - what is accumulated).
        if (accumulating) {
            if (c.fgm) c.fgm->begin_micro_batch();
            if (c.pgd) c.pgd->begin_micro_batch();
            if (c.awp) c.awp->begin_micro_batch();
        }
        AttackResult attack;
        if (c.freelb) {
            bool first = true;
            attack = c.freelb->run(
                [&] {
                    const bool clean = first;
                    first = false;
                    return weighted_loss(mb, clean);
                },
                backward);
        } else {
            backward(weighted_loss(mb, true));
            const auto adversarial_backward = [&] { backward(weighted_loss(mb, false)); };
            if (c.fgm) attack = c.fgm->run(adversarial_backward);
            if (c.pgd) attack = c.pgd->run(adversarial_backward);
            if (c.awp) attack = c.awp->run(adversarial_backward);
        }
        if (attack.nonfinite) result.overflow = true;
    }
    result.loss_tensor = loss_sum;
    result.loss = !loss_sum.defined() ? 0.0
                  : c.read_loss       ? loss_sum.item()
                                      : std::numeric_limits<double>::quiet_NaN();
    return result;
}

StepResult apply_gradients(TrainStepConfig& c, StepResult result) {
    MDL_CHECK(c.optimizer != nullptr, StateError, "apply_gradients: no optimizer");
    if (result.overflow && c.scaler) c.scaler->record_overflow(*c.optimizer);
    if (c.clip_norm > 0)
        result.grad_norm = c.scaler ? c.scaler->clip_grad_norm(*c.optimizer, c.clip_norm)
                                    : optim::clip_grad_norm(c.optimizer->parameters(), c.clip_norm);
    if (c.scaler) {
        result.stepped = c.scaler->step(*c.optimizer);
        result.overflow = result.overflow || c.scaler->found_inf();
        c.scaler->update();
    } else {
        c.optimizer->step();
        result.stepped = true;
    }
    if (result.stepped) {
        if (c.ema) c.ema->update();
        if (c.scheduler) c.scheduler->step();
    }
    return result;
}

}  // namespace minidl::tricks
