// core/shape.cpp — shape arithmetic (see shape.h).
#include "core/shape.h"

#include "core/check.h"

namespace minidl {

int64_t numel(const Shape& s) {
    int64_t n = 1;
    for (int64_t d : s)
        n *= d;
    return n;
}

int64_t checked_numel(const Shape& s, const char* op) {
    int64_t nonzero_product = 1;
    bool empty = false;
    for (int64_t d : s) {
        MDL_CHECK(d >= 0, ShapeError, op, ": negative dimension in shape ", shape_str(s));
        if (d == 0) {
            empty = true;
            continue;
        }
        MDL_CHECK(!__builtin_mul_overflow(nonzero_product, d, &nonzero_product), ShapeError, op,
                  ": shape ", shape_str(s), " has more than 2^63 - 1 elements");
    }
    return empty ? 0 : nonzero_product;
}

std::string shape_str(const Shape& s) {
    std::string out = "[";
    for (size_t i = 0; i < s.size(); ++i) {
        if (i) out += ", ";
        out += std::to_string(s[i]);
    }
    return out + "]";
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
    const size_t n = std::max(a.size(), b.size());
    Shape out(n);
    for (size_t i = 0; i < n; ++i) {
        // Align at the right: missing leading dims count as 1.
        const int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
        const int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
        MDL_CHECK(da == db || da == 1 || db == 1, ShapeError, op,
                  ": shapes do not broadcast, a=", shape_str(a), " b=", shape_str(b),
                  " (dimension ", i, " from the left of the aligned shapes: ", da, " vs ", db, ")");
        out[i] = da == 1 ? db : da;
    }
    return out;
}

int64_t normalize_dim(int64_t dim, int64_t ndim, const char* op) {
    // A 0-d tensor accepts dim 0 and -1, as in PyTorch.
    const int64_t lim = std::max<int64_t>(ndim, 1);
    MDL_CHECK(dim >= -lim && dim < lim, IndexError, op, ": dim ", dim,
              " out of range for a tensor with ", ndim, " dimensions");
    return dim < 0 ? dim + lim : dim;
}

std::vector<int64_t> contiguous_strides(const Shape& s) {
    std::vector<int64_t> st(s.size());
    int64_t acc = 1;
    for (size_t i = s.size(); i-- > 0;) {
        st[i] = acc;
        acc *= s[i];
    }
    return st;
}

DimSplit split_at(const Shape& s, int64_t dim) {
    DimSplit r{1, s.empty() ? 1 : s[dim], 1};
    for (int64_t i = 0; i < dim; ++i)
        r.outer *= s[i];
    for (size_t i = dim + 1; i < s.size(); ++i)
        r.inner *= s[i];
    return r;
}

}  // namespace minidl
