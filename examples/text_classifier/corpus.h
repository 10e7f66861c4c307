// examples/text_classifier/corpus.h — the labelled texts the classifier trains on: the
// SpamAssassin corpus (full cache or the committed offline sample), its fixed splits, and the
// user's own TSV / JSONL files.
//
// SpamAssassin (the data spec in docs/text_classifier.md; scripts/fetch_data.sh puts it in
// .cache/datasets/):
//   - every <group>/NNNNN.<md5>.json entry; the text is its JSON "text" field (not the .txt beside
//     it, whose bytes differ where the mail is not valid UTF-8), the group is the folder, the label
//     is spam (1) iff the group starts with "spam", else ham (0); the MD5 is from the file name;
//   - documents in group order easy-ham-1, easy-ham-2, hard-ham-1, spam-1, spam-2, then by file
//     name (= by the zero-padded id);
//   - splits: random (test = MD5's last hex digit in {0,1,2}: 4,926 train / 1,120 test), temporal
//     (train easy-ham-1 + hard-ham-1 + spam-1 = 3,250; test easy-ham-2 + spam-2 = 2,796); with
//     `val`, training messages whose MD5 ends in 3 are held out for model selection.
//   - the offline sample (examples/text_classifier/sample/spam_sample.jsonl): one JSON object per
//     line, {"group", "id", "md5", "text"}, in corpus order; loaded into the same TextDataset with
//     is_sample = true, so a program can say that it runs on the sample.
//
// User data, `label<TAB>text` (TSV) or {"label": ..., "text": ...} per line (JSONL; the label a
// string or an integer): class ids are the distinct labels of the TRAINING file sorted by byte
// value ("ham" < "spam"; "10" < "9"), so they do not depend on line order; a test label that the
// training file lacks is a FormatError. Blank lines are skipped; a TSV's first line
// "label<TAB>text" is taken as a header. Every malformed line throws FormatError naming the file
// and line.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "examples/text_classifier/text.h"

namespace textclf {

// The SpamAssassin groups, in corpus order.
inline constexpr std::array<std::string_view, 5> kSpamGroups = {"easy-ham-1", "easy-ham-2",
                                                                "hard-ham-1", "spam-1", "spam-2"};

struct TextDataset {
    std::vector<std::string> texts;    // empty once tokenized, unless DataConfig::keep_texts
    std::vector<int64_t> labels;       // class ids, one per document
    std::vector<std::string> classes;  // class id -> name
    TextMode mode = TextMode::Plain;   // Email for SpamAssassin
    // SpamAssassin only (empty otherwise), one per text: group, zero-padded id, MD5 (hex).
    std::vector<std::string> groups, ids, md5s;
    std::string source;      // the file or folder it was read from
    bool is_sample = false;  // the committed offline sample rather than the full corpus

    int64_t size() const { return static_cast<int64_t>(labels.size()); }
};

// Indices into a TextDataset. Each list is in dataset order.
struct Split {
    std::vector<int64_t> train, val, test;
};

enum class SplitKind { Random, Temporal };
SplitKind parse_split_kind(std::string_view name);  // "random" | "temporal"
std::string_view split_kind_name(SplitKind kind);

// ---- SpamAssassin -----------------------------------------------------------------------------
// The data cache: $DATA_DIR when set, else <source tree>/.cache/datasets.
std::string default_data_dir();
// The committed sample file (absolute path in the source tree).
std::string default_sample_path();

// The folder holding easy-ham-1 ... spam-2 at or below `path` (path itself, path/data,
// path/package/data, path/spam-assassin/data), or nullopt.
std::optional<std::string> find_spam_corpus(const std::string& path);
// `path`: any folder find_spam_corpus accepts, or a sample .jsonl file, or a folder holding
// spam_sample.jsonl. Throws FormatError (naming the file) for a malformed entry, and
// minidl::Error when nothing loadable is at `path`.
TextDataset load_spam_corpus(const std::string& path);
// What a --data flag means: with `data_dir`, load_spam_corpus(*data_dir) (an error when nothing
// is there); without, the full corpus from default_data_dir() when it has been fetched, else the
// committed sample (is_sample = true, so the program can say that it runs on the sample).
TextDataset load_spam_corpus_or_sample(const std::optional<std::string>& data_dir = {});

Split spam_split(const TextDataset& corpus, SplitKind kind, bool val = false);

// One sample line: {"group","id","md5","text"} as compact JSON (no trailing newline).
std::string sample_line(const TextDataset& corpus, int64_t doc);
// The documents of the offline sample, in corpus order. Per group a quota (48 for each ham group,
// 72 for each spam group: 144 ham + 144 spam = 288 messages), one third of it among messages
// whose MD5 ends in 0, 1 or 2 (random-split test), two thirds among the others. Within each
// part: messages of at most max_bytes by MD5, then (where too few are that short) the shortest
// longer ones. Deterministic: depends only on the corpus.
std::vector<int64_t> select_sample(const TextDataset& corpus, int64_t max_bytes = 6000);

// ---- the user's own data ----------------------------------------------------------------------
struct LabeledRow {
    std::string label, text;
    int64_t line = 0;  // 1-based line in the file
};
// `name` is the file name used in error messages.
std::vector<LabeledRow> parse_tsv(std::string_view contents, const std::string& name);
std::vector<LabeledRow> parse_jsonl(std::string_view contents, const std::string& name);
// By extension: .jsonl / .json -> JSONL, anything else -> TSV.
std::vector<LabeledRow> read_labeled_file(const std::string& path);

// Training and test files as one TextDataset (train rows first) plus the split; `val` holds out
// every training row i with i % 16 == 3 (the share the MD5 rule holds out on the corpus).
struct LabeledData {
    TextDataset data;
    Split split;
};
LabeledData load_labeled_files(const std::string& train_path, const std::string& test_path,
                               bool val = false);
// The same from rows already read (train_name / test_name for messages).
LabeledData make_labeled_data(const std::vector<LabeledRow>& train, const std::string& train_name,
                              const std::vector<LabeledRow>& test, const std::string& test_name,
                              bool val = false);

}  // namespace textclf
