// ops/embedding.cpp — embedding and embedding_bag: checks, forward, backward (math in
// ops/embedding.h).
//
// The gradient of the table is dense ([V, C], zeros except the rows that were looked up): the
// semantics of PyTorch's default (sparse=False), so a dense optimizer sees exactly what PyTorch's
// would. On the CPU, for a leaf table, backward hands it to the engine row-sparse instead
// (core/row_grad.h): the looked-up rows only, scatter-added by the same kernel into an [R, C]
// block (each id's slot in the sorted distinct rows replaces the id), so nothing is allocated,
// zero-filled or read for the untouched rows — and grad() still returns the dense tensor, bitwise. Every id is range-checked before the kernel runs, so a bad id is an IndexError naming
// it — never an out-of-bounds read (or, on CUDA, a device-side assert that poisons the context).
#include "ops/embedding.h"

#include "core/autograd.h"
#include "core/row_grad.h"
#include "ops/check_args.h"

namespace minidl {

using namespace ops_detail;

namespace {

void check_table(const char* op, const Tensor& weight, const Tensor& ids, int64_t padding_idx) {
    check_floating(op, "weight", weight);
    check_dim(op, "weight", weight, 2);
    check_dtype(op, "ids", ids, DType::I64);
    check_same_device(op, "weight", weight, "ids", ids);
    const int64_t V = weight.shape()[0];
    MDL_CHECK(padding_idx >= -1 && padding_idx < V, IndexError, op, ": padding_idx ", padding_idx,
              " out of range for a table of ", V, " rows (-1 means none)");
    check_ids_in_range(op, "ids", ids, V, "a table of size");
}

// embedding_bag's backward restricted to the looked-up rows (core/row_grad.h): the dense
// kernel run on slots instead of ids, into [R, C] zeros. Padding ids get slot R, which the kernel
// skips as the padding index (and leaves out of the bag counts, as it did the original).
RowGrad bag_row_grad(const Tensor& gy, const Tensor& ids, const Tensor& offsets,
                     const Shape& table, BagMode mode, int64_t padding_idx) {
    const RowSlots rs = row_slots(ids, table[0], padding_idx);
    const int64_t R = rs.rows.numel();
    Tensor values = Tensor::zeros({R, table[1]}, gy.dtype());
    if (gy.numel() > 0)
        kernels_for(gy.device())
            .embedding_bag_backward(gy, rs.slots, offsets, values, mode,
                                    padding_idx >= 0 ? R : -1);
    return RowGrad{rs.rows, values};
}

}  // namespace

Tensor embedding(const Tensor& weight, const Tensor& ids, int64_t padding_idx) {
    const char* op = "embedding";
    check_table(op, weight, ids, padding_idx);
    const int64_t C = weight.shape()[1];
    Shape out_shape = ids.shape();
    out_shape.push_back(C);
    Tensor out = Tensor::empty(out_shape, weight.dtype(), weight.device());
    const Tensor flat_ids = ids.detach().view({ids.numel()});
    const SavedTensor saved_ids(flat_ids, op);
    if (out.numel() > 0) {
        Tensor out2 = out.detach().view({ids.numel(), C});
        kernels_for(weight.device()).embedding(weight, flat_ids, out2);
    }
    if (autograd::should_record({weight})) {
        const Shape table = weight.shape();
        autograd::record(
            op, {weight}, out,
            [saved_ids, table, padding_idx, C, weight](const Tensor& gy, const std::vector<bool>&) {
                const Tensor& flat = saved_ids.get();
                if (autograd::accepts_row_grad(weight, gy.dtype())) {
                    const RowSlots rs = row_slots(flat, table[0], padding_idx);
                    const int64_t R = rs.rows.numel();
                    Tensor values = Tensor::zeros({R, C}, gy.dtype());
                    if (flat.numel() > 0)
                        kernels_for(gy.device())
                            .embedding_backward(gy.detach().view({flat.numel(), C}), rs.slots,
                                                values, padding_idx >= 0 ? R : -1);
                    autograd::accumulate_row_grad(weight, RowGrad{rs.rows, values});
                    return std::vector<Tensor>{Tensor()};  // accumulated above
                }
                Tensor gw = Tensor::zeros(table, gy.dtype(), gy.device());
                if (flat.numel() > 0)
                    kernels_for(gy.device())
                        .embedding_backward(gy.detach().view({flat.numel(), C}), flat, gw,
                                            padding_idx);
                return std::vector<Tensor>{gw};
            });
    }
    return out;
}

Tensor embedding_bag(const Tensor& weight, const Tensor& ids, const Tensor& offsets, BagMode mode,
                     int64_t padding_idx) {
    const char* op = "embedding_bag";
    check_table(op, weight, ids, padding_idx);
    check_dim(op, "ids", ids, 1);
    check_dtype(op, "offsets", offsets, DType::I64);
    check_dim(op, "offsets", offsets, 1);
    check_same_device(op, "ids", ids, "offsets", offsets);
    const int64_t B = offsets.numel(), L = ids.numel(), C = weight.shape()[1];
    // Offsets: start at 0, never decrease, never pass L (PyTorch's rules).
    if (B > 0) {
        const std::vector<int64_t> off = offsets.to_vector<int64_t>();
        MDL_CHECK(off[0] == 0, IndexError, op, ": offsets[0] must be 0, got ", off[0]);
        for (int64_t b = 0; b < B; ++b) {
            MDL_CHECK(off[b] >= 0 && off[b] <= L, IndexError, op, ": offsets[", b, "] = ", off[b],
                      " is out of range for ", L, " ids");
            MDL_CHECK(b == 0 || off[b] >= off[b - 1], IndexError, op,
                      ": offsets must not decrease, offsets[", b - 1, "] = ", off[b - 1],
                      " > offsets[", b, "] = ", off[b]);
        }
    }
    Tensor out = Tensor::empty({B, C}, weight.dtype(), weight.device());
    if (out.numel() > 0)
        kernels_for(weight.device()).embedding_bag(weight, ids, offsets, out, mode, padding_idx);
    if (autograd::should_record({weight})) {
        const Shape table = weight.shape();
        SavedTensor saved_ids(ids, op), saved_offsets(offsets, op);
        autograd::record(op, {weight}, out,
                         [saved_ids, saved_offsets, table, mode, padding_idx, weight](
                             const Tensor& gy, const std::vector<bool>&) {
                             if (autograd::accepts_row_grad(weight, gy.dtype())) {
                                 autograd::accumulate_row_grad(
                                     weight, bag_row_grad(gy, saved_ids.get(), saved_offsets.get(),
                                                          table, mode, padding_idx));
                                 return std::vector<Tensor>{Tensor()};  // accumulated
                             }
                             Tensor gw = Tensor::zeros(table, gy.dtype(), gy.device());
                             if (gy.numel() > 0)
                                 kernels_for(gy.device())
                                     .embedding_bag_backward(gy, saved_ids.get(),
                                                             saved_offsets.get(), gw, mode,
                                                             padding_idx);
                             return std::vector<Tensor>{gw};
                         });
    }
    return out;
}

Tensor embedding_bag(const Tensor& weight, const Tensor& ids_2d, BagMode mode,
                     int64_t padding_idx) {
    check_dim("embedding_bag", "ids", ids_2d, 2);
    const int64_t B = ids_2d.shape()[0], L = ids_2d.shape()[1];
    const Tensor offsets =
        Tensor::arange(0, static_cast<double>(B * L), static_cast<double>(std::max<int64_t>(L, 1)),
                       DType::I64, ids_2d.device());
    return embedding_bag(weight, ids_2d.detach().view({B * L}),
                         L > 0 ? offsets : Tensor::zeros({B}, DType::I64, ids_2d.device()), mode,
                         padding_idx);
}

}  // namespace minidl
