// ops/softmax.cpp — softmax and log-softmax along one dim (math in ops/softmax.h).
//
// Dedicated backward kernels rather than the composite's: the composite (exp, sum, div) would
// save three intermediates and lose precision; the fused form needs only the output y.
#include "ops/softmax.h"

#include "core/autocast.h"
#include "core/autograd.h"
#include "core/kernels.h"
#include "ops/check_args.h"

namespace minidl {

using namespace ops_detail;

namespace {

Tensor softmax_impl(const char* name, const Tensor& x_in, int64_t dim, bool log) {
    check_floating(name, "x", x_in);
    const Tensor x = autocast::cast_float(x_in);
    const int64_t d = normalize_dim(dim, x.dim(), name);
    const DimSplit split = split_at(x.shape(), d);
    Tensor y = Tensor::empty_like(x);
    if (y.numel() > 0)
        kernels_for(x.device()).softmax(x, y, split.outer, split.n, split.inner, log);
    if (autograd::should_record({x})) {
        SavedTensor saved_y(y, name);
        autograd::record(name, {x}, y,
                         [saved_y, split, log](const Tensor& gy, const std::vector<bool>&) {
                             Tensor gx = Tensor::empty_like(gy);
                             if (gx.numel() > 0)
                                 kernels_for(gy.device())
                                     .softmax_backward(saved_y.get(), gy, gx, split.outer, split.n,
                                                       split.inner, log);
                             return std::vector<Tensor>{gx};
                         });
    }
    return y;
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) {
    return softmax_impl("softmax", x, dim, false);
}
Tensor log_softmax(const Tensor& x, int64_t dim) {
    return softmax_impl("log_softmax", x, dim, true);
}

}  // namespace minidl
