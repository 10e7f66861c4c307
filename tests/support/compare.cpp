// tests/support/compare.cpp — see compare.h.
#include "tests/support/compare.h"

#include <cstring>
#include <sstream>

namespace minidl::test {

CloseResult compare_close(const std::vector<double>& actual, const std::vector<double>& expected,
                          double rtol, double atol) {
    CloseResult r;
    if (actual.size() != expected.size()) {
        r.ok = false;
        r.message = "size mismatch: " + std::to_string(actual.size()) + " vs " +
                    std::to_string(expected.size());
        return r;
    }
    for (size_t i = 0; i < actual.size(); ++i) {
        const double a = actual[i], e = expected[i];
        const double err = std::abs(a - e);
        const bool both_nan = std::isnan(a) && std::isnan(e);
        const bool same_inf = std::isinf(a) && std::isinf(e) && (a > 0) == (e > 0);
        const bool ok = both_nan || same_inf || err <= atol + rtol * std::abs(e);
        const double rel = err / std::max(std::abs(e), 1e-30);
        if (!both_nan && !same_inf) {
            if (err > r.max_abs_error) r.max_abs_error = err;
            if (std::abs(e) > atol && rel > r.max_rel_error) r.max_rel_error = rel;
        }
        if (!ok && r.ok) {
            r.ok = false;
            r.worst = i;
            std::ostringstream os;
            os.precision(9);
            os << "element " << i << ": actual " << a << " expected " << e << " (|diff| " << err
               << " > atol " << atol << " + rtol " << rtol << " * |expected|)";
            r.message = os.str();
        }
    }
    return r;
}

double check_close(const std::vector<double>& actual, const std::vector<double>& expected,
                   double rtol, double atol, const std::string& what) {
    const CloseResult r = compare_close(actual, expected, rtol, atol);
    INFO(what << ": " << r.message);
    CHECK(r.ok);
    return r.max_rel_error;
}

double check_close(const Tensor& actual, const std::vector<double>& expected, double rtol,
                   double atol, const std::string& what) {
    return check_close(actual.to_vector<double>(), expected, rtol, atol, what);
}

double check_close(const Tensor& actual, const Tensor& expected, double rtol, double atol,
                   const std::string& what) {
    INFO(what << ": shapes " << shape_str(actual.shape()) << " vs " << shape_str(expected.shape()));
    CHECK(actual.shape() == expected.shape());
    return check_close(actual.to_vector<double>(), expected.to_vector<double>(), rtol, atol, what);
}

bool bitwise_equal(const Tensor& a, const Tensor& b) {
    if (a.dtype() != b.dtype() || a.shape() != b.shape()) return false;
    const Tensor ha = a.to(Device::cpu()), hb = b.to(Device::cpu());
    return a.nbytes() == 0 || std::memcmp(ha.data_ptr(), hb.data_ptr(), a.nbytes()) == 0;
}

}  // namespace minidl::test
