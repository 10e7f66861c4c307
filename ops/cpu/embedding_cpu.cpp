// ops/cpu/embedding_cpu.cpp — CPU kernels for embedding / embedding_bag (forward and backward)
// and index_select / index_add. The math is in ops/embedding.h and ops/shape_ops.h.
//
// Forward passes gather rows in parallel. Backward passes scatter-add rows into the gradient
// table: several ids may hit the same row, so they are summed in the order of the ids, always —
// deterministic and thread-count independent. To still use both cores on wide tables, the work
// is split over the C columns of the rows (each column range is summed in id order by one
// thread). Ids were range-checked by the op before the kernel ran.
//
// The sums run in acc_t. For F32/F64 that is the gradient's own type: each addition goes straight
// into the row. For F16/BF16 the touched rows are copied into an F32 scratch, summed there, and
// rounded to 16 bits once at the end: rounding the row after every addition would make a
// frequent token's gradient stop growing (in bf16, 256 + 1 rounds back to 256).
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/parallel.h"
#include "ops/cpu/cpu_kernels.h"
#include "ops/cpu/dispatch.h"

namespace minidl {

using cpu::acc_t;
using cpu::dispatch_float;

namespace {

// Column ranges of at least this many columns per thread, so each thread touches whole cache
// lines and enough work to be worth a wake-up.
constexpr int64_t kColumnGrain = 64;
constexpr int64_t kScatterWork = 32768;  // rows x columns below which one thread does it all

// Runs fn(c0, c1) over column ranges of a table with C columns, in parallel when `work` (the
// number of row updates times C) is large enough.
template <typename F>
void over_columns(int64_t C, int64_t work, const F& fn) {
    if (work < kScatterWork) {
        fn(int64_t{0}, C);
        return;
    }
    parallel_for(C, kColumnGrain, fn);
}

// Bag b of ids covers [offsets[b], offsets[b + 1]) (the last bag ends at L).
inline void bag_range(const int64_t* offsets, int64_t B, int64_t L, int64_t b, int64_t& begin,
                      int64_t& end) {
    begin = offsets[b];
    end = b + 1 < B ? offsets[b + 1] : L;
}

// Scatter-add of P contributions into dst ([rows, C]), in order p = 0, 1, ...: contribution p
// adds src row source(p).first, times source(p).second, to dst row keys[p]; a negative source row
// skips it (padding, ids before the first bag). `work` decides threading (over_columns); 0 keeps
// the call on the current thread.
template <typename T, typename Source>
void scatter_add_rows(T* dst, int64_t rows, int64_t C, const int64_t* keys, int64_t P, const T* src,
                      const Source& source, int64_t work) {
    using A = acc_t<T>;
    if constexpr (std::is_same_v<T, A>) {
        over_columns(C, work, [&](int64_t c0, int64_t c1) {
            for (int64_t p = 0; p < P; ++p) {
                const auto [src_row, scale] = source(p);
                if (src_row < 0) continue;
                T* row = dst + keys[p] * C;
                const T* g = src + src_row * C;
                for (int64_t c = c0; c < c1; ++c)
                    row[c] = row[c] + g[c] * scale;
            }
        });
    } else {
        // 16-bit: each touched row gets a slot in an F32 copy (slots in order of first touch),
        // is summed there and rounded once (see the file comment).
        std::vector<int64_t> slot(static_cast<size_t>(rows), -1);
        std::vector<int64_t> touched;
        for (int64_t p = 0; p < P; ++p) {
            if (source(p).first < 0 || slot[keys[p]] >= 0) continue;
            slot[keys[p]] = static_cast<int64_t>(touched.size());
            touched.push_back(keys[p]);
        }
        const int64_t U = static_cast<int64_t>(touched.size());
        std::vector<A> acc(static_cast<size_t>(U * C));
        for (int64_t u = 0; u < U; ++u)
            for (int64_t c = 0; c < C; ++c)
                acc[u * C + c] = static_cast<A>(dst[touched[u] * C + c]);
        over_columns(C, work, [&](int64_t c0, int64_t c1) {
            for (int64_t p = 0; p < P; ++p) {
                const auto [src_row, scale] = source(p);
                if (src_row < 0) continue;
                A* row = acc.data() + slot[keys[p]] * C;
                const T* g = src + src_row * C;
                for (int64_t c = c0; c < c1; ++c)
                    row[c] += static_cast<A>(g[c]) * scale;
            }
        });
        for (int64_t u = 0; u < U; ++u)
            for (int64_t c = 0; c < C; ++c)
                dst[touched[u] * C + c] = static_cast<T>(acc[u * C + c]);
    }
}

}  // namespace

void CpuKernels::embedding(const Tensor& weight, const Tensor& ids, Tensor& out) {
    const int64_t C = weight.shape()[1];
    const int64_t L = ids.numel();
    const int64_t* pid = ids.data<int64_t>();
    const size_t row_bytes = static_cast<size_t>(C) * dtype_size(weight.dtype());
    const auto* pw = static_cast<const char*>(weight.data_ptr());
    auto* po = static_cast<char*>(out.data_ptr());
    parallel_for(L, std::max<int64_t>(1, 32768 / std::max<int64_t>(C, 1)),
                 [&](int64_t b, int64_t e) {
                     for (int64_t i = b; i < e; ++i)
                         std::memcpy(po + i * row_bytes, pw + pid[i] * row_bytes, row_bytes);
                 });
}

void CpuKernels::embedding_backward(const Tensor& gy, const Tensor& ids, Tensor& gweight,
                                    int64_t padding_idx) {
    dispatch_float(gweight.dtype(), "embedding_backward", [&](auto tag) {
        using T = decltype(tag);
        using A = acc_t<T>;
        const int64_t V = gweight.shape()[0], C = gweight.shape()[1];
        const int64_t L = ids.numel();
        const int64_t* pid = ids.data<int64_t>();
        // Contribution i is gy row i, unless its id is the padding index.
        const auto source = [&](int64_t i) {
            return std::pair<int64_t, A>{pid[i] == padding_idx ? -1 : i, A(1)};
        };
        scatter_add_rows(gweight.raw<T>(), V, C, pid, L, gy.raw<T>(), source, L * C);
    });
}

void CpuKernels::embedding_bag(const Tensor& weight, const Tensor& ids, const Tensor& offsets,
                               Tensor& out, BagMode mode, int64_t padding_idx) {
    dispatch_float(weight.dtype(), "embedding_bag", [&](auto tag) {
        using T = decltype(tag);
        using A = acc_t<T>;
        const int64_t C = weight.shape()[1];
        const int64_t L = ids.numel(), B = offsets.numel();
        const int64_t* pid = ids.data<int64_t>();
        const int64_t* poff = offsets.data<int64_t>();
        const T* pw = weight.raw<T>();
        T* po = out.raw<T>();
        parallel_for(B, 1, [&](int64_t b0, int64_t b1) {
            std::vector<A> acc(static_cast<size_t>(C));
            for (int64_t b = b0; b < b1; ++b) {
                int64_t begin, end;
                bag_range(poff, B, L, b, begin, end);
                std::fill(acc.begin(), acc.end(), A(0));
                int64_t count = 0;
                for (int64_t i = begin; i < end; ++i) {
                    if (pid[i] == padding_idx) continue;
                    const T* row = pw + pid[i] * C;
                    for (int64_t c = 0; c < C; ++c)
                        acc[c] += static_cast<A>(row[c]);
                    ++count;
                }
                const A scale = (mode == BagMode::Mean && count > 0) ? A(1) / A(count) : A(1);
                for (int64_t c = 0; c < C; ++c)
                    po[b * C + c] = static_cast<T>(acc[c] * scale);
            }
        });
    });
}

void CpuKernels::embedding_bag_backward(const Tensor& gy, const Tensor& ids, const Tensor& offsets,
                                        Tensor& gweight, BagMode mode, int64_t padding_idx) {
    dispatch_float(gweight.dtype(), "embedding_bag_backward", [&](auto tag) {
        using T = decltype(tag);
        using A = acc_t<T>;
        const int64_t V = gweight.shape()[0], C = gweight.shape()[1];
        const int64_t L = ids.numel(), B = offsets.numel();
        const int64_t* pid = ids.data<int64_t>();
        const int64_t* poff = offsets.data<int64_t>();
        const T* pg = gy.raw<T>();
        T* pw = gweight.raw<T>();
        // Per bag: the scale of its rows' gradient (1 or 1 / count).
        std::vector<A> scale(static_cast<size_t>(B), A(1));
        if (mode == BagMode::Mean) {
            for (int64_t b = 0; b < B; ++b) {
                int64_t begin, end, count = 0;
                bag_range(poff, B, L, b, begin, end);
                for (int64_t i = begin; i < end; ++i)
                    count += pid[i] != padding_idx;
                scale[b] = count > 0 ? A(1) / A(count) : A(0);
            }
        }
        // bag_of[i]: the bag that holds id i, -1 for padding and for ids before the first bag.
        std::vector<int64_t> bag_of(static_cast<size_t>(L), -1);
        for (int64_t b = 0; b < B; ++b) {
            int64_t begin, end;
            bag_range(poff, B, L, b, begin, end);
            for (int64_t i = begin; i < end; ++i)
                if (pid[i] != padding_idx) bag_of[i] = b;
        }
        const auto source = [&](int64_t i) {
            const int64_t b = bag_of[i];
            return std::pair<int64_t, A>{b, b < 0 ? A(0) : scale[b]};
        };
        scatter_add_rows(pw, V, C, pid, L, pg, source, L * C);
    });
}

void CpuKernels::index_select(const Tensor& x, const Tensor& idx, Tensor& out, int64_t outer,
                              int64_t n, int64_t inner) {
    const int64_t J = idx.numel();
    const int64_t* pi = idx.data<int64_t>();
    const size_t esize = dtype_size(x.dtype());
    const auto* px = static_cast<const char*>(x.data_ptr());
    auto* po = static_cast<char*>(out.data_ptr());
    const size_t run = static_cast<size_t>(inner) * esize;
    parallel_for(outer * J, std::max<int64_t>(1, 32768 / std::max<int64_t>(inner, 1)),
                 [&](int64_t b, int64_t e) {
                     for (int64_t k = b; k < e; ++k) {
                         const int64_t o = k / J, j = k % J;
                         std::memcpy(po + (o * J + j) * run, px + (o * n + pi[j]) * run, run);
                     }
                 });
}

void CpuKernels::index_add(const Tensor& gy, const Tensor& idx, Tensor& gx, int64_t outer,
                           int64_t n, int64_t inner) {
    dispatch_float(gx.dtype(), "index_add", [&](auto tag) {
        using T = decltype(tag);
        using A = acc_t<T>;
        const int64_t J = idx.numel();
        const int64_t* pi = idx.data<int64_t>();
        const T* pg = gy.raw<T>();
        T* px = gx.raw<T>();
        const auto source = [](int64_t j) { return std::pair<int64_t, A>{j, A(1)}; };
        // Each outer slice is independent; inside one, rows are added in the order of j.
        parallel_for(outer, 1, [&](int64_t o0, int64_t o1) {
            for (int64_t o = o0; o < o1; ++o)
                scatter_add_rows(px + o * n * inner, n, inner, pi, J, pg + o * J * inner, source,
                                 0);
        });
    });
}

}  // namespace minidl
