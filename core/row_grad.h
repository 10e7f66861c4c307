// core/row_grad.h — row-sparse gradients: an embedding table's gradient kept as its touched rows.
//
// Why. The gradient of an embedding lookup with respect to its table W [V, C] is zero except in
// the rows that were looked up (the text classifier: ~4,000 of 27,769 rows per batch). PyTorch's
// default (sparse=False) materialises it dense: a [V, C] buffer is zero-filled every step,
// scatter-added into, then read in full by the optimizer: 8 of the 32 bytes per table element a
// step moves (zero-fill 4, Adam's read of g 4; Adam's reads and writes of p, m, v are the other
// 24) and a 7 MB buffer, for rows that hold nothing but +0.0.
//
// What. The CPU backward of embedding / embedding_bag hands the gradient of a leaf table to the
// engine as
//     rows    I64 [R]   the distinct looked-up rows (padding_idx left out), strictly increasing
//     values  [R, C]    their gradient: each row's contributions summed in the order of the ids,
//                       starting from +0.0 — the very additions the dense kernel makes
// and everything observable stays PyTorch's dense semantics:
//   - Tensor::grad() materialises the dense tensor on first access (zeros, then the rows copied
//     in): bitwise the tensor the dense path builds. Clipping, AMP unscaling, FGM's norm, data
//     parallel all-reduces, user code — all of them see that dense tensor.
//   - Adam/AdamW update EVERY row, the untouched ones with g = +0.0 (their moments decay and their
//     weights still move): bitwise the dense update, without a dense gradient in memory
//     (Kernels::adam_step_rows). This is not lazy/sparse Adam.
//   - A second backward adds into it: rows merged (a + b where both hold the row; the row alone
//     where one does, which is exactly the dense x + 0 = x since stored values are never -0.0 —
//     a sum that starts from +0.0 cannot round to -0.0); into an existing dense gradient through
//     the dense add.
// So the row-sparse form is a representation, not an approximation: tests/core/test_row_grad.cpp
// checks bitwise equality with the dense path (gradients, Adam/AdamW trajectories, accumulation,
// FGM) and bench/ measures the gain.
//
// When. Only where it cannot change what anyone sees: the CPU, a 2-D F32/F64 table that is a leaf
// requiring grad, without post-accumulate hooks (hooks — data-parallel bucketing — get dense
// gradients), and a gradient of the table's dtype. set_row_sparse_grads(false) turns it off
// process-wide (the dense path, kept for comparison).
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace minidl {

struct RowGrad {
    Tensor rows;    // I64 [R], strictly increasing, on the table's device
    Tensor values;  // [R, C], the table's dtype
};

// On by default. Off: embedding backward passes build dense gradients, as PyTorch does.
void set_row_sparse_grads(bool enabled);
bool row_sparse_grads();

// The gradient of `t` when it is currently held row-sparse, else nullptr (a dense gradient, no
// gradient, or not a leaf). Does not materialise anything.
const RowGrad* row_grad(const Tensor& t);

// The dense tensor of `shape` ([V, C]) that g stands for.
Tensor densify(const RowGrad& g, const Shape& shape);

// For the embedding ops: the distinct ids of `ids` (I64 [L], on the CPU, each in [0, num_rows))
// other than padding_idx, increasing (`rows`, [R]), and for each id its position in `rows`
// (`slots`, [L]; padding ids get R). A scatter-add by slots into an [R, C] table of zeros is the
// dense scatter-add restricted to the touched rows, in the same order.
struct RowSlots {
    Tensor rows;
    Tensor slots;
};
RowSlots row_slots(const Tensor& ids, int64_t num_rows, int64_t padding_idx);

// ---- the dense operations on a row-sparse gradient, bitwise (ops/cpu: beside the dense kernels,
// whose order of operations they follow) -----------------------------------------------------
// For a table [V, C] and its gradient g as `rows` [R] (strictly increasing) and `values` [R, C]:

// The CPU's sum_squares of the dense g, bitwise: the same double accumulations in the same fixed
// blocks and lanes of the flat index (the untouched rows add exactly +0.0), without materialising
// g.
double row_sum_squares(const Tensor& rows, const Tensor& values, int64_t row_width);
// table += alpha * g (the CPU's axpy), on the touched rows only: each touched element gets the very
// rounding the dense kernel gives it; an untouched one is left as it is, where the dense kernel
// writes x + alpha * 0 (the same value, except that -0.0 becomes +0.0).
void row_axpy(double alpha, const Tensor& rows, const Tensor& values, Tensor& table);
// PGD's projection on the touched rows, center [R, C] being their values before the attack:
// row_distance_sum_squares is sum_squares of the dense table - center (zero elsewhere), bitwise
// (the difference rounded to the dtype, then row_sum_squares' order), and row_project sets
// table[rows[k]] = center[k] + (table[rows[k]] - center[k]) * scale with the sub, mul and add ops'
// roundings. Neither allocates.
double row_distance_sum_squares(const Tensor& rows, const Tensor& center, const Tensor& table);
void row_project(const Tensor& rows, const Tensor& center, double scale, Tensor& table);
// AWP's element-wise bound on the touched rows: table[rows[k]] = clamp(table[rows[k]], c - |c| eps,
// c + |c| eps) with c = center[k] ([R, C]), bitwise the ops abs, mul, sub, add and clamp on the
// gathered rows, in one pass without temporaries.
void row_clamp_relative(const Tensor& rows, const Tensor& center, double eps, Tensor& table);
// Copies of the rows `rows` of `table` ([R, C]), and their restoration, bitwise.
Tensor gather_rows(const Tensor& table, const Tensor& rows);
void scatter_rows(const Tensor& saved, const Tensor& rows, Tensor& table);

namespace autograd {

// Whether a backward pass may hand `table`'s gradient (of dtype grad_dtype) to the engine as a
// RowGrad: the conditions at the top of this file.
bool accepts_row_grad(const Tensor& table, DType grad_dtype);

// Accumulates g into the gradient of the leaf `table` (a row-sparse gradient stays row-sparse;
// a dense one gets the dense add). Call only when accepts_row_grad(table, ...) held.
void accumulate_row_grad(const Tensor& table, RowGrad g);

}  // namespace autograd
}  // namespace minidl
