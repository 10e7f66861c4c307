// ops/cuda/matmul.cu — the CUDA GEMM through cuBLAS: C[b] = alpha op(A[b]) op(B[b]) + beta C[b]
// for b < batch (core/kernels.h GemmArgs; op(A) [M, K], op(B) [K, N], C [M, N], row-major).
//
// cuBLAS is column-major. A row-major [R, C] matrix is, byte for byte, the column-major [C, R]
// matrix (its transpose), so instead of C = op(A) op(B) we ask cuBLAS for
//   C^T = op(B)^T op(A)^T        (an [N, M] column-major product, which is C row-major)
// with B as the first operand: op(B)^T is B's column-major view itself (CUBLAS_OP_N, ld = N) when
// B is not transposed, and its transpose (CUBLAS_OP_T, ld = K) when it is; likewise A with ld = K
// or M. ldc = N. A batch stride of 0 reuses one matrix for every batch entry (a weight shared by
// a batch of inputs); cuBLAS's strided-batched GEMM takes it as is.
//
// Precision: F64 uses cublasDgemmStridedBatched. F32 uses CUBLAS_COMPUTE_32F: full-precision F32
// FMAs, no TF32, unless set_allow_tf32(true) (core/determinism.h) selects
// CUBLAS_COMPUTE_32F_FAST_TF32. F16 and BF16 inputs are multiplied on the tensor cores with F32
// accumulation and the result rounded once to 16 bits (CUBLAS_COMPUTE_32F, F32 alpha/beta), as
// the CPU kernel does. cuBLAS gives bitwise-reproducible results for a given GPU model, toolkit
// and stream, and every device here has one stream and one handle.
#include <climits>

#include "core/determinism.h"
#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/cuda_kernels.h"

namespace minidl {

using namespace cuda_detail;

namespace {

// C = beta C for the empty inner dimension (k = 0): no product to add.
template <typename T>
__global__ void scale_elementwise_kernel(T* c, int64_t n, double beta) {
    using A = acc_t<T>;
    for (int64_t i = global_thread(); i < n; i += grid_stride())
        c[i] = beta == 0.0 ? convert<T>(A(0)) : convert<T>(static_cast<A>(beta) * convert<A>(c[i]));
}

cudaDataType_t cuda_type(DType dtype) {
    switch (dtype) {
        case DType::F32:
            return CUDA_R_32F;
        case DType::F16:
            return CUDA_R_16F;
        case DType::BF16:
            return CUDA_R_16BF;
        default:
            throw DTypeError(detail::concat("gemm: no cuBLAS Ex type for ", dtype));
    }
}

int checked_int(int64_t v, const char* what, const GemmArgs& g) {
    MDL_CHECK(v >= 0 && v <= INT_MAX, ShapeError, "gemm: ", what, " = ", v,
              " exceeds cuBLAS's 32-bit limit (m=", g.m, " n=", g.n, " k=", g.k, " batch=", g.batch,
              ")");
    return static_cast<int>(v);
}

}  // namespace

void CudaKernels::gemm(const Tensor& a, const Tensor& b, Tensor& c, const GemmArgs& g) {
    if (g.m == 0 || g.n == 0 || g.batch == 0) return;
    const int dev = cuda::device_of(c);
    cuda::DeviceGuard guard(dev);
    const cudaStream_t s = cuda::stream(dev);
    MDL_ASSERT(g.batch == 1 || g.stride_c >= g.m * g.n,
               "gemm: batch entries of C overlap, stride_c=", g.stride_c, " for [", g.m, ", ", g.n,
               "]");
    if (g.k == 0) {  // C = beta C, batch entry by batch entry
        dispatch_float(c.dtype(), "gemm", [&](auto tag) {
            using T = decltype(tag);
            for (int64_t i = 0; i < g.batch; ++i) {
                scale_elementwise_kernel<T><<<grid_for(g.m * g.n), kBlock, 0, s>>>(
                    c.raw<T>() + i * g.stride_c, g.m * g.n, g.beta);
                MDL_CUDA_LAUNCH_CHECK();
            }
        });
        return;
    }
    const int m = checked_int(g.m, "m", g), n = checked_int(g.n, "n", g);
    const int k = checked_int(g.k, "k", g), batch = checked_int(g.batch, "batch", g);
    // Column-major C^T [n, m] = op(B)^T [n, k] op(A)^T [k, m] (see the file comment).
    const cublasOperation_t op_b = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t op_a = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    const int ldb = g.trans_b ? k : n;
    const int lda = g.trans_a ? m : k;
    const int ldc = n;

    cublasHandle_t handle = cuda::blas_handle(dev);
    std::lock_guard<std::mutex> lock(cuda::blas_mutex(dev));
    if (c.dtype() == DType::F64) {
        const double alpha = g.alpha, beta = g.beta;
        MDL_CUBLAS_CHECK(cublasDgemmStridedBatched(handle, op_b, op_a, n, m, k, &alpha,
                                                   b.raw<const double>(), ldb, g.stride_b,
                                                   a.raw<const double>(), lda, g.stride_a, &beta,
                                                   c.raw<double>(), ldc, g.stride_c, batch));
        return;
    }
    const cudaDataType_t type = cuda_type(c.dtype());
    const cublasComputeType_t compute =
        c.dtype() == DType::F32 && allow_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    const float alpha = static_cast<float>(g.alpha), beta = static_cast<float>(g.beta);
    MDL_CUBLAS_CHECK(cublasGemmStridedBatchedEx(handle, op_b, op_a, n, m, k, &alpha, b.data_ptr(),
                                                type, ldb, g.stride_b, a.data_ptr(), type, lda,
                                                g.stride_a, &beta, c.data_ptr(), type, ldc,
                                                g.stride_c, batch, compute, CUBLAS_GEMM_DEFAULT));
}

}  // namespace minidl
