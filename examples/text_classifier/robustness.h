// examples/text_classifier/robustness.h — three ways to push a trained classifier off its
// comfortable spot, each with an exact definition (docs/text_classifier.md derives them).
//
// 1. Embedding-space attack at test time (one normalised gradient step, L2 radius epsilon).
//    Document b has token embeddings e_1..e_n (one per token position, n = its bag length);
//    the mean bag is h = (1/n) sum_i e_i and L(h) its cross-entropy, g = dL/dh. The attack
//    perturbs all n embeddings jointly along the gradient, delta_i = epsilon * dL/de_i /
//    ||dL/de||, with ||delta||_2 = epsilon. Since dL/de_i = g / n for every i,
//    ||dL/de|| = sqrt(n) ||g|| / n, so delta_i = epsilon g / (sqrt(n) ||g||) and the bag moves by
//        h' - h = (1/n) sum_i delta_i = epsilon * g / (sqrt(n) * ||g||).
//    It is applied through the EmbeddingBag's output hook (nn/embedding.h): one backward pass
//    with reduction Sum (so each row of g is its own document's gradient), then one forward
//    pass per epsilon with h + epsilon * g / (sqrt(n) max(||g||, 1e-12)). epsilon = 0 gives the
//    clean logits exactly; a document whose gradient is 0 is not moved.
//    The transformer: the same attack on the word embeddings' output E [L, C] of the document's
//    real positions ([CLS], its tokens, [SEP]; padding masked), which the model does not
//    average: G = dL/dE, E' = E + epsilon * G / max(||G||_F, 1e-12), ||E' - E|| = epsilon.
// 2. Noisy text: every token of a test document, independently with probability p, gets one
//    random one-character edit, chosen uniformly among
//        insert   a character at a uniform position 0..len
//        delete   the character at a uniform position (a 1-character token disappears)
//        substitute  the character at a uniform position by a different one
//        swap     two adjacent characters at a uniform position 0..len-2 (1-character tokens:
//                 substitute instead)
//    with characters drawn uniformly from the tokenizer's alphabet [a-z0-9] (so an edited token
//    stays one token: "viagra" -> "vi4gra"). The edited token is looked up in the vocabulary
//    (mostly <unk> then). Draws come from a Generator seeded by `seed`: one uniform per token,
//    and for an edited token one draw for the edit, one for the position, one for the character.
//    p = 0 leaves the documents exactly as encoded. The transformer's documents are cut to
//    max_len - 2 ids after the edits and framed by [CLS] ... [SEP] as in training.
// 3. Flatness: sharp minima lose more when the weights move. For draw d = 1..D, every parameter
//    tensor w is replaced by w + sigma * rms(w) * z_d, z_d ~ N(0, 1) elementwise,
//    rms(w) = sqrt(mean(w^2)); flatness = (1/D) sum_d [L_test(perturbed_d) - L_test(w)], the mean
//    increase of the mean test cross-entropy (lower = flatter). sigma = 0 gives exactly 0.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/rng.h"
#include "examples/text_classifier/dataset.h"
#include "examples/text_classifier/evaluate.h"
#include "examples/text_classifier/model.h"

namespace textclf {

struct RobustnessOptions {
    std::vector<double> epsilons = {0.0, 1.0, 2.0, 4.0, 8.0};  // attack radii
    std::vector<double> noise = {0.2, 0.5};                    // token edit probabilities
    double sigma = 0.2;                                        // flatness: relative noise size
    int64_t draws = 5;                                         // flatness: draws to average
    uint64_t seed = 1234;                                      // noise and flatness draws
    int64_t batch = 512;
};

// The attacked logits [N, K] (host F32), one tensor per epsilon (in the order given).
std::vector<minidl::Tensor> attack_logits(TextClassifier& model, const DocTensors& docs,
                                          std::span<const double> epsilons, int64_t batch = 512);
// Accuracy under the attack at each epsilon (in the order given), as (epsilon, accuracy).
std::vector<std::pair<double, double>> attack_accuracy(TextClassifier& model,
                                                       const DocTensors& docs,
                                                       std::span<const double> epsilons,
                                                       int64_t batch = 512);

// One random one-character edit of `token` (non-empty, characters of [a-z0-9]); may return "".
std::string edit_token(std::string_view token, minidl::Generator& gen);
// Corpus documents `docs` encoded with `vocab` after the noise above, labels from `labels`.
EncodedDocs noisy_docs(const TokenizedCorpus& corpus, const Vocab& vocab,
                       std::span<const int64_t> docs, std::span<const int64_t> labels, double p,
                       uint64_t seed, const InputFormat& format = {});
// Accuracy on the noisy test documents of `data`.
double noisy_accuracy(TextClassifier& model, const PreparedData& data, double p, uint64_t seed,
                      int64_t batch = 512);

// The flatness figure above.
double flatness(TextClassifier& model, const DocTensors& docs, double sigma, int64_t draws,
                uint64_t seed, int64_t batch = 512);

struct RobustnessResult {
    std::vector<std::pair<double, double>> attack;  // (epsilon, accuracy)
    std::vector<std::pair<double, double>> noisy;   // (p, accuracy)
    double flatness = 0, sigma = 0;
    int64_t draws = 0;
    double time_s = 0;
};
RobustnessResult measure_robustness(TextClassifier& model, const PreparedData& data,
                                    const DocTensors& test, const RobustnessOptions& options);

// {"attack_accuracy": {"0": a, "1": b, ...}, "noisy_accuracy": {"0.1": ...}, "flatness": f,
//  "flatness_sigma": s, "flatness_draws": d}. Keys are the numbers in shortest form.
nlohmann::json to_json(const RobustnessResult& r);
std::string number_key(double v);

}  // namespace textclf
