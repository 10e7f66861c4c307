// examples/text_classifier/evaluate.h — batches for the model, and what a model scores on a set
// of documents: loss, accuracy, macro-F1.
//
// Batches are built straight from the encoded flat arrays (text.h EncodedDocs): training batches
// gather their (shuffled) documents' ids into one I64 tensor from the caching allocator, with no
// intermediate std::vector; an evaluation set of the bag model is copied to the device once
// (DocTensors) and its batches are narrow0 views of that one ids tensor — no copy per batch at
// all. The transformer's batches are padded: ids [B, L] with L the batch's longest sequence,
// [PAD] (0) on the right, and the key mask [B, L] (I64, 1 = token, 0 = padding); micro-batches
// are row ranges of them (the padding of the whole batch kept: masked keys change nothing).
//
// Metrics (the same definitions as bench/torch_text_classifier.py):
//   loss      mean over documents of cross-entropy(logits, label)
//   accuracy  share of documents whose argmax logit (first maximum on ties) is the label
//   macro-F1  mean over the K classes of F1_c = 2 tp / (2 tp + fp + fn), 0 when tp = 0
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/device.h"
#include "core/tensor.h"
#include "examples/text_classifier/model.h"
#include "examples/text_classifier/text.h"

namespace textclf {

// A batch on its way to the model. Bag model: `offsets` (B + 1 entries, host) locates each
// document in `ids`, so micro-batches (tricks/grad_accum.h) are views of the ids plus small
// offset tensors. Transformer (`padded`): ids and mask [B, L], micro-batches are row views.
struct ModelBatch {
    minidl::Tensor ids;     // bag: [total length] I64; transformer: [B, L] I64
    minidl::Tensor mask;    // transformer: [B, L] I64
    minidl::Tensor labels;  // [B] I64
    std::vector<int64_t> offsets;
    int64_t size = 0;  // B
    bool padded = false;

    // The model input and labels of documents [begin, end), on the batch's device (bag:
    // offsets [end - begin] rebased to 0; the whole batch's offsets tensor is cached after its
    // first use).
    struct Slice : ModelInput {
        minidl::Tensor labels;
    };
    Slice slice(int64_t begin, int64_t end) const;

    mutable minidl::Tensor full_offsets;  // [B] I64 on the device, for slice(0, size)
};

// Gathers documents `rows` of `data` into `out` (host), then moves it to `device`; `padded`:
// the transformer's [B, L] ids and mask.
void gather_batch(const EncodedDocs& data, std::span<const int64_t> rows, minidl::Device device,
                  ModelBatch& out, bool padded = false);

// An evaluation set on the device: all ids in one tensor, batches as views of it.
struct DocTensors {
    minidl::Tensor ids;             // [sum of lengths] I64 (the bag model's; undefined if padded)
    std::vector<int64_t> host_ids;  // the same on the host (the transformer's, padded per batch)
    bool padded = false;
    std::vector<int64_t> offsets;  // N + 1 (host)
    std::vector<int64_t> labels;   // N (host)
    minidl::Tensor label_tensor;   // [N] I64 on the device
    minidl::Device device = minidl::Device::cpu();
    int64_t num_classes = 2;

    int64_t size() const { return static_cast<int64_t>(labels.size()); }
    // Documents [begin, end) as a model batch (views where possible).
    ModelBatch batch(int64_t begin, int64_t end) const;
};
DocTensors to_doc_tensors(const EncodedDocs& data, minidl::Device device, int64_t num_classes,
                          bool padded = false);

struct Metrics {
    double loss = 0, accuracy = 0, macro_f1 = 0;
    int64_t count = 0;
};

// Metrics of predictions against gold labels (K classes).
Metrics classification_metrics(std::span<const int64_t> predictions,
                               std::span<const int64_t> labels, int64_t num_classes);

// Runs `model` (eval mode, no graph) over `docs` in batches of `batch_size`; returns the logits
// [N, K] as F32 on the host.
minidl::Tensor predict_logits(TextClassifier& model, const DocTensors& docs,
                              int64_t batch_size = 512);
// Argmax of each row of host logits [N, K].
std::vector<int64_t> argmax_rows(const minidl::Tensor& logits);
// Loss, accuracy and macro-F1 of `model` on `docs`.
Metrics evaluate(TextClassifier& model, const DocTensors& docs, int64_t batch_size = 512);
// The mean cross-entropy alone (flatness measures only this).
double mean_loss(TextClassifier& model, const DocTensors& docs, int64_t batch_size = 512);

}  // namespace textclf
