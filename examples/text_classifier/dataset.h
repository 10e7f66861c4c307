// examples/text_classifier/dataset.h — what a run trains and tests on: a corpus read and
// tokenized once, then, per split, its vocabulary and the encoded train / val / test documents.
//
// The rules themselves (texts, splits, tokens, vocabulary) are the data library's (corpus.h,
// text.h, wordnet.h); this file only chooses among its sources and times them:
//   spam     SpamAssassin: --data DIR, else the fetched cache, else the committed sample
//            (is_sample() then says so); split random | temporal, --val holds out MD5 ...3
//   wordnet  WordNet 3.0 noun glosses (26 classes); --data is data.noun or a folder holding it
//            (default: the cache); its split is fixed (i % 5 == 4 within each class is test)
//   files    --train FILE --test FILE, TSV (label<TAB>text) or JSONL ({"label", "text"})
// The compare subcommand tokenizes the corpus once and prepares both splits from it.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "examples/text_classifier/corpus.h"
#include "examples/text_classifier/text.h"

namespace textclf {

struct DataConfig {
    std::string dataset = "spam";         // spam | wordnet (files when train_file is set)
    std::optional<std::string> data_dir;  // --data
    std::string train_file, test_file;    // --train / --test: the user's own data
    SplitKind split = SplitKind::Random;  // spam only
    bool val = false;                     // hold out a validation share of the training docs
    // Keep the raw texts after tokenizing. Off: training needs only the tokens, and the texts
    // (32 MB for SpamAssassin) would stay resident for the whole run.
    bool keep_texts = false;
    // The model's input: bags (the bag model) or [CLS] ... [SEP] sequences (the transformer),
    // which also decides the vocabulary's specials.
    InputFormat format;
};

// A corpus read and tokenized once (the expensive part), shared by every split prepared from it.
struct LoadedCorpus {
    TextDataset data;
    TokenizedCorpus tokens;
    std::string kind;                  // "spam", "wordnet" or "files"
    std::optional<Split> fixed_split;  // wordnet and user files: the split comes with the data
    bool val = false;                  // whether fixed_split holds a validation share
    double read_s = 0, tokenize_s = 0;
};

// Reads and tokenizes the corpus `config` names. Errors (missing files, malformed data) throw
// minidl::Error with the path.
std::shared_ptr<const LoadedCorpus> load_corpus(const DataConfig& config);

struct PreparedData {
    std::shared_ptr<const LoadedCorpus> corpus;
    Split split;
    std::string split_name;  // "random", "temporal", "wordnet", "files"
    InputFormat format;
    Vocab vocab;
    EncodedDocs train, val, test;
    double vocab_s = 0;  // building the vocabulary and encoding

    const std::vector<std::string>& classes() const { return corpus->data.classes; }
    TextMode mode() const { return corpus->data.mode; }
    bool is_sample() const { return corpus->data.is_sample; }
    // Reading + tokenizing + vocabulary + encoding: the data_s of the run record.
    double data_s() const { return corpus->read_s + corpus->tokenize_s + vocab_s; }
};

// The vocabulary of the training documents and the encoded splits. `kind` matters only for
// SpamAssassin (the others carry their split).
PreparedData prepare_data(std::shared_ptr<const LoadedCorpus> corpus,
                          SplitKind kind = SplitKind::Random, bool val = false,
                          const InputFormat& format = {});

// load_corpus + prepare_data with the config's split.
PreparedData load_and_prepare(const DataConfig& config);

}  // namespace textclf
