// ops/cpu/matmul_cpu.cpp — pending.
#include "ops/cpu/cpu_kernels.h"
#include "core/check.h"

namespace minidl {

void CpuKernels::gemm(const Tensor& a, const Tensor& b, Tensor& c, const GemmArgs& args) {
    throw InternalError("cpu gemm: not implemented yet");
}

}  // namespace minidl
