// tests/gpu/gpu_support.h — helpers of the CUDA parity suite (minidl_gpu_tests).
//
// Every test runs a kernel of core/kernels.h on the CPU table and on the CUDA table with the same
// inputs (made on the CPU from a seed, copied bit for bit to the GPU) and compares the GPU result
// with the CPU's: bitwise where the algorithm is exact, otherwise at the tolerance of the dtype,
// |gpu - cpu| <= atol + rtol |cpu| (tests/support/compare.h). Failure messages name the kernel,
// the dtype and the shape ("softmax f16 [3, 1000, 1]").
//
// Op-level parity tests (forward + backward through autograd) fit the same pattern: build the
// inputs on the CPU, run the op on Device::cpu() and on gpu(), and check_parity the outputs and
// the .grad()s.
#pragma once

#include <doctest/doctest.h>

#include <functional>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/kernels.h"
#include "core/tensor.h"
#include "tests/support/compare.h"
#include "tests/support/poison.h"

namespace minidl::gpu_test {

inline Device gpu() {
    return Device::cuda(0);
}

// F32, F64, F16, BF16: the dtypes every floating kernel accepts.
const std::vector<DType>& float_dtypes();

struct Tolerance {
    double rtol, atol;
};

// GPU vs CPU when both compute the same formula in the same precision and differ only by rounding
// (summation order, fused multiply-adds, a libm ulp), for results of magnitude ~1:
//   F64   rtol 1e-12, atol 1e-12   (double arithmetic, a few ulps)
//   F32   rtol 1e-5,  atol 1e-6    (float arithmetic, tens of ulps of headroom)
//   F16   rtol 2e-3,  atol 1e-3    (a float difference can flip the final rounding: 1 half ulp
//                                   is 2^-10 ~ 9.8e-4 relative)
//   BF16  rtol 1.6e-2, atol 1e-2   (1 bf16 ulp is 2^-7 ~ 7.8e-3 relative)
Tolerance tolerance(DType dtype);
// The tolerance of `dtype` with both terms multiplied by `factor` (for results that sum many
// terms, where the error grows with the count: said at each use).
Tolerance scaled(DType dtype, double factor);

// "kernel dtype shape", e.g. "softmax f16 [3, 1000, 1]".
std::string describe(const std::string& kernel, DType dtype, const Shape& shape);

// A CPU tensor uniform on [low, high) from `seed` in `dtype` (16-bit values are drawn directly,
// so both backends see exactly the same inputs).
Tensor random_cpu(const Shape& shape, DType dtype, uint64_t seed, double low = -1.0,
                  double high = 1.0);
// I64 values uniform on [0, range).
Tensor ids_cpu(int64_t count, int64_t range, uint64_t seed);

// Output buffers for kernels that must write every element (tests/support/poison.h): NaN, or
// kPoisonI64 for I64, so that a skipped element differs from the other device's written value.
using test::kPoisonI64;
using test::nan_filled;

// Runs fn(kernels, tensors) once with the CPU table on clones of `tensors` and once with the CUDA
// table on copies on gpu(), then brings the GPU tensors back to the host. Undefined tensors stay
// undefined. An error on the GPU (a launch failure, a fault found at the synchronisation) is
// rethrown with `what` in front.
struct Both {
    std::vector<Tensor> cpu, gpu;
};
Both run_both(const std::string& what, const std::vector<Tensor>& tensors,
              const std::function<void(Kernels&, std::vector<Tensor>&)>& fn);

// Runs fn on the CUDA table only (copies of `tensors` on gpu()), returns the results on the host.
std::vector<Tensor> run_gpu(const std::string& what, const std::vector<Tensor>& tensors,
                            const std::function<void(Kernels&, std::vector<Tensor>&)>& fn);

// CHECKs that a GPU result matches the CPU's (shape, dtype and values).
void check_parity(const Tensor& gpu_result, const Tensor& cpu_result, const std::string& what,
                  Tolerance tol);
inline void check_parity(const Tensor& gpu_result, const Tensor& cpu_result,
                         const std::string& what) {
    check_parity(gpu_result, cpu_result, what, tolerance(cpu_result.dtype()));
}
// CHECKs bitwise equality (same dtype, shape and bytes).
void check_bitwise(const Tensor& gpu_result, const Tensor& cpu_result, const std::string& what);

}  // namespace minidl::gpu_test
