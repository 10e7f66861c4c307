// examples/text_classifier/dataset.cpp — see dataset.h.
#include "examples/text_classifier/dataset.h"

#include <chrono>

#include "core/check.h"
#include "examples/text_classifier/wordnet.h"

namespace textclf {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

std::shared_ptr<const LoadedCorpus> load_corpus(const DataConfig& config) {
    auto out = std::make_shared<LoadedCorpus>();
    const auto t0 = std::chrono::steady_clock::now();
    if (!config.train_file.empty() || !config.test_file.empty()) {
        MDL_CHECK(!config.train_file.empty() && !config.test_file.empty(), minidl::ValueError,
                  "text_classifier: --train and --test go together (got only ",
                  config.train_file.empty() ? "--test" : "--train", ")");
        LabeledData d = load_labeled_files(config.train_file, config.test_file, config.val);
        out->data = std::move(d.data);
        out->fixed_split = std::move(d.split);
        out->kind = "files";
        out->val = config.val;
    } else if (config.dataset == "wordnet") {
        const std::string where = config.data_dir.value_or(default_data_dir());
        const std::optional<std::string> path = find_wordnet_nouns(where);
        MDL_CHECK(path.has_value(), minidl::Error, "text_classifier: no WordNet data.noun at or ",
                  "below ", where, " (run scripts/fetch_data.sh, or pass --data DIR)");
        LabeledData d = load_wordnet_nouns(*path);
        MDL_CHECK(!config.val, minidl::ValueError,
                  "text_classifier: --val is not defined for --dataset wordnet (its split is "
                  "fixed)");
        out->data = std::move(d.data);
        out->fixed_split = std::move(d.split);
        out->kind = "wordnet";
    } else {
        MDL_CHECK(config.dataset == "spam", minidl::ValueError,
                  "text_classifier: --dataset must be spam or wordnet, got '", config.dataset, "'");
        out->data = load_spam_corpus_or_sample(config.data_dir);
        out->kind = "spam";
    }
    out->read_s = seconds_since(t0);
    const auto t1 = std::chrono::steady_clock::now();
    out->tokens = tokenize_corpus(out->data.texts, out->data.mode);
    out->tokenize_s = seconds_since(t1);
    if (!config.keep_texts) {  // size() stays: it counts labels
        out->data.texts.clear();
        out->data.texts.shrink_to_fit();
    }
    return out;
}

PreparedData prepare_data(std::shared_ptr<const LoadedCorpus> corpus, SplitKind kind, bool val,
                          const InputFormat& format) {
    MDL_CHECK(corpus != nullptr, minidl::ValueError, "prepare_data: no corpus");
    PreparedData p;
    p.corpus = corpus;
    if (corpus->fixed_split) {
        MDL_CHECK(!val || corpus->val, minidl::ValueError,
                  "prepare_data: --val must be given when the corpus is loaded");
        p.split = *corpus->fixed_split;
        p.split_name = corpus->kind;
    } else {
        p.split = spam_split(corpus->data, kind, val);
        p.split_name = std::string(split_kind_name(kind));
    }
    MDL_CHECK(!p.split.train.empty() && !p.split.test.empty(), minidl::ValueError,
              "text_classifier: the ", p.split_name, " split of ", corpus->data.source, " has ",
              p.split.train.size(), " training and ", p.split.test.size(),
              " test documents; both must be non-empty");
    const auto t0 = std::chrono::steady_clock::now();
    p.format = format;
    // The same counting rule for both models; only the specials in front differ.
    p.vocab = Vocab::build(corpus->tokens, p.split.train,
                           {.specials = format.bert ? bert_specials() : bag_specials()});
    const std::vector<int64_t>& labels = corpus->data.labels;
    p.train = encode_docs(corpus->tokens, p.vocab, p.split.train, labels, format);
    p.val = encode_docs(corpus->tokens, p.vocab, p.split.val, labels, format);
    p.test = encode_docs(corpus->tokens, p.vocab, p.split.test, labels, format);
    p.vocab_s = seconds_since(t0);
    return p;
}

PreparedData load_and_prepare(const DataConfig& config) {
    return prepare_data(load_corpus(config), config.split, config.val, config.format);
}

}  // namespace textclf
