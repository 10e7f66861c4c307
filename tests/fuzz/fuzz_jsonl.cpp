// tests/fuzz/fuzz_jsonl.cpp — the JSONL readers of the text classifier on arbitrary bytes: the
// user-data reader (corpus.h: parse_jsonl) and the offline-sample loader (load_spam_corpus on a
// .jsonl file, {"group","id","md5","text"} per line), both through io.h's line loop.
//
// Properties: neither reader accepts a raw NUL byte (never valid JSON; nlohmann::json alone stops
// reading at one and would accept "{...}\0<anything>"); parse_jsonl's rows are in line order with a
// non-empty label and make_labeled_data builds a consistent dataset from them
// (labelled_data_checks.h); an accepted sample has one group, id, MD5 and text per document, a
// known group, a 32-hex-digit MD5 and the label its group implies.
#include <algorithm>

#include "examples/text_classifier/corpus.h"
#include "tests/fuzz/fuzz_support.h"
#include "tests/fuzz/labeled_data_checks.h"

namespace {

using namespace minidl::fuzz;

void check_sample(const textclf::TextDataset& d) {
    const size_t n = d.labels.size();
    FUZZ_EXPECT(n > 0 && d.texts.size() == n && d.groups.size() == n && d.ids.size() == n &&
                    d.md5s.size() == n,
                "sample columns of unequal length");
    FUZZ_EXPECT(d.is_sample && d.classes.size() == 2, "not marked as the sample");
    for (size_t i = 0; i < n; ++i) {
        const std::string& g = d.groups[i];
        FUZZ_EXPECT(std::find(textclf::kSpamGroups.begin(), textclf::kSpamGroups.end(), g) !=
                        textclf::kSpamGroups.end(),
                    "unknown group '", g, "' accepted");
        FUZZ_EXPECT(d.md5s[i].size() == 32, "md5 '", d.md5s[i], "' accepted");
        FUZZ_EXPECT(d.labels[i] == (g.starts_with("spam") ? 1 : 0), "label of group ", g);
    }
}

int fuzz_jsonl(const uint8_t* data, size_t size) {
    const std::string_view text = as_text(data, size);
    std::vector<textclf::LabeledRow> rows;
    // Every non-blank line is parsed as JSON, and no JSON text holds a raw NUL byte.
    const bool has_nul = text.find('\0') != std::string_view::npos;
    if (accepts([&] { rows = textclf::parse_jsonl(text, "input.jsonl"); })) {
        FUZZ_EXPECT(!has_nul, "parse_jsonl accepted a NUL byte");
        expect_valid_rows(rows, count_lines(text));
        accepts([&] { expect_valid_dataset(rows); });
    }

    static MemFile file;
    file.assign(data, size);
    textclf::TextDataset sample;
    if (accepts([&] { sample = textclf::load_spam_corpus(file.path()); })) {
        FUZZ_EXPECT(!has_nul, "the sample loader accepted a NUL byte");
        check_sample(sample);
        // Spam splits are defined on any loaded sample.
        const textclf::Split s = textclf::spam_split(sample, textclf::SplitKind::Random, true);
        FUZZ_EXPECT(s.train.size() + s.val.size() + s.test.size() == sample.labels.size(),
                    "the random split loses documents");
    }
    return 0;
}

}  // namespace

MINIDL_FUZZ_TARGET("jsonl", fuzz_jsonl)
