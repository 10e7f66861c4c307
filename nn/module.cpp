// nn/module.cpp — registries, traversal, modes, placement, state dicts and cloning of Module.
// Semantics follow torch.nn.Module (torch/nn/modules/module.py) and libtorch's Cloneable
// (torch/csrc/api/include/torch/nn/cloneable.h).
#include "nn/module.h"

#include <set>
#include <sstream>
#include <unordered_set>

namespace minidl::nn {

namespace {

std::string join_name(const std::string& prefix, const std::string& name) {
    return prefix.empty() ? name : prefix + "." + name;
}

template <typename Named>
std::string names_of(const Named& entries) {
    std::ostringstream os;
    os << "[";
    for (size_t i = 0; i < entries.size(); ++i)
        os << (i ? ", " : "") << entries[i].first;
    os << "]";
    return os.str();
}

// Parameters and buffers together, as state_dict() and load_state_dict() see them.
Module::NamedTensors named_state(const Module& m) {
    Module::NamedTensors all = m.named_parameters();
    for (auto& entry : m.named_buffers())
        all.push_back(std::move(entry));
    return all;
}

// Rebinds `t` to `data` (and converts its gradient the same way), keeping the handle.
template <typename Convert>
void rebind(const Tensor& t, const Convert& convert) {
    const Tensor grad = t.grad();
    t.set_data(convert(t.detach()));
    if (grad.defined()) t.set_grad(convert(grad));
}

}  // namespace

// ---- registration ------------------------------------------------------------------------------

void Module::check_new_name(const char* what, const std::string& name) const {
    MDL_CHECK(!name.empty(), ValueError, type_name(), "::", what, ": the name is empty");
    MDL_CHECK(name.find('.') == std::string::npos, ValueError, type_name(), "::", what, ": name '",
              name, "' contains '.', which separates the levels of dotted names");
    auto taken = [&](const auto& registry) {
        for (const auto& entry : registry)
            if (entry.first == name) return true;
        return false;
    };
    MDL_CHECK(!taken(parameters_) && !taken(buffers_) && !taken(children_), StateError, type_name(),
              "::", what, ": name '", name, "' is already registered");
}

Tensor Module::register_parameter(const std::string& name, Tensor tensor, bool requires_grad) {
    check_new_name("register_parameter", name);
    MDL_CHECK(tensor.defined(), StateError, type_name(), "::register_parameter: '", name,
              "' is an undefined tensor");
    MDL_CHECK(tensor.is_leaf(), StateError, type_name(), "::register_parameter: '", name,
              "' was computed by ", tensor.grad_fn()->name(),
              "; register a leaf (e.g. its .detach())");
    tensor.set_requires_grad(requires_grad);
    parameters_.emplace_back(name, tensor);
    return tensor;
}

Tensor Module::register_buffer(const std::string& name, Tensor tensor) {
    check_new_name("register_buffer", name);
    MDL_CHECK(tensor.defined(), StateError, type_name(), "::register_buffer: '", name,
              "' is an undefined tensor");
    buffers_.emplace_back(name, tensor);
    return tensor;
}

void Module::register_child(const std::string& name, std::shared_ptr<Module> module) {
    check_new_name("register_module", name);
    MDL_CHECK(module != nullptr, StateError, type_name(), "::register_module: '", name,
              "' is a null module");
    MDL_CHECK(module.get() != this, StateError, type_name(), "::register_module: '", name,
              "' is the module itself");
    children_.emplace_back(name, std::move(module));
}

void Module::clear_registrations() {
    parameters_.clear();
    buffers_.clear();
    children_.clear();
}

// ---- traversal ---------------------------------------------------------------------------------

void Module::collect(NamedTensors Module::*registry, const std::string& prefix, bool recurse,
                     NamedTensors& out) const {
    for (const auto& [name, t] : this->*registry)
        out.emplace_back(join_name(prefix, name), t);
    if (!recurse) return;
    for (const auto& [name, child] : children_)
        child->collect(registry, join_name(prefix, name), true, out);
}

namespace {
// Keeps the first occurrence of each tensor (a tied weight is one parameter to optimise).
Module::NamedTensors unique(Module::NamedTensors all) {
    std::unordered_set<const TensorImpl*> seen;
    Module::NamedTensors out;
    for (auto& entry : all)
        if (seen.insert(entry.second.impl()).second) out.push_back(std::move(entry));
    return out;
}
}  // namespace

Module::NamedTensors Module::named_parameters(bool recurse) const {
    NamedTensors all;
    collect(&Module::parameters_, "", recurse, all);
    return unique(std::move(all));
}

std::vector<Tensor> Module::parameters(bool recurse) const {
    std::vector<Tensor> out;
    for (auto& entry : named_parameters(recurse))
        out.push_back(entry.second);
    return out;
}

Module::NamedTensors Module::named_buffers(bool recurse) const {
    NamedTensors all;
    collect(&Module::buffers_, "", recurse, all);
    return unique(std::move(all));
}

std::vector<Tensor> Module::buffers(bool recurse) const {
    std::vector<Tensor> out;
    for (auto& entry : named_buffers(recurse))
        out.push_back(entry.second);
    return out;
}

std::vector<std::pair<std::string, Module*>> Module::named_modules() {
    std::vector<std::pair<std::string, Module*>> out{{"", this}};
    for (const auto& [name, child] : children_)
        for (const auto& [sub, module] : child->named_modules())
            out.emplace_back(sub.empty() ? name : name + "." + sub, module);
    return out;
}

// ---- mode, placement, gradients ----------------------------------------------------------------

void Module::train(bool on) {
    training_ = on;
    for (auto& entry : children_)
        entry.second->train(on);
}

void Module::to(Device device) {
    NoGradGuard no_grad;
    for (const auto& [name, t] : named_state(*this))
        if (t.device() != device) rebind(t, [&](const Tensor& x) { return x.to(device); });
}

void Module::to(DType dtype) {
    MDL_CHECK(is_floating(dtype), DTypeError, type_name(),
              "::to: the target dtype must be floating, got ", dtype);
    NoGradGuard no_grad;
    for (const auto& [name, t] : named_state(*this))
        if (is_floating(t.dtype()) && t.dtype() != dtype)
            rebind(t, [&](const Tensor& x) { return x.to(dtype); });
}

void Module::zero_grad(bool set_to_none) {
    NoGradGuard no_grad;
    for (const auto& [name, p] : named_parameters()) {
        if (set_to_none) {
            p.set_grad(Tensor());  // also drops a row-sparse gradient without densifying it
            continue;
        }
        if (!p.grad().defined()) continue;
        Tensor g = p.grad();
        g.zero_();
    }
}

// ---- checkpoints -------------------------------------------------------------------------------

StateDict Module::state_dict() const {
    StateDict out;
    // Not named_state(): a tied tensor is saved under every name, as PyTorch does.
    NamedTensors all;
    collect(&Module::parameters_, "", true, all);
    collect(&Module::buffers_, "", true, all);
    for (const auto& [name, t] : all)
        out.tensors[name] = t.detach();
    return out;
}

void Module::load_state_dict(const StateDict& state, bool strict) {
    NamedTensors targets;
    collect(&Module::parameters_, "", true, targets);
    collect(&Module::buffers_, "", true, targets);

    // Validate everything before writing anything.
    std::vector<std::string> problems;
    bool shape_problem = false, dtype_problem = false;
    std::set<std::string> known;
    for (const auto& [name, t] : targets) {
        known.insert(name);
        auto it = state.tensors.find(name);
        if (it == state.tensors.end()) {
            if (strict) problems.push_back("missing key '" + name + "'");
            continue;
        }
        const Tensor& src = it->second;
        if (!src.defined()) {
            problems.push_back("'" + name + "' is an undefined tensor");
        } else if (src.shape() != t.shape()) {
            shape_problem = true;
            problems.push_back("size mismatch for '" + name + "': checkpoint " +
                               shape_str(src.shape()) + ", module " + shape_str(t.shape()));
        } else if (is_floating(src.dtype()) != is_floating(t.dtype())) {
            dtype_problem = true;
            std::ostringstream os;
            os << "dtype mismatch for '" << name << "': checkpoint " << src.dtype() << ", module "
               << t.dtype();
            problems.push_back(os.str());
        }
    }
    if (strict)
        for (const auto& [name, t] : state.tensors)
            if (!known.count(name)) problems.push_back("unexpected key '" + name + "'");
    if (!problems.empty()) {
        std::ostringstream os;
        os << type_name() << "::load_state_dict: " << problems.size() << " problem(s), nothing "
           << "was loaded: ";
        for (size_t i = 0; i < problems.size(); ++i)
            os << (i ? "; " : "") << problems[i];
        if (shape_problem) throw ShapeError(os.str());
        if (dtype_problem) throw DTypeError(os.str());
        throw StateError(os.str());
    }

    NoGradGuard no_grad;
    for (auto& [name, t] : targets) {
        auto it = state.tensors.find(name);
        if (it != state.tensors.end()) t.copy_(it->second);
    }
}

// ---- copies ------------------------------------------------------------------------------------

std::shared_ptr<Module> Module::clone() const {
    throw StateError(detail::concat(type_name(),
                                    "::clone: this module cannot be cloned; derive it from "
                                    "nn::Cloneable<",
                                    type_name(), "> and register its tensors in reset()"));
}

void Module::copy_state_from(const Module& src) {
    auto check_same = [&](const char* what, const auto& mine, const auto& theirs) {
        bool same = mine.size() == theirs.size();
        for (size_t i = 0; same && i < mine.size(); ++i)
            same = mine[i].first == theirs[i].first;
        MDL_CHECK(same, StateError, type_name(), "::clone: after reset() the copy has ", what, " ",
                  names_of(mine), " but the original has ", names_of(theirs),
                  " (register every parameter, buffer and child in reset())");
    };
    check_same("parameters", parameters_, src.parameters_);
    check_same("buffers", buffers_, src.buffers_);
    check_same("children", children_, src.children_);

    NoGradGuard no_grad;
    auto copy_tensors = [](NamedTensors& mine, const NamedTensors& theirs) {
        for (size_t i = 0; i < mine.size(); ++i) {
            const Tensor& from = theirs[i].second;
            Tensor& to = mine[i].second;
            to.set_data(from.detach().clone());
            if (is_floating(from.dtype())) to.set_requires_grad(from.requires_grad());
        }
    };
    copy_tensors(parameters_, src.parameters_);
    copy_tensors(buffers_, src.buffers_);
    training_ = src.training_;
    for (size_t i = 0; i < children_.size(); ++i)
        children_[i].second->copy_state_from(*src.children_[i].second);
}

}  // namespace minidl::nn
