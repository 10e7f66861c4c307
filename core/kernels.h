// core/kernels.h — the backend interface: one table of compute kernels per device kind.
//
// Ops (ops/*.cpp) check arguments, allocate outputs, call a kernel and record the backward node;
// kernels do the arithmetic and nothing else — no autograd, no output allocation, no argument
// checks beyond internal assertions. The CPU table lives in ops/cpu (Eigen and plain loops,
// threaded with core/parallel.h), the CUDA table in ops/cuda (own kernels and cuBLAS).
// kernels_for(device) picks the table; a build without CUDA gets a stub that throws DeviceError.
//
// Conventions for every kernel:
//   - tensors are contiguous, already allocated with the right shape, dtype and device;
//   - all tensors of one call are on the same device (copy() is the one exception);
//   - floating kernels accept F32, F64, F16 and BF16 unless stated; 16-bit inputs compute in float;
//   - "accumulate" means out += result, otherwise out = result;
//   - reductions over a dim see the tensor as [outer, n, inner] (core/shape.h split_at);
//   - results do not depend on the number of threads, except where a kernel says so;
//   - results are reproducible run to run, except the CUDA scatter-adds outside deterministic
//     mode (core/determinism.h).
#pragma once

#include <cstdint>
#include <vector>

#include "core/device.h"
#include "core/tensor.h"

namespace minidl {

// y = f(x) and dx = dy * f'(x). `alpha` is the scalar operand of the *Scalar ops.
enum class UnaryOp : uint8_t {
    Neg,         // -x
    Exp,         // e^x
    Log,         // ln x
    Sqrt,        // sqrt x
    Abs,         // |x|              (derivative sign(x), 0 at 0)
    Relu,        // max(x, 0)        (derivative 0 at 0, as PyTorch)
    GeluErf,     // x Phi(x)
    GeluTanh,    // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    Tanh,        // tanh x           (backward uses y: 1 - y^2)
    Sigmoid,     // 1 / (1 + e^-x)   (backward uses y: y (1 - y))
    AddScalar,   // x + alpha
    MulScalar,   // x * alpha
    DivScalar,   // x / alpha
    RDivScalar,  // alpha / x
    PowScalar,   // x ^ alpha
    RSubScalar,  // alpha - x
};

// out = a (op) b with NumPy broadcasting of a and b to out's shape. GreaterEqual gives 1 or 0 in
// the output dtype (the masks of maximum/minimum's backward).
enum class BinaryOp : uint8_t { Add, Sub, Mul, Div, Maximum, Minimum, GreaterEqual };

enum class ReduceOp : uint8_t { Sum, Mean, Max };

enum class BagMode : uint8_t { Sum, Mean };

// Scaled dot-product attention over [batch, heads, lq or lk, d] (ops/attention.h). key_mask is
// F32 [batch, lk] (nonzero = attend) or undefined; dropout draws element (b, h, i, j) from Philox
// block offset + flat / 4, lane flat % 4, flat = ((b heads + h) lq + i) lk + j, key seed.
struct AttentionArgs {
    int64_t batch = 0, heads = 0, lq = 0, lk = 0, d = 0;
    double scale = 1.0;
    bool causal = false;
    double dropout_p = 0.0;
    uint64_t seed = 0, offset = 0;
};

// C[b] = alpha * op(A[b]) @ op(B[b]) + beta * C[b] for b < batch, row-major, where op(X) = X or
// X^T. op(A) is [m, k], op(B) is [k, n], C is [m, n]. A stride of 0 reuses one matrix for every
// batch (a 2-D weight against a batch of inputs). a, b and c share one dtype; F16/BF16 inputs are
// multiplied with float accumulation and the result rounded once.
struct GemmArgs {
    int64_t batch = 1, m = 0, n = 0, k = 0;
    bool trans_a = false, trans_b = false;
    int64_t stride_a = 0, stride_b = 0, stride_c = 0;  // elements between batch entries
    double alpha = 1.0, beta = 0.0;
};

// One Adam/AdamW step on one tensor (PyTorch's torch.optim.Adam/AdamW, foreach=False):
//   g = grad (+ weight_decay * p for Adam)         p *= 1 - lr * weight_decay (AdamW)
//   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2;  (amsgrad: vmax = max(vmax, v))
//   p -= lr / (1 - beta1^t) * m / (sqrt(v or vmax) / sqrt(1 - beta2^t) + eps)
struct AdamArgs {
    double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
    bool decoupled_weight_decay = false;  // AdamW
    bool amsgrad = false;
    bool maximize = false;
    int64_t step = 1;  // t, counting this step
};

// One SGD step (torch.optim.SGD): g = grad + wd p; buf = momentum buf + (1 - dampening) g
// (buf = g on the first step); g = nesterov ? g + momentum buf : buf; p -= lr g.
struct SgdArgs {
    double lr = 1e-3, momentum = 0.0, dampening = 0.0, weight_decay = 0.0;
    bool nesterov = false;
    bool maximize = false;
    bool first_step = true;  // initialises the momentum buffer with g
};

class Kernels {
  public:
    virtual ~Kernels() = default;

    // ---- memory and conversion ------------------------------------------------------------
    // dst = src, same dtype and numel; devices may differ (host <-> device transfers).
    virtual void copy(const Tensor& src, Tensor& dst) = 0;
    // dst = src converted to dst's dtype (any dtype to any dtype; float -> I64 truncates).
    virtual void cast(const Tensor& src, Tensor& dst) = 0;
    virtual void fill(Tensor& out, double value) = 0;
    // out[i] = start + i * step (any dtype).
    virtual void arange(Tensor& out, double start, double step) = 0;
    // For o < outer, j < len: dst[dst_offset + o * dst_stride + j] = src[src_offset + o *
    // src_stride + j] (or += with accumulate). Slices, concat and their backward.
    virtual void strided_copy(const Tensor& src, int64_t src_offset, int64_t src_stride,
                              Tensor& dst, int64_t dst_offset, int64_t dst_stride, int64_t outer,
                              int64_t len, bool accumulate) = 0;
    // out = x with its dims permuted: out.shape[i] = x.shape[perm[i]].
    virtual void permute(const Tensor& x, Tensor& out, const std::vector<int64_t>& perm) = 0;

    // ---- elementwise ----------------------------------------------------------------------
    virtual void unary(UnaryOp op, const Tensor& x, Tensor& y, double alpha) = 0;
    // gx = gy * f'(x); y is f(x) (used by Tanh, Sigmoid, Exp, Sqrt; others may ignore it).
    virtual void unary_backward(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& gy,
                                Tensor& gx, double alpha) = 0;
    virtual void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) = 0;
    // out = sum of x over the dims where out (right-aligned, missing dims = 1) has size 1: the
    // gradient of a broadcast. Same dtype.
    virtual void sum_to(const Tensor& x, Tensor& out) = 0;
    // y += alpha * x (same shape and dtype).
    virtual void axpy(double alpha, const Tensor& x, Tensor& y) = 0;

    // ---- reductions -----------------------------------------------------------------------
    // out[o, i] = op over j < n of x[o, j, i] for x seen as [outer, n, inner]. For Max, indices
    // (I64, same shape as out) receives the position j of the first maximum. Float accumulation
    // is at least float; F32 sums are blocked in a fixed order (thread-count independent).
    virtual void reduce(ReduceOp op, const Tensor& x, Tensor& out, Tensor* indices, int64_t outer,
                        int64_t n, int64_t inner) = 0;
    // Sum of squares of every element of every tensor, as double (gradient-norm clipping).
    virtual double sum_squares(const std::vector<Tensor>& xs) = 0;
    // Smallest and largest value of an I64 tensor (id range checks); numel must be > 0.
    virtual void minmax_i64(const Tensor& x, int64_t& min_out, int64_t& max_out) = 0;

    // ---- softmax and loss -----------------------------------------------------------------
    // y = softmax (or log_softmax) of x along the middle dim of [outer, n, inner].
    virtual void softmax(const Tensor& x, Tensor& y, int64_t outer, int64_t n, int64_t inner,
                         bool log) = 0;
    // gx from the output y and gy: softmax gx = y (gy - sum(gy y)); log: gx = gy - e^y sum(gy).
    virtual void softmax_backward(const Tensor& y, const Tensor& gy, Tensor& gx, int64_t outer,
                                  int64_t n, int64_t inner, bool log) = 0;
    // Per-row cross-entropy of logits [N, C] with targets [N] (I64) and label smoothing ls:
    //   loss_i = (1 - ls) (lse_i - x_{i,t}) + ls (lse_i - mean_c x_{i,c}), 0 when t = ignore_index
    // losses [N] and lse [N] (log-sum-exp, kept for backward) are F64 for F64 logits and F32 for
    // every other dtype. Targets are in [0, C) or equal to ignore_index (checked by the op).
    virtual void cross_entropy(const Tensor& logits, const Tensor& targets, Tensor& losses,
                               Tensor& lse, double label_smoothing, int64_t ignore_index) = 0;
    // gx_{i,c} = g_i ((softmax_{i,c} - (1 - ls) [c = t_i] - ls / C)), 0 rows for ignored targets;
    // row_grad [N] (dtype of losses) is dL/dloss_i (the reduction's weight times the upstream
    // gradient); gx has the logits' dtype.
    virtual void cross_entropy_backward(const Tensor& logits, const Tensor& targets,
                                        const Tensor& lse, const Tensor& row_grad, Tensor& gx,
                                        double label_smoothing, int64_t ignore_index) = 0;

    // ---- linear algebra -------------------------------------------------------------------
    virtual void gemm(const Tensor& a, const Tensor& b, Tensor& c, const GemmArgs& args) = 0;

    // ---- attention ------------------------------------------------------------------------
    // Whether this table's fused kernels below take this problem (the op runs the composite
    // otherwise): every problem on the CPU; on CUDA, ops/cuda/attention_plan.h says which.
    virtual bool has_fused_attention(const AttentionArgs&, DType) const { return false; }
    // out [B, H, Lq, D] (q's dtype) and lse [B, H, Lq] (F64 for F64 q, else F32; -inf for a row
    // with no key), without materialising the [Lq, Lk] scores.
    virtual void attention(const Tensor& q, const Tensor& k, const Tensor& v,
                           const Tensor& key_mask, Tensor& out, Tensor& lse,
                           const AttentionArgs& args);
    // gq, gk, gv (the dtypes of q, k, v) from gout, recomputing the scores from q, k and lse.
    virtual void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& key_mask, const Tensor& out, const Tensor& lse,
                                    const Tensor& gout, Tensor& gq, Tensor& gk, Tensor& gv,
                                    const AttentionArgs& args);

    // ---- embeddings and gathers -----------------------------------------------------------
    // out[i, :] = weight[ids[i], :] for weight [V, C], ids [L] (I64, in range), out [L, C].
    virtual void embedding(const Tensor& weight, const Tensor& ids, Tensor& out) = 0;
    // gweight[ids[i], :] += gy[i, :], skipping ids equal to padding_idx (-1: none). The
    // scatter-adds (this, embedding_bag_backward, index_add) are deterministic on the CPU (rows
    // summed in the order of i, whatever the thread count); on CUDA they use atomics (the last bits
    // may vary run to run) unless core/determinism.h's deterministic mode is on, where ids are
    // sorted and each row is summed in a fixed order.
    virtual void embedding_backward(const Tensor& gy, const Tensor& ids, Tensor& gweight,
                                    int64_t padding_idx) = 0;
    // Bag b covers ids[offsets[b] : offsets[b+1]] (the last runs to the end of ids); out [B, C] is
    // the sum or the mean of its rows (an empty bag gives zeros). Ids equal to padding_idx (-1:
    // none) are left out of the sum and the count.
    virtual void embedding_bag(const Tensor& weight, const Tensor& ids, const Tensor& offsets,
                               Tensor& out, BagMode mode, int64_t padding_idx) = 0;
    virtual void embedding_bag_backward(const Tensor& gy, const Tensor& ids, const Tensor& offsets,
                                        Tensor& gweight, BagMode mode, int64_t padding_idx) = 0;
    // out[o, j, i] = x[o, idx[j], i] for x seen as [outer, n, inner] and idx [J].
    virtual void index_select(const Tensor& x, const Tensor& idx, Tensor& out, int64_t outer,
                              int64_t n, int64_t inner) = 0;
    // gx[o, idx[j], i] += gy[o, j, i] (gx [outer, n, inner] is accumulated into).
    virtual void index_add(const Tensor& gy, const Tensor& idx, Tensor& gx, int64_t outer,
                           int64_t n, int64_t inner) = 0;

    // ---- normalisation --------------------------------------------------------------------
    // x [R, C]: y = (x - mean) * rstd * w + b per row; mean and rstd [R] are F64 for F64 x and F32
    // otherwise. w/b may be undefined.
    virtual void layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y,
                            Tensor& mean, Tensor& rstd, double eps) = 0;
    // gx = rstd (gy w - mean_c(gy w) - xhat mean_c(gy w xhat)); gw += sum_r gy xhat; gb += sum_r
    // gy. gx/gw/gb may be undefined when not needed (gw/gb are accumulated into).
    virtual void layer_norm_backward(const Tensor& x, const Tensor& w, const Tensor& mean,
                                     const Tensor& rstd, const Tensor& gy, Tensor& gx, Tensor& gw,
                                     Tensor& gb) = 0;

    // ---- random (Philox4x32-10, counter-based; see core/rng.h) -------------------------------
    // Element i draws from counter block offset + i / 4, lane i % 4, key seed.
    virtual void uniform(Tensor& out, double low, double high, uint64_t seed, uint64_t offset) = 0;
    virtual void normal(Tensor& out, double mean, double std, uint64_t seed, uint64_t offset) = 0;
    // out[i] = 1 / keep_prob with probability keep_prob, else 0 (dropout's scaled mask).
    virtual void bernoulli_scaled(Tensor& out, double keep_prob, uint64_t seed,
                                  uint64_t offset) = 0;

    // ---- optimizers and mixed precision (in place) ------------------------------------------
    // Fused update of one parameter; state tensors are F32, param and grad F32 (or F64).
    // max_exp_avg_sq is used only with amsgrad.
    virtual void adam_step(Tensor& param, const Tensor& grad, Tensor& exp_avg, Tensor& exp_avg_sq,
                           Tensor* max_exp_avg_sq, const AdamArgs& args) = 0;
    // The same step for param [V, C] whose gradient is row-sparse (core/row_grad.h): rows [R]
    // (I64, increasing) hold values [R, C], every other row's gradient is +0.0. Every element is
    // updated, bitwise as adam_step with the dense gradient would. The default (core/row_grad.cpp)
    // builds that dense gradient and calls adam_step; the CPU fuses it into one pass that never
    // reads a zero.
    virtual void adam_step_rows(Tensor& param, const Tensor& rows, const Tensor& values,
                                Tensor& exp_avg, Tensor& exp_avg_sq, Tensor* max_exp_avg_sq,
                                const AdamArgs& args);
    virtual void sgd_step(Tensor& param, const Tensor& grad, Tensor* momentum_buffer,
                          const SgdArgs& args) = 0;
    // shadow = decay * shadow + (1 - decay) * param (shadow F32, param any float dtype).
    virtual void ema_update(Tensor& shadow, const Tensor& param, double decay) = 0;
    // average = average + (current - average) / (n_averaged + 1) in one pass (SWA's running mean,
    // PyTorch's order of operations). average and current share a float dtype, size and device;
    // each of the three operations is rounded to that dtype, so the result is bitwise the
    // composite sub, div and add.
    virtual void swa_update(Tensor& average, const Tensor& current, int64_t n_averaged) = 0;
    // For every tensor: g *= inv_scale; found_inf (F32 [1], same device) is set to 1 when any
    // element is inf or NaN, and left alone otherwise. No host synchronisation.
    virtual void unscale_and_check(std::vector<Tensor>& grads, const Tensor& inv_scale,
                                   Tensor& found_inf) = 0;

    // Waits for all work queued on the device (no-op on CPU).
    virtual void synchronize() = 0;
};

// The kernel table for a device (throws DeviceError for CUDA in a build without it).
Kernels& kernels_for(Device device);
Kernels& cpu_kernels();

}  // namespace minidl
