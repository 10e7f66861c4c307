// tests/gpu/test_gpu_memory.cpp — copy/cast/fill/arange/strided_copy/permute on CUDA against the
// CPU kernels. These move or convert values with one rounding each, identical on both devices,
// so every comparison is bitwise; accumulating strided copies add once per element (also exact
// for F32/F64, at most one rounding to 16 bits, identical on both sides).
#include <doctest/doctest.h>

#include <cmath>

#include "ops/ops.h"
#include "tests/gpu/gpu_support.h"

using namespace minidl;
using namespace minidl::gpu_test;

namespace {
const std::vector<DType> kAllDtypes{DType::F32, DType::F64, DType::F16, DType::BF16, DType::I64};

Tensor values_for(DType dt, const Shape& shape, uint64_t seed) {
    return dt == DType::I64 ? ids_cpu(numel(shape), 2000, seed).view(shape)
                            : random_cpu(shape, dt, seed, -300.0, 300.0);
}
}  // namespace

TEST_CASE("gpu/memory: cast between every pair of dtypes matches the CPU bit for bit") {
    for (DType from : kAllDtypes) {
        for (DType to : kAllDtypes) {
            for (const Shape& shape : {Shape{0}, Shape{1}, Shape{33}, Shape{7, 129}}) {
                const std::string what =
                    describe("cast to " + std::string(dtype_name(to)), from, shape);
                const Tensor src = values_for(from, shape, 11);
                Both r = run_both(what, {src, nan_filled(shape, to)},
                                  [](Kernels& k, std::vector<Tensor>& t) { k.cast(t[0], t[1]); });
                check_bitwise(r.gpu[1], r.cpu[1], what);
            }
        }
    }
}

TEST_CASE("gpu/memory: cast and fill of views that start inside a 16-byte pack") {
    // cast and fill move 16 bytes per access only when the pointers are aligned to it; a view one
    // element into its storage takes the one-element path. Element 0 stays NaN on both devices.
    constexpr int64_t n = 517;
    for (DType from : {DType::F32, DType::BF16, DType::F64}) {
        for (DType to : {DType::F16, DType::F32, DType::F64}) {
            const std::string what =
                describe("cast to " + std::string(dtype_name(to)) + ", offset view", from, {n});
            Both r = run_both(what, {values_for(from, {n + 1}, 13), nan_filled({n + 1}, to)},
                              [](Kernels& k, std::vector<Tensor>& t) {
                                  Tensor src = t[0].narrow0(1, n), dst = t[1].narrow0(1, n);
                                  k.cast(src, dst);
                              });
            check_bitwise(r.gpu[1], r.cpu[1], what);
        }
        const std::string what = describe("fill 2.5, offset view", from, {n});
        Both r =
            run_both(what, {nan_filled({n + 1}, from)}, [](Kernels& k, std::vector<Tensor>& t) {
                Tensor v = t[0].narrow0(1, n);
                k.fill(v, 2.5);
            });
        check_bitwise(r.gpu[0], r.cpu[0], what);
    }
}

TEST_CASE("gpu/memory: fill and arange match the CPU bit for bit") {
    for (DType dt : kAllDtypes) {
        for (double value : {0.0, -0.0, 1.5, 1.0 / 3.0, -7.0, 1e10}) {
            if (dt == DType::I64 && std::abs(value) > 1e9) continue;
            const std::string what = describe("fill " + std::to_string(value), dt, {1001});
            Both r = run_both(what, {nan_filled({1001}, dt)},
                              [&](Kernels& k, std::vector<Tensor>& t) { k.fill(t[0], value); });
            check_bitwise(r.gpu[0], r.cpu[0], what);
        }
        // start + i * step in double: exact for these, then converted once.
        const std::string what = describe("arange(-3, step 0.5)", dt, {515});
        Both r = run_both(what, {nan_filled({515}, dt)},
                          [](Kernels& k, std::vector<Tensor>& t) { k.arange(t[0], -3.0, 0.5); });
        check_bitwise(r.gpu[0], r.cpu[0], what);
    }
    // A step that is not a binary fraction: both devices use a fused multiply-add in double
    // (the CPU build with -march=native); compare at the dtype's tolerance to allow builds
    // without FMA.
    for (DType dt : float_dtypes()) {
        const std::string what = describe("arange(0.1, step 0.1)", dt, {1000});
        Both r = run_both(what, {nan_filled({1000}, dt)},
                          [](Kernels& k, std::vector<Tensor>& t) { k.arange(t[0], 0.1, 0.1); });
        check_parity(r.gpu[0], r.cpu[0], what);
    }
}

TEST_CASE(
    "gpu/memory: strided_copy (slices, concat, a broadcast row, accumulate) matches the CPU") {
    struct Case {
        const char* name;
        Shape src, dst;
        int64_t src_offset, src_stride, dst_offset, dst_stride, outer, len;
    };
    const std::vector<Case> cases{
        {"columns 3..10 of [37, 20]", {37, 20}, {37, 7}, 3, 20, 0, 7, 37, 7},
        {"into columns 5.. of [9, 40]", {9, 33}, {9, 40}, 0, 33, 5, 40, 9, 33},
        {"bias row broadcast (stride 0)", {65}, {129, 65}, 0, 0, 0, 65, 129, 65},
        {"one long run", {100003}, {100003}, 0, 0, 0, 0, 1, 100003},
        {"empty", {4, 0}, {4, 0}, 0, 0, 0, 0, 4, 0},
    };
    for (DType dt : kAllDtypes) {
        for (const Case& c : cases) {
            for (bool accumulate : {false, true}) {
                const std::string what = describe(
                    std::string("strided_copy ") + c.name + (accumulate ? " +=" : ""), dt, c.src);
                Both r = run_both(what, {values_for(dt, c.src, 3), values_for(dt, c.dst, 4)},
                                  [&](Kernels& k, std::vector<Tensor>& t) {
                                      k.strided_copy(t[0], c.src_offset, c.src_stride, t[1],
                                                     c.dst_offset, c.dst_stride, c.outer, c.len,
                                                     accumulate);
                                  });
                check_bitwise(r.gpu[1], r.cpu[1], what);
            }
        }
    }
}

TEST_CASE("gpu/memory: permute matches the CPU bit for bit") {
    struct Case {
        Shape shape;
        std::vector<int64_t> perm;
    };
    const std::vector<Case> cases{
        {{1}, {0}},
        {{17, 33}, {1, 0}},
        {{2, 3, 5}, {2, 0, 1}},
        {{4, 1, 7, 9}, {3, 1, 0, 2}},
        {{2, 3, 2, 3, 2, 3}, {5, 4, 3, 2, 1, 0}},
        {{0, 5}, {1, 0}},
        {{64, 129}, {1, 0}},
    };
    for (DType dt : kAllDtypes) {
        for (const Case& c : cases) {
            Shape out_shape;
            for (int64_t p : c.perm)
                out_shape.push_back(c.shape[static_cast<size_t>(p)]);
            const std::string what = describe("permute", dt, c.shape);
            Both r = run_both(
                what, {values_for(dt, c.shape, 9), nan_filled(out_shape, dt)},
                [&](Kernels& k, std::vector<Tensor>& t) { k.permute(t[0], t[1], c.perm); });
            check_bitwise(r.gpu[1], r.cpu[1], what);
        }
    }
}

TEST_CASE("gpu/memory: small host-to-device copies are staged: no host wait, source free at once") {
    // 100 copies of a reused host buffer, overwritten right after each copy returns: every device
    // tensor must hold the values of its own copy (the staging slots are reused 6 times over, so a
    // slot handed out before its previous DMA ended would show up here), and none of the copies
    // may wait for the device (cuda_context.h: copy_to_device).
    const Device gpu = Device::cuda(0);
    const int64_t n = 5000;  // 40 KB of I64: a training batch's ids
    Tensor host = Tensor::zeros({n}, DType::I64);
    std::vector<Tensor> on_device;
    Tensor busy = Tensor::ones({4096, 4096}, DType::F32, gpu);  // keep the stream busy meanwhile
    cuda::HostSyncScope syncs;
    for (int64_t k = 0; k < 100; ++k) {
        busy = matmul(busy, busy) * 1e-4;  // queued ahead of the copies
        for (int64_t i = 0; i < n; ++i)
            host.raw<int64_t>()[i] = k * n + i;
        on_device.push_back(host.to(gpu));
    }
    CHECK(syncs.count() == 0);
    for (int64_t k = 0; k < 100; ++k) {
        const std::vector<int64_t> v = on_device[static_cast<size_t>(k)].to_vector<int64_t>();
        int64_t wrong = 0;
        for (int64_t i = 0; i < n; ++i)
            wrong += v[static_cast<size_t>(i)] != k * n + i;
        CAPTURE(k);
        CHECK(wrong == 0);
    }
    // A large copy goes straight from pageable memory and waits once.
    Tensor big = Tensor::ones({int64_t{1} << 19}, DType::F32);  // 2 MiB > kMaxStagedCopy
    cuda::HostSyncScope big_syncs;
    Tensor big_gpu = big.to(gpu);
    CHECK(big_syncs.count() == 1);
    CHECK(big_gpu.to_vector<double>().back() == 1.0);
}
