// ops/layer_norm.cpp — layer normalisation over the trailing dims (math in ops/layer_norm.h).
//
// A dedicated backward kernel (not the composite of mean/sub/mul): it needs only x and the row
// statistics, and computes dx, dw and db in two passes instead of a dozen.
#include "ops/layer_norm.h"

#include "core/autocast.h"
#include "core/autograd.h"
#include "core/kernels.h"
#include "ops/check_args.h"

namespace minidl {

using namespace ops_detail;

Tensor layer_norm(const Tensor& x_in, const Shape& normalized_shape, const Tensor& w_in,
                  const Tensor& b_in, double eps) {
    const char* op = "layer_norm";
    check_floating(op, "x", x_in);
    const int64_t nd = static_cast<int64_t>(normalized_shape.size());
    MDL_CHECK(nd >= 1 && nd <= x_in.dim(), ShapeError, op, ": normalized_shape ",
              shape_str(normalized_shape),
              " must be the trailing dims of x=", shape_str(x_in.shape()));
    for (int64_t i = 0; i < nd; ++i)
        MDL_CHECK(x_in.shape()[x_in.dim() - nd + i] == normalized_shape[i], ShapeError, op,
                  ": normalized_shape ", shape_str(normalized_shape),
                  " does not match the trailing dims of x=", shape_str(x_in.shape()));
    MDL_CHECK(eps >= 0, ValueError, op, ": eps must be non-negative, got ", eps);
    // Autocast runs layer norm in float: its statistics need the range.
    const Tensor x = autocast::cast_float(x_in);
    const Tensor w = autocast::cast_float(w_in), b = autocast::cast_float(b_in);
    for (const auto& [name, t] : {std::pair{"weight", w}, std::pair{"bias", b}}) {
        if (!t.defined()) continue;
        check_floating(op, name, t);
        check_same_device(op, "x", x, name, t);
        check_same_dtype(op, "x", x, name, t);
        MDL_CHECK(t.shape() == normalized_shape, ShapeError, op, ": ", name, " must have shape ",
                  shape_str(normalized_shape), ", got ", shape_str(t.shape()));
    }
    const int64_t C = numel(normalized_shape);
    const int64_t R = C ? x.numel() / C : 0;
    const DType stat_dtype = x.dtype() == DType::F64 ? DType::F64 : DType::F32;
    Tensor y = Tensor::empty_like(x);
    Tensor mean = Tensor::empty({R}, stat_dtype, x.device());
    Tensor rstd = Tensor::empty({R}, stat_dtype, x.device());
    const Tensor x2 = x.detach().view({R, C});
    if (y.numel() > 0) {
        Tensor y2 = y.detach().view({R, C});
        kernels_for(x.device())
            .layer_norm(x2, w.defined() ? w.detach().view({C}) : w,
                        b.defined() ? b.detach().view({C}) : b, y2, mean, rstd, eps);
    }
    if (autograd::should_record({x, w, b})) {
        SavedTensor sx(x, op), sw(w, op);
        autograd::record(op, {x, w, b}, y,
                         [sx, sw, mean, rstd, R, C, normalized_shape](
                             const Tensor& gy, const std::vector<bool>& needs) {
                             const Tensor& xs = sx.get();
                             const Tensor& ws = sw.get();
                             Tensor gx, gw, gb, gx2, gw1, gb1;
                             if (needs[0]) {
                                 gx = Tensor::empty_like(xs);
                                 gx2 = gx.detach().view({R, C});
                             }
                             if (needs[1]) {
                                 gw = Tensor::zeros_like(ws);
                                 gw1 = gw.detach().view({C});
                             }
                             if (needs[2]) {
                                 gb = Tensor::zeros(normalized_shape, gy.dtype(), gy.device());
                                 gb1 = gb.detach().view({C});
                             }
                             if (R > 0)
                                 kernels_for(gy.device())
                                     .layer_norm_backward(xs.detach().view({R, C}),
                                                          ws.defined() ? ws.detach().view({C}) : ws,
                                                          mean, rstd, gy.detach().view({R, C}), gx2,
                                                          gw1, gb1);
                             return std::vector<Tensor>{gx, gw, gb};
                         });
    }
    return y;
}

}  // namespace minidl
