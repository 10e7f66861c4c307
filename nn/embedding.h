// nn/embedding.h — lookup tables, as torch.nn.Embedding and torch.nn.EmbeddingBag.
//
//   Embedding(V, C):     ids [*] (I64) -> [*, C],   y[i] = W[ids[i]],          W [V, C] ("weight")
//   EmbeddingBag(V, C):  ids [L] + offsets [B] -> [B, C], the sum or mean of each bag's rows;
//                        ids [B, L] -> [B, C], one bag per row
// Initialisation (PyTorch): W ~ N(0, 1); the padding row, if any, is then zeroed. padding_idx
// (-1 = none) gets no gradient and, in a bag, counts neither in the sum nor in the mean.
// The math and the gradients are in ops/embedding.h.
//
// An output hook, when set, maps every output before it is returned: perturbations of the
// embedding layer's output (FreeLB, the embedding-space attack of the robustness report) are
// added there, so a model needs no change to be attacked. The attacks set it for their own
// duration and remove it afterwards.
#pragma once

#include <cstdint>
#include <functional>

#include "core/kernels.h"
#include "nn/module.h"

namespace minidl::nn {

class Embedding : public Cloneable<Embedding, UnaryModule> {
  public:
    Embedding(int64_t num_embeddings, int64_t embedding_dim, int64_t padding_idx = -1);

    void reset() override;
    void reset_parameters(Generator* gen = nullptr);
    Tensor forward(const Tensor& ids) override;
    std::string type_name() const override { return "Embedding"; }

    int64_t num_embeddings() const { return num_embeddings_; }
    int64_t embedding_dim() const { return embedding_dim_; }
    int64_t padding_idx() const { return padding_idx_; }

    // Transforms every output (see the top of this file); an empty function removes it.
    void set_output_hook(std::function<Tensor(const Tensor&)> hook) {
        output_hook_ = std::move(hook);
    }
    bool has_output_hook() const { return static_cast<bool>(output_hook_); }

    Tensor weight;  // [V, C]

  private:
    int64_t num_embeddings_, embedding_dim_, padding_idx_;
    std::function<Tensor(const Tensor&)> output_hook_;
};

class EmbeddingBag : public Cloneable<EmbeddingBag, UnaryModule> {
  public:
    EmbeddingBag(int64_t num_embeddings, int64_t embedding_dim, BagMode mode = BagMode::Mean,
                 int64_t padding_idx = -1);

    void reset() override;
    void reset_parameters(Generator* gen = nullptr);
    // ids [L] (I64) split into bags at offsets [B] (I64, increasing, starting at 0).
    Tensor forward(const Tensor& ids, const Tensor& offsets);
    // ids [B, L]: each row is a bag.
    Tensor forward(const Tensor& ids_2d) override;
    Tensor operator()(const Tensor& ids, const Tensor& offsets) { return forward(ids, offsets); }
    using UnaryModule::operator();
    std::string type_name() const override { return "EmbeddingBag"; }

    int64_t num_embeddings() const { return num_embeddings_; }
    int64_t embedding_dim() const { return embedding_dim_; }
    BagMode mode() const { return mode_; }
    int64_t padding_idx() const { return padding_idx_; }

    // Transforms every output (see the top of this file); an empty function removes it.
    void set_output_hook(std::function<Tensor(const Tensor&)> hook) {
        output_hook_ = std::move(hook);
    }
    bool has_output_hook() const { return static_cast<bool>(output_hook_); }

    Tensor weight;  // [V, C]

  private:
    int64_t num_embeddings_, embedding_dim_;
    BagMode mode_;
    int64_t padding_idx_;
    std::function<Tensor(const Tensor&)> output_hook_;
};

}  // namespace minidl::nn
