// examples/text_classifier/robustness.cpp — see robustness.h for the definitions.
#include "examples/text_classifier/robustness.h"

#include <chrono>
#include <cmath>
#include <cstring>
#include <sstream>

#include "core/autograd.h"
#include "core/check.h"
#include "ops/elementwise.h"
#include "ops/loss.h"
#include "ops/reduce.h"
#include "tricks/freelb.h"

namespace textclf {

using minidl::Device;
using minidl::DType;
using minidl::Tensor;
using json = nlohmann::json;

namespace {

constexpr std::string_view kAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789";

// Installs an output hook on the model's attacked layer (the bag model's EmbeddingBag, the
// transformer's word embeddings) for its lifetime (removed on exceptions too).
class HookScope {
  public:
    HookScope(TextClassifier& model, std::function<Tensor(const Tensor&)> hook) {
        if (auto* bag = dynamic_cast<BagClassifier*>(&model)) {
            set_ = [layer = bag->embedding.get()](auto h) { layer->set_output_hook(std::move(h)); };
            busy_ = bag->embedding->has_output_hook();
        } else {
            auto& layer = dynamic_cast<TransformerClassifier&>(model).word_embeddings();
            set_ = [layer = &layer](auto h) { layer->set_output_hook(std::move(h)); };
            busy_ = layer.has_output_hook();
        }
        MDL_CHECK(!busy_, minidl::StateError,
                  "attack_logits: the embedding layer already has an output hook");
        set_(std::move(hook));
    }
    ~HookScope() { set_({}); }
    HookScope(const HookScope&) = delete;
    HookScope& operator=(const HookScope&) = delete;

  private:
    std::function<void(std::function<Tensor(const Tensor&)>)> set_;
    bool busy_ = false;
};

}  // namespace

std::vector<Tensor> attack_logits(TextClassifier& model, const DocTensors& docs,
                                  std::span<const double> epsilons, int64_t batch) {
    for (double e : epsilons)
        MDL_CHECK(e >= 0 && std::isfinite(e), minidl::ValueError,
                  "attack_logits: epsilon must be finite and non-negative, got ", e);
    MDL_CHECK(batch > 0, minidl::ValueError, "attack_logits: batch must be positive");
    const int64_t N = docs.size(), K = model.config().classes;
    std::vector<Tensor> out;
    for (size_t k = 0; k < epsilons.size(); ++k)
        out.push_back(Tensor::empty({N, K}, DType::F32));
    const bool was_training = model.is_training();
    model.eval();
    for (int64_t b = 0; b < N; b += batch) {
        const int64_t e = std::min(N, b + batch);
        const ModelBatch mb = docs.batch(b, e);
        const ModelBatch::Slice s = mb.slice(0, mb.size);

        // Pass 1: g = dL/dh for every document (reduction Sum: row b is document b's own).
        Tensor delta;
        {
            HookScope hook(model, [&](const Tensor& h) {
                delta = Tensor::zeros_like(h);
                delta.set_requires_grad(true);
                return h + delta;
            });
            minidl::EnableGradGuard grad_on;
            minidl::cross_entropy(model.forward(s), s.labels, {.reduction = minidl::Reduction::Sum})
                .backward();
        }
        model.zero_grad();  // the weights' gradients of this pass are not wanted
        minidl::NoGradGuard no_grad;
        Tensor direction;
        if (mb.padded) {
            // The transformer: the real tokens' embeddings moved jointly, ||delta||_2 = eps
            // (padding masked; its gradient is 0 anyway).
            const Tensor g =
                delta.grad() *
                s.mask.to(delta.grad().dtype()).reshape({s.mask.size(0), s.mask.size(1), 1});
            direction = g / minidl::tricks::per_example_norm(g, 1e-12);
        } else {
            // The bag: sqrt(n) per document, [B, 1]; the bag moves by g / (sqrt(n) ||g||).
            std::vector<float> sqrt_len(static_cast<size_t>(mb.size));
            for (int64_t i = 0; i < mb.size; ++i)
                sqrt_len[i] = std::sqrt(static_cast<float>(mb.offsets[i + 1] - mb.offsets[i]));
            const Tensor root_n = Tensor::from_vector(sqrt_len, {mb.size, 1}).to(docs.device);
            const Tensor g = delta.grad();
            direction = g / (minidl::tricks::per_example_norm(g, 1e-12) * root_n);
        }

        // Pass 2, per epsilon: the shifted embeddings.
        for (size_t k = 0; k < epsilons.size(); ++k) {
            const double eps = epsilons[k];
            HookScope hook(model,
                           [&](const Tensor& h) { return eps == 0.0 ? h : h + direction * eps; });
            const Tensor logits = model.forward(s).to(DType::F32).to(Device::cpu());
            std::memcpy(out[k].data<float>() + b * K, logits.data<float>(),
                        static_cast<size_t>((e - b) * K) * sizeof(float));
        }
    }
    model.train(was_training);
    return out;
}

std::vector<std::pair<double, double>> attack_accuracy(TextClassifier& model,
                                                       const DocTensors& docs,
                                                       std::span<const double> epsilons,
                                                       int64_t batch) {
    const std::vector<Tensor> logits = attack_logits(model, docs, epsilons, batch);
    std::vector<std::pair<double, double>> out;
    for (size_t k = 0; k < epsilons.size(); ++k) {
        const std::vector<int64_t> pred = argmax_rows(logits[k]);
        int64_t correct = 0;
        for (int64_t i = 0; i < docs.size(); ++i)
            correct += pred[i] == docs.labels[i];
        out.emplace_back(epsilons[k], docs.size() > 0 ? static_cast<double>(correct) /
                                                            static_cast<double>(docs.size())
                                                      : 0.0);
    }
    return out;
}

std::string edit_token(std::string_view token, minidl::Generator& gen) {
    MDL_CHECK(!token.empty(), minidl::ValueError, "edit_token: empty token");
    std::string t(token);
    const int64_t len = static_cast<int64_t>(t.size());
    int64_t op = gen.randint(4);
    if (op == 3 && len < 2) op = 2;  // nothing to swap in a 1-character token
    const int64_t alphabet = static_cast<int64_t>(kAlphabet.size());
    switch (op) {
        case 0: {  // insert
            const int64_t pos = gen.randint(len + 1);
            t.insert(t.begin() + pos, kAlphabet[gen.randint(alphabet)]);
            break;
        }
        case 1:  // delete
            t.erase(t.begin() + gen.randint(len));
            break;
        case 2: {  // substitute by a different character
            const int64_t pos = gen.randint(len);
            const size_t cur = kAlphabet.find(t[pos]);
            int64_t c = gen.randint(alphabet - 1);
            if (cur != std::string_view::npos && c >= static_cast<int64_t>(cur)) ++c;
            t[pos] = kAlphabet[c];
            break;
        }
        default: {  // swap adjacent
            const int64_t pos = gen.randint(len - 1);
            std::swap(t[pos], t[pos + 1]);
            break;
        }
    }
    return t;
}

EncodedDocs noisy_docs(const TokenizedCorpus& corpus, const Vocab& vocab,
                       std::span<const int64_t> docs, std::span<const int64_t> labels, double p,
                       uint64_t seed, const InputFormat& format) {
    MDL_CHECK(p >= 0 && p <= 1, minidl::ValueError, "noisy_docs: p must be in [0, 1], got ", p);
    minidl::Generator gen(seed);
    // Unedited tokens keep their type's id: one lookup per type.
    std::vector<int64_t> type_id(corpus.types.size());
    for (size_t t = 0; t < type_id.size(); ++t)
        type_id[t] = vocab.id(corpus.types[t]);
    EncodedDocs out;
    out.offsets.push_back(0);
    for (int64_t d : docs) {
        if (format.bert) out.ids.push_back(Vocab::kCls);
        const size_t before = out.ids.size();
        for (uint32_t t : corpus.doc(d)) {
            if (gen.next_uniform() < p) {
                const std::string edited = edit_token(corpus.types[t], gen);
                if (!edited.empty()) out.ids.push_back(vocab.id(edited));
            } else {
                out.ids.push_back(type_id[t]);
            }
        }
        if (format.bert) {  // the first max_len - 2 tokens after the edits, then [SEP]
            out.ids.resize(
                std::min(out.ids.size(), before + static_cast<size_t>(format.max_len - 2)));
            out.ids.push_back(Vocab::kSep);
        } else if (out.ids.size() == before) {
            out.ids.push_back(Vocab::kPad);  // the empty document
        }
        out.offsets.push_back(static_cast<int64_t>(out.ids.size()));
        out.labels.push_back(labels[d]);
    }
    return out;
}

double noisy_accuracy(TextClassifier& model, const PreparedData& data, double p, uint64_t seed,
                      int64_t batch) {
    const EncodedDocs noisy = noisy_docs(data.corpus->tokens, data.vocab, data.split.test,
                                         data.corpus->data.labels, p, seed, data.format);
    const Device device = model.parameters().front().device();
    const DocTensors docs = to_doc_tensors(
        noisy, device, static_cast<int64_t>(data.classes().size()), data.format.bert);
    return evaluate(model, docs, batch).accuracy;
}

double flatness(TextClassifier& model, const DocTensors& docs, double sigma, int64_t draws,
                uint64_t seed, int64_t batch) {
    MDL_CHECK(sigma >= 0 && draws >= 1, minidl::ValueError,
              "flatness: need sigma >= 0 and draws >= 1, got sigma=", sigma, " draws=", draws);
    const double clean = mean_loss(model, docs, batch);
    std::shared_ptr<TextClassifier> noisy = minidl::nn::clone(model);
    const auto originals = model.named_parameters();
    const auto targets = noisy->named_parameters();
    minidl::Generator gen(seed);
    double increase = 0;
    for (int64_t d = 0; d < draws; ++d) {
        {
            minidl::NoGradGuard no_grad;
            for (size_t i = 0; i < originals.size(); ++i) {
                const Tensor& w = originals[i].second;
                const double rms = std::sqrt(minidl::mean(minidl::square(w)).item());
                const Tensor z = Tensor::randn(w.shape(), &gen, w.dtype(), w.device());
                Tensor(targets[i].second).copy_(w + z * (sigma * rms));
            }
        }
        increase += mean_loss(*noisy, docs, batch) - clean;
    }
    return increase / static_cast<double>(draws);
}

RobustnessResult measure_robustness(TextClassifier& model, const PreparedData& data,
                                    const DocTensors& test, const RobustnessOptions& o) {
    const auto t0 = std::chrono::steady_clock::now();
    RobustnessResult r;
    r.attack = attack_accuracy(model, test, o.epsilons, o.batch);
    for (double p : o.noise)
        r.noisy.emplace_back(p, noisy_accuracy(model, data, p, o.seed, o.batch));
    r.sigma = o.sigma;
    r.draws = o.draws;
    r.flatness = flatness(model, test, o.sigma, o.draws, o.seed, o.batch);
    r.time_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
}

std::string number_key(double v) {
    std::ostringstream os;
    os << v;  // shortest of 6 significant digits: "0", "0.5", "8"
    return os.str();
}

json to_json(const RobustnessResult& r) {
    json attack = json::object(), noisy = json::object();
    for (const auto& [e, a] : r.attack)
        attack[number_key(e)] = a;
    for (const auto& [p, a] : r.noisy)
        noisy[number_key(p)] = a;
    return {{"attack_accuracy", attack}, {"noisy_accuracy", noisy},   {"flatness", r.flatness},
            {"flatness_sigma", r.sigma}, {"flatness_draws", r.draws}, {"robustness_s", r.time_s}};
}

}  // namespace textclf
