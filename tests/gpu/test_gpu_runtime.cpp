// tests/gpu/test_gpu_runtime.cpp — the CUDA runtime layer: device discovery, transfers, the
// caching allocator in a steady loop, errors becoming DeviceError, and an op-level forward and
// backward pass on the GPU against the CPU.
#include <doctest/doctest.h>

#include "core/allocator.h"
#include "core/autograd.h"
#include "core/backend.h"
#include "core/check.h"
#include "core/determinism.h"
#include "core/rng.h"
#include "ops/ops.h"
#include "tests/gpu/gpu_support.h"

#if defined(MINIDL_WITH_CUDA)
#include "ops/cuda/cuda_check.h"
#endif

using namespace minidl;
using namespace minidl::gpu_test;

TEST_CASE("gpu/runtime: the device is found, named, and the switches start off") {
    CHECK(cuda::built_with_cuda());
    CHECK(cuda::device_count() >= 1);
    CHECK(cuda::device_name(0).find("(sm_") != std::string::npos);
    CHECK_FALSE(deterministic());
    CHECK_FALSE(allow_tf32());
    CHECK_THROWS_WITH_AS(cuda::allocator(cuda::device_count()), doctest::Contains("not available"),
                         DeviceError);
}

TEST_CASE("gpu/runtime: host <-> device and device <-> device copies keep every bit") {
    const std::vector<DType> all{DType::F32, DType::F64, DType::F16, DType::BF16, DType::I64};
    for (DType dt : all) {
        for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{7}, int64_t{1000003}}) {
            const std::string what = describe("copy", dt, {n});
            Tensor host =
                dt == DType::I64 ? ids_cpu(n, 1 << 30, 5) : random_cpu({n}, dt, 5, -100.0, 100.0);
            Tensor dev = host.to(gpu());
            CHECK(dev.device() == gpu());
            Tensor dev2 = dev.clone();  // device -> device on one GPU
            check_bitwise(dev2.to(Device::cpu()), host, what);
        }
    }
}

TEST_CASE("gpu/runtime: a steady loop takes no memory from the system") {
    Tensor x = random_cpu({300, 1000}, DType::F32, 1).to(gpu());
    Tensor w = random_cpu({1000, 64}, DType::F32, 2).to(gpu());
    Tensor table = random_cpu({500, 64}, DType::F32, 3).to(gpu());
    Tensor ids = ids_cpu(4000, 500, 4).to(gpu());
    Kernels& k = cuda::kernels();
    auto step = [&] {
        Tensor y = Tensor::empty({300, 64}, DType::F32, gpu());
        GemmArgs g;
        g.m = 300, g.n = 64, g.k = 1000, g.stride_c = 300 * 64;
        k.gemm(x, w, y, g);
        Tensor s = Tensor::empty({1}, DType::F32, gpu());
        k.reduce(ReduceOp::Sum, x, s, nullptr, 1, x.numel(), 1);  // two-pass: a scratch buffer
        Tensor gw = Tensor::zeros({500, 64}, DType::F32, gpu());
        Tensor gy = Tensor::ones({4000, 64}, DType::F32, gpu());
        DeterministicGuard det(true);  // sort scratch buffers
        k.embedding_backward(gy, ids, gw, -1);
        (void)k.sum_squares({x, w, table});
    };
    for (int i = 0; i < 3; ++i)
        step();
    const AllocatorStats before = cuda::allocator(0).stats();
    for (int i = 0; i < 20; ++i)
        step();
    cuda::synchronize(0);
    const AllocatorStats after = cuda::allocator(0).stats();
    CHECK(after.system_allocs == before.system_allocs);
    CHECK(after.cache_hits > before.cache_hits);
}

#if defined(MINIDL_WITH_CUDA)
TEST_CASE("gpu/runtime: CUDA and cuBLAS errors become DeviceError with the call and the reason") {
    CHECK_THROWS_WITH_AS(MDL_CUDA_CHECK(cudaSetDevice(1 << 20)),
                         doctest::Contains("cudaSetDevice(1 << 20) failed: cudaErrorInvalidDevice"),
                         DeviceError);
    CHECK_THROWS_WITH_AS(MDL_CUBLAS_CHECK(CUBLAS_STATUS_INVALID_VALUE),
                         doctest::Contains("CUBLAS_STATUS_INVALID_VALUE"), DeviceError);
    // The failed call left no pending error behind: the next launch check passes.
    Tensor t = Tensor::zeros({10}, DType::F32, gpu());
    t.fill_(2.0);
    CHECK(t.to(Device::cpu()).to_vector<float>()[9] == 2.0f);
}
#endif

TEST_CASE("gpu/runtime: forward and backward of a small network match the CPU") {
    // embedding_bag -> relu -> linear -> layer_norm -> log_softmax / cross_entropy, through the op
    // layer and autograd on each device. F32 sums of up to 64 terms: the F32 tolerance.
    auto run = [](Device d) {
        Generator gen(17);
        Tensor table = Tensor::randn({200, 32}, &gen).to(d).set_requires_grad();
        Tensor w = Tensor::randn({10, 32}, &gen).to(d).set_requires_grad();
        Tensor ids =
            Tensor::from_vector(std::vector<int64_t>{1, 5, 7, 199, 3, 3, 0, 42}, {8}).to(d);
        Tensor offsets = Tensor::from_vector(std::vector<int64_t>{0, 2, 4, 5}, {4}).to(d);
        Tensor labels = Tensor::from_vector(std::vector<int64_t>{0, 3, 9, 1}, {4}).to(d);
        Tensor h = layer_norm(linear(relu(embedding_bag(table, ids, offsets)), w), {10});
        Tensor loss = cross_entropy(h, labels) + sum(log_softmax(h, 1));
        loss.backward();
        return std::vector<Tensor>{loss.to(Device::cpu()), h.to(Device::cpu()),
                                   table.grad().to(Device::cpu()), w.grad().to(Device::cpu())};
    };
    const std::vector<Tensor> cpu = run(Device::cpu());
    const std::vector<Tensor> gpu_out = run(gpu());
    const char* names[] = {"loss", "h", "table.grad", "w.grad"};
    for (size_t i = 0; i < cpu.size(); ++i)
        check_parity(gpu_out[i], cpu[i], std::string("network ") + names[i], {1e-5, 1e-5});
}

TEST_CASE("gpu/runtime: tensors on different devices are a DeviceError naming both") {
    CHECK_THROWS_WITH_AS(Tensor::ones({2}) + Tensor::ones({2}).to(gpu()),
                         doctest::Contains("cuda:0"), DeviceError);
    CHECK_THROWS_WITH_AS(Tensor::ones({2}) + Tensor::ones({2}).to(gpu()), doctest::Contains("cpu"),
                         DeviceError);
}

TEST_CASE("gpu/runtime: the CUDA allocator reuses segments under varying sizes and names an OOM") {
    Allocator& a = cuda::allocator(0);
    // An impossible request: OutOfMemoryError naming the device and the sizes, nothing changed.
    const AllocatorStats before_oom = a.stats();
    CHECK_THROWS_WITH_AS(a.allocate(size_t{1} << 45), doctest::Contains("cuda:0"),
                         OutOfMemoryError);
    CHECK(a.stats().bytes_in_use == before_oom.bytes_in_use);
    // Sizes that never repeat (padded batches): the segments are split and merged again, so the
    // reserved bytes stay near the largest live set rather than growing with every new size.
    const size_t reserved_before = a.stats().bytes_reserved;
    std::vector<std::pair<void*, size_t>> live;
    for (size_t i = 0; i < 400; ++i) {
        const size_t n = (i * 7919 % 997 + 1) * 4096;  // 4 KiB .. 4 MiB, all distinct steps
        live.emplace_back(a.allocate(n), n);
        if (live.size() > 8) {  // at most 9 alive: under 40 MiB
            a.deallocate(live.front().first, live.front().second);
            live.erase(live.begin());
        }
    }
    for (auto& [p, n] : live)
        a.deallocate(p, n);
    CHECK(a.stats().bytes_reserved - reserved_before <= (size_t{120} << 20));
    CHECK(a.stats().bytes_in_use == before_oom.bytes_in_use);
}
