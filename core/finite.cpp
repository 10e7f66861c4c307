// core/finite.cpp — the finiteness scans (see finite.h for the bit test and its cost).
#include "core/finite.h"

#include <atomic>
#include <cstring>
#include <map>
#include <sstream>

#include "core/autograd.h"
#include "core/check.h"
#include "core/kernels.h"
#include "core/parallel.h"
#include "core/row_grad.h"

namespace minidl {

namespace {

// Elements per parallel block: large enough that a block's scan costs far more than handing it to
// a thread, small enough that two threads share a 1 MB gradient.
constexpr int64_t kBlock = int64_t{1} << 16;

template <typename U>
struct Bits {
    U exponent;  // the exponent field's mask
    U mantissa;  // the mantissa field's mask
};

// Whether any of x[0, n) has an all-ones exponent. Branch-free so that it vectorises.
template <typename U>
bool any_non_finite(const U* __restrict x, int64_t n, U exponent) {
    unsigned found = 0;
    for (int64_t i = 0; i < n; ++i)
        found |= static_cast<unsigned>((x[i] & exponent) == exponent);
    return found != 0;
}

template <typename U>
bool any_non_finite_threaded(const U* x, int64_t n, U exponent) {
    if (n <= kBlock) return any_non_finite(x, n, exponent);
    std::atomic<bool> found{false};
    parallel_blocks(n, kBlock, [&](int64_t, int64_t b, int64_t e) {
        if (!found.load(std::memory_order_relaxed) && any_non_finite(x + b, e - b, exponent))
            found.store(true, std::memory_order_relaxed);
    });
    return found.load();
}

template <typename U>
NonFiniteCount count(const U* x, int64_t n, Bits<U> bits) {
    NonFiniteCount c;
    for (int64_t i = 0; i < n; ++i) {
        if ((x[i] & bits.exponent) != bits.exponent) continue;
        if (c.first < 0) c.first = i;
        if ((x[i] & bits.mantissa) != 0)
            ++c.nan;
        else
            ++c.inf;
    }
    return c;
}

// Calls fn(bits pointer, Bits) for t's dtype on a host copy; returns `none` for integer tensors.
template <typename R, typename F>
R with_bits(const Tensor& t, R none, F&& fn) {
    if (!t.defined() || t.numel() == 0 || !is_floating(t.dtype())) return none;
    const Tensor host = t.device().is_cpu() ? t : t.detach().to(Device::cpu());
    const void* p = host.data_ptr();
    switch (host.dtype()) {
        case DType::F32:
            return fn(static_cast<const uint32_t*>(p), Bits<uint32_t>{0x7f800000u, 0x007fffffu});
        case DType::F64:
            return fn(static_cast<const uint64_t*>(p),
                      Bits<uint64_t>{0x7ff0000000000000ull, 0x000fffffffffffffull});
        case DType::F16:
            return fn(static_cast<const uint16_t*>(p), Bits<uint16_t>{0x7c00u, 0x03ffu});
        case DType::BF16:
            return fn(static_cast<const uint16_t*>(p), Bits<uint16_t>{0x7f80u, 0x007fu});
        default:
            return none;
    }
}

}  // namespace

bool all_finite(const Tensor& t) {
    return with_bits(t, true, [&](const auto* x, auto bits) {
        return !any_non_finite_threaded(x, t.numel(), bits.exponent);
    });
}

NonFiniteCount count_non_finite(const Tensor& t) {
    return with_bits(t, NonFiniteCount{},
                     [&](const auto* x, auto bits) { return count(x, t.numel(), bits); });
}

std::string describe_non_finite(const Tensor& t) {
    const NonFiniteCount c = count_non_finite(t);
    if (!c.any()) return "finite";
    std::ostringstream os;
    if (c.nan > 0) os << c.nan << " NaN";
    if (c.nan > 0 && c.inf > 0) os << " and ";
    if (c.inf > 0) os << c.inf << " inf";
    os << " of " << t.numel() << " elements (the first at flat index " << c.first << ")";
    return os.str();
}

namespace {

// Both overloads: host gradients are scanned here; those on a GPU are checked there, all of one
// device in one launch with one host read, rather than copied to the host (a full D2H copy of
// every gradient and a stream drain per tensor). The kernel is the loss scaler's
// unscale_and_check at a scale of exactly 1, which rewrites every value as it is (x * 1 == x bit
// for bit, NaN payloads and -0 included). With `value`, its device's flag and the value travel
// to the host together.
bool check_grads(const std::vector<Tensor>& params, const Tensor* value, double* value_out) {
    bool finite = true;
    std::map<std::string, std::vector<Tensor>> on_device;
    for (const Tensor& p : params) {
        if (!p.defined()) continue;
        // Neither form is made dense: .grad() would densify a row-sparse gradient.
        const RowGrad* rg = row_grad(p);
        const Tensor& g = rg ? rg->values : p.impl()->grad;
        if (!g.defined() || g.numel() == 0 || !is_floating(g.dtype())) continue;
        if (g.device().is_cpu()) {
            if (finite && !all_finite(g)) {
                finite = false;
                if (value == nullptr) return false;
            }
        } else {
            on_device[g.device().str()].push_back(g);
        }
    }
    bool value_read = false;
    for (auto& [name, grads] : on_device) {
        const Device device = grads.front().device();
        const Tensor one = Tensor::scalar(1.0, DType::F32, device);
        Tensor found_inf = Tensor::zeros({1}, DType::F32, device);
        kernels_for(device).unscale_and_check(grads, one, found_inf);
        if (value != nullptr && value->device() == device) {
            // [found_inf, value] in one F64 tensor, one transfer.
            NoGradGuard no_grad;
            Tensor both = Tensor::empty({2}, DType::F64, device);
            both.narrow0(0, 1).copy_(found_inf);
            both.narrow0(1, 1).copy_(value->detach().reshape({1}));
            const std::vector<double> v = both.to_vector<double>();
            finite = finite && v[0] == 0.0;
            *value_out = v[1];
            value_read = true;
        } else {
            finite = finite && found_inf.item() == 0.0;
            if (!finite && value == nullptr) return false;
        }
    }
    if (value != nullptr && !value_read) *value_out = value->item();
    return finite;
}

}  // namespace

bool grads_all_finite(const std::vector<Tensor>& params) {
    return check_grads(params, nullptr, nullptr);
}

bool grads_all_finite(const std::vector<Tensor>& params, const Tensor& value, double& value_out) {
    MDL_CHECK(value.defined() && value.numel() == 1, ShapeError,
              "grads_all_finite: value must hold one element, got ",
              value.defined() ? shape_str(value.shape()) : std::string("an undefined tensor"));
    return check_grads(params, &value, &value_out);
}

void require_finite(const StateDict& state, const char* who, const std::string& path) {
    for (const auto& [name, t] : state.tensors)
        MDL_CHECK(all_finite(t), NonFiniteError, who, ": ", path, ": tensor '", name, "' ",
                  shape_str(t.shape()), " holds ", describe_non_finite(t),
                  "; refusing to write it (the file already there, if any, is left as it was)");
}

}  // namespace minidl
