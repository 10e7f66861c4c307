// tests/fuzz/labeled_data_checks.h — the properties every parsed TSV / JSONL file must have,
// shared by fuzz_tsv.cpp and fuzz_jsonl.cpp: rows in line order with non-empty labels, and
// make_labeled_data() building a consistent dataset from them.
#pragma once

#include <algorithm>
#include <vector>

#include "examples/text_classifier/corpus.h"
#include "tests/fuzz/fuzz_support.h"

namespace minidl::fuzz {

inline void expect_valid_rows(const std::vector<textclf::LabeledRow>& rows, size_t lines) {
    int64_t previous = 0;
    for (const textclf::LabeledRow& r : rows) {
        FUZZ_EXPECT(r.line > previous && r.line <= static_cast<int64_t>(lines), "row line ", r.line,
                    " out of order or past line ", lines);
        previous = r.line;
        FUZZ_EXPECT(!r.label.empty(), "line ", r.line, ": empty label accepted");
    }
}

// Builds the dataset with the rows as both training and test file and checks its shape.
inline void expect_valid_dataset(const std::vector<textclf::LabeledRow>& rows) {
    if (rows.empty()) return;
    const textclf::LabeledData d = textclf::make_labeled_data(rows, "train", rows, "test", true);
    const auto& classes = d.data.classes;
    FUZZ_EXPECT(std::is_sorted(classes.begin(), classes.end()) &&
                    std::adjacent_find(classes.begin(), classes.end()) == classes.end(),
                "classes are not sorted and distinct");
    FUZZ_EXPECT(d.data.size() == static_cast<int64_t>(2 * rows.size()) &&
                    d.data.texts.size() == 2 * rows.size(),
                "dataset has ", d.data.size(), " documents for 2 x ", rows.size(), " rows");
    FUZZ_EXPECT(d.split.train.size() + d.split.val.size() == rows.size() &&
                    d.split.test.size() == rows.size(),
                "split sizes do not add up");
    for (size_t i = 0; i < d.data.labels.size(); ++i) {
        const int64_t label = d.data.labels[i];
        FUZZ_EXPECT(label >= 0 && label < static_cast<int64_t>(classes.size()), "label id ", label,
                    " out of range");
        FUZZ_EXPECT(classes[static_cast<size_t>(label)] == rows[i % rows.size()].label &&
                        d.data.texts[i] == rows[i % rows.size()].text,
                    "document ", i, " does not match its row");
    }
}

// The number of lines for_each_line sees: '\n'-separated, the last one possibly unterminated.
inline size_t count_lines(std::string_view text) {
    return static_cast<size_t>(std::count(text.begin(), text.end(), '\n')) +
           (!text.empty() && text.back() != '\n' ? 1 : 0);
}

}  // namespace minidl::fuzz
