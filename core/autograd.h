// core/autograd.h — define-by-run reverse-mode automatic differentiation.
//
// Every differentiable op that runs while grad mode is on and sees an input that requires grad
// records a Node on its output: the op's name, its inputs (the graph's edges) and a closure that
// maps the gradient of the output to the gradients of the inputs (the chain rule for that op:
// dL/dx_i = J_i^T dL/dy). Tensor::backward() then
//   1. collects the nodes reachable from the root and counts, for each, the edges that feed it;
//   2. runs them in reverse topological order (a node runs once every consumer of its output has
//      contributed: Kahn's algorithm), summing the gradients that meet at a tensor;
//   3. ACCUMULATES (+=) into .grad of each leaf that requires grad — FGM and gradient
//      accumulation rely on this; zeroing is the optimizer's job;
//   4. frees each node's saved tensors unless retain_graph is set; a second backward through a
//      freed node throws StateError.
// Backward closures run with grad mode off (no higher-order gradients).
//
// A tensor a backward closure needs is kept as a SavedTensor, which remembers the storage version
// at save time: modifying that tensor in place before backward makes backward throw StateError
// naming the op, rather than return a gradient computed from the wrong values.
//
// Grad mode is per thread (thread_local), so replica threads in data parallelism don't see each
// other's NoGradGuard.
//
// Two hooks let data parallelism overlap communication with backward (tricks/data_parallel.h;
// PyTorch's DDP reducer uses the same two, Li et al. 2020, arXiv:2006.15704):
//   - a leaf's post-accumulate hooks run once per backward pass that reaches the leaf, right after
//     the pass's last contribution to its .grad() (the leaf's incoming edges are counted in step 1,
//     so a parameter used twice fires once, after both contributions);
//   - queue_callback(fn), called during a backward pass (from a hook), runs fn on the same thread
//     once the pass has processed the whole graph, before backward() returns.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace minidl {

// A tensor a backward closure needs, with the version it had when saved.
class SavedTensor {
  public:
    SavedTensor() = default;
    SavedTensor(const Tensor& t, const char* op);
    // The saved tensor; throws StateError if it was modified in place since it was saved.
    const Tensor& get() const;
    bool defined() const { return tensor_.defined(); }

  private:
    Tensor tensor_;  // a detached alias: same storage and version counter, no grad_fn
    uint64_t version_ = 0;
    const char* op_ = "";
};

class Node {
  public:
    // Maps dL/d(output) to dL/d(input_i) for each input; an entry may be undefined when the input
    // needs no gradient (needs_input_grad[i] is false) or the gradient is zero by construction.
    using BackwardFn = std::function<std::vector<Tensor>(
        const Tensor& grad_output, const std::vector<bool>& needs_input_grad)>;

    Node(std::string name, std::vector<Tensor> inputs, BackwardFn fn);

    const std::string& name() const { return name_; }
    // The forward call that created the node ("mul(input 0: [2, 3] f32 cpu, ...)"), recorded
    // only while anomaly mode (core/anomaly.h) is on; empty otherwise.
    const std::string& forward_call() const { return forward_call_; }
    void set_forward_call(std::string call) { forward_call_ = std::move(call); }
    // The inputs that require grad; the others are held as undefined tensors.
    const std::vector<Tensor>& inputs() const { return inputs_; }
    const std::vector<bool>& needs_input_grad() const { return needs_; }
    // Runs the closure; throws StateError if the node was released.
    std::vector<Tensor> apply(const Tensor& grad_output);
    // Frees the closure and what it saved.
    void release();
    bool released() const { return !fn_; }

  private:
    std::string name_;
    std::string forward_call_;
    std::vector<Tensor> inputs_;
    std::vector<bool> needs_;
    BackwardFn fn_;
};

// ---- grad mode (thread-local) -----------------------------------------------------------------
struct GradMode {
    static bool is_enabled();
    static void set_enabled(bool enabled);
};

// Disables graph recording in this thread for its lifetime (restores the previous mode).
class NoGradGuard {
  public:
    NoGradGuard() : previous_(GradMode::is_enabled()) { GradMode::set_enabled(false); }
    ~NoGradGuard() { GradMode::set_enabled(previous_); }
    NoGradGuard(const NoGradGuard&) = delete;
    NoGradGuard& operator=(const NoGradGuard&) = delete;

  private:
    bool previous_;
};

// Enables graph recording in this thread for its lifetime.
class EnableGradGuard {
  public:
    EnableGradGuard() : previous_(GradMode::is_enabled()) { GradMode::set_enabled(true); }
    ~EnableGradGuard() { GradMode::set_enabled(previous_); }
    EnableGradGuard(const EnableGradGuard&) = delete;
    EnableGradGuard& operator=(const EnableGradGuard&) = delete;

  private:
    bool previous_;
};

namespace autograd {

// True when grad mode is on and at least one input requires grad: the op must record a node.
bool should_record(std::initializer_list<Tensor> inputs);
bool should_record(const std::vector<Tensor>& inputs);

// Records `output` as produced by op `name` from `inputs` (call only when should_record is true).
// Under anomaly mode (core/anomaly.h) it first checks `output` for NaN/inf, and throws
// NonFiniteError naming the op, recording nothing.
void record(const char* name, std::vector<Tensor> inputs, Tensor& output, Node::BackwardFn fn);

// The engine behind Tensor::backward.
void backward(const Tensor& root, const Tensor& gradient, bool retain_graph);

// Runs the backward of `root` (gradient `gradient`, same shape) from inside a backward closure, as
// part of the pass already running on this thread: leaves accumulate and fire their hooks as in
// that pass, and queue_callback from them queues on that pass (activation checkpointing,
// tricks/checkpoint.h, backpropagates its recomputed block this way). The graph is released.
// Throws StateError outside a backward pass.
void backward_within(const Tensor& root, const Tensor& gradient);

// Accumulates g into t.grad() (+=), or makes g its gradient when t has none yet.
void accumulate_grad(const Tensor& t, Tensor g);

// ---- hooks ----------------------------------------------------------------------------------
// Called with the leaf after a backward pass that reached it has accumulated every contribution
// of that pass (PyTorch's register_post_accumulate_grad_hook). It also runs when the pass reached
// the leaf only through branches whose gradient was zero by construction (.grad() then unchanged,
// possibly undefined). Runs on the backward's thread, with grad mode off, in registration order.
using PostAccumulateHook = std::function<void(const Tensor& leaf)>;
// Registers `hook` on `leaf` (a leaf tensor); returns an id for remove_post_accumulate_hook.
uint64_t add_post_accumulate_hook(const Tensor& leaf, PostAccumulateHook hook);
// Removes the hook with this id from `leaf` (no-op when absent).
void remove_post_accumulate_hook(const Tensor& leaf, uint64_t id);
// Runs `fn` when the backward pass running on this thread has finished the graph, before
// backward() returns (callbacks run in the order queued; an exception from one propagates out of
// backward()). Throws StateError outside a backward pass.
void queue_callback(std::function<void()> fn);

}  // namespace autograd
}  // namespace minidl
