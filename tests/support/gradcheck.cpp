// tests/support/gradcheck.cpp — see gradcheck.h.
#include "tests/support/gradcheck.h"

#include <doctest/doctest.h>

#include <cmath>
#include <sstream>

#include "core/autograd.h"
#include "core/rng.h"

namespace minidl::test {

Tensor rand64(const Shape& shape, uint64_t seed, double low, double high) {
    Generator gen(seed);
    Tensor t = Tensor::rand(shape, &gen, DType::F64, Device::cpu(), low, high);
    t.set_requires_grad(true);
    return t;
}

bool gradcheck(const GradFn& f, const std::vector<Tensor>& inputs, const GradcheckOptions& o,
               const std::string& what) {
    for (const auto& x : inputs)
        REQUIRE_MESSAGE(x.dtype() == DType::F64, "gradcheck needs F64 inputs: " << x.str());

    // Analytic Jacobian rows: backward of each output element.
    Tensor out = f(inputs);
    const int64_t nout = out.numel();
    std::vector<std::vector<std::vector<double>>> analytic(inputs.size());
    for (int64_t k = 0; k < nout; ++k) {
        for (const auto& x : inputs)
            if (x.requires_grad()) x.set_grad(Tensor());
        std::vector<double> onehot(nout, 0.0);
        onehot[k] = 1.0;
        out.backward(Tensor::from_vector(onehot, out.shape(), out.dtype()), /*retain_graph=*/true);
        for (size_t j = 0; j < inputs.size(); ++j) {
            if (!inputs[j].requires_grad()) continue;
            const Tensor& g = inputs[j].grad();
            analytic[j].push_back(g.defined() ? g.to_vector<double>()
                                              : std::vector<double>(inputs[j].numel(), 0.0));
        }
    }

    // Numeric Jacobian columns by central differences.
    bool all_ok = true;
    NoGradGuard no_grad;
    for (size_t j = 0; j < inputs.size(); ++j) {
        const Tensor& x = inputs[j];
        if (!x.requires_grad()) continue;
        double* px = x.data<double>();
        for (int64_t i = 0; i < x.numel(); ++i) {
            const double saved = px[i];
            px[i] = saved + o.eps;
            const std::vector<double> plus = f(inputs).to_vector<double>();
            px[i] = saved - o.eps;
            const std::vector<double> minus = f(inputs).to_vector<double>();
            px[i] = saved;
            for (int64_t k = 0; k < nout; ++k) {
                const double numeric = (plus[k] - minus[k]) / (2 * o.eps);
                const double a = analytic[j][k][i];
                if (!(std::abs(a - numeric) <= o.atol + o.rtol * std::abs(numeric))) {
                    if (all_ok) {
                        std::ostringstream os;
                        os << what << ": input " << j << " element " << i << ", output " << k
                           << ": backward " << a << " vs finite difference " << numeric;
                        FAIL_CHECK(os.str());
                    }
                    all_ok = false;
                }
            }
        }
    }
    CHECK_MESSAGE(all_ok, what);
    return all_ok;
}

}  // namespace minidl::test
