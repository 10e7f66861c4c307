// ops/cuda/embedding.cu — CUDA kernels for embedding / embedding_bag (forward and backward) and
// index_select / index_add. The math is in core/kernels.h, ops/embedding.h and ops/shape_ops.h:
//   embedding       out[i, :] = W[ids[i], :]                 backward  gW[ids[i], :] += gy[i, :]
//   embedding_bag   out[b, :] = sum (or mean) of W[ids[i], :] over i in bag b, padding left out
//                   backward  gW[ids[i], :] += gy[bag(i), :] * (1 or 1 / count(bag(i)))
//   index_select    out[o, j, :] = x[o, idx[j], :]            index_add gx[o, idx[j], :] += gy[o,
//   j, :]
// Shapes: W [V, C], ids [L], offsets [B], out [L, C] or [B, C]; x [outer, n, inner], idx [J].
// Ids were range-checked by the op (minmax_i64) before any kernel runs.
//
// Strategy:
//   Gathers (embedding, index_select) copy whole rows with the widest unit (16, 8, 4 or 2 bytes)
//   that the row length and the pointers allow; consecutive threads copy consecutive units.
//   embedding_bag forward: a warp per bag, lanes over the columns, ids of the bag in order.
//   Scatter-adds (the three backward passes) have two modes (core/determinism.h):
//     default        one thread per (contribution, column) doing atomicAdd: fast, but the order
//                    of the additions into a row varies from run to run (float sums differ in the
//                    last bits). F32/F64 add straight into the gradient. F16/BF16 add into an F32
//                    scratch copy of the gradient's shape (zeroed), and one pass then rounds
//                    gradient + sum to 16 bits once: a 16-bit atomicAdd rounds after every
//                    addition, so a frequent token's row stops growing (bf16 1 + 256 is 256).
//     deterministic  the contributions are sorted by target row with a stable radix sort (cub),
//                    so each row's contributions sit together in increasing position order. The
//                    sorted positions are cut into chunks of 128; a warp per chunk sums the run of
//                    a row that continues into it, and the warp at each row's first position adds
//                    its first run and then those chunk sums, in order, to the gradient row in
//                    acc_t, rounding once. A fixed order: bitwise the same every run, and a row
//                    hit thousands of times is summed by many warps, not one.
#include <cub/device/device_radix_sort.cuh>

#include <climits>

#include "core/determinism.h"
#include "ops/cuda/cuda_common.cuh"
#include "ops/cuda/cuda_kernels.h"

namespace minidl {

using namespace cuda_detail;

namespace {

// ---- gathers ---------------------------------------------------------------------------------

// out row r = src row (r / J) * n + idx[r % J], rows of row_units units U.
template <typename U>
__global__ void gather_rows_kernel(const U* __restrict__ src, const int64_t* __restrict__ idx,
                                   U* __restrict__ out, int64_t rows, int64_t J, int64_t n,
                                   int64_t row_units) {
    for (int64_t k = global_thread(); k < rows * row_units; k += grid_stride()) {
        const int64_t r = k / row_units, u = k - r * row_units;
        const int64_t o = r / J, j = r - o * J;
        out[k] = src[(o * n + idx[j]) * row_units + u];
    }
}

void launch_gather(const Tensor& src, const int64_t* idx, Tensor& out, int64_t rows, int64_t J,
                   int64_t n, int64_t inner, int dev) {
    if (rows * inner == 0) return;
    const size_t row_bytes = static_cast<size_t>(inner) * dtype_size(src.dtype());
    const auto fits = [&](size_t unit) {
        return row_bytes % unit == 0 && reinterpret_cast<uintptr_t>(src.data_ptr()) % unit == 0 &&
               reinterpret_cast<uintptr_t>(out.data_ptr()) % unit == 0;
    };
    const cudaStream_t s = cuda::stream(dev);
    const auto launch = [&](auto unit_tag) {
        using U = decltype(unit_tag);
        const int64_t units = static_cast<int64_t>(row_bytes / sizeof(U));
        gather_rows_kernel<U><<<grid_for(rows * units), kBlock, 0, s>>>(
            static_cast<const U*>(src.data_ptr()), idx, static_cast<U*>(out.data_ptr()), rows, J, n,
            units);
        MDL_CUDA_LAUNCH_CHECK();
    };
    if (fits(16)) {
        launch(uint4{});
    } else if (fits(8)) {
        launch(uint2{});
    } else if (fits(4)) {
        launch(uint32_t{});
    } else {
        launch(uint16_t{});
    }
}

// ---- embedding_bag forward -------------------------------------------------------------------

struct BagArgs {
    int64_t bags, ids, columns, padding_idx;
    bool mean;
};

__device__ __forceinline__ void bag_range(const int64_t* offsets, const BagArgs& a, int64_t b,
                                          int64_t& begin, int64_t& end) {
    begin = offsets[b];
    end = b + 1 < a.bags ? offsets[b + 1] : a.ids;
}

// Block (32, 8): a warp per bag, lanes over the columns.
template <typename T>
__global__ void embedding_bag_warp_per_bag_kernel(const T* __restrict__ w,
                                                  const int64_t* __restrict__ ids,
                                                  const int64_t* __restrict__ offsets,
                                                  T* __restrict__ out, BagArgs a) {
    using A = acc_t<T>;
    for (int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y; b < a.bags;
         b += static_cast<int64_t>(gridDim.x) * blockDim.y) {
        int64_t begin, end;
        bag_range(offsets, a, b, begin, end);
        for (int64_t c = threadIdx.x; c < a.columns; c += 32) {
            A acc = 0;
            int64_t count = 0;
            for (int64_t i = begin; i < end; ++i) {
                const int64_t id = ids[i];
                if (id == a.padding_idx) continue;
                acc += convert<A>(w[id * a.columns + c]);
                ++count;
            }
            const A scale = (a.mean && count > 0) ? A(1) / static_cast<A>(count) : A(1);
            out[b * a.columns + c] = convert<T>(acc * scale);
        }
    }
}

// bag_of[i] = the bag that holds id i (the last b with offsets[b] <= i), -1 before the first.
__global__ void bag_of_position_kernel(const int64_t* __restrict__ offsets, BagArgs a,
                                       int64_t* __restrict__ bag_of) {
    for (int64_t i = global_thread(); i < a.ids; i += grid_stride()) {
        int64_t lo = 0, hi = a.bags;  // first b with offsets[b] > i lies in [lo, hi]
        while (lo < hi) {
            const int64_t mid = (lo + hi) / 2;
            if (offsets[mid] <= i) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        bag_of[i] = lo - 1;
    }
}

// scale[b] = 1 / (ids of bag b that are not padding), 0 for a bag without any (BagMode::Mean).
template <typename A>
__global__ void bag_mean_scale_kernel(const int64_t* __restrict__ ids,
                                      const int64_t* __restrict__ offsets, BagArgs a,
                                      A* __restrict__ scale) {
    for (int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y; b < a.bags;
         b += static_cast<int64_t>(gridDim.x) * blockDim.y) {
        int64_t begin, end, count = 0;
        bag_range(offsets, a, b, begin, end);
        for (int64_t i = begin + threadIdx.x; i < end; i += 32)
            count += ids[i] != a.padding_idx;
        count = warp_reduce(count, SumOp());
        if (threadIdx.x == 0) scale[b] = count > 0 ? A(1) / static_cast<A>(count) : A(0);
    }
}

// ---- scatter-adds ----------------------------------------------------------------------------

// Contribution p adds src row (o * J + src_of(p)) times scale(p) into dst row (o * n + key(p)),
// for o < outer. Embedding: src_of(p) = p; bags: src_of(p) = bag_of[p] (skipped when -1) with
// scale[bag]; index_add: outer slices. Keys equal to padding_idx are skipped.
template <typename A>
struct ScatterArgs {
    int64_t contributions, columns, outer, n, J, padding_idx;
    const int64_t* bag_of;  // nullable
    const A* scale;         // nullable: 1
};

// One thread per (o, contribution, column), atomically, into dst in acc_t: the gradient itself
// for F32/F64, the F32 scratch for 16-bit dtypes (never a 16-bit atomicAdd, see the file comment).
template <typename T>
__global__ void scatter_add_atomic_kernel(const T* __restrict__ src,
                                          const int64_t* __restrict__ keys, acc_t<T>* dst,
                                          ScatterArgs<acc_t<T>> a) {
    using A = acc_t<T>;
    const int64_t per_slice = a.contributions * a.columns;
    for (int64_t k = global_thread(); k < a.outer * per_slice; k += grid_stride()) {
        const int64_t o = k / per_slice, rem = k - o * per_slice;
        const int64_t p = rem / a.columns, c = rem - p * a.columns;
        const int64_t key = keys[p];
        if (key == a.padding_idx) continue;
        int64_t src_row = p;
        A scale = A(1);
        if (a.bag_of) {
            src_row = a.bag_of[p];
            if (src_row < 0) continue;
            if (a.scale) scale = a.scale[src_row];
        }
        const A v = convert<A>(src[(o * a.J + src_row) * a.columns + c]) * scale;
        atomicAdd(dst + (o * a.n + key) * a.columns + c, v);
    }
}

// dst[k] = round16(dst[k] + sums[k]), once per element. Elements with a zero sum (rows no
// contribution hit) are left as they are, which is what adding 0 gives (up to the sign of a zero).
template <typename T>
__global__ void add_rounded_kernel(const float* __restrict__ sums, T* __restrict__ dst, int64_t n) {
    for (int64_t k = global_thread(); k < n; k += grid_stride()) {
        const float v = sums[k];
        if (v != 0.0f) dst[k] = convert<T>(convert<float>(dst[k]) + v);
    }
}

// The sorted contributions are cut into chunks of kSortedChunk positions, so that an id that
// occurs thousands of times (a frequent token, unmasked padding) is summed by many warps instead
// of one.
constexpr int64_t kSortedChunk = 128;

// The sum, in acc_t and in position order, of column c of sorted contributions [from, to) of
// outer slice o, stopping early at the first position whose key differs from `key`.
template <typename T>
__device__ __forceinline__ acc_t<T> sorted_run_sum(const T* __restrict__ src,
                                                   const uint64_t* __restrict__ sorted_keys,
                                                   const int32_t* __restrict__ sorted_pos,
                                                   const ScatterArgs<acc_t<T>>& a, int64_t o,
                                                   uint64_t key, int64_t from, int64_t to,
                                                   int64_t c, acc_t<T> acc) {
    using A = acc_t<T>;
    for (int64_t q = from; q < to && sorted_keys[q] == key; ++q) {
        int64_t src_row = sorted_pos[q];
        A scale = A(1);
        if (a.bag_of) {
            src_row = a.bag_of[src_row];
            if (src_row < 0) continue;
            if (a.scale) scale = a.scale[src_row];
        }
        acc += convert<A>(src[(o * a.J + src_row) * a.columns + c]) * scale;
    }
    return acc;
}

// Pass 1. Block (32, 8): a warp per chunk. A chunk whose first position continues the key of the
// previous chunk sums that key's run inside the chunk into partial[o, chunk, :] (lanes over the
// columns). Grid y runs over the outer slices.
template <typename T>
__global__ void scatter_chunk_partial_kernel(const T* __restrict__ src,
                                             const uint64_t* __restrict__ sorted_keys,
                                             const int32_t* __restrict__ sorted_pos,
                                             acc_t<T>* __restrict__ partial,
                                             ScatterArgs<acc_t<T>> a, int64_t chunks) {
    using A = acc_t<T>;
    for (int64_t o = blockIdx.y; o < a.outer; o += gridDim.y) {
        for (int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y; b < chunks;
             b += static_cast<int64_t>(gridDim.x) * blockDim.y) {
            const int64_t k = b * kSortedChunk;
            const uint64_t key = sorted_keys[k];
            if (k == 0 || sorted_keys[k - 1] != key) continue;  // no run continues here
            if (static_cast<int64_t>(key) == a.padding_idx) continue;
            const int64_t end = min(a.contributions, k + kSortedChunk);
            A* row = partial + (o * chunks + b) * a.columns;
            for (int64_t c = threadIdx.x; c < a.columns; c += 32)
                row[c] = sorted_run_sum(src, sorted_keys, sorted_pos, a, o, key, k, end, c, A(0));
        }
    }
}

// Pass 2. Block (32, 8): a warp per sorted position; the warp at the first position of each key
// adds, to the current gradient row in acc_t: the key's contributions up to the end of the
// first chunk, in order, then the partial sums of the chunks the key continues into, in order;
// it rounds once. A fixed order: bitwise reproducible.
template <typename T>
__global__ void scatter_add_sorted_kernel(const T* __restrict__ src,
                                          const uint64_t* __restrict__ sorted_keys,
                                          const int32_t* __restrict__ sorted_pos,
                                          const acc_t<T>* __restrict__ partial, T* __restrict__ dst,
                                          ScatterArgs<acc_t<T>> a, int64_t chunks) {
    using A = acc_t<T>;
    for (int64_t o = blockIdx.y; o < a.outer; o += gridDim.y) {
        for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y;
             k < a.contributions; k += static_cast<int64_t>(gridDim.x) * blockDim.y) {
            const uint64_t key = sorted_keys[k];
            if (k > 0 && sorted_keys[k - 1] == key) continue;  // not the first of its key
            if (static_cast<int64_t>(key) == a.padding_idx) continue;
            T* out = dst + (o * a.n + static_cast<int64_t>(key)) * a.columns;
            const int64_t first_end = (k / kSortedChunk + 1) * kSortedChunk;
            for (int64_t c = threadIdx.x; c < a.columns; c += 32) {
                A acc = sorted_run_sum(src, sorted_keys, sorted_pos, a, o, key, k,
                                       min(a.contributions, first_end), c, convert<A>(out[c]));
                for (int64_t b = first_end / kSortedChunk;
                     b < chunks && sorted_keys[b * kSortedChunk] == key; ++b)
                    acc += partial[(o * chunks + b) * a.columns + c];
                out[c] = convert<T>(acc);
            }
        }
    }
}

__global__ void iota_kernel(int32_t* __restrict__ out, int64_t n) {
    for (int64_t i = global_thread(); i < n; i += grid_stride())
        out[i] = static_cast<int32_t>(i);
}

// Bits needed for keys in [0, rows).
int key_bits(int64_t rows) {
    int bits = 1;
    while (bits < 63 && (int64_t{1} << bits) < rows)
        ++bits;
    return bits;
}

// dst rows += contributions (see ScatterArgs), atomically or in the deterministic sorted order.
template <typename T>
void scatter_add(const T* src, const int64_t* keys, T* dst, int64_t dst_rows,
                 const ScatterArgs<acc_t<T>>& a, int dev) {
    if (a.contributions == 0 || a.columns == 0 || a.outer == 0) return;
    const cudaStream_t s = cuda::stream(dev);
    if (!deterministic()) {
        const int64_t work = a.outer * a.contributions * a.columns;
        if constexpr (std::is_same_v<T, acc_t<T>>) {
            scatter_add_atomic_kernel<T><<<grid_for(work), kBlock, 0, s>>>(src, keys, dst, a);
            MDL_CUDA_LAUNCH_CHECK();
        } else {
            // 16-bit: sum in an F32 scratch of dst's shape, then round once (file comment).
            const int64_t total = a.outer * dst_rows * a.columns;
            const size_t bytes = static_cast<size_t>(total) * sizeof(float);
            cuda::DeviceBuffer sums(dev, bytes);
            MDL_CUDA_CHECK(cudaMemsetAsync(sums.data(), 0, bytes, s));
            scatter_add_atomic_kernel<T>
                <<<grid_for(work), kBlock, 0, s>>>(src, keys, sums.as<float>(), a);
            MDL_CUDA_LAUNCH_CHECK();
            add_rounded_kernel<T><<<grid_for(total), kBlock, 0, s>>>(sums.as<float>(), dst, total);
            MDL_CUDA_LAUNCH_CHECK();
        }
        return;
    }
    const int64_t P = a.contributions;
    MDL_CHECK(P < INT_MAX, ShapeError, "deterministic scatter-add: ", P,
              " contributions exceed the 32-bit positions of the sort");
    // [sorted keys | positions | sorted positions], then cub's scratch.
    cuda::DeviceBuffer sorted(dev,
                              static_cast<size_t>(P) * (sizeof(uint64_t) + 2 * sizeof(int32_t)));
    uint64_t* sorted_keys = sorted.as<uint64_t>();
    int32_t* positions = reinterpret_cast<int32_t*>(sorted_keys + P);
    int32_t* sorted_pos = positions + P;
    iota_kernel<<<grid_for(P), kBlock, 0, s>>>(positions, P);
    MDL_CUDA_LAUNCH_CHECK();
    // Ids are in [0, dst_rows) (checked by the op), so they sort as unsigned numbers; radix sort
    // is stable: equal keys keep increasing positions.
    const auto* keys_in = reinterpret_cast<const uint64_t*>(keys);
    const int end_bit = key_bits(dst_rows);
    size_t scratch_bytes = 0;
    MDL_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, scratch_bytes, keys_in, sorted_keys,
                                                   positions, sorted_pos, P, 0, end_bit, s));
    cuda::DeviceBuffer scratch(dev, std::max<size_t>(scratch_bytes, 1));
    MDL_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(scratch.data(), scratch_bytes, keys_in,
                                                   sorted_keys, positions, sorted_pos, P, 0,
                                                   end_bit, s));
    const int64_t chunks = ceil_div(P, kSortedChunk);
    const unsigned slices = static_cast<unsigned>(std::min<int64_t>(a.outer, 65535));
    cuda::DeviceBuffer partial(
        dev, static_cast<size_t>(a.outer * chunks * a.columns) * sizeof(acc_t<T>));
    auto* pp = partial.as<acc_t<T>>();
    const dim3 chunk_grid(static_cast<unsigned>(std::min(ceil_div(chunks, 8), kMaxBlocks)), slices);
    scatter_chunk_partial_kernel<T>
        <<<chunk_grid, dim3(32, 8), 0, s>>>(src, sorted_keys, sorted_pos, pp, a, chunks);
    MDL_CUDA_LAUNCH_CHECK();
    const dim3 grid(static_cast<unsigned>(std::min(ceil_div(P, 8), kMaxBlocks)), slices);
    scatter_add_sorted_kernel<T>
        <<<grid, dim3(32, 8), 0, s>>>(src, sorted_keys, sorted_pos, pp, dst, a, chunks);
    MDL_CUDA_LAUNCH_CHECK();
}

}  // namespace

void CudaKernels::embedding(const Tensor& weight, const Tensor& ids, Tensor& out) {
    const int dev = cuda::device_of(weight);
    cuda::DeviceGuard guard(dev);
    const int64_t L = ids.numel(), V = weight.shape()[0], C = weight.shape()[1];
    launch_gather(weight, ids.raw<const int64_t>(), out, L, L, V, C, dev);
}

void CudaKernels::embedding_backward(const Tensor& gy, const Tensor& ids, Tensor& gweight,
                                     int64_t padding_idx) {
    const int dev = cuda::device_of(gweight);
    cuda::DeviceGuard guard(dev);
    const int64_t L = ids.numel(), V = gweight.shape()[0], C = gweight.shape()[1];
    dispatch_float(gweight.dtype(), "embedding_backward", [&](auto tag) {
        using T = decltype(tag);
        const ScatterArgs<acc_t<T>> a{L, C, 1, V, L, padding_idx, nullptr, nullptr};
        scatter_add<T>(gy.raw<const T>(), ids.raw<const int64_t>(), gweight.raw<T>(), V, a, dev);
    });
}

void CudaKernels::embedding_bag(const Tensor& weight, const Tensor& ids, const Tensor& offsets,
                                Tensor& out, BagMode mode, int64_t padding_idx) {
    const int64_t B = offsets.numel(), C = weight.shape()[1];
    if (B * C == 0) return;
    const int dev = cuda::device_of(weight);
    cuda::DeviceGuard guard(dev);
    const BagArgs a{B, ids.numel(), C, padding_idx, mode == BagMode::Mean};
    dispatch_float(weight.dtype(), "embedding_bag", [&](auto tag) {
        using T = decltype(tag);
        embedding_bag_warp_per_bag_kernel<T>
            <<<static_cast<unsigned>(std::min(ceil_div(B, 8), kMaxBlocks)), dim3(32, 8), 0,
               cuda::stream(dev)>>>(weight.raw<const T>(), ids.raw<const int64_t>(),
                                    offsets.raw<const int64_t>(), out.raw<T>(), a);
        MDL_CUDA_LAUNCH_CHECK();
    });
}

void CudaKernels::embedding_bag_backward(const Tensor& gy, const Tensor& ids, const Tensor& offsets,
                                         Tensor& gweight, BagMode mode, int64_t padding_idx) {
    const int64_t L = ids.numel(), B = offsets.numel();
    const int64_t V = gweight.shape()[0], C = gweight.shape()[1];
    if (L == 0 || B == 0 || C == 0) return;
    const int dev = cuda::device_of(gweight);
    cuda::DeviceGuard guard(dev);
    const cudaStream_t s = cuda::stream(dev);
    const BagArgs bag{B, L, C, padding_idx, mode == BagMode::Mean};
    dispatch_float(gweight.dtype(), "embedding_bag_backward", [&](auto tag) {
        using T = decltype(tag);
        using A = acc_t<T>;
        cuda::DeviceBuffer buffer(
            dev, static_cast<size_t>(L) * sizeof(int64_t) + static_cast<size_t>(B) * sizeof(A));
        int64_t* bag_of = buffer.as<int64_t>();
        A* scale = reinterpret_cast<A*>(bag_of + L);
        bag_of_position_kernel<<<grid_for(L), kBlock, 0, s>>>(offsets.raw<const int64_t>(), bag,
                                                              bag_of);
        MDL_CUDA_LAUNCH_CHECK();
        if (bag.mean) {
            bag_mean_scale_kernel<A>
                <<<static_cast<unsigned>(std::min(ceil_div(B, 8), kMaxBlocks)), dim3(32, 8), 0,
                   s>>>(ids.raw<const int64_t>(), offsets.raw<const int64_t>(), bag, scale);
            MDL_CUDA_LAUNCH_CHECK();
        }
        const ScatterArgs<A> a{L, C, 1, V, B, padding_idx, bag_of, bag.mean ? scale : nullptr};
        scatter_add<T>(gy.raw<const T>(), ids.raw<const int64_t>(), gweight.raw<T>(), V, a, dev);
    });
}

void CudaKernels::index_select(const Tensor& x, const Tensor& idx, Tensor& out, int64_t outer,
                               int64_t n, int64_t inner) {
    const int dev = cuda::device_of(x);
    cuda::DeviceGuard guard(dev);
    const int64_t J = idx.numel();
    launch_gather(x, idx.raw<const int64_t>(), out, outer * J, J, n, inner, dev);
}

void CudaKernels::index_add(const Tensor& gy, const Tensor& idx, Tensor& gx, int64_t outer,
                            int64_t n, int64_t inner) {
    const int dev = cuda::device_of(gx);
    cuda::DeviceGuard guard(dev);
    const int64_t J = idx.numel();
    dispatch_float(gx.dtype(), "index_add", [&](auto tag) {
        using T = decltype(tag);
        const ScatterArgs<acc_t<T>> a{J, inner, outer, n, J, -1, nullptr, nullptr};
        scatter_add<T>(gy.raw<const T>(), idx.raw<const int64_t>(), gx.raw<T>(), n, a, dev);
    });
}

}  // namespace minidl
