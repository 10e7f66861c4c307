// tricks/checkpoint.cpp — activation checkpointing (the algorithm is in checkpoint.h).
#include "tricks/checkpoint.h"

#include "core/autocast.h"
#include "core/autograd.h"
#include "core/check.h"

namespace minidl::tricks {

namespace {

// Sets each generator to `states` for its lifetime, then puts back what it found.
class GeneratorReplay {
  public:
    GeneratorReplay(const std::vector<Generator*>& generators,
                    const std::vector<Generator::State>& states)
        : generators_(generators) {
        for (size_t i = 0; i < generators_.size(); ++i) {
            found_.push_back(generators_[i]->state());
            generators_[i]->set_state(states[i]);
        }
    }
    ~GeneratorReplay() {
        for (size_t i = 0; i < generators_.size(); ++i)
            generators_[i]->set_state(found_[i]);
    }
    GeneratorReplay(const GeneratorReplay&) = delete;
    GeneratorReplay& operator=(const GeneratorReplay&) = delete;

  private:
    std::vector<Generator*> generators_;
    std::vector<Generator::State> found_;
};

// Sets this thread's autocast state for its lifetime.
class AutocastState {
  public:
    AutocastState(bool enabled, DType dtype)
        : enabled_(autocast::is_enabled()), dtype_(autocast::dtype()) {
        autocast::set_state(enabled, dtype);
    }
    ~AutocastState() { autocast::set_state(enabled_, dtype_); }
    AutocastState(const AutocastState&) = delete;
    AutocastState& operator=(const AutocastState&) = delete;

  private:
    bool enabled_;
    DType dtype_;
};

}  // namespace

Tensor checkpoint(const CheckpointFn& fn, const std::vector<Tensor>& inputs,
                  const std::vector<Generator*>& generators) {
    MDL_CHECK(static_cast<bool>(fn), ValueError, "checkpoint: the function is empty");
    std::vector<Generator*> gens = generators;
    if (gens.empty()) gens.push_back(&default_generator());
    for (Generator* g : gens)
        MDL_CHECK(g != nullptr, ValueError, "checkpoint: a generator is null");
    if (!autograd::should_record(inputs)) return fn(inputs);

    std::vector<Generator::State> states;
    for (Generator* g : gens)
        states.push_back(g->state());
    const bool autocast_enabled = autocast::is_enabled();
    const DType autocast_dtype = autocast::dtype();

    Tensor out;
    {
        NoGradGuard no_grad;
        out = fn(inputs);
    }
    MDL_CHECK(out.defined() && is_floating(out.dtype()), ValueError,
              "checkpoint: the function must return a floating tensor");
    // The node holds only the inputs that require grad; the others (a mask) are saved here.
    std::vector<SavedTensor> saved;
    for (const Tensor& x : inputs)
        saved.push_back(x.defined() ? SavedTensor(x, "checkpoint") : SavedTensor());
    autograd::record("checkpoint", inputs, out,
                     [fn, saved, gens, states, autocast_enabled, autocast_dtype](
                         const Tensor& grad_output, const std::vector<bool>& needs) {
                         std::vector<Tensor> detached;
                         for (size_t i = 0; i < saved.size(); ++i) {
                             Tensor x = saved[i].defined() ? saved[i].get().detach() : Tensor();
                             if (needs[i]) x.set_requires_grad(true);
                             detached.push_back(x);
                         }
                         Tensor recomputed;
                         {
                             GeneratorReplay replay(gens, states);
                             AutocastState autocast_as_forward(autocast_enabled, autocast_dtype);
                             EnableGradGuard grad;
                             recomputed = fn(detached);
                         }
                         MDL_CHECK(recomputed.shape() == grad_output.shape() &&
                                       recomputed.dtype() == grad_output.dtype(),
                                   StateError, "checkpoint: the recomputed output (",
                                   shape_str(recomputed.shape()), " ", recomputed.dtype(),
                                   ") differs from the forward's (", shape_str(grad_output.shape()),
                                   " ", grad_output.dtype(),
                                   "): the function is not a function of its inputs");
                         if (recomputed.requires_grad())
                             autograd::backward_within(recomputed, grad_output);
                         std::vector<Tensor> grads(detached.size());
                         for (size_t i = 0; i < detached.size(); ++i)
                             if (needs[i]) grads[i] = detached[i].grad();
                         return grads;
                     });
    return out;
}

}  // namespace minidl::tricks
