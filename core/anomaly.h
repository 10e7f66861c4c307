// core/anomaly.h — anomaly detection: the first op whose forward or backward produces a NaN or an
// infinity throws NonFiniteError naming it (PyTorch's torch.autograd.detect_anomaly).
//
//   { minidl::AnomalyMode on; loss = model(x); loss.backward(); }   // or, for a whole process:
//   MINIDL_DETECT_ANOMALY=1 ./train                                 // (read once, at load time)
//
// What is checked, in the two places every op passes through:
//   forward  — the output of every op that records an autograd node (autograd::record: grad mode
//              on and an input that requires grad — every op of a training forward pass). Ops
//              that record nothing (under NoGradGuard, or on tensors that need no gradient) and
//              in-place updates (optimizer steps) are not checked.
//   backward — every gradient a node's backward returns, per input, before the engine passes it
//              on or accumulates it; a row-sparse table gradient (core/row_grad.h) after the node
//              that wrote it.
// The message names the op, the output or the gradient (its shape, dtype, the NaN and inf
// counts, the first bad index) and every input's shape and dtype and whether that input was
// already non-finite (then the NaN came from elsewhere: weights, data). A backward message also
// names which input's gradient it was, the forward call that created the node (recorded while the
// mode is on, as PyTorch records the forward traceback), and whether the gradient the node
// received was finite. The exception leaves no state half-changed that matters: the failing
// forward op records no node; a failing backward stops the pass (as any backward error does:
// leaves may hold part of that pass's gradient — zero_grad before the next step) and restores the
// grad mode.
//
// Process-wide, not per thread. Data parallelism runs forward and backward on replica threads the
// library starts (tricks/data_parallel.h), not on the thread that opened the scope: a thread-local
// mode would silently not reach them. The environment variable is process-wide too, and so is
// PyTorch's mode. The price: scopes opened at the same time on several threads restore in
// whatever order they close — open the scope on the thread that drives training.
//
// Cost when off: one relaxed atomic load and a branch that is never taken, per recorded op and
// per backward node (bench: example_step vs example_step_anomaly). When on: one read pass over
// every output and every gradient, plus a description of each recorded op.
#pragma once

#include <atomic>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace minidl {

class Node;

namespace detail {
// Initialised from MINIDL_DETECT_ANOMALY when the library is loaded.
extern std::atomic<bool> anomaly_enabled;
}  // namespace detail

// Turns anomaly detection on (or off) for its lifetime; restores the previous mode on exit.
class AnomalyMode {
  public:
    explicit AnomalyMode(bool enabled = true) : previous_(is_enabled()) { set_enabled(enabled); }
    ~AnomalyMode() { set_enabled(previous_); }
    AnomalyMode(const AnomalyMode&) = delete;
    AnomalyMode& operator=(const AnomalyMode&) = delete;

    static bool is_enabled() { return detail::anomaly_enabled.load(std::memory_order_relaxed); }
    static void set_enabled(bool enabled) {
        detail::anomaly_enabled.store(enabled, std::memory_order_relaxed);
    }

  private:
    bool previous_;
};

namespace autograd::anomaly {

// Whether MINIDL_DETECT_ANOMALY asks for the mode: "1", "true", "on" or "yes" (any case).
bool env_requests(const char* value);

// "log(input 0: [2, 3] f32 cpu)": the call, for messages.
std::string describe_call(const char* op, const std::vector<Tensor>& inputs);

// Throws NonFiniteError when `output` of op `op` holds a NaN or an inf.
void check_forward(const char* op, const std::vector<Tensor>& inputs, const Tensor& output);

// Throws NonFiniteError when a gradient `node` returned for one of its inputs holds a NaN or an
// inf (or the row-sparse gradient of an input table does).
void check_backward(const Node& node, const std::vector<Tensor>& grads, const Tensor& grad_output);

}  // namespace autograd::anomaly
}  // namespace minidl
