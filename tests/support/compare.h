// tests/support/compare.h — the one numeric comparison every test uses.
//
// Passes when |actual - expected| <= atol + rtol * |expected| for every element (the rule of
// numpy.allclose / torch.allclose), and reports the worst element otherwise. Never exact float
// equality, and not doctest::Approx, which mixes in an absolute tolerance of its own.
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace minidl::test {

struct CloseResult {
    bool ok = true;
    double max_abs_error = 0, max_rel_error = 0;
    size_t worst = 0;
    std::string message;
};

CloseResult compare_close(const std::vector<double>& actual, const std::vector<double>& expected,
                          double rtol, double atol);

// CHECKs closeness and returns the max relative error (|a - e| / max(|e|, tiny)).
double check_close(const std::vector<double>& actual, const std::vector<double>& expected,
                   double rtol, double atol, const std::string& what = "");
double check_close(const Tensor& actual, const std::vector<double>& expected, double rtol,
                   double atol, const std::string& what = "");
double check_close(const Tensor& actual, const Tensor& expected, double rtol, double atol,
                   const std::string& what = "");

// True when both tensors hold the same bytes (same dtype and shape).
bool bitwise_equal(const Tensor& a, const Tensor& b);

}  // namespace minidl::test
