// ops/cpu/embedding_cpu.cpp — pending.
#include "ops/cpu/cpu_kernels.h"
#include "core/check.h"

namespace minidl {

void CpuKernels::embedding(const Tensor& weight, const Tensor& ids, Tensor& out) {
    throw InternalError("cpu embedding: not implemented yet");
}

void CpuKernels::embedding_backward(const Tensor& gy, const Tensor& ids, Tensor& gweight, int64_t padding_idx) {
    throw InternalError("cpu embedding_backward: not implemented yet");
}

void CpuKernels::embedding_bag(const Tensor& weight, const Tensor& ids, const Tensor& offsets, Tensor& out, BagMode mode, int64_t padding_idx) {
    throw InternalError("cpu embedding_bag: not implemented yet");
}

void CpuKernels::embedding_bag_backward(const Tensor& gy, const Tensor& ids, const Tensor& offsets, Tensor& gweight, BagMode mode, int64_t padding_idx) {
    throw InternalError("cpu embedding_bag_backward: not implemented yet");
}

void CpuKernels::index_select(const Tensor& x, const Tensor& idx, Tensor& out, int64_t outer, int64_t n, int64_t inner) {
    throw InternalError("cpu index_select: not implemented yet");
}

void CpuKernels::index_add(const Tensor& gy, const Tensor& idx, Tensor& gx, int64_t outer, int64_t n, int64_t inner) {
    throw InternalError("cpu index_add: not implemented yet");
}

}  // namespace minidl
