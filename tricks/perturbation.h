// tricks/perturbation.h — what the adversarial tricks share: choosing parameters by name,
// backing their values (and gradients) up and restoring them bitwise.
//
// FGM and PGD perturb the embedding table (the seed's `emb_name in name`), AWP every parameter
// named "weight". A ParamFilter says which: a substring the name must contain, substrings that
// exclude it (the seed skips "video_embeddings"), or any predicate. Only parameters with
// requires_grad are considered, in the model's named_parameters() order.
//
// Per-micro-batch gradients. Under gradient accumulation .grad() holds the sum over the
// micro-batches so far, but an attack must follow THIS micro-batch's own clean gradient.
// mark_gradients() (called before the clean backward; GradAccumulator and the training-step
// helper do it) remembers the accumulated gradients, and own_gradient(i) is then
// grad_i - marked_i. Without a mark the whole .grad() is the micro-batch's (the seed's loop,
// which zeroes the gradients every step).
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "nn/module.h"

namespace minidl::tricks {

struct ParamFilter {
    std::string contains = {};              // the name must contain this ("" = any name)
    std::vector<std::string> exclude = {};  // ... and none of these
    // When set, decides alone (contains/exclude are ignored).
    std::function<bool(const std::string& name, const Tensor& param)> predicate = {};

    bool matches(const std::string& name, const Tensor& param) const;
};

using NamedTensor = std::pair<std::string, Tensor>;

class ParamSelection {
  public:
    // Selects the parameters of `model` that match `filter` and require grad; `who` names the
    // trick in error messages. Throws StateError when nothing matches (a misspelled name would
    // otherwise silently turn the trick off).
    ParamSelection(nn::Module& model, ParamFilter filter, const char* who);

    const std::vector<NamedTensor>& params() const { return params_; }
    size_t size() const { return params_.size(); }

    // Values: copies of the selected parameters, restored bitwise (copy_ back, version bumped).
    // With `rows`, parameter i's copy is only of the rows rows[i] (I64, strictly increasing) where
    // that is defined: an attack that moves only the rows its row-sparse gradient touched (FGM)
    // backs up and restores those alone.
    void backup_values(const std::vector<Tensor>& rows = {});
    void restore_values();
    bool has_value_backup() const { return !value_backup_.empty(); }
    const Tensor& backed_up_value(size_t i) const { return value_backup_.at(i); }
    // The rows parameter i's backup holds (undefined: the whole tensor).
    const Tensor& backed_up_rows(size_t i) const { return value_rows_.at(i); }
    // Before a step of an attack that moves parameter i again (PGD, AWP): true when the backup
    // is of rows and the step's gradient rows `rows` are exactly those rows, so that the step,
    // its projection and the restore can stay on them. Otherwise (a dense step, or other rows)
    // the backup is made whole first — the current tensor with the saved rows put back, which is
    // the tensor at backup time since only those rows have moved — and false is returned.
    bool keep_rows_for_step(size_t i, const Tensor& rows);

    // Gradients of the selected parameters (PGD keeps the clean gradient across its steps).
    void backup_gradients();
    void restore_gradients();

    // Per-micro-batch gradients (see the top of this file).
    void mark_gradients();
    void clear_mark() { marked_.clear(); }
    // This micro-batch's gradient of parameter i (undefined when the parameter has none).
    Tensor own_gradient(size_t i) const;
    bool marked() const { return !marked_.empty(); }

  private:
    const char* who_;
    std::vector<NamedTensor> params_;
    std::vector<Tensor> value_backup_;
    std::vector<Tensor> value_rows_;  // per parameter: the rows backed up (undefined: all of it)
    std::vector<Tensor> grad_backup_;
    std::vector<Tensor> marked_;
};

// What an attack step did: whether it changed any parameter, and whether it met a non-finite
// gradient norm (an overflowed AMP gradient: nothing was perturbed, and the step must be skipped).
struct AttackResult {
    bool perturbed = false;
    bool nonfinite = false;
};

// The ascent directions of one attack step: gradient i of the selection and its L2 norm. Every
// norm is computed before anything moves, so that a non-finite one (an overflowed AMP gradient)
// perturbs NOTHING — not the tensors before it either. `grads[i]` is undefined where the
// parameter has no gradient.
//
// Row-sparse gradients (core/row_grad.h). Asked for with allow_rows, a gradient held as rows is
// handed over as they are — grads[i] its [R, C] values, rows[i] its I64 [R] rows — instead of
// being made dense, and its norm is the dense tensor's, bitwise (row_sum_squares). Only for this
// micro-batch's whole gradient (no accumulation mark): grad - marked is dense anyway.
struct AscentDirections {
    std::vector<Tensor> grads;
    std::vector<Tensor> rows;  // per tensor: its rows when grads[i] is row-sparse, else undefined
    std::vector<double> norms;
    bool finite = true;
};
// The directions of `count` tensors, gradient(i) giving tensor i's.
AscentDirections ascent_directions(size_t count, const std::function<Tensor(size_t)>& gradient);
// Of a selection: own == true, this micro-batch's own gradients (ParamSelection::own_gradient);
// false, the whole .grad() (PGD's later steps, after zero_grad).
AscentDirections ascent_directions(const ParamSelection& selection, bool own = true,
                                   bool allow_rows = false);

// Restores the selection's values when it goes out of scope, exceptions included: an attack's
// adversarial pass that throws leaves the weights as they were before the attack.
class ScopedRestore {
  public:
    explicit ScopedRestore(ParamSelection& selection) : selection_(selection) {}
    ~ScopedRestore() {
        if (selection_.has_value_backup()) selection_.restore_values();
    }
    ScopedRestore(const ScopedRestore&) = delete;
    ScopedRestore& operator=(const ScopedRestore&) = delete;

  private:
    ParamSelection& selection_;
};

}  // namespace minidl::tricks
