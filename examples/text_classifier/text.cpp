// examples/text_classifier/text.cpp — e-mail text, tokenizer, vocabulary, encoding, batching.
// The spec is in text.h; this file follows it step by step.
#include "examples/text_classifier/text.h"

#include <algorithm>
#include <array>
#include <functional>
#include <unordered_map>

#include "core/check.h"
#include "core/parallel.h"
#include "examples/text_classifier/io.h"

namespace textclf {

using minidl::FormatError;
using minidl::IndexError;
using minidl::ValueError;

namespace {

// kTokenByte[c] is the lowercase form of byte c when c is in [A-Za-z0-9], and 0 for every other
// byte: one table lookup both classifies and lowercases. Bytes >= 0x80 (UTF-8 sequences, valid
// or not, U+FFFD included) and NUL are separators by construction.
constexpr std::array<char, 256> make_token_table() {
    std::array<char, 256> t{};
    for (int c = '0'; c <= '9'; ++c)
        t[c] = static_cast<char>(c);
    for (int c = 'a'; c <= 'z'; ++c)
        t[c] = static_cast<char>(c);
    for (int c = 'A'; c <= 'Z'; ++c)
        t[c] = static_cast<char>(c - 'A' + 'a');
    return t;
}
constexpr std::array<char, 256> kTokenByte = make_token_table();

// Calls sink(token) for each token of `text` (lowercased into `scratch`) while `remaining` > 0,
// decrementing it; returns false once the budget is spent.
template <typename Sink>
bool scan_tokens(std::string_view text, std::string& scratch, int64_t& remaining, Sink&& sink) {
    const auto* p = reinterpret_cast<const unsigned char*>(text.data());
    const auto* end = p + text.size();
    while (remaining > 0) {
        while (p < end && kTokenByte[*p] == 0)
            ++p;
        if (p == end) return true;
        const auto* start = p;
        while (p < end && kTokenByte[*p] != 0)
            ++p;
        scratch.resize(static_cast<size_t>(p - start));
        for (size_t i = 0; i < scratch.size(); ++i)
            scratch[i] = kTokenByte[start[i]];
        sink(std::string_view(scratch));
        --remaining;
    }
    return false;
}

// The text pieces of a document: subject then body (Email), or the whole string (Plain).
// Tokenizing the pieces one after the other equals tokenizing subject + "\n" + body, since "\n"
// separates anyway; it saves copying the body.
template <typename Sink>
void scan_document(std::string_view doc, TextMode mode, int64_t max_tokens, std::string& scratch,
                   Sink&& sink) {
    MDL_CHECK(max_tokens > 0, ValueError, "tokenize: max_tokens must be positive, got ",
              max_tokens);
    int64_t remaining = max_tokens;
    if (mode == TextMode::Plain) {
        scan_tokens(doc, scratch, remaining, sink);
        return;
    }
    EmailParts parts = split_email(doc);
    if (scan_tokens(parts.subject, scratch, remaining, sink))
        scan_tokens(parts.body, scratch, remaining, sink);
}

bool starts_with_subject(std::string_view line) {
    static constexpr std::string_view kSubject = "subject:";
    if (line.size() < kSubject.size()) return false;
    for (size_t i = 0; i < kSubject.size(); ++i) {
        char c = line[i];
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
        if (c != kSubject[i]) return false;
    }
    return true;
}

// Hash for string keys that also accepts string_view lookups without building a string.
struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using TokenIndex = std::unordered_map<std::string, int64_t, StringHash, std::equal_to<>>;

// Interns tokens: an open-addressing table (linear probing, power-of-two size, at most half
// full) of (hash, id + 1) over a vector of the distinct strings. Interning is the inner loop of
// tokenize_corpus; unlike std::unordered_map this allocates no node per entry, and a probe
// compares the stored upper hash bits before touching the string.
class TypeTable {
  public:
    TypeTable() : slots_(1 << 12, 0) {}

    static uint64_t hash(std::string_view s) {  // FNV-1a, 64-bit
        uint64_t h = 14695981039346656037ull;
        for (char c : s)
            h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
        return h;
    }

    // The id of `tok` (a new id, in order of first appearance, when unseen).
    uint32_t intern(std::string_view tok) {
        uint64_t h = hash(tok);
        uint64_t tag = h & 0xFFFFFFFF00000000ull;
        size_t mask = slots_.size() - 1;
        for (size_t i = static_cast<size_t>(h) & mask;; i = (i + 1) & mask) {
            uint64_t slot = slots_[i];
            if (slot == 0) {
                auto id = static_cast<uint32_t>(types_.size());
                types_.emplace_back(tok);
                slots_[i] = tag | (uint64_t{id} + 1);
                if (types_.size() * 2 > slots_.size()) grow();
                return id;
            }
            auto id = static_cast<uint32_t>((slot & 0xFFFFFFFFull) - 1);
            if ((slot & 0xFFFFFFFF00000000ull) == tag && types_[id] == tok) return id;
        }
    }

    std::vector<std::string>& types() { return types_; }

  private:
    void grow() {
        std::vector<uint64_t> old(slots_.size() * 2, 0);
        old.swap(slots_);
        size_t mask = slots_.size() - 1;
        for (uint64_t slot : old) {
            if (slot == 0) continue;
            uint64_t h = hash(types_[(slot & 0xFFFFFFFFull) - 1]);
            size_t i = static_cast<size_t>(h) & mask;
            while (slots_[i] != 0)
                i = (i + 1) & mask;
            slots_[i] = slot;
        }
    }

    std::vector<uint64_t> slots_;
    std::vector<std::string> types_;
};

}  // namespace

// ---- e-mail text ------------------------------------------------------------------------------

EmailParts split_email(std::string_view message) {
    size_t blank = message.find("\n\n");
    if (blank == std::string_view::npos) return {{}, message};
    std::string_view header = message.substr(0, blank);
    EmailParts parts{{}, message.substr(blank + 2)};
    size_t pos = 0;
    while (pos <= header.size()) {
        size_t eol = header.find('\n', pos);
        if (eol == std::string_view::npos) eol = header.size();
        std::string_view line = header.substr(pos, eol - pos);
        if (starts_with_subject(line)) {
            parts.subject = line.substr(8);  // after "Subject:"
            break;
        }
        pos = eol + 1;
    }
    return parts;
}

std::string email_text(std::string_view message) {
    EmailParts parts = split_email(message);
    std::string text;
    text.reserve(parts.subject.size() + 1 + parts.body.size());
    text.append(parts.subject);
    text.push_back('\n');
    text.append(parts.body);
    return text;
}

// ---- tokenizer --------------------------------------------------------------------------------

bool append_tokens(std::string_view text, int64_t max_tokens, std::vector<std::string>& out) {
    int64_t remaining = max_tokens - static_cast<int64_t>(out.size());
    std::string scratch;
    return scan_tokens(text, scratch, remaining,
                       [&](std::string_view tok) { out.emplace_back(tok); });
}

std::vector<std::string> tokenize(std::string_view text, int64_t max_tokens) {
    return tokenize_document(text, TextMode::Plain, max_tokens);
}

std::vector<std::string> tokenize_document(std::string_view doc, TextMode mode,
                                           int64_t max_tokens) {
    std::vector<std::string> out;
    std::string scratch;
    scan_document(doc, mode, max_tokens, scratch,
                  [&](std::string_view tok) { out.emplace_back(tok); });
    return out;
}

std::span<const uint32_t> TokenizedCorpus::doc(int64_t i) const {
    MDL_CHECK(i >= 0 && i < num_docs(), IndexError, "TokenizedCorpus::doc: index ", i,
              " out of range for ", num_docs(), " documents");
    return std::span<const uint32_t>(tokens).subspan(
        static_cast<size_t>(offsets[i]), static_cast<size_t>(offsets[i + 1] - offsets[i]));
}

std::vector<std::string> TokenizedCorpus::doc_tokens(int64_t i) const {
    std::vector<std::string> out;
    for (uint32_t t : doc(i))
        out.push_back(types[t]);
    return out;
}

TokenizedCorpus tokenize_corpus(const std::vector<std::string>& texts, TextMode mode,
                                int64_t max_tokens) {
    // Fixed blocks of documents are tokenized in parallel, each with its own type table; the
    // tables are then merged in block order. A type's global id is thus its first appearance in
    // the whole corpus, whatever the thread count.
    constexpr int64_t kBlockDocs = 256;
    struct Block {
        std::vector<std::string> types;
        std::vector<uint32_t> tokens;  // local type ids
        std::vector<int64_t> ends;     // end of each document in `tokens`
    };
    const auto n = static_cast<int64_t>(texts.size());
    std::vector<Block> blocks(static_cast<size_t>((n + kBlockDocs - 1) / kBlockDocs));
    minidl::parallel_blocks(n, kBlockDocs, [&](int64_t b, int64_t begin, int64_t end) {
        Block& block = blocks[static_cast<size_t>(b)];
        TypeTable table;
        std::string scratch;
        for (int64_t d = begin; d < end; ++d) {
            scan_document(texts[static_cast<size_t>(d)], mode, max_tokens, scratch,
                          [&](std::string_view tok) { block.tokens.push_back(table.intern(tok)); });
            block.ends.push_back(static_cast<int64_t>(block.tokens.size()));
        }
        block.types = std::move(table.types());
    });
    TokenizedCorpus corpus;
    corpus.offsets.reserve(texts.size() + 1);
    corpus.offsets.push_back(0);
    TypeTable table;
    std::vector<uint32_t> global;  // local type id -> global type id
    for (Block& block : blocks) {
        global.resize(block.types.size());
        for (size_t t = 0; t < block.types.size(); ++t)
            global[t] = table.intern(block.types[t]);
        const int64_t base = static_cast<int64_t>(corpus.tokens.size());
        for (uint32_t t : block.tokens)
            corpus.tokens.push_back(global[t]);
        for (int64_t e : block.ends)
            corpus.offsets.push_back(base + e);
        block = Block{};  // free as we go
    }
    corpus.types = std::move(table.types());
    MDL_CHECK(corpus.types.size() < (uint64_t{1} << 32), ValueError,
              "tokenize_corpus: more than 2^32 distinct tokens");
    return corpus;
}

// ---- vocabulary -------------------------------------------------------------------------------

const std::vector<std::string>& bag_specials() {
    static const std::vector<std::string> specials{"<pad>", "<unk>"};
    return specials;
}

const std::vector<std::string>& bert_specials() {
    static const std::vector<std::string> specials{"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
    return specials;
}

Vocab::Vocab() : Vocab(bag_specials()) {}

Vocab::Vocab(std::vector<std::string> tokens) : tokens_(std::move(tokens)) {
    index();
}

void Vocab::index() {
    lookup_.clear();
    lookup_.reserve(tokens_.size());
    for (size_t i = 0; i < tokens_.size(); ++i) {
        MDL_CHECK(!tokens_[i].empty(), ValueError, "Vocab: empty token at id ", i);
        bool fresh = lookup_.emplace(tokens_[i], static_cast<int64_t>(i)).second;
        MDL_CHECK(fresh, ValueError, "Vocab: token '", tokens_[i], "' appears twice (id ",
                  lookup_.find(tokens_[i])->second, " and id ", i, ")");
    }
}

Vocab Vocab::from_counts(std::vector<std::pair<std::string, int64_t>> counts,
                         const VocabOptions& options) {
    MDL_CHECK(options.min_count >= 1, ValueError, "Vocab: min_count must be >= 1, got ",
              options.min_count);
    const auto n_special = static_cast<int64_t>(options.specials.size());
    MDL_CHECK(n_special >= 2, ValueError,
              "Vocab: need at least the padding and the unknown token as specials, got ",
              n_special);
    MDL_CHECK(options.max_size >= n_special, ValueError, "Vocab: max_size must be >= ", n_special,
              " (the specials), got ", options.max_size);
    std::erase_if(counts, [&](const auto& tc) { return tc.second < options.min_count; });
    std::sort(counts.begin(), counts.end(), [](const auto& a, const auto& b) {
        if (a.second != b.second) return a.second > b.second;
        return a.first < b.first;
    });
    size_t keep = std::min(counts.size(), static_cast<size_t>(options.max_size - n_special));
    std::vector<std::string> tokens = options.specials;
    tokens.reserve(keep + tokens.size());
    for (size_t i = 0; i < keep; ++i)
        tokens.push_back(std::move(counts[i].first));
    return Vocab(std::move(tokens));
}

Vocab Vocab::build(const TokenizedCorpus& corpus, std::span<const int64_t> docs,
                   const VocabOptions& options) {
    std::vector<int64_t> count(corpus.types.size(), 0);
    for (int64_t d : docs)
        for (uint32_t t : corpus.doc(d))
            ++count[t];
    std::vector<std::pair<std::string, int64_t>> counts;
    for (size_t t = 0; t < count.size(); ++t)
        if (count[t] > 0) counts.emplace_back(corpus.types[t], count[t]);
    return from_counts(std::move(counts), options);
}

Vocab Vocab::build(const std::vector<std::vector<std::string>>& docs, const VocabOptions& options) {
    TokenIndex count;
    for (const auto& doc : docs)
        for (const auto& tok : doc)
            ++count[tok];
    return from_counts({count.begin(), count.end()}, options);
}

void Vocab::save(const std::string& path) const {
    std::string out;
    for (const std::string& tok : tokens_) {
        MDL_CHECK(tok.find('\n') == std::string::npos, ValueError, "Vocab::save: token '", tok,
                  "' holds a newline and cannot be written one per line");
        out += tok;
        out += '\n';
    }
    write_file_atomic(path, out);
}

Vocab Vocab::load(const std::string& path) {
    std::string text = read_file(path);
    std::vector<std::string> tokens;
    size_t pos = 0;
    while (pos < text.size()) {
        size_t eol = text.find('\n', pos);
        if (eol == std::string::npos) eol = text.size();
        std::string tok = text.substr(pos, eol - pos);
        int64_t line = static_cast<int64_t>(tokens.size()) + 1;
        MDL_CHECK(!tok.empty(), FormatError, "Vocab::load: ", path, ":", line,
                  ": empty line (line k holds the token of id k-1)");
        tokens.push_back(std::move(tok));
        pos = eol + 1;
    }
    auto starts_with = [&](const std::vector<std::string>& specials) {
        return tokens.size() >= specials.size() &&
               std::equal(specials.begin(), specials.end(), tokens.begin());
    };
    MDL_CHECK(starts_with(bag_specials()) || starts_with(bert_specials()), FormatError,
              "Vocab::load: ", path,
              ": must start with the lines <pad> and <unk> (bag model) or [PAD], [UNK], [CLS], "
              "[SEP], [MASK] (transformer)");
    try {
        return Vocab(std::move(tokens));
    } catch (const ValueError& e) {
        throw FormatError(minidl::detail::concat("Vocab::load: ", path, ": ", e.what()));
    }
}

const std::string& Vocab::token(int64_t id) const {
    MDL_CHECK(id >= 0 && id < size(), IndexError, "Vocab::token: id ", id,
              " out of range for a vocabulary of ", size());
    return tokens_[static_cast<size_t>(id)];
}

int64_t Vocab::id(std::string_view token) const {
    auto it = lookup_.find(token);
    return it == lookup_.end() ? kUnk : it->second;
}

bool Vocab::is_bert() const {
    const auto& specials = bert_specials();
    return tokens_.size() >= specials.size() &&
           std::equal(specials.begin(), specials.end(), tokens_.begin());
}

std::vector<int64_t> Vocab::encode(const std::vector<std::string>& tokens) const {
    if (tokens.empty()) return {kPad};
    std::vector<int64_t> ids;
    ids.reserve(tokens.size());
    for (const auto& tok : tokens)
        ids.push_back(id(tok));
    return ids;
}

std::vector<int64_t> Vocab::encode_sequence(const std::vector<std::string>& tokens,
                                            int64_t max_len) const {
    MDL_CHECK(is_bert(), ValueError,
              "Vocab::encode_sequence: needs a vocabulary with BERT's specials");
    MDL_CHECK(max_len >= 2, ValueError, "Vocab::encode_sequence: max_len must be >= 2 ([CLS] ",
              "and [SEP]), got ", max_len);
    const size_t n = std::min(tokens.size(), static_cast<size_t>(max_len - 2));
    std::vector<int64_t> ids;
    ids.reserve(n + 2);
    ids.push_back(kCls);
    for (size_t i = 0; i < n; ++i)
        ids.push_back(id(tokens[i]));
    ids.push_back(kSep);
    return ids;
}

std::vector<int64_t> Vocab::encode(const std::vector<std::string>& tokens,
                                   const InputFormat& format) const {
    return format.bert ? encode_sequence(tokens, format.max_len) : encode(tokens);
}

// ---- encoding and batching --------------------------------------------------------------------

EncodedDocs encode_docs(const TokenizedCorpus& corpus, const Vocab& vocab,
                        std::span<const int64_t> docs, std::span<const int64_t> labels,
                        const InputFormat& format) {
    MDL_CHECK(static_cast<int64_t>(labels.size()) == corpus.num_docs(), ValueError,
              "encode_docs: ", labels.size(), " labels for ", corpus.num_docs(), " documents");
    // Each type's id once, then every token is one array lookup.
    std::vector<int64_t> type_id(corpus.types.size());
    for (size_t t = 0; t < type_id.size(); ++t)
        type_id[t] = vocab.id(corpus.types[t]);
    EncodedDocs out;
    out.offsets.reserve(docs.size() + 1);
    out.offsets.push_back(0);
    out.labels.reserve(docs.size());
    if (format.bert) {
        MDL_CHECK(vocab.is_bert(), ValueError,
                  "encode_docs: the transformer's format needs a vocabulary with BERT's specials");
        MDL_CHECK(format.max_len >= 2, ValueError, "encode_docs: max_len must be >= 2, got ",
                  format.max_len);
    }
    for (int64_t d : docs) {
        std::span<const uint32_t> toks = corpus.doc(d);  // checks d
        if (format.bert) {
            toks = toks.first(std::min(toks.size(), static_cast<size_t>(format.max_len - 2)));
            out.ids.push_back(Vocab::kCls);
        } else if (toks.empty()) {
            out.ids.push_back(Vocab::kPad);
        }
        for (uint32_t t : toks)
            out.ids.push_back(type_id[t]);
        if (format.bert) out.ids.push_back(Vocab::kSep);
        out.offsets.push_back(static_cast<int64_t>(out.ids.size()));
        out.labels.push_back(labels[static_cast<size_t>(d)]);
    }
    return out;
}

Batch make_batch(const EncodedDocs& data, std::span<const int64_t> rows) {
    MDL_CHECK(!rows.empty(), ValueError, "make_batch: no rows");
    std::vector<int64_t> ids, offsets, labels;
    offsets.reserve(rows.size());
    labels.reserve(rows.size());
    for (int64_t r : rows) {
        MDL_CHECK(r >= 0 && r < data.size(), IndexError, "make_batch: row ", r,
                  " out of range for ", data.size(), " documents");
        offsets.push_back(static_cast<int64_t>(ids.size()));
        ids.insert(ids.end(), data.ids.begin() + data.offsets[r],
                   data.ids.begin() + data.offsets[r + 1]);
        labels.push_back(data.labels[static_cast<size_t>(r)]);
    }
    Batch b;
    b.size = static_cast<int64_t>(rows.size());
    b.ids = minidl::Tensor::from_vector(ids, {static_cast<int64_t>(ids.size())});
    b.offsets = minidl::Tensor::from_vector(offsets, {b.size});
    b.labels = minidl::Tensor::from_vector(labels, {b.size});
    return b;
}

Batcher::Batcher(const EncodedDocs& data, int64_t batch_size)
    : data_(&data), batch_size_(batch_size) {
    MDL_CHECK(batch_size > 0, ValueError, "Batcher: batch_size must be positive, got ", batch_size);
    order_.resize(static_cast<size_t>(data.size()));
    for (int64_t i = 0; i < data.size(); ++i)
        order_[static_cast<size_t>(i)] = i;
}

void Batcher::shuffle(minidl::Generator& gen) {
    order_ = gen.randperm(data_->size());
}

void Batcher::set_order(std::vector<int64_t> order) {
    MDL_CHECK(static_cast<int64_t>(order.size()) == data_->size(), ValueError,
              "Batcher::set_order: ", order.size(), " entries for ", data_->size(), " documents");
    std::vector<bool> seen(order.size(), false);
    for (int64_t r : order) {
        MDL_CHECK(r >= 0 && r < data_->size() && !seen[static_cast<size_t>(r)], ValueError,
                  "Batcher::set_order: not a permutation of 0..", data_->size() - 1, " (entry ", r,
                  ")");
        seen[static_cast<size_t>(r)] = true;
    }
    order_ = std::move(order);
}

int64_t Batcher::num_batches() const {
    return (static_cast<int64_t>(order_.size()) + batch_size_ - 1) / batch_size_;
}

Batch Batcher::batch(int64_t k) const {
    MDL_CHECK(k >= 0 && k < num_batches(), IndexError, "Batcher::batch: batch ", k,
              " out of range for ", num_batches(), " batches");
    size_t start = static_cast<size_t>(k * batch_size_);
    size_t len = std::min(order_.size() - start, static_cast<size_t>(batch_size_));
    return make_batch(*data_, std::span<const int64_t>(order_).subspan(start, len));
}

}  // namespace textclf
