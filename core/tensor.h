// core/tensor.h — the Tensor handle: a shared pointer to a contiguous n-d buffer plus autograd
// state.
//
// A Tensor is cheap to copy (it is a std::shared_ptr<TensorImpl>); copies alias the same tensor.
// Memory is always contiguous, row-major. view()/reshape() and detach() share storage (and its
// version counter); transpose() returns a contiguous copy — simpler kernels everywhere, and the
// models here only transpose small matrices. narrow0() takes rows [start, start + length) of dim 0
// without copying (the rows of a contiguous tensor are contiguous), which scatters a batch to
// replicas for free.
//
// Autograd fields (see autograd.h): requires_grad, grad (accumulated by backward into leaves),
// grad_fn (the Node that produced a non-leaf). A leaf's gradient may be held row-sparse
// (core/row_grad.h: an embedding table's gradient, only the looked-up rows stored); grad()
// then materialises the dense gradient, bitwise what the dense path would have computed. In-place operations (copy_, fill_, add_, ...) are
// not recorded in the graph: they throw StateError when grad mode is on and a tensor involved
// requires grad — update parameters inside a NoGradGuard, as optimizers do.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "core/shape.h"
#include "core/storage.h"

namespace minidl {

class Node;
class Generator;
struct TensorImpl;
struct RowGrad;

class Tensor {
  public:
    Tensor() = default;  // an undefined tensor: defined() is false
    explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

    // ---- factories ------------------------------------------------------------------------
    static Tensor empty(const Shape& shape, DType dtype = DType::F32,
                        Device device = Device::cpu());
    static Tensor zeros(const Shape& shape, DType dtype = DType::F32,
                        Device device = Device::cpu());
    static Tensor ones(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
    static Tensor full(const Shape& shape, double value, DType dtype = DType::F32,
                       Device device = Device::cpu());
    // [start, start + step, ...) below end, as PyTorch's arange.
    static Tensor arange(double start, double end, double step = 1.0, DType dtype = DType::I64,
                         Device device = Device::cpu());
    // Uniform on [low, high) / normal(mean, std) from a seeded counter-based generator: the same
    // seed gives the same numbers on every device and thread count. nullptr = default_generator().
    static Tensor rand(const Shape& shape, Generator* gen = nullptr, DType dtype = DType::F32,
                       Device device = Device::cpu(), double low = 0.0, double high = 1.0);
    static Tensor randn(const Shape& shape, Generator* gen = nullptr, DType dtype = DType::F32,
                        Device device = Device::cpu(), double mean = 0.0, double std = 1.0);
    // Copies `values` (row-major, numel(shape) of them) into a new tensor of `dtype`, converting.
    static Tensor from_vector(const std::vector<float>& values, const Shape& shape,
                              DType dtype = DType::F32, Device device = Device::cpu());
    static Tensor from_vector(const std::vector<double>& values, const Shape& shape,
                              DType dtype = DType::F64, Device device = Device::cpu());
    static Tensor from_vector(const std::vector<int64_t>& values, const Shape& shape,
                              DType dtype = DType::I64, Device device = Device::cpu());
    static Tensor scalar(double value, DType dtype = DType::F32, Device device = Device::cpu());
    static Tensor empty_like(const Tensor& t);
    static Tensor zeros_like(const Tensor& t);
    static Tensor ones_like(const Tensor& t);

    // ---- metadata -------------------------------------------------------------------------
    bool defined() const { return impl_ != nullptr; }
    const Shape& shape() const;
    int64_t dim() const { return static_cast<int64_t>(shape().size()); }
    int64_t size(int64_t d) const;  // negative d counts from the end
    int64_t numel() const;
    DType dtype() const;
    Device device() const;
    size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype()); }
    std::string str() const;  // "Tensor(f32, [2, 3], cpu)"

    // Raw data pointer (a device pointer for CUDA tensors).
    void* data_ptr() const;
    // Typed pointer; checks that T matches the dtype (float, double, int64_t).
    template <typename T>
    T* data() const;
    // Typed pointer without the dtype check: for the 16-bit types, whose C++ type is the kernel's.
    template <typename T>
    T* raw() const {
        return static_cast<T*>(data_ptr());
    }
    const std::shared_ptr<Storage>& storage() const;
    // Element offset of this tensor's first element in its storage (non-zero for narrow0 views).
    int64_t storage_offset() const;
    // True when both tensors point at the same memory.
    bool is_same_memory(const Tensor& other) const { return data_ptr() == other.data_ptr(); }
    bool is_same(const Tensor& other) const { return impl_ == other.impl_; }

    // ---- conversion and copies ------------------------------------------------------------
    // Differentiable conversions (gradients come back in the source dtype / on the source device).
    Tensor to(DType dtype) const;
    Tensor to(Device device) const;
    // The single element as double (0-d or one-element tensors; copies from the device).
    double item() const;
    template <typename T>
    T item() const {
        return static_cast<T>(item());
    }
    // All elements converted to T (float, double or int64_t), copied to the host.
    template <typename T>
    std::vector<T> to_vector() const;
    Tensor clone() const;   // a differentiable copy with its own storage
    Tensor detach() const;  // same storage and version counter, no graph, requires_grad false

    // ---- shape ----------------------------------------------------------------------------
    // Same storage, new shape (numel must agree; one size may be -1). Differentiable.
    Tensor view(const Shape& shape) const;
    Tensor reshape(const Shape& shape) const { return view(shape); }
    Tensor flatten() const { return view({numel()}); }
    // Contiguous copy with dims d0 and d1 swapped. Differentiable.
    Tensor transpose(int64_t d0, int64_t d1) const;
    Tensor t() const { return transpose(0, 1); }
    // Rows [start, start + length) of dim 0 sharing storage. Differentiable.
    Tensor narrow0(int64_t start, int64_t length) const;

    // ---- in-place (bump the version counter; never recorded in the graph) ---------------------
    Tensor& copy_(const Tensor& src);  // same shape (or broadcastable), any dtype/device
    Tensor& fill_(double value);
    Tensor& zero_() { return fill_(0.0); }
    Tensor& add_(const Tensor& other, double alpha = 1.0);  // this += alpha * other
    Tensor& mul_(double factor);
    void bump_version() const;
    uint64_t version() const;
    // Makes this tensor (and every handle sharing its impl) refer to src's storage, shape and
    // dtype; keeps requires_grad, drops grad. What Module::to(device) and loading weights use to
    // move a parameter without changing its identity (optimizers and tricks hold the same handle).
    void set_data(const Tensor& src) const;

    // ---- autograd -------------------------------------------------------------------------
    bool requires_grad() const;
    // Only leaves (tensors made by the user, not by a recorded op) may change requires_grad.
    Tensor& set_requires_grad(bool value = true);
    // The accumulated gradient (undefined until the first backward reaches this tensor). A
    // row-sparse gradient (core/row_grad.h) is made dense here, once.
    const Tensor& grad() const;
    void set_grad(const Tensor& g) const;
    bool is_leaf() const;
    const std::shared_ptr<Node>& grad_fn() const;
    // Keep .grad() for this non-leaf tensor when backward runs.
    void retain_grad() const;
    // Back-propagates from this tensor. Without `gradient` the tensor must have one element
    // (the gradient is 1). Gradients ACCUMULATE into the leaves' .grad(). With retain_graph false
    // the graph's saved tensors are freed and a second backward through it throws StateError.
    void backward(const Tensor& gradient = Tensor(), bool retain_graph = false) const;

    TensorImpl* impl() const { return impl_.get(); }
    const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }

  private:
    std::shared_ptr<TensorImpl> impl_;
};

struct TensorImpl {
    std::shared_ptr<Storage> storage;
    int64_t offset = 0;  // in elements
    Shape shape;
    DType dtype = DType::F32;
    bool requires_grad = false;
    bool retains_grad = false;
    Tensor grad;
    // Leaves only: the gradient held as its non-zero rows (core/row_grad.h). At most one of grad
    // and row_grad is set; grad() turns row_grad into grad.
    std::shared_ptr<RowGrad> row_grad;
    std::shared_ptr<Node> grad_fn;
    // Leaves only: run after a backward pass has accumulated into grad (autograd.h), by id.
    std::vector<std::pair<uint64_t, std::function<void(const Tensor&)>>> post_accumulate_hooks;
};

// A readable one-line description: dtype, shape, device and up to 8 values.
std::ostream& operator<<(std::ostream& os, const Tensor& t);

}  // namespace minidl
