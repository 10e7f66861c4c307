// tricks/fgm.h — FGM, the Fast Gradient Method: adversarial training on the embedding table.
//
// Miyato, Dai, Goodfellow: "Adversarial Training Methods for Semi-Supervised Text
// Classification", ICLR 2017, arXiv:1605.07725 (https://arxiv.org/abs/1605.07725). Gradient
// ASCENT on the input (the embeddings of the tokens), descent on the weights. For each selected
// parameter E (by name; default: names containing "embedding") with this micro-batch's clean
// gradient g = dL/dE:
//   r_adv = epsilon * g / ||g||_2           (r_adv = 0 where ||g|| = 0)
// The training step (the seed's loop; run() does the part after the clean backward):
//   loss.backward();          // clean gradient
//   fgm.attack();             // E += r_adv (E backed up first)
//   loss_fn(model(x), y).backward();   // the adversarial gradient ACCUMULATES onto the clean one
//   fgm.restore();            // E restored bitwise
//   optimizer.step();
// The adversarial pass always runs, as in the seed's loop: the objective is L(E) + L(E + r_adv),
// so with epsilon 0 (or a zero gradient) the step follows twice the clean gradient
// (tests/fixtures/fgm_epsilon0.json).
// Reference implementation: the widely shared PyTorch recipe's FGM class (backup, attack, restore).
//
// With gradient accumulation, call begin_micro_batch() before each micro-batch's clean backward:
// the direction is then this micro-batch's own gradient, not the sum accumulated so far
// (tests/fixtures e2e_adam_fgm_accum2.json). Under AMP the gradient is the scaled one; its
// direction is the unscaled one's. All norms are computed before anything moves: a non-finite one
// (an overflowed gradient) perturbs nothing at all and reports nonfinite, so that the whole step
// is skipped.
#pragma once

#include <functional>

#include "tricks/perturbation.h"

namespace minidl::tricks {

struct FGMOptions {
    double epsilon = 1.0;
    ParamFilter filter{.contains = "embedding"};
};

class FGM {
  public:
    explicit FGM(nn::Module& model, FGMOptions options = {});

    // Remembers the gradients accumulated so far (see above). Optional without accumulation.
    void begin_micro_batch() { selection_.mark_gradients(); }
    // Backs the selected parameters up and adds epsilon * g / ||g|| to each.
    AttackResult attack();
    // Restores the parameters bitwise; throws StateError without a preceding attack().
    void restore();
    // attack(), `adversarial_backward` (forward + backward of the loss), restore() — the restore
    // also when the pass throws.
    AttackResult run(const std::function<void()>& adversarial_backward);

    double epsilon() const { return options_.epsilon; }
    const ParamSelection& selection() const { return selection_; }

  private:
    FGMOptions options_;
    ParamSelection selection_;
};

}  // namespace minidl::tricks
