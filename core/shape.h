// core/shape.h — tensor shapes and the arithmetic on them.
//
// A Shape is the list of dimension sizes, outermost first (row-major). A 0-d tensor has the empty
// shape {} and one element. Broadcasting follows NumPy/PyTorch: shapes are aligned at the right,
// and a size-1 dimension stretches to the other size.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

namespace minidl {

using Shape = std::vector<int64_t>;

// Product of the sizes (1 for the empty shape). Assumes a valid shape (see checked_numel).
int64_t numel(const Shape& s);

// Validates a shape given by a caller and returns its element count: every size must be >= 0,
// and the product of the sizes must fit in int64 — with zeros counted as 1, so that the strides
// of an empty tensor such as [0, 2^62, 4] cannot overflow either. Throws ShapeError naming `op`
// and the shape otherwise, before anything is allocated.
int64_t checked_numel(const Shape& s, const char* op);

// "[2, 3]" — the form every error message uses.
std::string shape_str(const Shape& s);

// The broadcast of a and b; throws ShapeError naming `op` and both shapes when they don't
// broadcast.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

// Maps a possibly negative dim (-1 = last) to [0, ndim); throws IndexError naming `op`.
int64_t normalize_dim(int64_t dim, int64_t ndim, const char* op);

// Row-major strides of a contiguous tensor of shape s (in elements).
std::vector<int64_t> contiguous_strides(const Shape& s);

// Splits a contiguous shape around `dim` into (outer, n, inner): the product of the sizes before
// dim, the size of dim, and the product after. Reductions and softmax work on this 3-d view.
struct DimSplit {
    int64_t outer, n, inner;
};
DimSplit split_at(const Shape& s, int64_t dim);

}  // namespace minidl
