// nn/dropout.h — inverted dropout as a module, as torch.nn.Dropout.
//
// Srivastava et al. 2014, https://jmlr.org/papers/v15/srivastava14a.html. While training, each
// element is zeroed with probability p and the survivors are scaled by 1 / (1 - p); in eval mode
// it is the identity (ops/dropout.h). The mask is drawn from the default generator, or from
// `generator` when one is given (it must outlive the module and its clones).
#pragma once

#include "core/rng.h"
#include "nn/module.h"

namespace minidl::nn {

class Dropout : public Cloneable<Dropout, UnaryModule> {
  public:
    explicit Dropout(double p = 0.5, Generator* generator = nullptr);

    void reset() override {}
    Tensor forward(const Tensor& x) override;
    std::string type_name() const override { return "Dropout"; }

    double p() const { return p_; }

  private:
    double p_;
    Generator* generator_;
};

}  // namespace minidl::nn
