// tricks/grad_accum.h — gradient accumulation that gives EXACTLY the big-batch gradient.
//
// A batch of N samples is processed as k micro-batches of n_1 .. n_k samples (sum N) and ONE
// optimizer step. The big-batch loss is the mean over N samples,
//   L = (1/N) sum_i l_i = sum_j (n_j / N) * mean_{i in j} l_i,
// so micro-batch j's mean loss must be weighted by n_j / N — its share of the samples (or, for
// per-token losses, of the tokens). The common recipe `loss / accum_iter` (the seed's) weights
// every micro-batch by 1/k, which is the same only when all micro-batches have equal size: a
// ragged last group gets the wrong gradient (tests/fixtures grad_accum_ragged.json shows by how
// much). Gradients accumulate in .grad() (autograd adds), the optimizer steps once, and a
// data-parallel wrapper skips its gradient all-reduce on every micro-batch but the last
// (set_sync_hook; tricks/data_parallel.h).
//
// Two ways to use it:
//   plan():      for one effective batch, the micro-batch ranges and weights (the training-step
//                helper and the example use this);
//   LoaderPlan:  the seed's streaming loop (one loader batch per micro-batch, step every k
//                batches and at the end), with the weights the ragged tail needs.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "core/tensor.h"

namespace minidl::tricks {

struct MicroBatch {
    int64_t begin = 0, end = 0;  // sample range [begin, end) of the effective batch
    double weight = 1.0;         // share of the effective batch: (end - begin) / N, or by tokens
    bool last = false;           // the optimizer steps (and replicas synchronise) after this one
};

class GradAccumulator {
public:
    explicit GradAccumulator(int64_t steps = 1);

    int64_t steps() const { return steps_; }

    // Splits N samples into min(steps, N) contiguous micro-batches whose sizes differ by at most
    // one (the first ones larger), weighted by sample count.
    std::vector<MicroBatch> plan(int64_t n) const;
    // The same split, weighted by `counts` (per-sample tokens, say): weight_j = sum of counts in
    // j / total.
    std::vector<MicroBatch> plan(const std::vector<int64_t>& counts) const;

    // mean_loss * weight: what to back-propagate for a micro-batch.
    static Tensor weight_loss(const Tensor& mean_loss, const MicroBatch& mb);

    // Called with `true` before the last micro-batch's backward and `false` before the others
    // (data parallelism: communicate only once per step).
    void set_sync_hook(std::function<void(bool sync)> hook) { sync_hook_ = std::move(hook); }
    void before_backward(const MicroBatch& mb) const {
        if (sync_hook_) sync_hook_(mb.last);
    }

private:
    int64_t steps_;
    std::function<void(bool)> sync_hook_;
};

// The seed's streaming loop made exact: a loader of `num_samples` samples in batches of
// `batch_size` (the last one possibly smaller), an optimizer step every `steps` batches and after
// the last batch.
class LoaderPlan {
public:
    LoaderPlan(int64_t num_samples, int64_t batch_size, int64_t steps);
    int64_t num_batches() const { return num_batches_; }
    // Weight of batch `batch_index`'s mean loss: its samples / the samples of its group.
    double weight(int64_t batch_index) const;
    // Whether the optimizer steps after batch `batch_index`.
    bool steps_after(int64_t batch_index) const;

private:
    int64_t num_samples_, batch_size_, steps_, num_batches_;
};

}  // namespace minidl::tricks
