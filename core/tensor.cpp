// core/tensor.cpp — Tensor factories, metadata, conversions, views and in-place updates.
//
// The differentiable members (to, clone, view, transpose, narrow0) record their backward here:
//   to(dtype):   dx = dy.to(x.dtype)        to(device): dx = dy.to(x.device)
//   clone:       dx = dy                    view:       dx = dy.view(x.shape)
//   transpose:   dx = dy.transpose(d0, d1)  narrow0:    dx = zeros, rows [start, start+len) = dy
#include "core/tensor.h"

#include <cmath>
#include <cstring>
#include <sstream>

#include "core/autograd.h"
#include "core/check.h"
#include "core/kernels.h"
#include "core/rng.h"
#include "core/row_grad.h"

namespace minidl {

namespace {

// Throws unless an in-place write to t is allowed: in-place ops are not recorded in the graph,
// so writing to a tensor that takes part in it (requires grad) while recording would be wrong.
void check_inplace(const Tensor& t, const char* op) {
    MDL_CHECK(t.defined(), StateError, op, ": the tensor is undefined");
    MDL_CHECK(!(GradMode::is_enabled() && t.requires_grad()), StateError, op,
              ": in-place operation on a tensor that requires grad while grad mode is on (in-place "
              "ops are not recorded for backward). Hint: do it inside a NoGradGuard, as optimizers "
              "do, or work on a detach()ed copy");
}

// The kernel table that moves data between two devices: CUDA's when either side is a GPU.
Kernels& transfer_kernels(Device a, Device b) {
    return kernels_for(a.is_cuda() ? a : b);
}

// Validates a caller's shape (checked_numel) and returns the bytes it takes in `dtype`, which
// must fit in int64 as well: [2^62] elements of F32 would otherwise wrap around to a tiny buffer.
int64_t checked_nbytes(const Shape& shape, DType dtype, const char* op) {
    const int64_t n = checked_numel(shape, op);
    int64_t bytes = 0;
    MDL_CHECK(!__builtin_mul_overflow(n, static_cast<int64_t>(dtype_size(dtype)), &bytes),
              ShapeError, op, ": shape ", shape_str(shape), " of ", dtype,
              " takes more than 2^63 - 1 bytes");
    return bytes;
}

template <typename T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() {
    return DType::F32;
}
template <>
constexpr DType dtype_of<double>() {
    return DType::F64;
}
template <>
constexpr DType dtype_of<int64_t>() {
    return DType::I64;
}

template <typename T>
Tensor from_host(const std::vector<T>& values, const Shape& shape, DType dtype, Device device) {
    checked_nbytes(shape, dtype, "Tensor::from_vector");
    MDL_CHECK(static_cast<int64_t>(values.size()) == numel(shape), ShapeError,
              "Tensor::from_vector: ", values.size(), " values for shape ", shape_str(shape), " (",
              numel(shape), " elements)");
    Tensor host = Tensor::empty(shape, dtype_of<T>(), Device::cpu());
    if (!values.empty()) std::memcpy(host.data_ptr(), values.data(), values.size() * sizeof(T));
    NoGradGuard no_grad;
    return host.to(dtype).to(device);
}

}  // namespace

// ---- factories ------------------------------------------------------------------------------

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
    const int64_t nbytes = checked_nbytes(shape, dtype, "Tensor::empty");
    auto impl = std::make_shared<TensorImpl>();
    impl->storage = std::make_shared<Storage>(static_cast<size_t>(nbytes), device);
    impl->shape = shape;
    impl->dtype = dtype;
    return Tensor(std::move(impl));
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
    Tensor t = empty(shape, dtype, device);
    if (t.numel() > 0) kernels_for(device).fill(t, value);
    return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
    return full(shape, 0.0, dtype, device);
}

Tensor Tensor::ones(const Shape& shape, DType dtype, Device device) {
    return full(shape, 1.0, dtype, device);
}

Tensor Tensor::scalar(double value, DType dtype, Device device) {
    return full({}, value, dtype, device);
}

Tensor Tensor::arange(double start, double end, double step, DType dtype, Device device) {
    MDL_CHECK(step != 0.0, ValueError, "Tensor::arange: step must be non-zero");
    const double count = std::ceil((end - start) / step);
    // 2^63 as a double: a count at or above it (or NaN) has no int64 value to convert to.
    MDL_CHECK(!(count >= 9223372036854775808.0) && !std::isnan(count), ShapeError,
              "Tensor::arange: [", start, ", ", end, ") in steps of ", step, " has ", count,
              " elements, more than 2^63 - 1");
    const int64_t n = count > 0 ? static_cast<int64_t>(count) : 0;
    Tensor t = empty({n}, dtype, device);
    if (n > 0) kernels_for(device).arange(t, start, step);
    return t;
}

Tensor Tensor::rand(const Shape& shape, Generator* gen, DType dtype, Device device, double low,
                    double high) {
    MDL_CHECK(is_floating(dtype), DTypeError, "Tensor::rand: dtype must be floating, got ", dtype);
    Tensor t = empty(shape, dtype, device);
    Generator& g = gen ? *gen : default_generator();
    const uint64_t offset = g.reserve((t.numel() + 3) / 4);
    if (t.numel() > 0) kernels_for(device).uniform(t, low, high, g.seed(), offset);
    return t;
}

Tensor Tensor::randn(const Shape& shape, Generator* gen, DType dtype, Device device, double mean,
                     double std) {
    MDL_CHECK(is_floating(dtype), DTypeError, "Tensor::randn: dtype must be floating, got ", dtype);
    Tensor t = empty(shape, dtype, device);
    Generator& g = gen ? *gen : default_generator();
    const uint64_t offset = g.reserve((t.numel() + 3) / 4);
    if (t.numel() > 0) kernels_for(device).normal(t, mean, std, g.seed(), offset);
    return t;
}

Tensor Tensor::from_vector(const std::vector<float>& values, const Shape& shape, DType dtype,
                           Device device) {
    return from_host(values, shape, dtype, device);
}
Tensor Tensor::from_vector(const std::vector<double>& values, const Shape& shape, DType dtype,
                           Device device) {
    return from_host(values, shape, dtype, device);
}
Tensor Tensor::from_vector(const std::vector<int64_t>& values, const Shape& shape, DType dtype,
                           Device device) {
    return from_host(values, shape, dtype, device);
}

Tensor Tensor::empty_like(const Tensor& t) {
    return empty(t.shape(), t.dtype(), t.device());
}
Tensor Tensor::zeros_like(const Tensor& t) {
    return zeros(t.shape(), t.dtype(), t.device());
}
Tensor Tensor::ones_like(const Tensor& t) {
    return ones(t.shape(), t.dtype(), t.device());
}

// ---- metadata -------------------------------------------------------------------------------

namespace {
const TensorImpl& checked(const std::shared_ptr<TensorImpl>& impl) {
    MDL_CHECK(impl != nullptr, StateError, "Tensor: use of an undefined tensor");
    return *impl;
}
}  // namespace

const Shape& Tensor::shape() const {
    return checked(impl_).shape;
}
int64_t Tensor::numel() const {
    return minidl::numel(shape());
}
DType Tensor::dtype() const {
    return checked(impl_).dtype;
}
Device Tensor::device() const {
    return checked(impl_).storage->device();
}
const std::shared_ptr<Storage>& Tensor::storage() const {
    return checked(impl_).storage;
}
int64_t Tensor::storage_offset() const {
    return checked(impl_).offset;
}

int64_t Tensor::size(int64_t d) const {
    const int64_t nd = dim();
    MDL_CHECK(d >= -nd && d < nd, IndexError, "Tensor::size: dim ", d, " out of range for shape ",
              shape_str(shape()));
    return shape()[d < 0 ? d + nd : d];
}

void* Tensor::data_ptr() const {
    const TensorImpl& impl = checked(impl_);
    if (impl.storage->data() == nullptr) return nullptr;
    return static_cast<char*>(impl.storage->data()) + impl.offset * dtype_size(impl.dtype);
}

template <typename T>
T* Tensor::data() const {
    MDL_CHECK(dtype() == dtype_of<T>(), DTypeError, "Tensor::data: the tensor holds ", dtype(),
              ", asked for ", dtype_of<T>());
    return static_cast<T*>(data_ptr());
}
template float* Tensor::data<float>() const;
template double* Tensor::data<double>() const;
template int64_t* Tensor::data<int64_t>() const;

std::string Tensor::str() const {
    if (!defined()) return "Tensor(undefined)";
    std::ostringstream os;
    os << "Tensor(" << dtype() << ", " << shape_str(shape()) << ", " << device() << ")";
    return os.str();
}

// ---- conversions ------------------------------------------------------------------------------

Tensor Tensor::to(DType target) const {
    if (dtype() == target) return *this;
    Tensor out = empty(shape(), target, device());
    if (numel() > 0) kernels_for(device()).cast(*this, out);
    if (is_floating(dtype()) && is_floating(target) && autograd::should_record({*this})) {
        const DType source = dtype();
        autograd::record("to", {*this}, out, [source](const Tensor& gy, const std::vector<bool>&) {
            return std::vector<Tensor>{gy.to(source)};
        });
    }
    return out;
}

Tensor Tensor::to(Device target) const {
    if (device() == target) return *this;
    Tensor out = empty(shape(), dtype(), target);
    if (numel() > 0) transfer_kernels(device(), target).copy(*this, out);
    if (autograd::should_record({*this})) {
        const Device source = device();
        autograd::record("to", {*this}, out, [source](const Tensor& gy, const std::vector<bool>&) {
            return std::vector<Tensor>{gy.to(source)};
        });
    }
    return out;
}

double Tensor::item() const {
    MDL_CHECK(numel() == 1, ShapeError, "Tensor::item: needs exactly one element, got shape ",
              shape_str(shape()));
    NoGradGuard no_grad;
    Tensor host = to(Device::cpu());
    if (dtype() == DType::I64) return static_cast<double>(*host.data<int64_t>());
    return *host.to(DType::F64).data<double>();
}

template <typename T>
std::vector<T> Tensor::to_vector() const {
    NoGradGuard no_grad;
    Tensor host = to(Device::cpu()).to(dtype_of<T>());
    const T* p = host.data<T>();
    return std::vector<T>(p, p + host.numel());
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;

Tensor Tensor::clone() const {
    Tensor out = empty_like(*this);
    if (numel() > 0) kernels_for(device()).copy(*this, out);
    if (autograd::should_record({*this})) {
        autograd::record("clone", {*this}, out, [](const Tensor& gy, const std::vector<bool>&) {
            return std::vector{gy};
        });
    }
    return out;
}

Tensor Tensor::detach() const {
    const TensorImpl& src = checked(impl_);
    auto impl = std::make_shared<TensorImpl>();
    impl->storage = src.storage;
    impl->offset = src.offset;
    impl->shape = src.shape;
    impl->dtype = src.dtype;
    return Tensor(std::move(impl));
}

// ---- shape ------------------------------------------------------------------------------------

Tensor Tensor::view(const Shape& new_shape) const {
    Shape target = new_shape;
    int64_t known = 1, infer = -1;
    for (size_t i = 0; i < target.size(); ++i) {
        if (target[i] == -1) {
            MDL_CHECK(infer < 0, ShapeError, "view: only one dimension can be -1, got ",
                      shape_str(new_shape));
            infer = static_cast<int64_t>(i);
        } else {
            MDL_CHECK(target[i] >= 0, ShapeError, "view: invalid shape ", shape_str(new_shape));
            // A product that overflows cannot equal numel(): refuse it before it wraps around.
            MDL_CHECK(!__builtin_mul_overflow(known, target[i], &known), ShapeError, "view: shape ",
                      shape_str(new_shape), " has more than 2^63 - 1 elements (the tensor has ",
                      numel(), ")");
        }
    }
    if (infer >= 0) {
        MDL_CHECK(known != 0 && numel() % known == 0, ShapeError, "view: shape ",
                  shape_str(new_shape), " is invalid for a tensor of shape ", shape_str(shape()));
        target[infer] = numel() / known;
    }
    checked_numel(target, "view");  // also an empty [0, 2^62, 4], whose strides would overflow
    MDL_CHECK(minidl::numel(target) == numel(), ShapeError, "view: shape ", shape_str(new_shape),
              " is invalid for a tensor of shape ", shape_str(shape()), " (", numel(),
              " elements)");
    Tensor out = detach();
    out.impl()->shape = target;
    if (autograd::should_record({*this})) {
        const Shape source = shape();
        autograd::record("view", {*this}, out,
                         [source](const Tensor& gy, const std::vector<bool>&) {
                             return std::vector<Tensor>{gy.view(source)};
                         });
    }
    return out;
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
    const int64_t a = normalize_dim(d0, dim(), "transpose");
    const int64_t b = normalize_dim(d1, dim(), "transpose");
    if (a == b || dim() < 2) return *this;
    std::vector<int64_t> perm(dim());
    for (int64_t i = 0; i < dim(); ++i)
        perm[i] = i;
    std::swap(perm[a], perm[b]);
    Shape out_shape = shape();
    std::swap(out_shape[a], out_shape[b]);
    Tensor out = empty(out_shape, dtype(), device());
    if (numel() > 0) kernels_for(device()).permute(*this, out, perm);
    if (autograd::should_record({*this})) {
        autograd::record("transpose", {*this}, out,
                         [a, b](const Tensor& gy, const std::vector<bool>&) {
                             return std::vector<Tensor>{gy.transpose(a, b)};
                         });
    }
    return out;
}

Tensor Tensor::narrow0(int64_t start, int64_t length) const {
    MDL_CHECK(dim() >= 1, ShapeError, "narrow0: needs at least one dimension, got a 0-d tensor");
    MDL_CHECK(start >= 0 && length >= 0 && start + length <= shape()[0], IndexError,
              "narrow0: rows [", start, ", ", start + length, ") out of range for shape ",
              shape_str(shape()));
    const int64_t row = shape()[0] == 0 ? 0 : numel() / shape()[0];
    Tensor out = detach();
    out.impl()->offset += start * row;
    out.impl()->shape[0] = length;
    if (autograd::should_record({*this})) {
        const Shape source = shape();
        autograd::record("narrow0", {*this}, out,
                         [source, start, length, row](const Tensor& gy, const std::vector<bool>&) {
                             Tensor gx = zeros(source, gy.dtype(), gy.device());
                             if (gy.numel() > 0)
                                 kernels_for(gy.device())
                                     .strided_copy(gy, 0, 0, gx, start * row, 0, 1, length * row,
                                                   false);
                             return std::vector<Tensor>{gx};
                         });
    }
    return out;
}

// ---- in-place ---------------------------------------------------------------------------------

Tensor& Tensor::copy_(const Tensor& src) {
    check_inplace(*this, "copy_");
    MDL_CHECK(src.defined(), StateError, "copy_: the source tensor is undefined");
    NoGradGuard no_grad;
    if (src.shape() != shape()) {
        broadcast_shapes(shape(), src.shape(), "copy_");
        MDL_CHECK(broadcast_shapes(shape(), src.shape(), "copy_") == shape(), ShapeError,
                  "copy_: source of shape ", shape_str(src.shape()),
                  " does not broadcast to the destination's shape ", shape_str(shape()));
        // Broadcast by adding a zero scalar into the destination's shape.
        Tensor s = src.to(device()).to(dtype());
        kernels_for(device()).binary(BinaryOp::Add, s, scalar(0.0, dtype(), device()), *this);
    } else if (numel() > 0) {
        if (src.dtype() == dtype()) {
            transfer_kernels(src.device(), device()).copy(src, *this);
        } else {
            Tensor s = src.to(device());
            kernels_for(device()).cast(s, *this);
        }
    }
    bump_version();
    return *this;
}

Tensor& Tensor::fill_(double value) {
    check_inplace(*this, "fill_");
    if (numel() > 0) kernels_for(device()).fill(*this, value);
    bump_version();
    return *this;
}

Tensor& Tensor::add_(const Tensor& other, double alpha) {
    check_inplace(*this, "add_");
    MDL_CHECK(other.shape() == shape(), ShapeError,
              "add_: shapes differ, self=", shape_str(shape()),
              " other=", shape_str(other.shape()));
    MDL_CHECK(other.device() == device(), DeviceError, "add_: devices differ, self=", device(),
              " other=", other.device());
    NoGradGuard no_grad;
    Tensor o = other.to(dtype());
    if (numel() > 0) kernels_for(device()).axpy(alpha, o, *this);
    bump_version();
    return *this;
}

Tensor& Tensor::mul_(double factor) {
    check_inplace(*this, "mul_");
    MDL_CHECK(is_floating(dtype()), DTypeError, "mul_: needs a floating tensor, got ", dtype());
    if (numel() > 0) kernels_for(device()).unary(UnaryOp::MulScalar, *this, *this, factor);
    bump_version();
    return *this;
}

void Tensor::bump_version() const {
    storage()->bump_version();
}

void Tensor::set_data(const Tensor& src) const {
    checked(impl_);
    MDL_CHECK(src.defined(), StateError, "set_data: the source tensor is undefined");
    MDL_CHECK(is_leaf(), StateError, "set_data: only leaf tensors can be rebound");
    MDL_CHECK(!requires_grad() || is_floating(src.dtype()), DTypeError,
              "set_data: a tensor that requires grad needs floating data, got ", src.dtype());
    impl_->storage = src.storage();
    impl_->offset = src.storage_offset();
    impl_->shape = src.shape();
    impl_->dtype = src.dtype();
    impl_->grad = Tensor();
    impl_->row_grad.reset();
}
uint64_t Tensor::version() const {
    return storage()->version();
}

// ---- autograd ---------------------------------------------------------------------------------

bool Tensor::requires_grad() const {
    return checked(impl_).requires_grad;
}

Tensor& Tensor::set_requires_grad(bool value) {
    MDL_CHECK(is_leaf(), StateError,
              "set_requires_grad: only leaf tensors can change requires_grad (this one was made "
              "by ",
              grad_fn()->name(), "); use detach() for a new leaf");
    MDL_CHECK(!value || is_floating(dtype()), DTypeError,
              "set_requires_grad: only floating tensors can require grad, got ", dtype());
    impl_->requires_grad = value;
    return *this;
}

const Tensor& Tensor::grad() const {
    checked(impl_);
    TensorImpl& impl = *impl_;
    if (impl.row_grad) {
        // Whoever asks for the gradient gets the dense tensor PyTorch would hold (optimizers
        // that can use the rows directly look at row_grad() first).
        NoGradGuard no_grad;
        impl.grad = densify(*impl.row_grad, impl.shape);
        impl.row_grad.reset();
    }
    return impl.grad;
}

void Tensor::set_grad(const Tensor& g) const {
    checked(impl_);
    if (g.defined()) {
        MDL_CHECK(g.shape() == shape(), ShapeError, "set_grad: gradient shape ",
                  shape_str(g.shape()), " differs from the tensor's ", shape_str(shape()));
        MDL_CHECK(g.device() == device(), DeviceError, "set_grad: gradient on ", g.device(),
                  ", tensor on ", device());
    }
    impl_->grad = g;
    impl_->row_grad.reset();
}

bool Tensor::is_leaf() const {
    return checked(impl_).grad_fn == nullptr;
}
const std::shared_ptr<Node>& Tensor::grad_fn() const {
    return checked(impl_).grad_fn;
}
void Tensor::retain_grad() const {
    checked(impl_);
    impl_->retains_grad = true;
}

void Tensor::backward(const Tensor& gradient, bool retain_graph) const {
    autograd::backward(*this, gradient, retain_graph);
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) {
    os << t.str();
    if (!t.defined() || t.numel() == 0) return os;
    const std::vector<double> v = t.to_vector<double>();
    os << " {";
    for (size_t i = 0; i < v.size() && i < 8; ++i)
        os << (i ? ", " : "") << v[i];
    if (v.size() > 8) os << ", ...";
    return os << "}";
}

}  // namespace minidl
