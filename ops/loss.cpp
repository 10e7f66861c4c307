// ops/loss.cpp — fused cross-entropy on logits (math in ops/loss.h).
//
// Forward keeps the per-row log-sum-exp; backward recomputes softmax from it instead of saving
// an [N, C] probability matrix. The reduction is applied around the per-row kernel: Mean divides
// by the number of rows whose target is not ignore_index (PyTorch's rule).
#include "ops/loss.h"

#include <cmath>

#include "core/autocast.h"
#include "core/autograd.h"
#include "core/kernels.h"
#include "ops/check_args.h"
#include "ops/elementwise.h"
#include "ops/reduce.h"

namespace minidl {

using namespace ops_detail;

Tensor cross_entropy(const Tensor& logits_in, const Tensor& targets,
                     const CrossEntropyOptions& options) {
    const char* op = "cross_entropy";
    check_floating(op, "logits", logits_in);
    check_dim(op, "logits", logits_in, 2);
    check_dtype(op, "targets", targets, DType::I64);
    check_dim(op, "targets", targets, 1);
    check_same_device(op, "logits", logits_in, "targets", targets);
    const int64_t N = logits_in.shape()[0], C = logits_in.shape()[1];
    MDL_CHECK(targets.shape()[0] == N, ShapeError, op, ": logits ", shape_str(logits_in.shape()),
              " and targets ", shape_str(targets.shape()), " disagree on the batch size");
    MDL_CHECK(C > 0, ShapeError, op, ": logits need at least one class, got ",
              shape_str(logits_in.shape()));
    MDL_CHECK(options.label_smoothing >= 0.0 && options.label_smoothing <= 1.0, ValueError, op,
              ": label_smoothing must be in [0, 1], got ", options.label_smoothing);
    const bool none_ignored = check_ids_in_range(op, "targets", targets, C, "the number of classes",
                                                 options.ignore_index) &&
                              (options.ignore_index < 0 || options.ignore_index >= C);

    const Tensor logits = autocast::cast_float(logits_in);
    const DType loss_dtype = logits.dtype() == DType::F64 ? DType::F64 : DType::F32;
    Tensor losses = Tensor::empty({N}, loss_dtype, logits.device());
    Tensor lse = Tensor::empty({N}, loss_dtype, logits.device());
    Kernels& k = kernels_for(logits.device());
    if (N > 0)
        k.cross_entropy(logits, targets, losses, lse, options.label_smoothing,
                        options.ignore_index);

    // Rows that count towards the mean.
    int64_t counted = N;
    if (options.reduction == Reduction::Mean && !none_ignored) {
        const std::vector<int64_t> t = targets.to_vector<int64_t>();
        counted = 0;
        for (int64_t v : t)
            counted += v != options.ignore_index;
    }

    Tensor out;
    {
        NoGradGuard no_grad;
        switch (options.reduction) {
            case Reduction::None:
                out = losses;
                break;
            case Reduction::Sum:
                out = sum(losses);
                break;
            case Reduction::Mean:
                // No counted rows: 0 / 0 = NaN, as in PyTorch.
                out = counted > 0 ? div(sum(losses), static_cast<double>(counted))
                                  : Tensor::full({}, std::nan(""), loss_dtype, logits.device());
                break;
        }
    }
    if (autograd::should_record({logits})) {
        SavedTensor saved_logits(logits, op), saved_targets(targets, op);
        const Reduction reduction = options.reduction;
        const double ls = options.label_smoothing;
        const int64_t ignore = options.ignore_index;
        autograd::record(
            op, {logits}, out,
            [saved_logits, saved_targets, lse, reduction, ls, ignore, counted, N](
                const Tensor& gy, const std::vector<bool>&) {
                // dL/dloss_i: gy itself (None), or gy broadcast (Sum), or gy / counted (Mean).
                // (A kernel broadcast rather than gy.item(): no device-to-host sync.)
                Tensor row_grad;
                if (reduction == Reduction::None) {
                    row_grad = gy.to(lse.dtype());
                } else {
                    const double scale =
                        reduction == Reduction::Mean ? 1.0 / static_cast<double>(counted) : 1.0;
                    row_grad = Tensor::empty({N}, lse.dtype(), gy.device());
                    if (N > 0)
                        kernels_for(gy.device())
                            .binary(BinaryOp::Mul, gy.to(lse.dtype()),
                                    Tensor::scalar(scale, lse.dtype(), gy.device()), row_grad);
                }
                const Tensor& logits_saved = saved_logits.get();
                Tensor gx = Tensor::empty_like(logits_saved);
                if (N > 0)
                    kernels_for(gx.device())
                        .cross_entropy_backward(logits_saved, saved_targets.get(), lse, row_grad,
                                                gx, ls, ignore);
                return std::vector<Tensor>{gx};
            });
    }
    return out;
}

}  // namespace minidl
