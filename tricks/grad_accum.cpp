// tricks/grad_accum.cpp — see grad_accum.h.
#include "tricks/grad_accum.h"

#include <algorithm>

#include "core/check.h"
#include "ops/elementwise.h"

namespace minidl::tricks {

GradAccumulator::GradAccumulator(int64_t steps) : steps_(steps) {
    MDL_CHECK(steps >= 1, ValueError, "GradAccumulator: steps must be at least 1, got ", steps);
}

std::vector<MicroBatch> GradAccumulator::plan(int64_t n) const {
    return plan(std::vector<int64_t>(static_cast<size_t>(std::max<int64_t>(n, 0)), 1));
}

std::vector<MicroBatch> GradAccumulator::plan(const std::vector<int64_t>& counts) const {
    const int64_t n = static_cast<int64_t>(counts.size());
    MDL_CHECK(n > 0, ValueError, "GradAccumulator::plan: the batch is empty");
    int64_t total = 0;
    for (int64_t c : counts) {
        MDL_CHECK(c >= 0, ValueError, "GradAccumulator::plan: negative count ", c);
        total += c;
    }
    MDL_CHECK(total > 0, ValueError, "GradAccumulator::plan: the counts sum to 0");
    const int64_t k = std::min(steps_, n);
    std::vector<MicroBatch> out;
    int64_t begin = 0;
    for (int64_t j = 0; j < k; ++j) {
        const int64_t size = n / k + (j < n % k ? 1 : 0);
        int64_t share = 0;
        for (int64_t i = begin; i < begin + size; ++i) share += counts[i];
        out.push_back({begin, begin + size,
                       static_cast<double>(share) / static_cast<double>(total), j == k - 1});
        begin += size;
    }
    return out;
}

Tensor GradAccumulator::weight_loss(const Tensor& mean_loss, const MicroBatch& mb) {
    // Weight 1 (no accumulation) returns the loss itself: bitwise the plain step.
    return mb.weight == 1.0 ? mean_loss : mean_loss * mb.weight;
}

LoaderPlan::LoaderPlan(int64_t num_samples, int64_t batch_size, int64_t steps)
    : num_samples_(num_samples), batch_size_(batch_size), steps_(steps) {
    MDL_CHECK(num_samples > 0 && batch_size > 0 && steps > 0, ValueError,
              "LoaderPlan: num_samples, batch_size and steps must be positive, got ", num_samples,
              ", ", batch_size, ", ", steps);
    num_batches_ = (num_samples + batch_size - 1) / batch_size;
}

double LoaderPlan::weight(int64_t b) const {
    MDL_CHECK(b >= 0 && b < num_batches_, IndexError, "LoaderPlan::weight: batch ", b,
              " out of range for ", num_batches_, " batches");
    const int64_t group_begin = b / steps_ * steps_;
    const int64_t group_end = std::min(group_begin + steps_, num_batches_);
    const int64_t first = group_begin * batch_size_;
    const int64_t last = std::min(group_end * batch_size_, num_samples_);
    const int64_t mine = std::min((b + 1) * batch_size_, num_samples_) - b * batch_size_;
    return static_cast<double>(mine) / static_cast<double>(last - first);
}

bool LoaderPlan::steps_after(int64_t b) const {
    return (b + 1) % steps_ == 0 || b + 1 == num_batches_;
}

}  // namespace minidl::tricks
