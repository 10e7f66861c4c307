// tests/gpu/gpu_support.cpp — see gpu_support.h.
#include "tests/gpu/gpu_support.h"

#include <algorithm>
#include <limits>
#include <sstream>
#include <stdexcept>

#include "core/rng.h"

namespace minidl::gpu_test {

const std::vector<DType>& float_dtypes() {
    static const std::vector<DType> dtypes{DType::F32, DType::F64, DType::F16, DType::BF16};
    return dtypes;
}

Tolerance tolerance(DType dtype) {
    switch (dtype) {
        case DType::F64:
            return {1e-12, 1e-12};
        case DType::F16:
            return {2e-3, 1e-3};
        case DType::BF16:
            return {1.6e-2, 1e-2};
        default:
            return {1e-5, 1e-6};
    }
}

Tolerance scaled(DType dtype, double factor) {
    const Tolerance t = tolerance(dtype);
    return {t.rtol * factor, t.atol * factor};
}

std::string describe(const std::string& kernel, DType dtype, const Shape& shape) {
    std::ostringstream os;
    os << kernel << " " << dtype << " " << shape_str(shape);
    return os.str();
}

Tensor random_cpu(const Shape& shape, DType dtype, uint64_t seed, double low, double high) {
    Generator gen(seed);
    return Tensor::rand(shape, &gen, dtype, Device::cpu(), low, high);
}

Tensor ids_cpu(int64_t count, int64_t range, uint64_t seed) {
    Generator gen(seed);
    std::vector<int64_t> v(static_cast<size_t>(count));
    for (auto& x : v)
        x = gen.randint(range);
    return Tensor::from_vector(v, {count});
}

namespace {

std::vector<Tensor> on_gpu(const std::vector<Tensor>& tensors) {
    std::vector<Tensor> out;
    for (const Tensor& t : tensors)
        out.push_back(t.defined() ? t.to(gpu()) : Tensor());
    return out;
}

void run_on_gpu(const std::string& what, std::vector<Tensor>& tensors,
                const std::function<void(Kernels&, std::vector<Tensor>&)>& fn) {
    try {
        fn(cuda::kernels(), tensors);
        cuda::synchronize(0);
        for (Tensor& t : tensors)
            if (t.defined()) t = t.to(Device::cpu());
    } catch (const std::exception& e) {
        throw std::runtime_error(what + " on cuda:0 failed: " + e.what());
    }
}

}  // namespace

Both run_both(const std::string& what, const std::vector<Tensor>& tensors,
              const std::function<void(Kernels&, std::vector<Tensor>&)>& fn) {
    Both both;
    for (const Tensor& t : tensors)
        both.cpu.push_back(t.defined() ? t.clone() : Tensor());
    both.gpu = on_gpu(tensors);
    fn(cpu_kernels(), both.cpu);
    run_on_gpu(what, both.gpu, fn);
    return both;
}

std::vector<Tensor> run_gpu(const std::string& what, const std::vector<Tensor>& tensors,
                            const std::function<void(Kernels&, std::vector<Tensor>&)>& fn) {
    std::vector<Tensor> g = on_gpu(tensors);
    run_on_gpu(what, g, fn);
    return g;
}

void check_parity(const Tensor& gpu_result, const Tensor& cpu_result, const std::string& what,
                  Tolerance tol) {
    INFO(what << " (rtol " << tol.rtol << ", atol " << tol.atol << ")");
    REQUIRE(gpu_result.defined());
    CHECK(gpu_result.dtype() == cpu_result.dtype());
    test::check_close(gpu_result, cpu_result, tol.rtol, tol.atol, what);
}

void check_bitwise(const Tensor& gpu_result, const Tensor& cpu_result, const std::string& what) {
    INFO(what << " (bitwise)");
    CHECK(test::bitwise_equal(gpu_result, cpu_result));
}

}  // namespace minidl::gpu_test
