// tricks/freelb.h — FreeLB: K ascent steps on the embedding layer's output, the parameter
// gradients of all K steps averaged ("free" large-batch adversarial training).
//
// Zhu, Cheng, Gan, Sun, Goldstein, Liu: "FreeLB: Enhanced Adversarial Training for Natural
// Language Understanding", ICLR 2020, arXiv:1909.11764 (https://arxiv.org/abs/1909.11764); the
// reference implementation is the authors' (github.com/zhuchen03/FreeLB, huggingface/examples).
// With X the embedding layer's output for the micro-batch and delta a perturbation of X's shape:
//   delta_0 = U(-1, 1) * init_mag / sqrt(d)            d = elements per example (no token mask)
//   for t = 1..K:
//       L_t = loss(X + delta_{t-1}) / K;  backward     parameter gradients ACCUMULATE over t
//       if t < K:  g = dL_t / d delta;  delta_t = delta_{t-1} + adv_lr * g / ||g||  (per example)
//                  and, with max_norm > 0, delta_t projected onto ||delta_t|| <= max_norm
// So the update uses the average gradient over K perturbations around the example, at the cost of
// K forward/backward passes (no separate clean pass; init_mag = 0 makes the first pass clean).
// Where the perturbation lives: after nn::EmbeddingBag it is per BAG (delta [B, C]: the bag's
// mean embedding is shifted), after nn::Embedding per TOKEN (delta [B, T, C]) — the layer's
// output hook (nn/embedding.h) adds it, so the model needs no change. Dropout draws the SAME mask
// in every pass: the default generator's state is restored before each pass.
//
// Padding (set_token_mask, the per-token form only). On right-padded batches the authors' code
// keeps delta_0 off the padding and sizes it by the example's real length, so that a short
// sentence in a long batch gets the same perturbation per real token as it would alone:
//   m = the token mask [B, T] (1 real token, 0 padding),   L_b = sum_t m[b, t]
//   delta_0[b, t, :] = U(-1, 1)[b, t, :] * m[b, t] * init_mag / sqrt(L_b * C)
// (the draw is the unmasked one, with the same generator consumption, multiplied by the mask: a
// mask of ones gives exactly the unmasked delta_0). The ascent steps are unchanged, as in the
// authors' loop: the gradient at padded positions is whatever the model gives (zero where
// attention ignores the padding) and is not masked, and the norms ||g||, ||delta_t|| run over all
// T positions.
//
// Defaults (the reference implementation's GLUE settings): K = 2, adv_lr 0.1, init_mag 0.6,
// max_norm 0 (no projection). Reference values: tests/fixtures/freelb_*.json, made by running the
// authors' loop (tests/fixtures/make_trick_fixtures.py), the max_norm branch and a right-padded
// batch with its token mask (freelb_attack_masked.json) included.
#pragma once

#include <cstdint>
#include <functional>
#include <utility>

#include "core/rng.h"
#include "nn/embedding.h"
#include "tricks/perturbation.h"

namespace minidl::tricks {

struct FreeLBOptions {
    int steps = 2;
    double adv_lr = 0.1;
    double init_mag = 0.6;
    double max_norm = 0.0;
    uint64_t seed = 0;  // of the generator that draws delta_0
};

class FreeLB {
  public:
    FreeLB(nn::EmbeddingBag& layer, FreeLBOptions options = {});
    FreeLB(nn::Embedding& layer, FreeLBOptions options = {});

    // The K passes for one micro-batch: forward_loss() runs the model and returns the
    // micro-batch's (weighted) loss; backward(l) back-propagates l (through the loss scaler, say).
    // Each pass back-propagates forward_loss() / K.
    AttackResult run(const std::function<Tensor()>& forward_loss,
                     const std::function<void(const Tensor&)>& backward);

    // The next run() starts from `delta0` (the layer output's shape) instead of a random draw:
    // to replay a reference's draw (tests/fixtures/freelb_*.json) or a recorded run.
    // The token mask is not applied to it: delta0 is used as given.
    void set_initial_delta(Tensor delta0) { initial_delta_ = std::move(delta0); }

    // The next run() uses `draw` (the layer output's shape, values in [-1, 1]) in place of its
    // U(-1, 1) draw, without consuming the generator: the token mask and init_mag / sqrt(d) are
    // applied to it as to a random draw. To replay a reference's raw draw through the masking
    // (tests/fixtures/freelb_attack_masked.json).
    void set_initial_draw(Tensor draw) { initial_draw_ = std::move(draw); }

    // The token mask of the micro-batch, [B, T] for the embedding output [B, T, C]: 1 for a real
    // token, 0 for padding, any dtype, on the model's device (values other than 0 and 1 enter the
    // formula above as they are). It applies to the following run() calls until changed; an
    // undefined mask (the default) is no mask. It is read when delta_0 is made (the first pass's
    // embedding forward), so train_step's loss callback may set its micro-batch's rows before
    // running the model. The shape is checked there (ShapeError); on the EmbeddingBag form, whose
    // delta is per bag, a defined mask is a ValueError here. An example without a real token
    // (L_b = 0) gets delta_0 = 0 (d is floored at 1, where the authors' formula gives NaN).
    void set_token_mask(Tensor mask);
    const Tensor& token_mask() const { return token_mask_; }

    int steps() const { return options_.steps; }
    Generator& generator() { return generator_; }

  private:
    std::function<void(std::function<Tensor(const Tensor&)>)> set_hook_;
    FreeLBOptions options_;
    Generator generator_;
    bool per_token_;  // nn::Embedding (delta [B, T, C]) rather than nn::EmbeddingBag
    Tensor initial_delta_;
    Tensor initial_draw_;
    Tensor token_mask_;
};

// ||x_b|| over all dims but the first, as [B, 1, ..., 1] (the per-example norm), floored at
// `floor`. Shared by FreeLB and the robustness report's attack.
Tensor per_example_norm(const Tensor& x, double floor);

}  // namespace minidl::tricks
