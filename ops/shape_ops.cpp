// ops/shape_ops.cpp — concat, stack, slice, index_select, unsqueeze, squeeze (math in
// ops/shape_ops.h). All copies go through the strided_copy kernel: a tensor split at `dim` is
// [outer, n, inner], and a slice along dim is `outer` runs of (length * inner) contiguous elements.
#include "ops/shape_ops.h"

#include "core/autograd.h"
#include "core/kernels.h"
#include "ops/check_args.h"

namespace minidl {

using namespace ops_detail;

namespace {

// dst[:, dst_start : dst_start + len, :] (+)= src[:, src_start : src_start + len, :], both seen as
// [outer, n, inner] at the same dim.
void copy_slab(const Tensor& src, int64_t src_n, int64_t src_start, Tensor& dst, int64_t dst_n,
               int64_t dst_start, int64_t outer, int64_t len, int64_t inner, bool accumulate) {
    if (outer == 0 || len == 0 || inner == 0) return;
    kernels_for(dst.device())
        .strided_copy(src, src_start * inner, src_n * inner, dst, dst_start * inner, dst_n * inner,
                      outer, len * inner, accumulate);
}

}  // namespace

Tensor concat(const std::vector<Tensor>& xs, int64_t dim) {
    const char* op = "concat";
    MDL_CHECK(!xs.empty(), ShapeError, op, ": needs at least one tensor");
    for (size_t i = 0; i < xs.size(); ++i)
        check_defined(op, "tensors", xs[i]);
    const Tensor& first = xs[0];
    const int64_t d = normalize_dim(dim, first.dim(), op);
    MDL_CHECK(first.dim() >= 1, ShapeError, op, ": cannot concatenate 0-d tensors");
    Shape out_shape = first.shape();
    out_shape[d] = 0;
    for (size_t i = 0; i < xs.size(); ++i) {
        const Tensor& x = xs[i];
        check_same_device(op, "tensors[0]", first, "a later tensor", x);
        check_same_dtype(op, "tensors[0]", first, "a later tensor", x);
        bool same = x.dim() == first.dim();
        for (int64_t k = 0; same && k < x.dim(); ++k)
            same = k == d || x.shape()[k] == first.shape()[k];
        MDL_CHECK(same, ShapeError, op, ": tensors[", i, "] has shape ", shape_str(x.shape()),
                  " but tensors[0] has ", shape_str(first.shape()), " (only dim ", d,
                  " may differ)");
        out_shape[d] += x.shape()[d];
    }
    Tensor out = Tensor::empty(out_shape, first.dtype(), first.device());
    const DimSplit split = split_at(out_shape, d);
    std::vector<int64_t> starts;
    int64_t pos = 0;
    for (const Tensor& x : xs) {
        starts.push_back(pos);
        copy_slab(x, x.shape()[d], 0, out, split.n, pos, split.outer, x.shape()[d], split.inner,
                  false);
        pos += x.shape()[d];
    }
    if (autograd::should_record(xs)) {
        std::vector<Shape> shapes;
        for (const Tensor& x : xs)
            shapes.push_back(x.shape());
        autograd::record(
            op, xs, out,
            [shapes, starts, split, d](const Tensor& gy, const std::vector<bool>& needs) {
                std::vector<Tensor> grads(shapes.size());
                for (size_t i = 0; i < shapes.size(); ++i) {
                    if (!needs[i]) continue;
                    grads[i] = Tensor::empty(shapes[i], gy.dtype(), gy.device());
                    copy_slab(gy, split.n, starts[i], grads[i], shapes[i][d], 0, split.outer,
                              shapes[i][d], split.inner, false);
                }
                return grads;
            });
    }
    return out;
}

Tensor unsqueeze(const Tensor& x, int64_t dim) {
    const int64_t d = normalize_dim(dim, x.dim() + 1, "unsqueeze");
    Shape s = x.shape();
    s.insert(s.begin() + d, 1);
    return x.view(s);
}

Tensor squeeze(const Tensor& x, int64_t dim) {
    const int64_t d = normalize_dim(dim, x.dim(), "squeeze");
    MDL_CHECK(x.dim() > 0 && x.shape()[d] == 1, ShapeError, "squeeze: dim ", d, " has size ",
              x.dim() > 0 ? x.shape()[d] : 0, " (must be 1), x=", shape_str(x.shape()));
    Shape s = x.shape();
    s.erase(s.begin() + d);
    return x.view(s);
}

Tensor stack(const std::vector<Tensor>& xs, int64_t dim) {
    MDL_CHECK(!xs.empty(), ShapeError, "stack: needs at least one tensor");
    for (const Tensor& x : xs)
        MDL_CHECK(x.shape() == xs[0].shape(), ShapeError, "stack: shapes differ, ",
                  shape_str(xs[0].shape()), " vs ", shape_str(x.shape()));
    const int64_t d = normalize_dim(dim, xs[0].dim() + 1, "stack");
    std::vector<Tensor> expanded;
    for (const Tensor& x : xs)
        expanded.push_back(unsqueeze(x, d));
    return concat(expanded, d);
}

Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end) {
    const char* op = "slice";
    check_defined(op, "x", x);
    const int64_t d = normalize_dim(dim, x.dim(), op);
    MDL_CHECK(x.dim() >= 1, ShapeError, op, ": cannot slice a 0-d tensor");
    const int64_t n = x.shape()[d];
    MDL_CHECK(start >= 0 && start <= end && end <= n, IndexError, op, ": range [", start, ", ", end,
              ") out of bounds for dim ", d, " of size ", n, ", x=", shape_str(x.shape()));
    Shape out_shape = x.shape();
    out_shape[d] = end - start;
    Tensor out = Tensor::empty(out_shape, x.dtype(), x.device());
    const DimSplit split = split_at(x.shape(), d);
    copy_slab(x, n, start, out, end - start, 0, split.outer, end - start, split.inner, false);
    if (autograd::should_record({x})) {
        const Shape shape = x.shape();
        autograd::record(op, {x}, out,
                         [shape, split, start, end](const Tensor& gy, const std::vector<bool>&) {
                             Tensor gx = Tensor::zeros(shape, gy.dtype(), gy.device());
                             copy_slab(gy, end - start, 0, gx, split.n, start, split.outer,
                                       end - start, split.inner, false);
                             return std::vector<Tensor>{gx};
                         });
    }
    return out;
}

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
    const char* op = "index_select";
    check_defined(op, "x", x);
    check_dim(op, "index", index, 1);
    check_same_device(op, "x", x, "index", index);
    MDL_CHECK(x.dim() >= 1, ShapeError, op, ": x must have at least one dimension");
    const int64_t d = normalize_dim(dim, x.dim(), op);
    const DimSplit split = split_at(x.shape(), d);
    check_ids_in_range(op, "index", index, split.n, "a dimension of size");
    Shape out_shape = x.shape();
    out_shape[d] = index.numel();
    Tensor out = Tensor::empty(out_shape, x.dtype(), x.device());
    if (out.numel() > 0)
        kernels_for(x.device()).index_select(x, index, out, split.outer, split.n, split.inner);
    if (autograd::should_record({x})) {
        const Shape shape = x.shape();
        SavedTensor saved_index(index, op);
        autograd::record(
            op, {x}, out, [shape, split, saved_index](const Tensor& gy, const std::vector<bool>&) {
                Tensor gx = Tensor::zeros(shape, gy.dtype(), gy.device());
                if (gy.numel() > 0)
                    kernels_for(gy.device())
                        .index_add(gy, saved_index.get(), gx, split.outer, split.n, split.inner);
                return std::vector<Tensor>{gx};
            });
    }
    return out;
}

}  // namespace minidl
