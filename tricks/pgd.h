// tricks/pgd.h — PGD, projected gradient descent (here: ascent) on the embedding table.
//
// Madry, Makelov, Schmidt, Tsipras, Vladu: "Towards Deep Learning Models Resistant to
// Adversarial Attacks", ICLR 2018, arXiv:1706.06083 (https://arxiv.org/abs/1706.06083); on
// embeddings as in the FGM/PGD recipes for text (the reference implementation of the seed's
// community, see docs/adversarial.md). K ascent steps of size alpha, each projected back onto the
// L2 ball of radius epsilon around the clean value E0 of each selected parameter:
//   E <- E + alpha * g / ||g||;   if ||E - E0|| > epsilon: E <- E0 + epsilon (E - E0) / ||E - E0||
// The training step:
//   loss.backward();  pgd.backup_grad();                 // clean gradients of ALL parameters
//   for t in 0..K-1:
//       pgd.attack(t == 0);                              // first step backs E0 up
//       if (t != K-1) model.zero_grad(); else pgd.restore_grad();
//       loss_fn(model(x), y).backward();                 // ascent direction / final gradient
//   pgd.restore();  optimizer.step();
// so the optimizer sees the clean gradient plus the LAST adversarial one. run() does this loop
// (and restores E and the clean gradients when a pass throws). The K passes always run: with
// alpha 0 (or a zero gradient) E stays at E0 and the step follows twice the clean gradient, the
// objective L(E0) + L(E0 + r) at r = 0, as for FGM. All norms of a step are computed before
// anything moves: a non-finite one perturbs nothing and reports nonfinite (skip the step).
// Reference values: tests/fixtures/pgd_attack.json and pgd_trajectory.json
// (tests/fixtures/make_trick_fixtures.py runs the reference class).
// Under accumulation begin_micro_batch() before the clean backward makes the first direction this
// micro-batch's own gradient, and backup_grad() keeps the accumulated sum across the steps.
// Defaults (the reference implementation): epsilon 1, alpha 0.3, K = 3.
//
// Row-sparse gradients (core/row_grad.h: the embedding table's, without accumulation). The clean
// gradient is backed up as its rows, and each step works on the rows the batch looked up: the
// backup of E0, the step (row_axpy), the projection's norm (row_sum_squares, the dense order) and
// its rescale, and the restore. Results are bitwise the dense path's
// (tests/core/test_row_grad.cpp). When a step's gradient rows are not the backed-up ones (another
// batch inside `adversarial_backward`), the backup is made whole and that step runs dense.
#pragma once

#include <functional>

#include "core/row_grad.h"
#include "tricks/perturbation.h"

namespace minidl::tricks {

struct PGDOptions {
    double epsilon = 1.0;
    double alpha = 0.3;
    int steps = 3;
    ParamFilter filter{.contains = "embedding"};
};

class PGD {
  public:
    PGD(nn::Module& model, PGDOptions options = {});

    void begin_micro_batch() { selection_.mark_gradients(); }
    // Saves the gradient of every parameter of the model (the clean one).
    void backup_grad();
    // One ascent step; the first (is_first_attack) backs the selected parameters up. Only the
    // tensors that moved are projected (the reference's order).
    AttackResult attack(bool is_first_attack);
    // Puts the saved gradients back (before the last adversarial backward).
    void restore_grad();
    // Restores the selected parameters bitwise.
    void restore();

    // The whole adversarial part of a step after the clean backward: K attacks, each followed by
    // `adversarial_backward` (which must run forward + backward of the loss), then restore().
    // Returns what the attacks met (nonfinite: skip the step).
    AttackResult run(const std::function<void()>& adversarial_backward);

    int steps() const { return options_.steps; }

  private:
    void project(size_t i);

    nn::Module& model_;
    PGDOptions options_;
    ParamSelection selection_;
    std::vector<Tensor> all_grad_backup_;
    std::vector<RowGrad> all_row_grad_backup_;  // per parameter: its gradient when row-sparse
};

}  // namespace minidl::tricks
