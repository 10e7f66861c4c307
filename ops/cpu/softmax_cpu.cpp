// ops/cpu/softmax_cpu.cpp — pending.
#include "ops/cpu/cpu_kernels.h"
#include "core/check.h"

namespace minidl {

void CpuKernels::softmax(const Tensor& x, Tensor& y, int64_t outer, int64_t n, int64_t inner, bool log) {
    throw InternalError("cpu softmax: not implemented yet");
}

void CpuKernels::softmax_backward(const Tensor& y, const Tensor& gy, Tensor& gx, int64_t outer, int64_t n, int64_t inner, bool log) {
    throw InternalError("cpu softmax_backward: not implemented yet");
}

void CpuKernels::cross_entropy(const Tensor& logits, const Tensor& targets, Tensor& losses, Tensor& lse, double label_smoothing, int64_t ignore_index) {
    throw InternalError("cpu cross_entropy: not implemented yet");
}

void CpuKernels::cross_entropy_backward(const Tensor& logits, const Tensor& targets, const Tensor& lse, const Tensor& row_grad, Tensor& gx, double label_smoothing, int64_t ignore_index) {
    throw InternalError("cpu cross_entropy_backward: not implemented yet");
}

}  // namespace minidl
