// ops/cpu/memory_cpu.cpp — CPU kernels that move and convert data: copy, cast, fill, arange,
// strided_copy, permute; and the CPU kernel table itself.
#include <algorithm>
#include <cstring>

#include "core/backend.h"
#include "core/parallel.h"
#include "ops/cpu/cpu_kernels.h"
#include "ops/cpu/dispatch.h"

namespace minidl {

using cpu::dispatch_all;
using cpu::kElementwiseGrain;

namespace {

// Value conversion between any two element types; 16-bit floats go through float.
template <typename D, typename S>
inline D convert(S v) {
    if constexpr (std::is_same_v<D, S>) {
        return v;
    } else if constexpr (std::is_same_v<S, Eigen::half> || std::is_same_v<S, Eigen::bfloat16>) {
        return convert<D>(static_cast<float>(v));
    } else if constexpr (std::is_same_v<D, Eigen::half> || std::is_same_v<D, Eigen::bfloat16>) {
        return static_cast<D>(static_cast<float>(v));
    } else {
        return static_cast<D>(v);
    }
}

}  // namespace

void CpuKernels::copy(const Tensor& src, Tensor& dst) {
    MDL_ASSERT(src.device().is_cpu() && dst.device().is_cpu(), "cpu copy between ", src.device(),
               " and ", dst.device());
    if (src.data_ptr() == dst.data_ptr()) return;
    const auto* s = static_cast<const char*>(src.data_ptr());
    auto* d = static_cast<char*>(dst.data_ptr());
    const int64_t nbytes = static_cast<int64_t>(src.nbytes());
    parallel_for(nbytes, int64_t{1} << 20, [&](int64_t b, int64_t e) {
        std::memcpy(d + b, s + b, static_cast<size_t>(e - b));
    });
}

void CpuKernels::cast(const Tensor& src, Tensor& dst) {
    dispatch_all(src.dtype(), "cast", [&](auto stag) {
        using S = decltype(stag);
        dispatch_all(dst.dtype(), "cast", [&](auto dtag) {
            using D = decltype(dtag);
            const S* ps = src.raw<S>();
            D* pd = dst.raw<D>();
            parallel_for(src.numel(), kElementwiseGrain, [&](int64_t b, int64_t e) {
                for (int64_t i = b; i < e; ++i)
                    pd[i] = convert<D>(ps[i]);
            });
        });
    });
}

void CpuKernels::fill(Tensor& out, double value) {
    dispatch_all(out.dtype(), "fill", [&](auto tag) {
        using T = decltype(tag);
        const T v = convert<T>(value);
        T* p = out.raw<T>();
        parallel_for(out.numel(), kElementwiseGrain, [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i)
                p[i] = v;
        });
    });
}

void CpuKernels::arange(Tensor& out, double start, double step) {
    dispatch_all(out.dtype(), "arange", [&](auto tag) {
        using T = decltype(tag);
        T* p = out.raw<T>();
        for (int64_t i = 0; i < out.numel(); ++i)
            p[i] = convert<T>(start + static_cast<double>(i) * step);
    });
}

void CpuKernels::strided_copy(const Tensor& src, int64_t src_offset, int64_t src_stride,
                              Tensor& dst, int64_t dst_offset, int64_t dst_stride, int64_t outer,
                              int64_t len, bool accumulate) {
    dispatch_all(src.dtype(), "strided_copy", [&](auto tag) {
        using T = decltype(tag);
        const T* ps = src.raw<T>() + src_offset;
        T* pd = dst.raw<T>() + dst_offset;
        const int64_t grain = std::max<int64_t>(1, kElementwiseGrain / std::max<int64_t>(len, 1));
        parallel_for(outer, grain, [&](int64_t b, int64_t e) {
            for (int64_t o = b; o < e; ++o) {
                const T* s = ps + o * src_stride;
                T* d = pd + o * dst_stride;
                if (accumulate) {
                    if constexpr (std::is_same_v<T, int64_t>) {
                        for (int64_t j = 0; j < len; ++j)
                            d[j] += s[j];
                    } else {
                        for (int64_t j = 0; j < len; ++j)
                            d[j] = static_cast<T>(static_cast<cpu::acc_t<T>>(d[j]) +
                                                  static_cast<cpu::acc_t<T>>(s[j]));
                    }
                } else {
                    std::memcpy(d, s, static_cast<size_t>(len) * sizeof(T));
                }
            }
        });
    });
}

void CpuKernels::permute(const Tensor& x, Tensor& out, const std::vector<int64_t>& perm) {
    dispatch_all(x.dtype(), "permute", [&](auto tag) {
        using T = decltype(tag);
        const T* px = x.raw<T>();
        T* po = out.raw<T>();
        const size_t nd = perm.size();
        const std::vector<int64_t> xstrides = contiguous_strides(x.shape());
        // Stride in x of each output dim.
        std::vector<int64_t> st(nd);
        for (size_t i = 0; i < nd; ++i)
            st[i] = xstrides[perm[i]];
        const Shape& os = out.shape();
        if (nd > 1 && st[nd - 1] == 1 && os[nd - 1] > 1) {
            // The last dim stays last (a head split or merge: [B, L, H, D] <-> [B, H, L, D]):
            // copy whole runs of os[nd - 1] contiguous elements, walking only the outer dims.
            const int64_t run = os[nd - 1], runs = out.numel() / run;
            parallel_for(runs, std::max<int64_t>(1, kElementwiseGrain / run),
                         [&](int64_t b, int64_t e) {
                             std::vector<int64_t> idx(nd - 1, 0);
                             int64_t rem = b, off = 0;
                             for (size_t d = nd - 1; d-- > 0;) {
                                 idx[d] = rem % os[d];
                                 rem /= os[d];
                                 off += idx[d] * st[d];
                             }
                             for (int64_t r = b; r < e; ++r) {
                                 std::copy_n(px + off, run, po + r * run);
                                 for (size_t d = nd - 1; d-- > 0;) {
                                     if (++idx[d] < os[d]) {
                                         off += st[d];
                                         break;
                                     }
                                     off -= st[d] * (os[d] - 1);
                                     idx[d] = 0;
                                 }
                             }
                         });
            return;
        }
        parallel_for(out.numel(), kElementwiseGrain, [&](int64_t b, int64_t e) {
            // Multi-index of element b, then walk forward tracking the x offset.
            std::vector<int64_t> idx(nd, 0);
            int64_t rem = b, off = 0;
            for (size_t d = nd; d-- > 0;) {
                idx[d] = rem % os[d];
                rem /= os[d];
                off += idx[d] * st[d];
            }
            for (int64_t i = b; i < e; ++i) {
                po[i] = px[off];
                for (size_t d = nd; d-- > 0;) {
                    if (++idx[d] < os[d]) {
                        off += st[d];
                        break;
                    }
                    off -= st[d] * (os[d] - 1);
                    idx[d] = 0;
                }
            }
        });
    });
}

void CpuKernels::synchronize() {}

Kernels& cpu_kernels() {
    static CpuKernels instance;
    return instance;
}

Kernels& kernels_for(Device device) {
    if (device.is_cpu()) return cpu_kernels();
    return cuda::kernels();
}

}  // namespace minidl
