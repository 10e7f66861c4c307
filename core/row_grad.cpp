// core/row_grad.cpp — row-sparse gradients (see row_grad.h for what they are and why the numbers
// are the dense path's, bit for bit).
#include "core/row_grad.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <vector>

#include "core/autograd.h"
#include "core/check.h"
#include "core/kernels.h"

namespace minidl {

namespace {

std::atomic<bool> g_row_sparse_grads{true};

// a ∪ b of two row-sparse gradients of the same table: rows in increasing order; where both hold
// a row its values are a + b (the dense add), where one does its values are copied (the dense
// x + 0 = x; stored values are never -0.0).
template <typename T>
RowGrad merge_rows(const RowGrad& a, const RowGrad& b) {
    const int64_t ra = a.rows.numel(), rb = b.rows.numel();
    const int64_t C = a.values.shape()[1];
    const int64_t* pa = a.rows.data<int64_t>();
    const int64_t* pb = b.rows.data<int64_t>();
    if (ra == rb && std::equal(pa, pa + ra, pb)) {
        // The same rows (an attack's second pass over the batch): the union is a's rows, shared
        // (row lists are never written after they are made), and the values add element by
        // element, as below.
        RowGrad out{a.rows, Tensor::empty({ra, C}, a.values.dtype(), a.values.device())};
        const T* va = a.values.data<T>();
        const T* vb = b.values.data<T>();
        T* vo = out.values.data<T>();
        for (int64_t i = 0; i < ra * C; ++i)
            vo[i] = va[i] + vb[i];
        return out;
    }
    std::vector<int64_t> rows;
    rows.reserve(static_cast<size_t>(ra + rb));
    for (int64_t i = 0, j = 0; i < ra || j < rb;) {
        if (j == rb || (i < ra && pa[i] < pb[j])) {
            rows.push_back(pa[i++]);
        } else if (i == ra || pb[j] < pa[i]) {
            rows.push_back(pb[j++]);
        } else {
            rows.push_back(pa[i]);
            ++i;
            ++j;
        }
    }
    const auto R = static_cast<int64_t>(rows.size());
    RowGrad out{Tensor::from_vector(rows, {R}),
                Tensor::empty({R, C}, a.values.dtype(), a.values.device())};
    const T* va = a.values.data<T>();
    const T* vb = b.values.data<T>();
    T* vo = out.values.data<T>();
    for (int64_t i = 0, j = 0, k = 0; k < R; ++k) {
        T* dst = vo + k * C;
        const bool in_a = i < ra && pa[i] == rows[static_cast<size_t>(k)];
        const bool in_b = j < rb && pb[j] == rows[static_cast<size_t>(k)];
        if (in_a && in_b) {
            for (int64_t c = 0; c < C; ++c)
                dst[c] = va[i * C + c] + vb[j * C + c];
        } else {
            const T* src = in_a ? va + i * C : vb + j * C;
            for (int64_t c = 0; c < C; ++c)
                dst[c] = src[c];
        }
        i += in_a;
        j += in_b;
    }
    return out;
}

}  // namespace

void set_row_sparse_grads(bool enabled) {
    g_row_sparse_grads.store(enabled);
}

bool row_sparse_grads() {
    return g_row_sparse_grads.load();
}

const RowGrad* row_grad(const Tensor& t) {
    return t.defined() ? t.impl()->row_grad.get() : nullptr;
}

Tensor densify(const RowGrad& g, const Shape& shape) {
    MDL_ASSERT(shape.size() == 2 && g.values.dim() == 2 && g.values.shape()[1] == shape[1] &&
                   g.rows.numel() == g.values.shape()[0],
               "densify: rows ", shape_str(g.rows.shape()), " and values ",
               shape_str(g.values.shape()), " do not fit a table of shape ", shape_str(shape));
    NoGradGuard no_grad;
    Tensor dense = Tensor::zeros(shape, g.values.dtype(), g.values.device());
    if (g.rows.numel() > 0)
        kernels_for(dense.device())
            .index_add(g.values, g.rows, dense, 1, shape[0], shape[1]);  // 0 + v = v exactly
    return dense;
}

RowSlots row_slots(const Tensor& ids, int64_t num_rows, int64_t padding_idx) {
    MDL_ASSERT(ids.device().is_cpu() && ids.dtype() == DType::I64, "row_slots: ids must be I64 ",
               "on the CPU, got ", ids.dtype(), " on ", ids.device());
    const int64_t L = ids.numel();
    const int64_t* pid = ids.data<int64_t>();
    // One bit per table row marks the rows in use; a row's slot is the number of marked rows
    // before it (the prefix count of whole 64-bit words plus a popcount inside its word).
    std::vector<uint64_t> used(static_cast<size_t>((num_rows + 63) / 64), 0);
    for (int64_t i = 0; i < L; ++i)
        if (pid[i] != padding_idx) used[static_cast<size_t>(pid[i] >> 6)] |= 1ull << (pid[i] & 63);
    std::vector<int64_t> before(used.size());
    int64_t R = 0;
    for (size_t w = 0; w < used.size(); ++w) {
        before[w] = R;
        R += std::popcount(used[w]);
    }
    RowSlots out{Tensor::empty({R}, DType::I64), Tensor::empty({L}, DType::I64)};
    int64_t* rows = out.rows.data<int64_t>();
    for (size_t w = 0, k = 0; w < used.size(); ++w)
        for (uint64_t bits = used[w]; bits != 0; bits &= bits - 1)
            rows[k++] = static_cast<int64_t>(w) * 64 + std::countr_zero(bits);
    int64_t* slots = out.slots.data<int64_t>();
    for (int64_t i = 0; i < L; ++i) {
        if (pid[i] == padding_idx) {
            slots[i] = R;
            continue;
        }
        const auto w = static_cast<size_t>(pid[i] >> 6);
        const uint64_t below = (1ull << (pid[i] & 63)) - 1;
        slots[i] = before[w] + std::popcount(used[w] & below);
    }
    return out;
}

// The generic row-sparse Adam step: the dense gradient, then the dense kernel. Backends override
// it with a fused pass (ops/cpu/optim_cpu.cpp); ones that never receive row-sparse gradients
// (CUDA: the embedding backward there stays dense) keep this.
void Kernels::adam_step_rows(Tensor& param, const Tensor& rows, const Tensor& values,
                             Tensor& exp_avg, Tensor& exp_avg_sq, Tensor* max_exp_avg_sq,
                             const AdamArgs& args) {
    const Tensor dense = densify(RowGrad{rows, values}, param.shape());
    adam_step(param, dense, exp_avg, exp_avg_sq, max_exp_avg_sq, args);
}

namespace autograd {

bool accepts_row_grad(const Tensor& table, DType grad_dtype) {
    return row_sparse_grads() && table.defined() && table.is_leaf() && table.requires_grad() &&
           table.device().is_cpu() && table.dim() == 2 &&
           (table.dtype() == DType::F32 || table.dtype() == DType::F64) &&
           grad_dtype == table.dtype() && table.impl()->post_accumulate_hooks.empty();
}

void accumulate_row_grad(const Tensor& table, RowGrad g) {
    MDL_ASSERT(g.values.dtype() == table.dtype() && g.values.dim() == 2 &&
                   g.values.shape()[1] == table.shape()[1],
               "accumulate_row_grad: values ", g.values.dtype(), " ", shape_str(g.values.shape()),
               " do not fit the table ", table.dtype(), " ", shape_str(table.shape()));
    TensorImpl* impl = table.impl();
    NoGradGuard no_grad;
    if (impl->grad.defined()) {
        impl->grad.add_(densify(g, table.shape()));  // exactly the dense path's accumulation
        return;
    }
    if (!impl->row_grad) {
        impl->row_grad = std::make_shared<RowGrad>(std::move(g));
        return;
    }
    const RowGrad& held = *impl->row_grad;
    impl->row_grad = std::make_shared<RowGrad>(table.dtype() == DType::F32
                                                   ? merge_rows<float>(held, g)
                                                   : merge_rows<double>(held, g));
}

}  // namespace autograd
}  // namespace minidl
