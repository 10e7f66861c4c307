// ops/cpu/layer_norm_cpu.cpp — pending.
#include "ops/cpu/cpu_kernels.h"
#include "core/check.h"

namespace minidl {

void CpuKernels::layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y, Tensor& mean, Tensor& rstd, double eps) {
    throw InternalError("cpu layer_norm: not implemented yet");
}

void CpuKernels::layer_norm_backward(const Tensor& x, const Tensor& w, const Tensor& mean, const Tensor& rstd, const Tensor& gy, Tensor& gx, Tensor& gw, Tensor& gb) {
    throw InternalError("cpu layer_norm_backward: not implemented yet");
}

}  // namespace minidl
