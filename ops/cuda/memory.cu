// ops/cuda/memory.cu — CUDA kernels that move and convert data: copy (including host <-> device
// and device <-> device transfers), cast, fill, arange, strided_copy, permute.
//
// Math: copy/permute/strided_copy move bits (out = in, bit for bit); cast converts values as the
// CPU does (ops/cuda/cuda_common.cuh); fill stores one value converted on the host, so every
// element holds exactly the CPU's bits; arange computes start + i * step in double (fused
// multiply-add, which is also what the CPU build's -march=native code does) and converts.
//
// Shapes: strided_copy sees src and dst as `outer` runs of `len` elements at a stride (a stride
// of 0 repeats one run: a bias broadcast to every row); permute handles up to kMaxDims dims.
//
// Strategy: grid-stride loops in which consecutive threads touch consecutive elements of the
// output (coalesced stores); cast and fill move 16 bytes per access when the pointers are aligned
// (cuda_common.cuh, launch_packed16), strided_copy splits its flat index in 32 bits below 2^32
// elements; permute's reads are a gather, which the L2 absorbs for the small transposes the
// framework does. Pure data movement uses unsigned integers of the element's size, so NaN payloads
// and -0 pass unchanged.
#include <algorithm>
#include <cstring>

#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/cuda_kernels.h"

namespace minidl {

using namespace cuda_detail;

namespace {

constexpr int kMaxDims = 8;

// The unsigned integer type of an element of `size` bytes: body(U{}).
template <typename F>
void dispatch_bits(size_t size, const char* op, F&& body) {
    switch (size) {
        case 2:
            body(uint16_t{});
            return;
        case 4:
            body(uint32_t{});
            return;
        case 8:
            body(uint64_t{});
            return;
        default:
            MDL_ASSERT(false, op, ": unexpected element size ", size);
    }
}

// Packs of V elements (cuda_common.cuh): 16 bytes of the wider of the two types per access.
template <typename S, typename D, int V>
__global__ void cast_elementwise_kernel(const S* __restrict__ src, D* __restrict__ dst, int64_t n) {
    const int64_t packs = n / V;
    for (int64_t k = global_thread(); k < packs; k += grid_stride()) {
        const Pack<S, V> sp = reinterpret_cast<const Pack<S, V>*>(src)[k];
        Pack<D, V> dp;
#pragma unroll
        for (int l = 0; l < V; ++l)
            dp.v[l] = convert<D>(sp.v[l]);
        reinterpret_cast<Pack<D, V>*>(dst)[k] = dp;
    }
    for (int64_t i = packs * V + global_thread(); i < n; i += grid_stride())
        dst[i] = convert<D>(src[i]);
}

template <typename U, int V>
__global__ void fill_elementwise_kernel(U* __restrict__ out, U value, int64_t n) {
    Pack<U, V> vp;
#pragma unroll
    for (int l = 0; l < V; ++l)
        vp.v[l] = value;
    const int64_t packs = n / V;
    for (int64_t k = global_thread(); k < packs; k += grid_stride())
        reinterpret_cast<Pack<U, V>*>(out)[k] = vp;
    for (int64_t i = packs * V + global_thread(); i < n; i += grid_stride())
        out[i] = value;
}

template <typename T>
__global__ void arange_elementwise_kernel(T* __restrict__ out, double start, double step,
                                          int64_t n) {
    for (int64_t i = global_thread(); i < n; i += grid_stride())
        out[i] = convert<T>(fma(static_cast<double>(i), step, start));
}

// dst[o * dst_stride + j] (+)= src[o * src_stride + j] for the flat index k = o * len + j, split
// in I: 32-bit unsigned below 2^32 elements (a 32-bit division costs a fraction of a 64-bit one),
// int64_t otherwise.
template <typename T, bool kAccumulate, typename I>
__global__ void strided_copy_flat_kernel(const T* __restrict__ src, int64_t src_stride,
                                         T* __restrict__ dst, int64_t dst_stride, int64_t len,
                                         int64_t total) {
    for (int64_t k = global_thread(); k < total; k += grid_stride()) {
        const auto o = static_cast<int64_t>(static_cast<I>(k) / static_cast<I>(len));
        const int64_t j = k - o * len;
        const T s = src[o * src_stride + j];
        T* d = dst + o * dst_stride + j;
        if constexpr (kAccumulate) {
            if constexpr (std::is_same_v<T, int64_t>) {
                *d += s;
            } else {
                using A = acc_t<T>;
                *d = convert<T>(convert<A>(*d) + convert<A>(s));
            }
        } else {
            *d = s;
        }
    }
}

struct PermuteGeometry {
    int nd;
    int64_t out_shape[kMaxDims];
    int64_t in_stride[kMaxDims];  // stride in x of each output dim
};

// out[k] = x[sum_d idx_d(k) * in_stride[d]] where idx(k) is k's multi-index in out.
template <typename U>
__global__ void permute_gather_kernel(const U* __restrict__ x, U* __restrict__ out,
                                      PermuteGeometry g, int64_t n) {
    for (int64_t k = global_thread(); k < n; k += grid_stride()) {
        int64_t rem = k, off = 0;
        for (int d = g.nd - 1; d >= 0; --d) {
            const int64_t idx = rem % g.out_shape[d];
            rem /= g.out_shape[d];
            off += idx * g.in_stride[d];
        }
        out[k] = x[off];
    }
}

// An event destroyed with its scope, also when a check in between throws (cudaEventDestroy of an
// event still pending releases it once it completes).
struct ScopedEvent {
    cudaEvent_t event = nullptr;
    ScopedEvent() = default;
    ScopedEvent(const ScopedEvent&) = delete;
    ScopedEvent& operator=(const ScopedEvent&) = delete;
    ~ScopedEvent() {
        if (event != nullptr) (void)cudaEventDestroy(event);
    }
};

void copy_between_devices(const Tensor& src, Tensor& dst, size_t nbytes) {
    const int from = src.device().index, to = dst.device().index;
    // Order the copy after the source's pending writes and the destination's pending uses, and
    // keep the source stream from reusing the block before the copy has read it.
    ScopedEvent ready, done;
    {
        cuda::DeviceGuard guard(from);
        MDL_CUDA_CHECK(cudaEventCreateWithFlags(&ready.event, cudaEventDisableTiming));
        MDL_CUDA_CHECK(cudaEventRecord(ready.event, cuda::stream(from)));
    }
    {
        cuda::DeviceGuard guard(to);
        const cudaStream_t s = cuda::stream(to);
        MDL_CUDA_CHECK(cudaStreamWaitEvent(s, ready.event, 0));
        MDL_CUDA_CHECK(cudaMemcpyPeerAsync(dst.data_ptr(), to, src.data_ptr(), from, nbytes, s));
        MDL_CUDA_CHECK(cudaEventCreateWithFlags(&done.event, cudaEventDisableTiming));
        MDL_CUDA_CHECK(cudaEventRecord(done.event, s));
    }
    cuda::DeviceGuard guard(from);
    MDL_CUDA_CHECK(cudaStreamWaitEvent(cuda::stream(from), done.event, 0));
}

}  // namespace

void CudaKernels::copy(const Tensor& src, Tensor& dst) {
    const size_t nbytes = src.nbytes();
    MDL_ASSERT(dst.nbytes() == nbytes, "copy: ", src.str(), " into ", dst.str());
    if (nbytes == 0 || src.data_ptr() == dst.data_ptr()) return;
    const Device from = src.device(), to = dst.device();
    if (from.is_cpu() && to.is_cpu()) {
        std::memcpy(dst.data_ptr(), src.data_ptr(), nbytes);
    } else if (from.is_cpu()) {
        // Host -> device: small copies through pinned staging without a wait, large ones wait
        // (cuda_context.h); either way the host buffer is free to reuse or release on return.
        MDL_CUDA_CHECK(cuda::copy_to_device(dst.data_ptr(), src.data_ptr(), nbytes, to.index));
    } else if (to.is_cpu()) {
        // Device -> host: after the queued kernels, and complete on return so the host can read.
        cuda::DeviceGuard guard(from.index);
        const cudaStream_t s = cuda::stream(from.index);
        MDL_CUDA_CHECK(cuda::copy_to_host(dst.data_ptr(), src.data_ptr(), nbytes, s));
    } else if (from.index == to.index) {
        cuda::DeviceGuard guard(to.index);
        MDL_CUDA_CHECK(cudaMemcpyAsync(dst.data_ptr(), src.data_ptr(), nbytes,
                                       cudaMemcpyDeviceToDevice, cuda::stream(to.index)));
    } else {
        copy_between_devices(src, dst, nbytes);
    }
}

void CudaKernels::cast(const Tensor& src, Tensor& dst) {
    const int64_t n = src.numel();
    if (n == 0) return;
    const int dev = cuda::device_of(src);
    cuda::DeviceGuard guard(dev);
    const cudaStream_t s = cuda::stream(dev);
    dispatch_all(src.dtype(), "cast", [&](auto stag) {
        using S = decltype(stag);
        dispatch_all(dst.dtype(), "cast", [&](auto dtag) {
            using D = decltype(dtag);
            launch_packed16(
                std::max(sizeof(S), sizeof(D)),
                {{src.data_ptr(), sizeof(S)}, {dst.data_ptr(), sizeof(D)}}, [&](auto width) {
                    constexpr int V = decltype(width)::value;
                    cast_elementwise_kernel<S, D, V><<<grid_for(ceil_div(n, V)), kBlock, 0, s>>>(
                        src.raw<const S>(), dst.raw<D>(), n);
                    MDL_CUDA_LAUNCH_CHECK();
                });
        });
    });
}

void CudaKernels::fill(Tensor& out, double value) {
    const int64_t n = out.numel();
    if (n == 0) return;
    const int dev = cuda::device_of(out);
    cuda::DeviceGuard guard(dev);
    const cudaStream_t s = cuda::stream(dev);
    dispatch_all(out.dtype(), "fill", [&](auto tag) {
        using T = decltype(tag);
        const T v = convert<T>(value);  // on the host, with the CPU's rounding
        dispatch_bits(sizeof(T), "fill", [&](auto btag) {
            using U = decltype(btag);
            U bits;
            std::memcpy(&bits, &v, sizeof(U));
            if (bits == 0) {
                MDL_CUDA_CHECK(cudaMemsetAsync(out.data_ptr(), 0, out.nbytes(), s));
            } else {
                launch_packed16(sizeof(U), {{out.data_ptr(), sizeof(U)}}, [&](auto width) {
                    constexpr int V = decltype(width)::value;
                    fill_elementwise_kernel<U, V>
                        <<<grid_for(ceil_div(n, V)), kBlock, 0, s>>>(out.raw<U>(), bits, n);
                    MDL_CUDA_LAUNCH_CHECK();
                });
            }
        });
    });
}

void CudaKernels::arange(Tensor& out, double start, double step) {
    const int64_t n = out.numel();
    if (n == 0) return;
    const int dev = cuda::device_of(out);
    cuda::DeviceGuard guard(dev);
    dispatch_all(out.dtype(), "arange", [&](auto tag) {
        using T = decltype(tag);
        arange_elementwise_kernel<T>
            <<<grid_for(n), kBlock, 0, cuda::stream(dev)>>>(out.raw<T>(), start, step, n);
        MDL_CUDA_LAUNCH_CHECK();
    });
}

void CudaKernels::strided_copy(const Tensor& src, int64_t src_offset, int64_t src_stride,
                               Tensor& dst, int64_t dst_offset, int64_t dst_stride, int64_t outer,
                               int64_t len, bool accumulate) {
    const int64_t total = outer * len;
    if (total == 0) return;
    const int dev = cuda::device_of(dst);
    cuda::DeviceGuard guard(dev);
    const cudaStream_t s = cuda::stream(dev);
    if (accumulate) {
        dispatch_all(src.dtype(), "strided_copy", [&](auto tag) {
            using T = decltype(tag);
            const auto launch = [&](auto index_tag) {
                using I = decltype(index_tag);
                strided_copy_flat_kernel<T, true, I><<<grid_for(total), kBlock, 0, s>>>(
                    src.raw<const T>() + src_offset, src_stride, dst.raw<T>() + dst_offset,
                    dst_stride, len, total);
            };
            total <= static_cast<int64_t>(UINT32_MAX) ? launch(uint32_t{}) : launch(int64_t{});
            MDL_CUDA_LAUNCH_CHECK();
        });
        return;
    }
    dispatch_bits(dtype_size(src.dtype()), "strided_copy", [&](auto btag) {
        using U = decltype(btag);
        const auto launch = [&](auto index_tag) {
            using I = decltype(index_tag);
            strided_copy_flat_kernel<U, false, I><<<grid_for(total), kBlock, 0, s>>>(
                src.raw<const U>() + src_offset, src_stride, dst.raw<U>() + dst_offset, dst_stride,
                len, total);
        };
        total <= static_cast<int64_t>(UINT32_MAX) ? launch(uint32_t{}) : launch(int64_t{});
        MDL_CUDA_LAUNCH_CHECK();
    });
}

void CudaKernels::permute(const Tensor& x, Tensor& out, const std::vector<int64_t>& perm) {
    const int64_t n = out.numel();
    if (n == 0) return;
    const size_t nd = perm.size();
    MDL_CHECK(nd <= static_cast<size_t>(kMaxDims), ShapeError,
              "permute: the CUDA kernel handles at most ", kMaxDims, " dims, got ",
              shape_str(x.shape()));
    PermuteGeometry g{};
    g.nd = static_cast<int>(nd);
    const std::vector<int64_t> xs = contiguous_strides(x.shape());
    for (size_t d = 0; d < nd; ++d) {
        g.out_shape[d] = out.shape()[d];
        g.in_stride[d] = xs[static_cast<size_t>(perm[d])];
    }
    const int dev = cuda::device_of(x);
    cuda::DeviceGuard guard(dev);
    dispatch_bits(dtype_size(x.dtype()), "permute", [&](auto btag) {
        using U = decltype(btag);
        permute_gather_kernel<U>
            <<<grid_for(n), kBlock, 0, cuda::stream(dev)>>>(x.raw<const U>(), out.raw<U>(), g, n);
        MDL_CUDA_LAUNCH_CHECK();
    });
}

}  // namespace minidl
