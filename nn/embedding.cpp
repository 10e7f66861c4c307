// nn/embedding.cpp — Embedding and EmbeddingBag (see nn/embedding.h; reference:
// torch/nn/modules/sparse.py).
#include "nn/embedding.h"

#include "core/check.h"
#include "ops/embedding.h"

namespace minidl::nn {

namespace {

void check_table(const char* module, int64_t num_embeddings, int64_t embedding_dim,
                 int64_t padding_idx) {
    MDL_CHECK(num_embeddings > 0 && embedding_dim > 0, ValueError, module,
              ": num_embeddings and embedding_dim must be positive, got num_embeddings=",
              num_embeddings, " embedding_dim=", embedding_dim);
    MDL_CHECK(padding_idx == -1 || (padding_idx >= 0 && padding_idx < num_embeddings), IndexError,
              module, ": padding_idx must be -1 (none) or in [0, ", num_embeddings, "), got ",
              padding_idx);
}

// PyTorch's init: N(0, 1), then the padding row set to zero.
void init_table(Tensor& weight, int64_t padding_idx, Generator* gen) {
    init::normal_(weight, 0.0, 1.0, gen);
    if (padding_idx >= 0) {
        NoGradGuard no_grad;
        weight.narrow0(padding_idx, 1).zero_();
    }
}

}  // namespace

Embedding::Embedding(int64_t num_embeddings, int64_t embedding_dim, int64_t padding_idx)
    : num_embeddings_(num_embeddings), embedding_dim_(embedding_dim), padding_idx_(padding_idx) {
    check_table("Embedding", num_embeddings, embedding_dim, padding_idx);
    reset();
}

void Embedding::reset() {
    weight = register_parameter("weight", Tensor::empty({num_embeddings_, embedding_dim_}));
    reset_parameters();
}

void Embedding::reset_parameters(Generator* gen) {
    init_table(weight, padding_idx_, gen);
}

Tensor Embedding::forward(const Tensor& ids) {
    Tensor out = embedding(weight, ids, padding_idx_);
    return output_hook_ ? output_hook_(out) : out;
}

EmbeddingBag::EmbeddingBag(int64_t num_embeddings, int64_t embedding_dim, BagMode mode,
                           int64_t padding_idx)
    : num_embeddings_(num_embeddings),
      embedding_dim_(embedding_dim),
      mode_(mode),
      padding_idx_(padding_idx) {
    check_table("EmbeddingBag", num_embeddings, embedding_dim, padding_idx);
    reset();
}

void EmbeddingBag::reset() {
    weight = register_parameter("weight", Tensor::empty({num_embeddings_, embedding_dim_}));
    reset_parameters();
}

void EmbeddingBag::reset_parameters(Generator* gen) {
    init_table(weight, padding_idx_, gen);
}

Tensor EmbeddingBag::forward(const Tensor& ids, const Tensor& offsets) {
    Tensor out = embedding_bag(weight, ids, offsets, mode_, padding_idx_);
    return output_hook_ ? output_hook_(out) : out;
}

Tensor EmbeddingBag::forward(const Tensor& ids_2d) {
    Tensor out = embedding_bag(weight, ids_2d, mode_, padding_idx_);
    return output_hook_ ? output_hook_(out) : out;
}

}  // namespace minidl::nn
