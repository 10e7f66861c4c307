// tests/fuzz/fuzz_tokenizer.cpp — the text pipeline of the text classifier (text.h): e-mail text
// extraction, the tokenizer, the corpus tokenizer, the vocabulary (built and loaded from a file),
// encoding and batching, on arbitrary bytes.
//
// Input: byte 0 picks max_tokens (1..64) and the mode, the rest is the text; split at NUL bytes
// it is also a corpus of documents. Properties:
//   - tokenize_document equals a direct transcription of the spec in text.h (maximal runs of
//     [A-Za-z0-9], lowercased, the first max_tokens; e-mail: subject of the first "Subject:" line
//     of the header + "\n" + body);
//   - tokenize_corpus gives every document the tokens tokenize_document gives it, with distinct
//     types; the vocabulary built on it holds exactly the tokens seen >= min_count times, in
//     (count desc, token asc) order; encoding and batching keep every document's ids;
//   - Vocab::load of the text as a file either rejects it or returns its lines as the tokens.
#include <algorithm>
#include <map>

#include "examples/text_classifier/text.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

using namespace minidl::fuzz;
using textclf::TextMode;

std::vector<std::string> spec_tokens(std::string_view text, int64_t max_tokens) {
    std::vector<std::string> out;
    std::string cur;
    auto flush = [&] {
        if (!cur.empty() && static_cast<int64_t>(out.size()) < max_tokens) out.push_back(cur);
        cur.clear();
    };
    for (char c : text) {
        if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z'))
            cur.push_back(c);
        else if (c >= 'A' && c <= 'Z')
            cur.push_back(static_cast<char>(c - 'A' + 'a'));
        else
            flush();
    }
    flush();
    return out;
}

std::string spec_email_text(std::string_view message) {
    const size_t blank = message.find("\n\n");
    std::string_view header, subject, body = message;
    if (blank != std::string_view::npos) {
        header = message.substr(0, blank);
        body = message.substr(blank + 2);
    }
    while (blank != std::string_view::npos) {
        const size_t eol = std::min(header.find('\n'), header.size());
        std::string_view line = header.substr(0, eol);
        std::string lower(line.substr(0, 8));
        for (char& c : lower)
            if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
        if (lower == "subject:") {
            subject = line.substr(8);
            break;
        }
        if (eol == header.size()) break;
        header.remove_prefix(eol + 1);
    }
    std::string text(subject);
    text.push_back('\n');
    text.append(body);
    return text;
}

void check_corpus(const std::vector<std::string>& docs, TextMode mode, int64_t max_tokens) {
    const textclf::TokenizedCorpus corpus = textclf::tokenize_corpus(docs, mode, max_tokens);
    FUZZ_EXPECT(corpus.num_docs() == static_cast<int64_t>(docs.size()), "document count");
    std::vector<std::string> sorted_types = corpus.types;
    std::sort(sorted_types.begin(), sorted_types.end());
    FUZZ_EXPECT(std::adjacent_find(sorted_types.begin(), sorted_types.end()) == sorted_types.end(),
                "tokenize_corpus: a type is stored twice");
    std::map<std::string, int64_t> counts;
    for (size_t d = 0; d < docs.size(); ++d) {
        const auto tokens = corpus.doc_tokens(static_cast<int64_t>(d));
        FUZZ_EXPECT(tokens == textclf::tokenize_document(docs[d], mode, max_tokens),
                    "tokenize_corpus differs from tokenize_document on document ", d);
        for (const std::string& t : tokens)
            ++counts[t];
    }

    const textclf::VocabOptions options{.min_count = 2, .max_size = 30};
    std::vector<int64_t> all(docs.size());
    for (size_t d = 0; d < docs.size(); ++d)
        all[d] = static_cast<int64_t>(d);
    const textclf::Vocab vocab = textclf::Vocab::build(corpus, all, options);
    std::vector<std::pair<int64_t, std::string>> expected;  // (-count, token)
    for (const auto& [t, c] : counts)
        if (c >= options.min_count) expected.emplace_back(-c, t);
    std::sort(expected.begin(), expected.end());
    expected.resize(std::min<size_t>(expected.size(), options.max_size - 2));
    FUZZ_EXPECT(vocab.size() == static_cast<int64_t>(expected.size()) + 2, "vocabulary size ",
                vocab.size(), ", expected ", expected.size() + 2);
    for (size_t i = 0; i < expected.size(); ++i)
        FUZZ_EXPECT(vocab.token(static_cast<int64_t>(i) + 2) == expected[i].second,
                    "vocabulary entry ", i + 2);

    const std::vector<int64_t> labels(docs.size(), 0);
    const textclf::EncodedDocs encoded = textclf::encode_docs(corpus, vocab, all, labels);
    textclf::Batcher batcher(encoded, 3);
    int64_t doc = 0;
    for (int64_t k = 0; k < batcher.num_batches(); ++k) {
        const textclf::Batch b = batcher.batch(k);
        const auto ids = b.ids.to_vector<int64_t>();
        const auto offsets = b.offsets.to_vector<int64_t>();
        for (int64_t r = 0; r < b.size; ++r, ++doc) {
            const int64_t begin = offsets[static_cast<size_t>(r)];
            const int64_t end = r + 1 < b.size ? offsets[static_cast<size_t>(r) + 1]
                                               : static_cast<int64_t>(ids.size());
            const std::vector<int64_t> got(ids.begin() + begin, ids.begin() + end);
            const auto want = vocab.encode(corpus.doc_tokens(doc));
            FUZZ_EXPECT(got == want, "batch ", k, " row ", r, " holds other ids");
        }
    }
    FUZZ_EXPECT(doc == static_cast<int64_t>(docs.size()), "the batches cover ", doc, " documents");
}

void check_vocab_file(std::string_view text, const uint8_t* data, size_t size) {
    static MemFile file;
    file.assign(data, size);
    textclf::Vocab vocab;
    if (!accepts([&] { vocab = textclf::Vocab::load(file.path()); })) return;
    std::vector<std::string> lines;
    for (size_t pos = 0; pos < text.size();) {
        const size_t eol = std::min(text.find('\n', pos), text.size());
        lines.emplace_back(text.substr(pos, eol - pos));
        pos = eol + 1;
    }
    FUZZ_EXPECT(vocab.tokens() == lines, "Vocab::load: the tokens are not the file's lines");
    for (int64_t i = 0; i < vocab.size(); ++i)
        FUZZ_EXPECT(vocab.id(vocab.token(i)) == i, "Vocab::load: token ", i, " maps to another id");
}

int fuzz_tokenizer(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const int64_t max_tokens = 1 + (data[0] & 63);
    const TextMode mode = data[0] & 64 ? TextMode::Email : TextMode::Plain;
    const std::string_view text = as_text(data + 1, size - 1);

    const auto tokens = textclf::tokenize_document(text, mode, max_tokens);
    const auto expected = spec_tokens(
        mode == TextMode::Email ? spec_email_text(text) : std::string(text), max_tokens);
    FUZZ_EXPECT(tokens == expected, "tokenize_document gives ", tokens.size(), " tokens, the spec ",
                expected.size());
    FUZZ_EXPECT(textclf::email_text(text) == spec_email_text(text),
                "email_text differs from the spec");

    std::vector<std::string> appended = {"x"};
    const bool room = textclf::append_tokens(text, max_tokens + 1, appended);
    appended.erase(appended.begin());
    FUZZ_EXPECT(appended == spec_tokens(text, max_tokens), "append_tokens differs from the spec");
    // false once the budget is spent, i.e. when the text has at least max_tokens tokens
    FUZZ_EXPECT(room == (appended.size() < static_cast<size_t>(max_tokens)),
                "append_tokens returned ", room, " after ", appended.size(), " tokens");

    std::vector<std::string> docs;
    for (size_t pos = 0; pos <= text.size();) {
        const size_t nul = std::min(text.find('\0', pos), text.size());
        docs.emplace_back(text.substr(pos, nul - pos));
        pos = nul + 1;
    }
    check_corpus(docs, mode, max_tokens);
    check_vocab_file(text, data + 1, size - 1);
    return 0;
}

}  // namespace

MINIDL_FUZZ_TARGET("tokenizer", fuzz_tokenizer)
