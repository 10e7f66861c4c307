// nn/module.h — the base of every layer and model: named parameters, buffers and children.
//
// A Module owns tensors registered under a name, and child modules registered under a name;
// names join with dots into PyTorch's state_dict keys ("fc1.weight",
// "encoder.layers.0.norm.bias"). Parameters are trained (requires_grad is set on registration);
// buffers are state that is saved but not trained (BatchNorm's running statistics). Traversals
// list this module's own entries in registration order, then each child's, recursively — the
// order of torch.nn.Module.named_parameters() and state_dict().
//
// Tensors are handles: the `weight` member of a Linear, the entry in its registry and the
// handle an optimizer holds are one tensor. to(Device)/to(DType) and load_state_dict change the
// data behind that one tensor (Tensor::set_data / copy_), so every holder stays valid.
//
// Writing a module (the libtorch pattern; tests/nn/test_module.cpp compiles this one):
//
//   struct TwoLayer : nn::Cloneable<TwoLayer, nn::UnaryModule> {
//       TwoLayer(int64_t in, int64_t hidden, int64_t out) : in_(in), hidden_(hidden), out_(out) {
//           reset();
//       }
//       void reset() override {  // creates and registers everything; clone() calls it again
//           fc1 = register_module("fc1", std::make_shared<nn::Linear>(in_, hidden_));
//           fc2 = register_module("fc2", std::make_shared<nn::Linear>(hidden_, out_));
//       }
//       Tensor forward(const Tensor& x) override { return fc2->forward(relu(fc1->forward(x))); }
//       int64_t in_, hidden_, out_;
//       std::shared_ptr<nn::Linear> fc1, fc2;
//   };
//
// clone() (Cloneable) copy-constructs the module, empties the copy's registries, calls reset()
// on it — with random initialisation switched off (nn/init.h SkipRandomInitGuard), so cloning
// draws nothing from the generator — and then gives every parameter and buffer of the copy its
// own storage holding the original's values, recursively. Everything a module registers must
// therefore be registered by reset().
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/autograd.h"
#include "core/check.h"
#include "core/state_dict.h"
#include "core/tensor.h"
#include "nn/init.h"

namespace minidl::nn {

class Module {
  public:
    using NamedTensors = std::vector<std::pair<std::string, Tensor>>;
    using NamedModules = std::vector<std::pair<std::string, std::shared_ptr<Module>>>;

    Module() = default;
    virtual ~Module() = default;

    // ---- registration ---------------------------------------------------------------------
    // Names are non-empty, contain no '.', and are unique among this module's parameters,
    // buffers and children. A parameter must be a leaf; requires_grad is set as given (frozen
    // parameters: false). Each returns the handle it registered.
    Tensor register_parameter(const std::string& name, Tensor tensor, bool requires_grad = true);
    Tensor register_buffer(const std::string& name, Tensor tensor);
    template <typename M>
    std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
        register_child(name, module);
        return module;
    }

    // ---- traversal (registration order, dotted names, children recursively) --------------------
    // A tensor registered under two names (weight tying) is listed once, under its first name.
    NamedTensors named_parameters(bool recurse = true) const;
    std::vector<Tensor> parameters(bool recurse = true) const;
    NamedTensors named_buffers(bool recurse = true) const;
    std::vector<Tensor> buffers(bool recurse = true) const;
    const NamedModules& named_children() const { return children_; }
    // This module (name "") and every descendant, depth first, with dotted names.
    std::vector<std::pair<std::string, Module*>> named_modules();

    // ---- mode -----------------------------------------------------------------------------
    // Sets the training flag of this module and every descendant (Dropout, BatchNorm read it).
    virtual void train(bool on = true);
    void eval() { train(false); }
    bool is_training() const { return training_; }

    // ---- placement and gradients ----------------------------------------------------------
    // Moves every parameter and buffer (and its gradient) to `device`.
    void to(Device device);
    // Converts every floating parameter and buffer (and gradient) to `dtype`, a floating type;
    // integer buffers (BatchNorm's num_batches_tracked) keep theirs.
    void to(DType dtype);
    // Drops every parameter's gradient (set_to_none) or fills it with zeros.
    void zero_grad(bool set_to_none = true);

    // ---- checkpoints ----------------------------------------------------------------------
    // Parameters and buffers under their dotted names. Like PyTorch's, the tensors alias the
    // module's storage (detached): clone them for a snapshot that later steps leave alone.
    StateDict state_dict() const;
    // Copies the values of `state` into this module's tensors, converting dtype and device.
    // Everything is checked first — a missing or (strict) unexpected key, a shape mismatch
    // (always, as PyTorch), a floating value for an integer tensor or the reverse — and one
    // error lists every problem (ShapeError if a shape differs, else DTypeError, else
    // StateError) before any tensor is written.
    void load_state_dict(const StateDict& state, bool strict = true);

    // ---- copies ---------------------------------------------------------------------------
    // An independent deep copy: same structure, names, values and training flags, own storage
    // for every parameter and buffer. Modules get it from Cloneable; this base version throws.
    virtual std::shared_ptr<Module> clone() const;

    // The kind of module in messages ("Linear"); user modules may override.
    virtual std::string type_name() const { return "Module"; }

  protected:
    Module(const Module&) = default;
    Module& operator=(const Module&) = default;

    // Sets this module's training flag alone (train() sets the descendants' too).
    void set_training_only(bool on) { training_ = on; }
    // Forgets every registration (Cloneable, before calling reset() on a copy).
    void clear_registrations();
    // Gives this module's parameters and buffers (and its children's, recursively) their own
    // storage holding src's values, and copies the training flags. The names must match.
    void copy_state_from(const Module& src);

  private:
    void register_child(const std::string& name, std::shared_ptr<Module> module);
    void check_new_name(const char* what, const std::string& name) const;
    void collect(NamedTensors Module::*registry, const std::string& prefix, bool recurse,
                 NamedTensors& out) const;

    NamedTensors parameters_;
    NamedTensors buffers_;
    NamedModules children_;
    bool training_ = true;
};

// A module with one tensor in and one out: what Sequential chains.
class UnaryModule : public Module {
  public:
    virtual Tensor forward(const Tensor& x) = 0;
    Tensor operator()(const Tensor& x) { return forward(x); }
};

// Gives Derived a clone() from its reset() (see the top of this file). Base is Module or
// UnaryModule (or another Module subclass).
template <typename Derived, typename Base = Module>
class Cloneable : public Base {
  public:
    using Base::Base;

    // Creates and registers every parameter, buffer and child (call it from the constructor).
    virtual void reset() = 0;

    std::shared_ptr<Module> clone() const override {
        init::SkipRandomInitGuard no_draws;  // the values are copied from *this anyway
        NoGradGuard no_grad;
        auto copy = std::make_shared<Derived>(static_cast<const Derived&>(*this));
        copy->clear_registrations();
        copy->reset();
        copy->copy_state_from(*this);
        return copy;
    }
};

// clone() with the module's own type: auto replica = nn::clone(*model).
template <typename M>
std::shared_ptr<M> clone(const M& module) {
    auto copy = std::dynamic_pointer_cast<M>(module.clone());
    MDL_CHECK(copy != nullptr, StateError, "clone: ", module.type_name(),
              "::clone() returned a module of another type");
    return copy;
}

}  // namespace minidl::nn
