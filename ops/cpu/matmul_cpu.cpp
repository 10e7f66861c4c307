// ops/cpu/matmul_cpu.cpp — CPU GEMM: C[b] = alpha op(A[b]) op(B[b]) + beta C[b] (core/kernels.h).
//
// Eigen computes each product single-threaded; we thread it ourselves by cutting C into
// fixed-size panels (panel_rows(m) rows, or kPanelCols columns when C is short and wide) that run
// in parallel on the pool. The panel size depends only on the shapes, never on the thread count, so
// every element of C is computed by the same Eigen call whatever set_num_threads says: results
// are bitwise identical for 1 or N threads. (Eigen's own OpenMP GEMM was slower on 2 threads than
// on 1 on the development machine: ../docs/performance.md.)
//
// Backend (MINIDL_GEMM_BACKEND in CMakeLists.txt): with OpenBLAS, EIGEN_USE_BLAS routes each
// panel's product to sgemm_/dgemm_ (Eigen's BLAS binding); OpenBLAS's own thread pool is set to
// one thread, so the panels above stay the only parallelism (no second pool oversubscribing the
// cores, and the thread-count independence holds by construction as before). Without OpenBLAS,
// Eigen's kernels. The panel is larger with OpenBLAS: every call packs its whole op(B), so fewer,
// taller panels pack less (panel_rows; the sizes depend on the shape only, as before).
//
// F16/BF16: A and B are widened to float, multiplied with float accumulation, and C is rounded
// once — what autocast promises (and what cuBLAS does with CUBLAS_COMPUTE_32F).
// GCC 12 reports a false "(may be) used uninitialized" inside its own AVX-512 intrinsics when it
// inlines Eigen's GEMM packing routines (-march=native on AVX-512 machines); silence it for this
// file only, where Eigen's GEMM is instantiated.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#if defined(MINIDL_GEMM_OPENBLAS)
#define EIGEN_USE_BLAS
#endif
#include <Eigen/Core>
#include <algorithm>
#include <mutex>
#include <vector>

#include "core/parallel.h"
#include "ops/cpu/cpu_kernels.h"
#include "ops/cpu/dispatch.h"

namespace minidl {

namespace {

template <typename T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using ConstMap = Eigen::Map<const RowMatrix<T>>;
template <typename T>
using MutMap = Eigen::Map<RowMatrix<T>>;

#if defined(MINIDL_GEMM_OPENBLAS)
extern "C" void openblas_set_num_threads(int);

// Every call packs its whole op(B), so panels are taller than Eigen's: a quarter of C's rows
// (64..512, a multiple of 64) gives 2-4 threads work with little repacking.
int64_t panel_rows(int64_t m) {
    return std::clamp<int64_t>((m / 4 + 63) / 64 * 64, 64, 512);
}

// OpenBLAS runs each call on the calling thread only (see the file comment). Once per process,
// before the first product.
void single_threaded_blas() {
    static std::once_flag once;
    std::call_once(once, [] { openblas_set_num_threads(1); });
}
#else
int64_t panel_rows(int64_t) {
    return 128;
}
void single_threaded_blas() {}
#endif
constexpr int64_t kPanelCols = 256;
// Below this many multiply-adds one call does it all (waking the pool would cost more).
constexpr int64_t kSerialFlops = int64_t{1} << 18;

// C = alpha op(A) op(B) + beta C for one matrix, float or double, threaded over panels.
template <typename T>
void gemm_one(const T* a, const T* b, T* c, const GemmArgs& g) {
    const ConstMap<T> A(a, g.trans_a ? g.k : g.m, g.trans_a ? g.m : g.k);
    const ConstMap<T> B(b, g.trans_b ? g.n : g.k, g.trans_b ? g.k : g.n);
    MutMap<T> C(c, g.m, g.n);
    const T alpha = static_cast<T>(g.alpha), beta = static_cast<T>(g.beta);

    // C[r0:r1, c0:c1] = alpha op(A)[r0:r1, :] op(B)[:, c0:c1] + beta C[r0:r1, c0:c1]
    auto panel = [&](int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
        auto Cp = C.block(r0, c0, r1 - r0, c1 - c0);
        auto run = [&](const auto& opA, const auto& opB) {
            if (beta == T(0)) {
                Cp.noalias() = alpha * (opA * opB);
            } else {
                Cp *= beta;
                Cp.noalias() += alpha * (opA * opB);
            }
        };
        const auto Ar = [&] { return A.middleRows(r0, r1 - r0); };
        const auto Ac = [&] { return A.middleCols(r0, r1 - r0).transpose(); };
        const auto Bc = [&] { return B.middleCols(c0, c1 - c0); };
        const auto Br = [&] { return B.middleRows(c0, c1 - c0).transpose(); };
        if (!g.trans_a && !g.trans_b) run(Ar(), Bc());
        if (!g.trans_a && g.trans_b) run(Ar(), Br());
        if (g.trans_a && !g.trans_b) run(Ac(), Bc());
        if (g.trans_a && g.trans_b) run(Ac(), Br());
    };

    single_threaded_blas();
    if (g.m * g.n * g.k <= kSerialFlops) {
        panel(0, g.m, 0, g.n);
    } else if (const int64_t rows = panel_rows(g.m); g.m >= 2 * rows || g.n < 2 * kPanelCols) {
        parallel_blocks(g.m, rows, [&](int64_t, int64_t r0, int64_t r1) { panel(r0, r1, 0, g.n); });
    } else {
        parallel_blocks(g.n, kPanelCols,
                        [&](int64_t, int64_t c0, int64_t c1) { panel(0, g.m, c0, c1); });
    }
}

// 16-bit inputs: widen to float, multiply, round once.
template <typename H>
void gemm_half(const H* a, const H* b, H* c, const GemmArgs& g) {
    const int64_t na = g.m * g.k, nb = g.k * g.n, nc = g.m * g.n;
    std::vector<float> fa(na), fb(nb), fc(nc);
    for (int64_t i = 0; i < na; ++i)
        fa[i] = static_cast<float>(a[i]);
    for (int64_t i = 0; i < nb; ++i)
        fb[i] = static_cast<float>(b[i]);
    if (g.beta != 0.0)
        for (int64_t i = 0; i < nc; ++i)
            fc[i] = static_cast<float>(c[i]);
    gemm_one<float>(fa.data(), fb.data(), fc.data(), g);
    for (int64_t i = 0; i < nc; ++i)
        c[i] = static_cast<H>(fc[i]);
}

}  // namespace

void CpuKernels::gemm(const Tensor& a, const Tensor& b, Tensor& c, const GemmArgs& args) {
    if (args.m == 0 || args.n == 0) return;
    cpu::dispatch_float(c.dtype(), "gemm", [&](auto tag) {
        using T = decltype(tag);
        const T* pa = a.raw<T>();
        const T* pb = b.raw<T>();
        T* pc = c.raw<T>();
        for (int64_t i = 0; i < args.batch; ++i) {
            const T* ai = pa + i * args.stride_a;
            const T* bi = pb + i * args.stride_b;
            T* ci = pc + i * args.stride_c;
            if (args.k == 0) {  // empty inner dimension: C = beta C
                using A = cpu::acc_t<T>;
                for (int64_t j = 0; j < args.m * args.n; ++j)
                    ci[j] = static_cast<T>(args.beta == 0.0
                                               ? A(0)
                                               : static_cast<A>(args.beta) * static_cast<A>(ci[j]));
                continue;
            }
            if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
                gemm_one<T>(ai, bi, ci, args);
            } else {
                gemm_half<T>(ai, bi, ci, args);
            }
        }
    });
}

}  // namespace minidl
