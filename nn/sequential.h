// nn/sequential.h — a chain of one-tensor modules, as torch.nn.Sequential.
//
//   forward(x) = m_{n-1}( ... m_1(m_0(x)) ... )
// The modules are children named "0", "1", ... in the order added, so their parameters are
// "0.weight", "2.bias", ... as in PyTorch.
//
//   nn::Sequential mlp{std::make_shared<nn::Linear>(4, 8), std::make_shared<nn::ReLU>()};
//   mlp.push_back(std::make_shared<nn::Linear>(8, 2));   // parameters 0.weight, 0.bias, 2.*
#pragma once

#include <initializer_list>
#include <memory>
#include <vector>

#include "nn/module.h"

namespace minidl::nn {

class Sequential : public UnaryModule {
  public:
    Sequential() = default;
    Sequential(std::initializer_list<std::shared_ptr<UnaryModule>> modules);

    // Appends `module` as child std::to_string(size()).
    void push_back(std::shared_ptr<UnaryModule> module);
    size_t size() const { return modules_.size(); }
    // The i-th module; throws IndexError when i >= size().
    const std::shared_ptr<UnaryModule>& operator[](size_t i) const;

    Tensor forward(const Tensor& x) override;
    // Clones every module (each must be cloneable) into a new Sequential.
    std::shared_ptr<Module> clone() const override;
    std::string type_name() const override { return "Sequential"; }

  private:
    std::vector<std::shared_ptr<UnaryModule>> modules_;
};

}  // namespace minidl::nn
