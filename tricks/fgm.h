// tricks/fgm.h — FGM, the Fast Gradient Method: adversarial training on the embedding table.
//
// Miyato, Dai, Goodfellow: "Adversarial Training Methods for Semi-Supervised Text
// Classification", ICLR 2017, arXiv:1605.07725 (https://arxiv.org/abs/1605.07725). Gradient ASCENT on the input (the embeddings of
// the tokens), descent on the weights. For each selected parameter E (by name; default: names
// containing "embedding") with this micro-batch's clean gradient g = dL/dE:
//   r_adv = epsilon * g / ||g||_2           (skipped when ||g|| is 0 or not finite)
// The training step (the seed's loop):
//   loss.backward();          // clean gradient
//   fgm.attack();             // E += r_adv (E backed up first)
//   loss_fn(model(x), y).backward();   // the adversarial gradient ACCUMULATES onto the clean one
//   fgm.restore();            // E restored bitwise
//   optimizer.step();
// Reference implementation: the widely shared PyTorch recipe's FGM class (backup, attack, restore).
//
// With gradient accumulation, call begin_micro_batch() before each micro-batch's clean backward:
// the direction is then this micro-batch's own gradient, not the sum accumulated so far
// (tests/fixtures e2e_adam_fgm_accum2.json). Under AMP the gradient is the scaled one; its
// direction is the unscaled one's, and an overflowed (non-finite) norm perturbs nothing and
// reports nonfinite so that the whole step is skipped.
#pragma once

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

    double epsilon() const { return options_.epsilon; }
    const ParamSelection& selection() const { return selection_; }

private:
    FGMOptions options_;
    ParamSelection selection_;
};

}  // namespace minidl::tricks
