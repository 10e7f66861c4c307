// core/anomaly.cpp — anomaly detection's checks and messages (see anomaly.h).
#include "core/anomaly.h"

#include <cctype>
#include <cstdlib>
#include <sstream>

#include "core/autograd.h"
#include "core/check.h"
#include "core/finite.h"
#include "core/row_grad.h"

namespace minidl {

namespace autograd::anomaly {

bool env_requests(const char* value) {
    if (value == nullptr) return false;
    std::string v(value);
    for (char& c : v)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return v == "1" || v == "true" || v == "on" || v == "yes";
}

}  // namespace autograd::anomaly

// Read once, when the library is loaded; AnomalyMode scopes change it afterwards.
std::atomic<bool> detail::anomaly_enabled{
    autograd::anomaly::env_requests(std::getenv("MINIDL_DETECT_ANOMALY"))};

namespace autograd::anomaly {

namespace {

// "[2, 3] f32 cpu"
std::string describe(const Tensor& t) {
    if (!t.defined()) return "undefined";
    std::ostringstream os;
    os << shape_str(t.shape()) << " " << t.dtype() << " " << t.device();
    return os.str();
}

// The inputs with whether each already held a NaN or an inf: tells "this op made it" from
// "it came in".
std::string describe_inputs(const std::vector<Tensor>& inputs) {
    std::ostringstream os;
    for (size_t i = 0; i < inputs.size(); ++i) {
        if (i > 0) os << ", ";
        os << "input " << i << ": " << describe(inputs[i]);
        if (inputs[i].defined()) os << " (" << describe_non_finite(inputs[i]) << ")";
    }
    return os.str();
}

}  // namespace

std::string describe_call(const char* op, const std::vector<Tensor>& inputs) {
    std::ostringstream os;
    os << op << "(";
    for (size_t i = 0; i < inputs.size(); ++i)
        os << (i > 0 ? ", " : "") << "input " << i << ": " << describe(inputs[i]);
    os << ")";
    return os.str();
}

void check_forward(const char* op, const std::vector<Tensor>& inputs, const Tensor& output) {
    if (all_finite(output)) return;
    throw NonFiniteError(::minidl::detail::concat(
        "anomaly: the forward of ", op, " produced ", describe_non_finite(output),
        " in its output ", describe(output), "; inputs: ", describe_inputs(inputs),
        ". Hint: an input that is already non-finite came from earlier (weights, data); "
        "otherwise the op's domain was left (log or sqrt of a negative, 0/0, overflow)."));
}

void check_backward(const Node& node, const std::vector<Tensor>& grads, const Tensor& grad_output) {
    const std::vector<Tensor>& inputs = node.inputs();
    for (size_t i = 0; i < grads.size() && i < inputs.size(); ++i) {
        // A table whose gradient the node accumulated row-sparse itself returns none: read the
        // rows it wrote (earlier contributions were checked when they were written).
        const RowGrad* rows = grads[i].defined() ? nullptr : row_grad(inputs[i]);
        const Tensor& g = grads[i].defined() ? grads[i] : rows ? rows->values : grads[i];
        if (all_finite(g)) continue;
        throw NonFiniteError(::minidl::detail::concat(
            "anomaly: the backward of ", node.name(), " produced ", describe_non_finite(g),
            " in the gradient of its input ", i, " ", describe(inputs[i]),
            rows ? " (the row-sparse gradient of the table)" : "", "; the node was created by ",
            node.forward_call().empty() ? node.name() + " (recorded before anomaly mode was on)"
                                        : node.forward_call(),
            "; the gradient it received, ", describe(grad_output), ", is ",
            describe_non_finite(grad_output),
            ". Hint: a finite gradient in and a non-finite one out means the derivative is "
            "infinite there (sqrt or log at 0, division by 0)."));
    }
}

}  // namespace autograd::anomaly
}  // namespace minidl
