// ops/matmul.cpp — matmul (2-D, batched 3-D, with 1-D operands promoted) and linear.
//
// Shapes (M, K, N as in core/kernels.h GemmArgs; B batch; IN/OUT features; R rows):
//   [M, K] @ [K, N] -> [M, N]           da = dy b^T          db = a^T dy
//   [B, M, K] @ [B, K, N] -> [B, M, N]  per batch entry
//   [B, M, K] @ [K, N] -> [B, M, N]     db = sum_b a_b^T dy_b = a.view(B M, K)^T dy.view(B M, N)
//   [M, K] @ [B, K, N] -> [B, M, N]     da = sum_b dy_b b_b^T
//   1-D a is a row [1, K], 1-D b a column [K, 1]; the added dim is removed from the result.
//   linear: x [R, IN] (leading dims flattened), w [OUT, IN], b [OUT]:
//     y = x w^T + b                     dx = dy w,  dw = dy^T x,  db = sum_r dy
// Everything is one gemm call per product (bias: rows of y pre-filled with b, then beta = 1).
#include "ops/matmul.h"

#include "core/autocast.h"
#include "core/autograd.h"
#include "core/kernels.h"
#include "ops/check_args.h"

namespace minidl {

using namespace ops_detail;

namespace {

// out = op(a) @ op(b) (+ beta out) for 2-D or batched 3-D operands; a/b strides of 0 broadcast.
void gemm_into(const Tensor& a, bool ta, const Tensor& b, bool tb, Tensor& out, int64_t batch,
               bool a_batched, bool b_batched, double beta = 0.0) {
    const Shape& sa = a.shape();
    const Shape& sb = b.shape();
    const int64_t a_rows = sa[sa.size() - 2], a_cols = sa.back();
    const int64_t b_rows = sb[sb.size() - 2], b_cols = sb.back();
    GemmArgs g;
    g.batch = batch;
    g.m = ta ? a_cols : a_rows;
    g.k = ta ? a_rows : a_cols;
    g.n = tb ? b_rows : b_cols;
    g.trans_a = ta;
    g.trans_b = tb;
    g.stride_a = a_batched ? a_rows * a_cols : 0;
    g.stride_b = b_batched ? b_rows * b_cols : 0;
    g.stride_c = g.m * g.n;
    g.beta = beta;
    if (out.numel() == 0) return;
    kernels_for(out.device()).gemm(a, b, out, g);
}

Tensor matmul_2d_3d(const Tensor& a, const Tensor& b) {
    const char* op = "matmul";
    const bool a3 = a.dim() == 3, b3 = b.dim() == 3;
    const int64_t M = a.shape()[a.dim() - 2], K = a.shape().back();
    const int64_t K2 = b.shape()[b.dim() - 2], N = b.shape().back();
    MDL_CHECK(K == K2, ShapeError, op, ": inner dimensions differ, a=", shape_str(a.shape()),
              " b=", shape_str(b.shape()), " (a.shape[-1] must equal b.shape[-2])");
    const int64_t B = a3 ? a.shape()[0] : (b3 ? b.shape()[0] : 1);
    if (a3 && b3)
        MDL_CHECK(a.shape()[0] == b.shape()[0], ShapeError, op,
                  ": batch sizes differ, a=", shape_str(a.shape()), " b=", shape_str(b.shape()));
    const Shape out_shape = (a3 || b3) ? Shape{B, M, N} : Shape{M, N};
    Tensor out = Tensor::empty(out_shape, a.dtype(), a.device());
    gemm_into(a, false, b, false, out, B, a3, b3);
    if (autograd::should_record({a, b})) {
        SavedTensor sa(a, op), sb(b, op);
        autograd::record(
            op, {a, b}, out, [sa, sb, a3, b3, B](const Tensor& gy, const std::vector<bool>& needs) {
                const Tensor& a = sa.get();
                const Tensor& b = sb.get();
                Tensor ga, gb;
                if (needs[0]) {
                    ga = Tensor::empty_like(a);
                    if (a3) {  // da_b = dy_b b_b^T
                        gemm_into(gy, false, b, true, ga, B, true, b3);
                    } else if (!b3) {
                        gemm_into(gy, false, b, true, ga, 1, false, false);
                    } else {  // a shared by every batch entry: da = sum_b dy_b b_b^T
                        ga.zero_();
                        for (int64_t i = 0; i < B; ++i) {
                            Tensor gyi =
                                gy.detach().narrow0(i, 1).view({gy.shape()[1], gy.shape()[2]});
                            Tensor bi = b.detach().narrow0(i, 1).view({b.shape()[1], b.shape()[2]});
                            gemm_into(gyi, false, bi, true, ga, 1, false, false, 1.0);
                        }
                    }
                }
                if (needs[1]) {
                    gb = Tensor::empty_like(b);
                    if (b3) {  // db_b = a_b^T dy_b
                        gemm_into(a, true, gy, false, gb, B, a3, true);
                    } else if (!a3) {
                        gemm_into(a, true, gy, false, gb, 1, false, false);
                    } else {  // b shared: db = a.view(B M, K)^T dy.view(B M, N)
                        const Tensor a2 = a.detach().view({-1, a.shape()[2]});
                        const Tensor g2 = gy.detach().view({-1, gy.shape()[2]});
                        gemm_into(a2, true, g2, false, gb, 1, false, false);
                    }
                }
                return std::vector<Tensor>{ga, gb};
            });
    }
    return out;
}

}  // namespace

Tensor matmul(const Tensor& a_in, const Tensor& b_in) {
    const char* op = "matmul";
    check_floating(op, "a", a_in);
    check_floating(op, "b", b_in);
    check_same_device(op, "a", a_in, "b", b_in);
    const Tensor a = autocast::cast_low(a_in), b = autocast::cast_low(b_in);
    check_same_dtype(op, "a", a, "b", b);
    MDL_CHECK(a.dim() >= 1 && a.dim() <= 3 && b.dim() >= 1 && b.dim() <= 3, ShapeError, op,
              ": supports 1-d, 2-d and 3-d operands, got a=", shape_str(a.shape()),
              " b=", shape_str(b.shape()));
    // Promote 1-D operands to matrices, multiply, then drop the added dimension.
    if (a.dim() == 1 || b.dim() == 1) {
        const Tensor a2 = a.dim() == 1 ? a.view({1, a.shape()[0]}) : a;
        const Tensor b2 = b.dim() == 1 ? b.view({b.shape()[0], 1}) : b;
        Tensor out = matmul_2d_3d(a2, b2);
        Shape s = out.shape();
        if (a.dim() == 1) s.erase(s.end() - 2);
        if (b.dim() == 1) s.erase(s.end() - 1);
        return out.view(s);
    }
    return matmul_2d_3d(a, b);
}

Tensor linear(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in) {
    const char* op = "linear";
    check_floating(op, "x", x_in);
    check_floating(op, "weight", w_in);
    check_dim(op, "weight", w_in, 2);
    check_same_device(op, "x", x_in, "weight", w_in);
    MDL_CHECK(x_in.dim() >= 1, ShapeError, op, ": x must have at least one dimension, got ",
              shape_str(x_in.shape()));
    const int64_t OUT = w_in.shape()[0], IN = w_in.shape()[1];
    MDL_CHECK(x_in.shape().back() == IN, ShapeError, op, ": x has ", x_in.shape().back(),
              " features but weight expects ", IN, ", x=", shape_str(x_in.shape()),
              " weight=", shape_str(w_in.shape()));
    if (b_in.defined()) {
        check_floating(op, "bias", b_in);
        check_same_device(op, "x", x_in, "bias", b_in);
        MDL_CHECK(b_in.shape() == Shape{OUT}, ShapeError, op, ": bias must be [", OUT, "], got ",
                  shape_str(b_in.shape()));
    }
    const Tensor x = autocast::cast_low(x_in), w = autocast::cast_low(w_in);
    const Tensor b = autocast::cast_low(b_in);
    check_same_dtype(op, "x", x, "weight", w);
    if (b.defined()) check_same_dtype(op, "x", x, "bias", b);

    const int64_t R = x.numel() / std::max<int64_t>(IN, 1);
    Shape out_shape = x.shape();
    out_shape.back() = OUT;
    Tensor y = Tensor::empty(out_shape, x.dtype(), x.device());
    if (y.numel() > 0) {
        Kernels& k = kernels_for(x.device());
        if (b.defined())  // every row of y starts as b (a stride-0 copy), then y += x w^T
            k.strided_copy(b, 0, 0, y, 0, OUT, R, OUT, false);
        const Tensor x2 = x.detach().view({R, IN});
        Tensor y2 = y.detach().view({R, OUT});
        gemm_into(x2, false, w, true, y2, 1, false, false, b.defined() ? 1.0 : 0.0);
    }
    if (autograd::should_record({x, w, b})) {
        SavedTensor sx(x, op), sw(w, op);
        const bool has_bias = b.defined();
        autograd::record(
            op, {x, w, b}, y,
            [sx, sw, R, IN, OUT, has_bias](const Tensor& gy, const std::vector<bool>& needs) {
                const Tensor g2 = gy.detach().view({R, OUT});
                Tensor gx, gw, gb;
                if (needs[0]) {  // dx = dy w
                    gx = Tensor::empty_like(sx.get());
                    Tensor gx2 = gx.detach().view({R, IN});
                    gemm_into(g2, false, sw.get(), false, gx2, 1, false, false);
                }
                if (needs[1]) {  // dw = dy^T x
                    gw = Tensor::empty_like(sw.get());
                    const Tensor x2 = sx.get().detach().view({R, IN});
                    gemm_into(g2, true, x2, false, gw, 1, false, false);
                }
                if (has_bias && needs[2]) {  // db = sum over rows of dy
                    gb = Tensor::empty({OUT}, gy.dtype(), gy.device());
                    if (R == 0)
                        gb.zero_();
                    else
                        kernels_for(gy.device()).reduce(ReduceOp::Sum, g2, gb, nullptr, 1, R, OUT);
                }
                return std::vector<Tensor>{gx, gw, gb};
            });
    }
    return y;
}

}  // namespace minidl
