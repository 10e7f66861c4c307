// tricks/awp.h — AWP, adversarial weight perturbation.
//
// Wu, Xia, Wang: "Adversarial Weight Perturbation Helps Robust Generalization", NeurIPS 2020,
// arXiv:2004.05884 (https://arxiv.org/abs/2004.05884). Instead of the input, the WEIGHTS are
// pushed uphill — towards the worst case in a neighbourhood of the current weights w0 — and the
// step descends on the loss THERE: min_w max_{v in bound} L(w + v). For each selected parameter w
// (default: names containing "weight") with this micro-batch's clean gradient g, e = 1e-6:
//   w <- w + adv_lr * g / (||g|| + e) * (||w|| + e)          the step is relative to ||w||
//   bound, Elementwise (default, the reference implementation):
//       w <- clamp(w, w0 - adv_eps |w0|, w0 + adv_eps |w0|)     per element
//   bound, Layerwise (the paper's eq. 9, ||v_l|| <= gamma ||w_l|| with gamma = adv_eps):
//       v = w - w0;  if ||v|| > adv_eps ||w0||:  w <- w0 + v * adv_eps ||w0|| / ||v||
// then the gradients of this micro-batch are DROPPED (zero_grad; under accumulation, put back to
// the sums of the earlier micro-batches), the adversarial loss is back-propagated, and w is
// restored bitwise. The optimizer steps on the gradient at w0 + v only — the paper's update and
// the reference's (its attack_backward calls optimizer.zero_grad() before the adversarial
// backward); the clean pass serves only to find v. With steps > 1 the ascent repeats from the
// previous adversarial gradient (the reference's adv_step), ||w|| taken at the current point.
// With adv_lr 0 nothing moves and the step follows the clean gradient, exactly.
//
//   loss.backward();                                     // clean gradient: the direction
//   awp.run([&] { loss_fn(model(x), y).backward(); });   // attack, drop, adversarial pass, restore
//   optimizer.step();                                    // on the adversarial gradient
//
// Reference implementation: the AWP class of the Kaggle NLP competitions (adv_param "weight",
// adv_lr 1, adv_eps 0.01 — its defaults here; adv_eps 0.2 in some notebooks). Reference values:
// tests/fixtures/awp_*.json (tests/fixtures/make_trick_fixtures.py runs that class).
// docs/adversarial.md compares the two bounds.
//
// Row-sparse gradients (core/row_grad.h: the embedding table's, without accumulation). With the
// element-wise bound, the table's step, clamp, backup and restore touch only the rows the batch
// looked up (||w|| is still the whole table's); results are bitwise the dense path's
// (tests/core/test_row_grad.cpp). The layer-wise bound keeps a whole backup.
#pragma once

#include <functional>

#include "tricks/perturbation.h"

namespace minidl::tricks {

enum class AWPBound {
    Elementwise,  // |w_i - w0_i| <= adv_eps |w0_i| (the reference implementation)
    Layerwise,    // ||w - w0|| <= adv_eps ||w0|| per tensor (the paper)
};

struct AWPOptions {
    double adv_lr = 1.0;
    double adv_eps = 0.01;
    AWPBound bound = AWPBound::Elementwise;
    int steps = 1;
    ParamFilter filter{.contains = "weight"};
};

class AWP {
  public:
    explicit AWP(nn::Module& model, AWPOptions options = {});

    // Under accumulation, before the micro-batch's clean backward: remembers every parameter's
    // accumulated gradient, so that the attack follows this micro-batch's own gradient and the
    // adversarial gradient replaces this micro-batch's clean one only.
    void begin_micro_batch();
    // The attack after the clean backward: `steps` times (ascent step, drop this micro-batch's
    // gradients, `adversarial_backward`), then the weights restored — also when a pass throws.
    AttackResult run(const std::function<void()>& adversarial_backward);

    const AWPOptions& options() const { return options_; }
    const ParamSelection& selection() const { return selection_; }

  private:
    AttackResult ascend(const AscentDirections& d);
    Tensor own_gradient(size_t selected) const;
    void drop_micro_batch_gradients(bool last);

    nn::Module& model_;
    AWPOptions options_;
    ParamSelection selection_;
    std::vector<Tensor> params_;          // every parameter of the model
    std::vector<size_t> selected_index_;  // selection i -> index in params_
    std::vector<Tensor> grads_before_;    // begin_micro_batch(): the accumulated gradients
    bool marked_ = false;
};

}  // namespace minidl::tricks
