// ops/cpu/cpu_kernels.h — the CPU kernel table (Eigen and plain loops on the core/parallel.h pool).
//
// One method per kernel of core/kernels.h; the definitions are spread over the files of this
// folder by op family.
#pragma once

#include "core/kernels.h"

namespace minidl {

class CpuKernels final : public Kernels {
  public:
    void copy(const Tensor& src, Tensor& dst) override;
    void cast(const Tensor& src, Tensor& dst) override;
    void fill(Tensor& out, double value) override;
    void arange(Tensor& out, double start, double step) override;
    void strided_copy(const Tensor& src, int64_t src_offset, int64_t src_stride, Tensor& dst,
                      int64_t dst_offset, int64_t dst_stride, int64_t outer, int64_t len,
                      bool accumulate) override;
    void permute(const Tensor& x, Tensor& out, const std::vector<int64_t>& perm) override;
    void unary(UnaryOp op, const Tensor& x, Tensor& y, double alpha) override;
    void unary_backward(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& gy, Tensor& gx,
                        double alpha) override;
    void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) override;
    void sum_to(const Tensor& x, Tensor& out) override;
    void axpy(double alpha, const Tensor& x, Tensor& y) override;
    void reduce(ReduceOp op, const Tensor& x, Tensor& out, Tensor* indices, int64_t outer,
                int64_t n, int64_t inner) override;
    double sum_squares(const std::vector<Tensor>& xs) override;
    void minmax_i64(const Tensor& x, int64_t& min_out, int64_t& max_out) override;
    void softmax(const Tensor& x, Tensor& y, int64_t outer, int64_t n, int64_t inner,
                 bool log) override;
    void softmax_backward(const Tensor& y, const Tensor& gy, Tensor& gx, int64_t outer, int64_t n,
                          int64_t inner, bool log) override;
    void cross_entropy(const Tensor& logits, const Tensor& targets, Tensor& losses, Tensor& lse,
                       double label_smoothing, int64_t ignore_index) override;
    void cross_entropy_backward(const Tensor& logits, const Tensor& targets, const Tensor& lse,
                                const Tensor& row_grad, Tensor& gx, double label_smoothing,
                                int64_t ignore_index) override;
    void gemm(const Tensor& a, const Tensor& b, Tensor& c, const GemmArgs& args) override;
    bool has_fused_attention(const AttentionArgs&, DType) const override { return true; }
    void attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_mask,
                   Tensor& out, Tensor& lse, const AttentionArgs& args) override;
    void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v,
                            const Tensor& key_mask, const Tensor& out, const Tensor& lse,
                            const Tensor& gout, Tensor& gq, Tensor& gk, Tensor& gv,
                            const AttentionArgs& args) override;
    void embedding(const Tensor& weight, const Tensor& ids, Tensor& out) override;
    void embedding_backward(const Tensor& gy, const Tensor& ids, Tensor& gweight,
                            int64_t padding_idx) override;
    void embedding_bag(const Tensor& weight, const Tensor& ids, const Tensor& offsets, Tensor& out,
                       BagMode mode, int64_t padding_idx) override;
    void embedding_bag_backward(const Tensor& gy, const Tensor& ids, const Tensor& offsets,
                                Tensor& gweight, BagMode mode, int64_t padding_idx) override;
    void index_select(const Tensor& x, const Tensor& idx, Tensor& out, int64_t outer, int64_t n,
                      int64_t inner) override;
    void index_add(const Tensor& gy, const Tensor& idx, Tensor& gx, int64_t outer, int64_t n,
                   int64_t inner) override;
    void layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y, Tensor& mean,
                    Tensor& rstd, double eps) override;
    void layer_norm_backward(const Tensor& x, const Tensor& w, const Tensor& mean,
                             const Tensor& rstd, const Tensor& gy, Tensor& gx, Tensor& gw,
                             Tensor& gb) override;
    void uniform(Tensor& out, double low, double high, uint64_t seed, uint64_t offset) override;
    void normal(Tensor& out, double mean, double std, uint64_t seed, uint64_t offset) override;
    void bernoulli_scaled(Tensor& out, double keep_prob, uint64_t seed, uint64_t offset) override;
    void adam_step(Tensor& param, const Tensor& grad, Tensor& exp_avg, Tensor& exp_avg_sq,
                   Tensor* max_exp_avg_sq, const AdamArgs& args) override;
    void adam_step_rows(Tensor& param, const Tensor& rows, const Tensor& values, Tensor& exp_avg,
                        Tensor& exp_avg_sq, Tensor* max_exp_avg_sq, const AdamArgs& args) override;
    void sgd_step(Tensor& param, const Tensor& grad, Tensor* momentum_buffer,
                  const SgdArgs& args) override;
    void ema_update(Tensor& shadow, const Tensor& param, double decay) override;
    void swa_update(Tensor& average, const Tensor& current, int64_t n_averaged) override;
    void unscale_and_check(std::vector<Tensor>& grads, const Tensor& inv_scale,
                           Tensor& found_inf) override;
    void synchronize() override;
};

}  // namespace minidl
