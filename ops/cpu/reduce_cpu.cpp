// ops/cpu/reduce_cpu.cpp — pending.
#include "ops/cpu/cpu_kernels.h"
#include "core/check.h"

namespace minidl {

void CpuKernels::reduce(ReduceOp op, const Tensor& x, Tensor& out, Tensor* indices, int64_t outer, int64_t n, int64_t inner) {
    throw InternalError("cpu reduce: not implemented yet");
}

double CpuKernels::sum_squares(const std::vector<Tensor>& xs) {
    throw InternalError("cpu sum_squares: not implemented yet");
}

void CpuKernels::minmax_i64(const Tensor& x, int64_t& min_out, int64_t& max_out) {
    throw InternalError("cpu minmax_i64: not implemented yet");
}

}  // namespace minidl
