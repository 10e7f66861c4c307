// examples/text_classifier/evaluate.cpp — see evaluate.h.
#include "examples/text_classifier/evaluate.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/autograd.h"
#include "core/check.h"
#include "ops/loss.h"

namespace textclf {

using minidl::Device;
using minidl::DType;
using minidl::Tensor;

namespace {

// A host I64 tensor holding `values`.
Tensor host_i64(const int64_t* values, int64_t n) {
    Tensor t = Tensor::empty({n}, DType::I64);
    if (n > 0) std::memcpy(t.data_ptr(), values, static_cast<size_t>(n) * sizeof(int64_t));
    return t;
}

// offsets[begin..end) - offsets[begin], as a tensor on `device`.
Tensor rebased_offsets(const std::vector<int64_t>& offsets, int64_t begin, int64_t end,
                       Device device) {
    Tensor t = Tensor::empty({end - begin}, DType::I64);
    int64_t* p = t.data<int64_t>();
    for (int64_t i = begin; i < end; ++i)
        p[i - begin] = offsets[i] - offsets[begin];
    return t.to(device);
}

// Restores the module's training flag on scope exit.
class EvalMode {
  public:
    explicit EvalMode(minidl::nn::Module& m) : m_(m), was_(m.is_training()) { m_.eval(); }
    ~EvalMode() { m_.train(was_); }
    EvalMode(const EvalMode&) = delete;
    EvalMode& operator=(const EvalMode&) = delete;

  private:
    minidl::nn::Module& m_;
    bool was_;
};

}  // namespace

ModelBatch::Slice ModelBatch::slice(int64_t begin, int64_t end) const {
    MDL_CHECK(begin >= 0 && begin < end && end <= size, minidl::IndexError,
              "ModelBatch::slice: range [", begin, ", ", end, ") outside a batch of ", size);
    Slice s;
    if (padded) {
        const bool whole = begin == 0 && end == size;
        s.ids = whole ? ids : ids.narrow0(begin, end - begin);
        s.mask = whole ? mask : mask.narrow0(begin, end - begin);
        s.labels = whole ? labels : labels.narrow0(begin, end - begin);
        return s;
    }
    s.ids = ids.narrow0(offsets[begin], offsets[end] - offsets[begin]);
    if (begin == 0 && end == size) {
        if (!full_offsets.defined()) full_offsets = rebased_offsets(offsets, 0, size, ids.device());
        s.offsets = full_offsets;
        s.labels = labels;
    } else {
        s.offsets = rebased_offsets(offsets, begin, end, ids.device());
        s.labels = labels.narrow0(begin, end - begin);
    }
    return s;
}

namespace {

// Documents `rows` of the flat (ids, offsets) arrays as [B, L] ids padded with [PAD] (0) on the
// right and the [B, L] key mask (1 = token), L the longest row; both on the host.
void pad_rows(const int64_t* flat_ids, const std::vector<int64_t>& offsets,
              std::span<const int64_t> rows, Tensor& ids, Tensor& mask) {
    const int64_t B = static_cast<int64_t>(rows.size());
    int64_t L = 1;
    for (int64_t r : rows)
        L = std::max(L, offsets[r + 1] - offsets[r]);
    ids = Tensor::zeros({B, L}, DType::I64);
    mask = Tensor::zeros({B, L}, DType::I64);
    int64_t* pid = ids.data<int64_t>();
    int64_t* pm = mask.data<int64_t>();
    for (int64_t b = 0; b < B; ++b) {
        const int64_t begin = offsets[rows[b]], len = offsets[rows[b] + 1] - begin;
        std::memcpy(pid + b * L, flat_ids + begin, static_cast<size_t>(len) * sizeof(int64_t));
        std::fill(pm + b * L, pm + b * L + len, int64_t{1});
    }
}

}  // namespace

void gather_batch(const EncodedDocs& data, std::span<const int64_t> rows, Device device,
                  ModelBatch& out, bool padded) {
    MDL_CHECK(!rows.empty(), minidl::ValueError, "gather_batch: no rows");
    const int64_t B = static_cast<int64_t>(rows.size());
    if (padded) {
        Tensor labels = Tensor::empty({B}, DType::I64);
        for (int64_t b = 0; b < B; ++b) {
            MDL_CHECK(rows[b] >= 0 && rows[b] < data.size(), minidl::IndexError,
                      "gather_batch: row ", rows[b], " out of range for ", data.size(),
                      " documents");
            labels.data<int64_t>()[b] = data.labels[rows[b]];
        }
        Tensor ids, mask;
        pad_rows(data.ids.data(), data.offsets, rows, ids, mask);
        out.ids = ids.to(device);
        out.mask = mask.to(device);
        out.labels = labels.to(device);
        out.offsets.clear();
        out.size = B;
        out.padded = true;
        out.full_offsets = Tensor();
        return;
    }
    out.offsets.resize(static_cast<size_t>(B) + 1);
    int64_t total = 0;
    for (int64_t b = 0; b < B; ++b) {
        const int64_t r = rows[b];
        MDL_CHECK(r >= 0 && r < data.size(), minidl::IndexError, "gather_batch: row ", r,
                  " out of range for ", data.size(), " documents");
        out.offsets[b] = total;
        total += data.offsets[r + 1] - data.offsets[r];
    }
    out.offsets[B] = total;
    Tensor ids = Tensor::empty({total}, DType::I64);  // from the caching allocator
    Tensor labels = Tensor::empty({B}, DType::I64);
    int64_t* pid = ids.data<int64_t>();
    int64_t* plab = labels.data<int64_t>();
    for (int64_t b = 0; b < B; ++b) {
        const int64_t r = rows[b];
        const int64_t begin = data.offsets[r], len = data.offsets[r + 1] - begin;
        std::memcpy(pid + out.offsets[b], data.ids.data() + begin,
                    static_cast<size_t>(len) * sizeof(int64_t));
        plab[b] = data.labels[r];
    }
    out.ids = ids.to(device);
    out.labels = labels.to(device);
    out.mask = Tensor();
    out.size = B;
    out.padded = false;
    out.full_offsets = Tensor();
}

ModelBatch DocTensors::batch(int64_t begin, int64_t end) const {
    MDL_CHECK(begin >= 0 && begin < end && end <= size(), minidl::IndexError,
              "DocTensors::batch: range [", begin, ", ", end, ") outside ", size(), " documents");
    ModelBatch b;
    if (padded) {
        std::vector<int64_t> rows(static_cast<size_t>(end - begin));
        for (int64_t r = begin; r < end; ++r)
            rows[r - begin] = r;
        Tensor host_ids_tensor, host_mask;
        pad_rows(host_ids.data(), offsets, rows, host_ids_tensor, host_mask);
        b.ids = host_ids_tensor.to(device);
        b.mask = host_mask.to(device);
        b.labels = label_tensor.narrow0(begin, end - begin);
        b.size = end - begin;
        b.padded = true;
        return b;
    }
    b.ids = ids.narrow0(offsets[begin], offsets[end] - offsets[begin]);
    b.labels = label_tensor.narrow0(begin, end - begin);
    b.offsets.assign(offsets.begin() + begin, offsets.begin() + end + 1);
    for (int64_t& o : b.offsets)
        o -= offsets[begin];
    b.size = end - begin;
    return b;
}

DocTensors to_doc_tensors(const EncodedDocs& data, Device device, int64_t num_classes,
                          bool padded) {
    DocTensors d;
    d.padded = padded;
    if (padded) {
        d.host_ids = data.ids;
    } else {
        d.ids = host_i64(data.ids.data(), static_cast<int64_t>(data.ids.size())).to(device);
    }
    d.offsets = data.offsets;
    d.labels = data.labels;
    d.label_tensor = host_i64(data.labels.data(), data.size()).to(device);
    d.device = device;
    d.num_classes = num_classes;
    return d;
}

Metrics classification_metrics(std::span<const int64_t> predictions,
                               std::span<const int64_t> labels, int64_t num_classes) {
    MDL_CHECK(predictions.size() == labels.size(), minidl::ShapeError,
              "classification_metrics: ", predictions.size(), " predictions for ", labels.size(),
              " labels");
    Metrics m;
    m.count = static_cast<int64_t>(labels.size());
    if (m.count == 0) return m;
    std::vector<int64_t> tp(num_classes, 0), fp(num_classes, 0), fn(num_classes, 0);
    int64_t correct = 0;
    for (size_t i = 0; i < labels.size(); ++i) {
        const int64_t p = predictions[i], y = labels[i];
        MDL_CHECK(p >= 0 && p < num_classes && y >= 0 && y < num_classes, minidl::IndexError,
                  "classification_metrics: class out of range [0, ", num_classes, "): prediction ",
                  p, ", label ", y);
        if (p == y) {
            ++correct;
            ++tp[p];
        } else {
            ++fp[p];
            ++fn[y];
        }
    }
    m.accuracy = static_cast<double>(correct) / static_cast<double>(m.count);
    double f1_sum = 0;
    for (int64_t c = 0; c < num_classes; ++c)
        if (tp[c] > 0) f1_sum += 2.0 * tp[c] / static_cast<double>(2 * tp[c] + fp[c] + fn[c]);
    m.macro_f1 = f1_sum / static_cast<double>(num_classes);
    return m;
}

Tensor predict_logits(TextClassifier& model, const DocTensors& docs, int64_t batch_size) {
    MDL_CHECK(batch_size > 0, minidl::ValueError, "predict_logits: batch_size must be positive");
    const int64_t N = docs.size(), K = model.config().classes;
    Tensor out = Tensor::empty({N, K}, DType::F32);
    minidl::NoGradGuard no_grad;
    EvalMode eval(model);
    for (int64_t b = 0; b < N; b += batch_size) {
        const int64_t e = std::min(N, b + batch_size);
        const ModelBatch mb = docs.batch(b, e);
        const ModelBatch::Slice s = mb.slice(0, mb.size);
        const Tensor logits = model.forward(s).to(DType::F32).to(Device::cpu());
        std::memcpy(out.data<float>() + b * K, logits.data<float>(),
                    static_cast<size_t>((e - b) * K) * sizeof(float));
    }
    return out;
}

std::vector<int64_t> argmax_rows(const Tensor& logits) {
    MDL_CHECK(logits.dim() == 2 && logits.dtype() == DType::F32 && logits.device().is_cpu(),
              minidl::ShapeError, "argmax_rows: expected host F32 logits [N, K], got ",
              logits.str());
    const int64_t N = logits.size(0), K = logits.size(1);
    const float* p = logits.data<float>();
    std::vector<int64_t> out(static_cast<size_t>(N));
    for (int64_t i = 0; i < N; ++i) {
        const float* row = p + i * K;
        out[i] = std::max_element(row, row + K) - row;  // the first maximum, as torch.argmax
    }
    return out;
}

double mean_loss(TextClassifier& model, const DocTensors& docs, int64_t batch_size) {
    const int64_t N = docs.size();
    MDL_CHECK(N > 0, minidl::ValueError, "mean_loss: no documents");
    minidl::NoGradGuard no_grad;
    EvalMode eval(model);
    double total = 0;
    for (int64_t b = 0; b < N; b += batch_size) {
        const int64_t e = std::min(N, b + batch_size);
        const ModelBatch mb = docs.batch(b, e);
        const ModelBatch::Slice s = mb.slice(0, mb.size);
        total +=
            minidl::cross_entropy(model.forward(s), s.labels, {.reduction = minidl::Reduction::Sum})
                .item();
    }
    return total / static_cast<double>(N);
}

Metrics evaluate(TextClassifier& model, const DocTensors& docs, int64_t batch_size) {
    const Tensor logits = predict_logits(model, docs, batch_size);
    Metrics m = classification_metrics(argmax_rows(logits), docs.labels, docs.num_classes);
    // The loss from the same logits: log-sum-exp per row minus the label's logit, in double.
    const int64_t K = logits.size(1);
    const float* p = logits.data<float>();
    double total = 0;
    for (int64_t i = 0; i < docs.size(); ++i) {
        const float* row = p + i * K;
        const double mx = *std::max_element(row, row + K);
        double s = 0;
        for (int64_t k = 0; k < K; ++k)
            s += std::exp(static_cast<double>(row[k]) - mx);
        total += mx + std::log(s) - row[docs.labels[i]];
    }
    m.loss = docs.size() > 0 ? total / static_cast<double>(docs.size()) : 0.0;
    return m;
}

}  // namespace textclf
