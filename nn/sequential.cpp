// nn/sequential.cpp — Sequential (see nn/sequential.h; reference:
// torch/nn/modules/container.py).
#include "nn/sequential.h"

#include <string>

#include "core/check.h"

namespace minidl::nn {

Sequential::Sequential(std::initializer_list<std::shared_ptr<UnaryModule>> modules) {
    for (const auto& m : modules)
        push_back(m);
}

void Sequential::push_back(std::shared_ptr<UnaryModule> module) {
    MDL_CHECK(module != nullptr, StateError, "Sequential::push_back: module ", modules_.size(),
              " is null");
    register_module(std::to_string(modules_.size()), module);
    modules_.push_back(std::move(module));
}

const std::shared_ptr<UnaryModule>& Sequential::operator[](size_t i) const {
    MDL_CHECK(i < modules_.size(), IndexError, "Sequential: index ", i,
              " is out of range for a Sequential of ", modules_.size(), " modules");
    return modules_[i];
}

Tensor Sequential::forward(const Tensor& x) {
    Tensor y = x;
    for (const auto& m : modules_)
        y = m->forward(y);
    return y;
}

std::shared_ptr<Module> Sequential::clone() const {
    auto copy = std::make_shared<Sequential>();
    for (size_t i = 0; i < modules_.size(); ++i) {
        auto module = std::dynamic_pointer_cast<UnaryModule>(modules_[i]->clone());
        MDL_CHECK(module != nullptr, StateError, "Sequential::clone: module ", i, " (",
                  modules_[i]->type_name(), ") cloned into a module that is not a UnaryModule");
        copy->push_back(std::move(module));
    }
    // Each clone carries its own training flag; this one is Sequential's.
    copy->set_training_only(is_training());
    return copy;
}

}  // namespace minidl::nn
