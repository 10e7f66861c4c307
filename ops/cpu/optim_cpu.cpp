// ops/cpu/optim_cpu.cpp — pending.
#include "ops/cpu/cpu_kernels.h"
#include "core/check.h"

namespace minidl {

void CpuKernels::adam_step(Tensor& param, const Tensor& grad, Tensor& exp_avg, Tensor& exp_avg_sq, Tensor* max_exp_avg_sq, const AdamArgs& args) {
    throw InternalError("cpu adam_step: not implemented yet");
}

void CpuKernels::sgd_step(Tensor& param, const Tensor& grad, Tensor* momentum_buffer, const SgdArgs& args) {
    throw InternalError("cpu sgd_step: not implemented yet");
}

void CpuKernels::ema_update(Tensor& shadow, const Tensor& param, double decay) {
    throw InternalError("cpu ema_update: not implemented yet");
}

void CpuKernels::unscale_and_check(std::vector<Tensor>& grads, const Tensor& inv_scale, Tensor& found_inf) {
    throw InternalError("cpu unscale_and_check: not implemented yet");
}

}  // namespace minidl
