// examples/text_classifier/text.h — from raw text to the (ids, offsets, labels) batches that
// EmbeddingBag consumes: e-mail text extraction, tokenizer, vocabulary, encoding, batching.
//
// The text pipeline spec (docs/text_classifier.md), precise so that a PyTorch run can reproduce
// every id:
//   e-mail text  split the message at its first "\n\n": header above, body below; no "\n\n" means
//                all body and no subject. Text = the rest of the first header line that starts with
//                "Subject:" (ASCII case-insensitive; folded continuation lines not included) + "\n"
//                + the raw body. No MIME, base64 or HTML decoding.
//   tokens       maximal runs of ASCII [A-Za-z0-9], lowercased; every other byte separates, so
//                invalid UTF-8, U+FFFD (EF BF BD) and NUL bytes are plain separators. The first
//                max_tokens (512) tokens of a document are kept.
//   vocabulary   the kept tokens of the training documents occurring >= 2 times (occurrences, not
//                document frequency), ordered by (count descending, token ascending), at most
//                30,000 entries including the specials in front: the bag model's id 0 "<pad>"
//                and id 1 "<unk>"; the transformer's (BERT's) [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3,
//                [MASK]=4.
//   encoding     unknown token -> 1 (<unk> / [UNK]). Bag model: a document without tokens -> the
//                single id 0 (<pad>). Transformer: [CLS] t1 ... tn [SEP] with the document's first
//                n <= max_len - 2 tokens (an empty document is [CLS] [SEP]); batches pad on the
//                right with [PAD] to their longest row (evaluate.h).
//   vocab.txt    line k holds the token of id k - 1 (1-based lines: Hugging Face BERT's format).
//
// Plain text (user TSV/JSONL data, WordNet glosses) skips the e-mail step: the whole string is
// tokenized.
//
// Speed: tokenize_corpus() interns every distinct token once, so a corpus is stored as small
// integer "type" ids; building a vocabulary for any split and encoding it are then array passes.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/rng.h"
#include "core/tensor.h"

namespace textclf {

enum class TextMode {
    Email,  // Subject + body of a raw RFC 822 message, as above
    Plain,  // the whole string
};

inline constexpr int64_t kMaxTokens = 512;

// ---- e-mail text ------------------------------------------------------------------------------
struct EmailParts {
    std::string_view subject;  // the rest of the first "Subject:" header line ("" when none)
    std::string_view body;     // everything after the first "\n\n" (the whole message when none)
};
EmailParts split_email(std::string_view message);
// subject + "\n" + body: the text the classifier reads.
std::string email_text(std::string_view message);

// ---- tokenizer --------------------------------------------------------------------------------
// Appends the tokens of `text` to `out` until `out` holds max_tokens; returns false once full.
bool append_tokens(std::string_view text, int64_t max_tokens, std::vector<std::string>& out);
std::vector<std::string> tokenize(std::string_view text, int64_t max_tokens = kMaxTokens);
// tokenize(email_text(doc)) for Email, tokenize(doc) for Plain.
std::vector<std::string> tokenize_document(std::string_view doc, TextMode mode,
                                           int64_t max_tokens = kMaxTokens);

// A whole corpus, tokenized once: each distinct token ("type") is stored once in `types` (in
// order of first appearance), each document is a run of type ids.
struct TokenizedCorpus {
    std::vector<std::string> types;
    std::vector<uint32_t> tokens;  // type ids of every document, concatenated
    std::vector<int64_t>
        offsets;  // num_docs() + 1 entries; document i = [offsets[i], offsets[i+1])

    int64_t num_docs() const { return static_cast<int64_t>(offsets.size()) - 1; }
    std::span<const uint32_t> doc(int64_t i) const;
    std::vector<std::string> doc_tokens(int64_t i) const;
};
TokenizedCorpus tokenize_corpus(const std::vector<std::string>& texts, TextMode mode,
                                int64_t max_tokens = kMaxTokens);

// ---- vocabulary -------------------------------------------------------------------------------
struct VocabOptions {
    int64_t min_count = 2;     // occurrences in the training documents
    int64_t max_size = 30000;  // entries including the specials
    // The tokens of ids 0, 1, ...: the padding token first, the unknown token second.
    std::vector<std::string> specials = {"<pad>", "<unk>"};
};

// The bag model's specials, and the transformer's (Hugging Face BERT's, in its order).
const std::vector<std::string>& bag_specials();
const std::vector<std::string>& bert_specials();

// How documents become id sequences: the bag model's bags, or the transformer's
// [CLS] ... [SEP] sequences of at most max_len ids.
struct InputFormat {
    bool bert = false;
    int64_t max_len = 128;  // transformer only: [CLS] + up to max_len - 2 tokens + [SEP]
};

class Vocab {
  public:
    static constexpr int64_t kPad = 0;
    static constexpr int64_t kUnk = 1;
    static constexpr int64_t kCls = 2;  // BERT vocabularies only
    static constexpr int64_t kSep = 3;

    Vocab();  // just <pad> and <unk>

    // From (token, occurrence count) pairs: keeps count >= min_count, sorts by (count desc,
    // token asc), truncates to max_size entries in all. Tokens must be distinct and non-empty.
    static Vocab from_counts(std::vector<std::pair<std::string, int64_t>> counts,
                             const VocabOptions& options = {});
    // Counts the tokens of corpus documents `docs` (the training split).
    static Vocab build(const TokenizedCorpus& corpus, std::span<const int64_t> docs,
                       const VocabOptions& options = {});
    static Vocab build(const std::vector<std::vector<std::string>>& docs,
                       const VocabOptions& options = {});

    // vocab.txt: line k holds the token of id k - 1; written atomically (temp file + rename).
    void save(const std::string& path) const;
    // Throws FormatError (file:line) for an empty token, a duplicate, or a file that does not
    // start with <pad>, <unk> or with BERT's five specials.
    static Vocab load(const std::string& path);
    // Whether the vocabulary starts with BERT's specials (the transformer's).
    bool is_bert() const;

    int64_t size() const { return static_cast<int64_t>(tokens_.size()); }
    const std::string& token(int64_t id) const;  // IndexError outside [0, size())
    int64_t id(std::string_view token) const;    // kUnk for a token not in the vocabulary
    const std::vector<std::string>& tokens() const { return tokens_; }
    // Ids of a token list; an empty list gives {kPad}.
    std::vector<int64_t> encode(const std::vector<std::string>& tokens) const;
    // The transformer's sequence: [CLS], the ids of the first max_len - 2 tokens, [SEP].
    std::vector<int64_t> encode_sequence(const std::vector<std::string>& tokens,
                                         int64_t max_len) const;
    // encode() or encode_sequence() as `format` says.
    std::vector<int64_t> encode(const std::vector<std::string>& tokens,
                                const InputFormat& format) const;

  private:
    explicit Vocab(std::vector<std::string> tokens);
    void index();

    // Hashes std::string keys and looks up std::string_view ones without building a string.
    struct Hash {
        using is_transparent = void;
        size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
    };

    std::vector<std::string> tokens_;
    std::unordered_map<std::string, int64_t, Hash, std::equal_to<>> lookup_;  // token -> id
};

// ---- encoding and batching --------------------------------------------------------------------
// Documents as one flat id array plus offsets, what EmbeddingBag(ids, offsets) consumes.
struct EncodedDocs {
    std::vector<int64_t> ids;
    std::vector<int64_t> offsets;  // size() + 1 entries; document r = ids[offsets[r], offsets[r+1])
    std::vector<int64_t> labels;   // one per document

    int64_t size() const { return static_cast<int64_t>(labels.size()); }
};
// Encodes corpus documents `docs` (in that order) with `labels[doc]` as their labels, as bags or
// as the transformer's sequences (`format`).
EncodedDocs encode_docs(const TokenizedCorpus& corpus, const Vocab& vocab,
                        std::span<const int64_t> docs, std::span<const int64_t> labels,
                        const InputFormat& format = {});

struct Batch {
    minidl::Tensor ids;      // [L] I64, the documents' ids concatenated
    minidl::Tensor offsets;  // [B] I64, start of each document in ids (offsets[0] == 0)
    minidl::Tensor labels;   // [B] I64
    int64_t size = 0;        // B
};
// The batch of encoded documents `rows` (indices into `data`), on the CPU.
Batch make_batch(const EncodedDocs& data, std::span<const int64_t> rows);

// Consecutive batches of batch_size documents (the last may be smaller) over an order of the
// rows of `data`: the identity until shuffle() draws a permutation. Random access (batch(k)),
// so a resumed run only needs the order and the batch index. Holds a pointer to `data`, which
// must outlive it (and stay where it is).
class Batcher {
  public:
    Batcher(const EncodedDocs& data, int64_t batch_size);

    void shuffle(minidl::Generator& gen);  // order = gen.randperm(data.size())
    void set_order(std::vector<int64_t> order);
    const std::vector<int64_t>& order() const { return order_; }
    int64_t num_batches() const;
    Batch batch(int64_t k) const;

  private:
    const EncodedDocs* data_;
    int64_t batch_size_;
    std::vector<int64_t> order_;
};

}  // namespace textclf
