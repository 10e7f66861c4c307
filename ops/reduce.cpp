// ops/reduce.cpp — sum, mean, max over all elements or one dim; norms. Math in ops/reduce.h.
//
// Backward of sum/mean broadcasts dy back over the reduced dim (one binary kernel call: dy seen
// as [outer, 1, inner] times a scalar, broadcast to [outer, n, inner]). Backward of max routes dy
// to the elements equal to the maximum, shared equally among ties.
#include "ops/reduce.h"

#include <cmath>

#include "core/autocast.h"
#include "core/autograd.h"
#include "core/kernels.h"
#include "ops/check_args.h"
#include "ops/elementwise.h"

namespace minidl {

using namespace ops_detail;

namespace {

Shape reduced_shape(const Shape& s, int64_t dim, bool keepdim) {
    Shape out;
    for (int64_t i = 0; i < static_cast<int64_t>(s.size()); ++i) {
        if (i != dim)
            out.push_back(s[i]);
        else if (keepdim)
            out.push_back(1);
    }
    return out;
}

// dy (any shape with outer * inner elements) broadcast to `shape` split as [outer, n, inner],
// times `scale`.
Tensor expand_grad(const Tensor& gy, const Shape& shape, DimSplit split, double scale) {
    Tensor gx = Tensor::empty(shape, gy.dtype(), gy.device());
    if (gx.numel() == 0) return gx;
    Tensor g3 = gy.detach().view({split.outer, 1, split.inner});
    Tensor out3 = gx.detach().view({split.outer, split.n, split.inner});
    kernels_for(gy.device())
        .binary(BinaryOp::Mul, g3, Tensor::scalar(scale, gy.dtype(), gy.device()), out3);
    return gx;
}

Tensor reduce_sum_mean(const char* name, ReduceOp op, const Tensor& x_in, int64_t dim, bool all,
                       bool keepdim) {
    check_floating(name, "x", x_in);
    // Under autocast sum runs in f32, mean in its input's dtype (PyTorch's lists: core/autocast.h);
    // the kernels accumulate 16-bit inputs in float either way.
    const Tensor x = op == ReduceOp::Sum ? autocast::cast_float(x_in) : x_in;
    const int64_t d = all ? 0 : normalize_dim(dim, x.dim(), name);
    const DimSplit split = all ? DimSplit{1, x.numel(), 1} : split_at(x.shape(), d);
    const Shape out_shape = all ? Shape{} : reduced_shape(x.shape(), d, keepdim);
    Tensor out = Tensor::empty(out_shape, x.dtype(), x.device());
    if (out.numel() > 0) {
        if (split.n == 0) {  // sum of nothing is 0; mean of nothing is NaN (as PyTorch)
            out.fill_(op == ReduceOp::Mean ? std::nan("") : 0.0);
        } else {
            kernels_for(x.device()).reduce(op, x, out, nullptr, split.outer, split.n, split.inner);
        }
    }
    if (autograd::should_record({x})) {
        const Shape shape = x.shape();
        const double scale = op == ReduceOp::Mean ? 1.0 / static_cast<double>(split.n) : 1.0;
        autograd::record(name, {x}, out,
                         [shape, split, scale](const Tensor& gy, const std::vector<bool>&) {
                             return std::vector<Tensor>{expand_grad(gy, shape, split, scale)};
                         });
    }
    return out;
}

std::pair<Tensor, Tensor> reduce_max(const Tensor& x, int64_t dim, bool all, bool keepdim) {
    check_floating("max", "x", x);
    const int64_t d = all ? 0 : normalize_dim(dim, x.dim(), "max");
    const DimSplit split = all ? DimSplit{1, x.numel(), 1} : split_at(x.shape(), d);
    MDL_CHECK(split.n > 0, ShapeError,
              "max: cannot take the maximum over an empty dimension, x=", shape_str(x.shape()),
              " dim=", d);
    const Shape out_shape = all ? Shape{} : reduced_shape(x.shape(), d, keepdim);
    Tensor values = Tensor::empty(out_shape, x.dtype(), x.device());
    Tensor indices = Tensor::empty(out_shape, DType::I64, x.device());
    if (values.numel() > 0)
        kernels_for(x.device())
            .reduce(ReduceOp::Max, x, values, &indices, split.outer, split.n, split.inner);
    if (autograd::should_record({x})) {
        SavedTensor saved_x(x, "max"), saved_y(values, "max");
        const Shape shape = x.shape();
        autograd::record(
            "max", {x}, values,
            [saved_x, saved_y, shape, split](const Tensor& gy, const std::vector<bool>&) {
                // mask = [x == max] as [x >= max]; ties share dy equally.
                const Tensor ymax = expand_grad(saved_y.get(), shape, split, 1.0);
                Tensor mask = Tensor::empty(shape, gy.dtype(), gy.device());
                kernels_for(gy.device()).binary(BinaryOp::GreaterEqual, saved_x.get(), ymax, mask);
                Tensor count = Tensor::empty(gy.shape(), gy.dtype(), gy.device());
                kernels_for(gy.device())
                    .reduce(ReduceOp::Sum, mask, count, nullptr, split.outer, split.n, split.inner);
                const Tensor share = expand_grad(div(gy, count), shape, split, 1.0);
                return std::vector<Tensor>{mul(share, mask)};
            });
    }
    return {values, indices};
}

}  // namespace

Tensor sum(const Tensor& x) {
    return reduce_sum_mean("sum", ReduceOp::Sum, x, 0, true, false);
}
Tensor sum(const Tensor& x, int64_t dim, bool keepdim) {
    return reduce_sum_mean("sum", ReduceOp::Sum, x, dim, false, keepdim);
}
Tensor mean(const Tensor& x) {
    return reduce_sum_mean("mean", ReduceOp::Mean, x, 0, true, false);
}
Tensor mean(const Tensor& x, int64_t dim, bool keepdim) {
    return reduce_sum_mean("mean", ReduceOp::Mean, x, dim, false, keepdim);
}
Tensor max(const Tensor& x) {
    return reduce_max(x, 0, true, false).first;
}
Tensor max(const Tensor& x, int64_t dim, bool keepdim) {
    return reduce_max(x, dim, false, keepdim).first;
}
std::pair<Tensor, Tensor> max_with_indices(const Tensor& x, int64_t dim, bool keepdim) {
    return reduce_max(x, dim, false, keepdim);
}
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
    NoGradGuard no_grad;
    return reduce_max(x, dim, false, keepdim).second;
}

Tensor norm(const Tensor& x_in) {
    check_floating("norm", "x", x_in);
    const Tensor x = autocast::cast_float(x_in);  // f32 under autocast (PyTorch's list)
    const double n = std::sqrt(kernels_for(x.device()).sum_squares({x}));
    Tensor out = Tensor::scalar(n, x.dtype(), x.device());
    if (autograd::should_record({x})) {
        SavedTensor saved_x(x, "norm");
        // d||x||/dx = x / ||x||; at x = 0 the subgradient 0 (PyTorch's choice).
        autograd::record("norm", {x}, out,
                         [saved_x, n](const Tensor& gy, const std::vector<bool>&) {
                             if (n == 0.0)
                                 return std::vector<Tensor>{Tensor::zeros_like(saved_x.get())};
                             return std::vector<Tensor>{mul(saved_x.get(), div(gy, n))};
                         });
    }
    return out;
}

double global_l2_norm(const std::vector<Tensor>& xs) {
    double total = 0;
    for (const Tensor& x : xs) {
        if (!x.defined() || x.numel() == 0) continue;
        MDL_CHECK(is_floating(x.dtype()), DTypeError,
                  "global_l2_norm: tensors must be floating, got ", x.dtype());
        total += kernels_for(x.device()).sum_squares({x});
    }
    return std::sqrt(total);
}

}  // namespace minidl
