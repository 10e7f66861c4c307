// core/autograd.cpp — the backward engine (see autograd.h for the algorithm).
#include "core/autograd.h"

#include <atomic>
#include <deque>
#include <unordered_map>

#include "core/anomaly.h"
#include "core/check.h"

namespace minidl {

namespace {
thread_local bool tls_grad_enabled = true;
// The callbacks queued during the backward pass running on this thread (nullptr outside one).
thread_local std::vector<std::function<void()>>* tls_callbacks = nullptr;
std::atomic<uint64_t> next_hook_id{1};

bool has_hooks(const Tensor& t) {
    return t.defined() && !t.grad_fn() && !t.impl()->post_accumulate_hooks.empty();
}

void run_hooks(const Tensor& leaf) {
    // A copy: a hook may remove itself.
    const auto hooks = leaf.impl()->post_accumulate_hooks;
    for (const auto& entry : hooks)
        entry.second(leaf);
}
}  // namespace

bool GradMode::is_enabled() {
    return tls_grad_enabled;
}
void GradMode::set_enabled(bool enabled) {
    tls_grad_enabled = enabled;
}

SavedTensor::SavedTensor(const Tensor& t, const char* op)
    : tensor_(t.defined() ? t.detach() : Tensor()),
      version_(t.defined() ? t.version() : 0),
      op_(op) {}

const Tensor& SavedTensor::get() const {
    MDL_CHECK(!tensor_.defined() || tensor_.version() == version_, StateError, op_,
              " backward: a tensor saved for the gradient computation was modified in place "
              "afterwards (its version was ",
              version_, " when saved and is ", tensor_.version(),
              " now); its gradient would be wrong. Hint: clone() it before modifying it, or modify "
              "it after backward().");
    return tensor_;
}

Node::Node(std::string name, std::vector<Tensor> inputs, BackwardFn fn)
    : name_(std::move(name)), fn_(std::move(fn)) {
    inputs_.reserve(inputs.size());
    needs_.reserve(inputs.size());
    for (auto& t : inputs) {
        const bool needs = t.defined() && t.requires_grad();
        needs_.push_back(needs);
        inputs_.push_back(needs ? std::move(t) : Tensor());
    }
}

std::vector<Tensor> Node::apply(const Tensor& grad_output) {
    MDL_CHECK(fn_, StateError, "backward of ", name_,
              ": trying to backward through the graph a second time (its saved tensors were "
              "freed by the first backward). Hint: pass retain_graph=true to the first backward.");
    return fn_(grad_output, needs_);
}

void Node::release() {
    // Dropping the inputs too lets the activations they hold go as soon as backward is done with
    // them, not when the root tensor dies.
    fn_ = nullptr;
    inputs_.clear();
}

namespace autograd {

bool should_record(std::initializer_list<Tensor> inputs) {
    if (!GradMode::is_enabled()) return false;
    for (const auto& t : inputs)
        if (t.defined() && t.requires_grad()) return true;
    return false;
}

bool should_record(const std::vector<Tensor>& inputs) {
    if (!GradMode::is_enabled()) return false;
    for (const auto& t : inputs)
        if (t.defined() && t.requires_grad()) return true;
    return false;
}

void record(const char* name, std::vector<Tensor> inputs, Tensor& output, Node::BackwardFn fn) {
    // Every op that records a node passes here with its output: the one place for the forward
    // check. Off, this is one relaxed load and a branch that is never taken.
    std::string forward_call;
    if (AnomalyMode::is_enabled()) [[unlikely]] {
        anomaly::check_forward(name, inputs, output);  // throws before anything is recorded
        forward_call = anomaly::describe_call(name, inputs);
    }
    auto node = std::make_shared<Node>(name, std::move(inputs), std::move(fn));
    if (!forward_call.empty()) [[unlikely]]
        node->set_forward_call(std::move(forward_call));
    output.impl()->requires_grad = true;
    output.impl()->grad_fn = std::move(node);
}

void accumulate_grad(const Tensor& t, Tensor g) {
    TensorImpl* impl = t.impl();
    if (impl->row_grad) (void)t.grad();  // a dense gradient adds to the dense form (row_grad.h)
    if (!impl->grad.defined()) {
        // Take g as the gradient when nothing else can see its memory; otherwise copy, so that a
        // later in-place accumulation cannot write into another tensor's gradient.
        const bool exclusive = g.impl_ptr().use_count() == 1 && g.storage().use_count() == 1 &&
                               g.storage_offset() == 0;
        if (exclusive && g.dtype() == t.dtype()) {
            impl->grad = std::move(g);
        } else {
            NoGradGuard no_grad;
            impl->grad = g.to(t.dtype()).clone();
        }
        return;
    }
    NoGradGuard no_grad;
    impl->grad.add_(g);
}

uint64_t add_post_accumulate_hook(const Tensor& leaf, PostAccumulateHook hook) {
    MDL_CHECK(leaf.defined() && leaf.is_leaf(), StateError,
              "add_post_accumulate_hook: the tensor must be a leaf (a parameter), got ",
              leaf.defined() ? leaf.str() : std::string("an undefined tensor"));
    MDL_CHECK(hook != nullptr, StateError, "add_post_accumulate_hook: empty hook");
    const uint64_t id = next_hook_id.fetch_add(1);
    leaf.impl()->post_accumulate_hooks.emplace_back(id, std::move(hook));
    return id;
}

void remove_post_accumulate_hook(const Tensor& leaf, uint64_t id) {
    if (!leaf.defined()) return;
    auto& hooks = leaf.impl()->post_accumulate_hooks;
    std::erase_if(hooks, [id](const auto& entry) { return entry.first == id; });
}

void queue_callback(std::function<void()> fn) {
    MDL_CHECK(tls_callbacks != nullptr, StateError,
              "autograd::queue_callback: no backward pass is running on this thread");
    tls_callbacks->push_back(std::move(fn));
}

namespace {
void run_graph(const Tensor& root, const Tensor& grad_root, bool retain_graph);
}

void backward(const Tensor& root, const Tensor& gradient, bool retain_graph) {
    MDL_CHECK(root.defined(), StateError, "backward: called on an undefined tensor");
    MDL_CHECK(root.requires_grad(), StateError,
              "backward: the tensor does not require grad and has no grad_fn (nothing to "
              "differentiate). Hint: was it computed inside a NoGradGuard, or from tensors without "
              "requires_grad?");
    Tensor grad_root = gradient;
    if (!grad_root.defined()) {
        MDL_CHECK(root.numel() == 1, ShapeError,
                  "backward: the gradient can be implied only for a tensor with one element, got "
                  "shape ",
                  shape_str(root.shape()), "; pass the gradient explicitly");
        grad_root = Tensor::ones(root.shape(), root.dtype(), root.device());
    } else {
        MDL_CHECK(grad_root.shape() == root.shape(), ShapeError, "backward: gradient shape ",
                  shape_str(grad_root.shape()), " differs from the tensor's shape ",
                  shape_str(root.shape()));
    }

    NoGradGuard no_grad;
    // Callbacks queued by hooks during this pass; a backward started from a hook gets its own.
    std::vector<std::function<void()>> callbacks;
    struct CallbackScope {
        std::vector<std::function<void()>>* previous;
        explicit CallbackScope(std::vector<std::function<void()>>* mine) : previous(tls_callbacks) {
            tls_callbacks = mine;
        }
        ~CallbackScope() { tls_callbacks = previous; }
    };
    {
        CallbackScope scope(&callbacks);
        run_graph(root, grad_root, retain_graph);
    }
    for (size_t i = 0; i < callbacks.size(); ++i)
        callbacks[i]();
}

void backward_within(const Tensor& root, const Tensor& gradient) {
    MDL_CHECK(tls_callbacks != nullptr, StateError,
              "autograd::backward_within: no backward pass is running on this thread");
    MDL_CHECK(root.defined() && root.requires_grad(), StateError,
              "autograd::backward_within: the tensor does not require grad");
    MDL_CHECK(gradient.defined() && gradient.shape() == root.shape(), ShapeError,
              "autograd::backward_within: gradient shape ",
              gradient.defined() ? shape_str(gradient.shape()) : std::string("(undefined)"),
              " differs from the tensor's shape ", shape_str(root.shape()));
    NoGradGuard no_grad;
    run_graph(root, gradient, /*retain_graph=*/false);
}

namespace {

void run_graph(const Tensor& root, const Tensor& grad_root, bool retain_graph) {
    if (!root.grad_fn()) {  // a leaf: its gradient is the given one
        accumulate_grad(root, grad_root.to(root.dtype()));
        if (has_hooks(root)) run_hooks(root);
        return;
    }

    // 1. Count, for each reachable node, the edges that lead into it, and for each hooked leaf
    //    the edges that lead into it (its hooks run when the last one is done).
    std::unordered_map<Node*, int> dependencies;
    std::unordered_map<TensorImpl*, int> leaf_edges;
    auto leaf_edge_done = [&](const Tensor& leaf) {
        if (has_hooks(leaf) && --leaf_edges[leaf.impl()] == 0) run_hooks(leaf);
    };
    {
        std::vector<Node*> stack{root.grad_fn().get()};
        dependencies[root.grad_fn().get()] = 0;
        while (!stack.empty()) {
            Node* node = stack.back();
            stack.pop_back();
            for (const Tensor& in : node->inputs()) {
                if (has_hooks(in)) ++leaf_edges[in.impl()];
                if (!in.defined() || !in.grad_fn()) continue;
                Node* next = in.grad_fn().get();
                auto [it, inserted] = dependencies.try_emplace(next, 0);
                ++it->second;
                if (inserted) stack.push_back(next);
            }
        }
    }

    // 2. Run nodes once all their consumers have contributed.
    std::unordered_map<Node*, Tensor> pending;
    pending[root.grad_fn().get()] = grad_root;
    std::deque<std::shared_ptr<Node>> ready{root.grad_fn()};
    while (!ready.empty()) {
        std::shared_ptr<Node> node = std::move(ready.front());
        ready.pop_front();
        Tensor grad_out = std::move(pending[node.get()]);
        pending.erase(node.get());
        std::vector<Tensor> grads = node->apply(grad_out);
        // Every backward function returns here: the one place for the backward check.
        if (AnomalyMode::is_enabled()) [[unlikely]]
            anomaly::check_backward(*node, grads, grad_out);
        grad_out = Tensor();
        MDL_ASSERT(grads.size() == node->inputs().size(), "backward of ", node->name(),
                   " returned ", grads.size(), " gradients for ", node->inputs().size(), " inputs");
        for (size_t i = 0; i < grads.size(); ++i) {
            const Tensor& input = node->inputs()[i];
            if (!input.defined()) continue;
            Tensor g = std::move(grads[i]);
            Node* next = input.grad_fn().get();
            if (g.defined()) {
                MDL_ASSERT(g.shape() == input.shape(), "backward of ", node->name(),
                           " gave a gradient of shape ", shape_str(g.shape()), " for input ", i,
                           " of shape ", shape_str(input.shape()));
                if (g.dtype() != input.dtype()) g = g.to(input.dtype());
                // A leaf takes g itself (no copy) unless g is still needed below.
                if (next == nullptr) {
                    accumulate_grad(input, std::move(g));
                } else if (input.impl()->retains_grad) {
                    accumulate_grad(input, g);
                }
                if (next != nullptr) {
                    auto it = pending.find(next);
                    if (it == pending.end() || !it->second.defined()) {
                        pending[next] = std::move(g);
                    } else {
                        // Out of place: the first gradient may alias another node's tensor.
                        Tensor sum = it->second.clone();
                        sum.add_(g);
                        it->second = std::move(sum);
                    }
                }
            }
            if (next == nullptr) leaf_edge_done(input);
            if (next != nullptr && --dependencies[next] == 0) {
                auto it = pending.find(next);
                if (it != pending.end() && it->second.defined()) {
                    ready.push_back(input.grad_fn());
                } else {
                    // No gradient reached this node (all contributions were zero by
                    // construction): it and everything only it feeds get nothing.
                    pending.erase(next);
                    std::vector<std::shared_ptr<Node>> skip{input.grad_fn()};
                    while (!skip.empty()) {
                        auto s = std::move(skip.back());
                        skip.pop_back();
                        for (const Tensor& in : s->inputs()) {
                            if (has_hooks(in)) leaf_edge_done(in);
                            if (!in.defined() || !in.grad_fn()) continue;
                            Node* n2 = in.grad_fn().get();
                            if (--dependencies[n2] == 0) {
                                auto p2 = pending.find(n2);
                                if (p2 != pending.end() && p2->second.defined())
                                    ready.push_back(in.grad_fn());
                                else
                                    skip.push_back(in.grad_fn());
                            }
                        }
                        if (!retain_graph) s->release();
                    }
                }
            }
        }
        if (!retain_graph) node->release();
    }
}

}  // namespace
}  // namespace autograd
}  // namespace minidl
