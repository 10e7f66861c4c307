// tricks/awp.h — AWP, adversarial weight perturbation.
//
// Wu, Xia, Wang: "Adversarial Weight Perturbation Helps Robust Generalization", NeurIPS 2020,
// arXiv:2004.05884 (https://arxiv.org/abs/2004.05884). Instead of the input, the WEIGHTS are pushed uphill — a step towards the
// worst case in a neighbourhood of the current weights, which flattens the loss landscape. For
// each selected parameter w (default: names containing "weight") with this micro-batch's clean
// gradient g, relative to the size of w:
//   w <- w + adv_lr * g / (||g|| + e) * (||w|| + e),   e = 1e-6
//   w <- clamp(w, w0 - adv_eps |w0|, w0 + adv_eps |w0|)      (elementwise trust region)
// then the adversarial loss is back-propagated (its gradient accumulates onto the clean one) and
// w is restored bitwise — the same step shape as FGM (tricks/fgm.h). Defaults (the reference
// implementation used in the Kaggle/NLP community, which these formulas follow): adv_lr 1,
// adv_eps 0.01.
#pragma once

#include "tricks/perturbation.h"

namespace minidl::tricks {

struct AWPOptions {
    double adv_lr = 1.0;
    double adv_eps = 0.01;
    ParamFilter filter{.contains = "weight"};
};

class AWP {
public:
    explicit AWP(nn::Module& model, AWPOptions options = {});

    void begin_micro_batch() { selection_.mark_gradients(); }
    AttackResult attack();
    void restore();

private:
    AWPOptions options_;
    ParamSelection selection_;
};

}  // namespace minidl::tricks
