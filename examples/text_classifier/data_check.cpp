// examples/text_classifier/data_check.cpp — `text_data_check`: checks the data pipeline against
// the real corpora's known counts, and writes the offline sample.
//
//   text_data_check [DATA_DIR]          check (default DATA_DIR: $DATA_DIR or .cache/datasets)
//   text_data_check --make-sample FILE [DATA_DIR]   write the sample (scripts/make_sample.sh)
//
// Checked (the corpus's published counts): 6,046 messages (per group 2,500 / 1,400 / 250 / 500 /
// 1,396; 4,150 ham, 1,896 spam); random split 4,926 / 1,120; temporal 3,250 / 2,796; vocabulary
// 27,769 (random) and 21,440 (temporal); the committed sample is exactly what select_sample()
// picks from the corpus; WordNet: 82,115 noun synsets = 51 noun.Tops + 82,064 others, each
// class's size as in DATASETS.md, and the i % 5 == 4 split. It also prints how long reading and
// tokenizing take. Exit status: 0 all passed, 1 a check failed, 77 (CTest: skipped) when a corpus
// is not in the cache — the checks that could run still ran and must have passed.
#include <chrono>
#include <cstdio>
#include <ctime>
#include <exception>
#include <optional>
#include <string>

#include "core/parallel.h"
#include "examples/text_classifier/corpus.h"
#include "examples/text_classifier/io.h"
#include "examples/text_classifier/text.h"
#include "examples/text_classifier/wordnet.h"

using namespace textclf;

namespace {

int failures = 0;

void expect(const char* what, int64_t got, int64_t want) {
    bool ok = got == want;
    std::printf("  %-44s %8lld  %s\n", what, static_cast<long long>(got),
                ok ? "ok" : ("FAILED, expected " + std::to_string(want)).c_str());
    if (!ok) ++failures;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int64_t count_group(const TextDataset& d, std::string_view group) {
    int64_t n = 0;
    for (const auto& g : d.groups)
        n += g == group;
    return n;
}

// Process CPU time (all threads), which a busy shared machine inflates less than wall time.
double cpu_seconds() {
    return static_cast<double>(std::clock()) / CLOCKS_PER_SEC;
}

void check_spam(const std::string& dir) {
    auto t0 = std::chrono::steady_clock::now();
    double c0 = cpu_seconds();
    TextDataset corpus = load_spam_corpus(dir);
    double read_s = seconds_since(t0), read_cpu = cpu_seconds() - c0;
    t0 = std::chrono::steady_clock::now();
    c0 = cpu_seconds();
    TokenizedCorpus tok = tokenize_corpus(corpus.texts, corpus.mode);
    double tok_s = seconds_since(t0), tok_cpu = cpu_seconds() - c0;
    std::printf("SpamAssassin (%s)\n", corpus.source.c_str());
    std::printf("  read + parse %.3f s (CPU %.3f s), tokenize %.3f s (CPU %.3f s); %d threads\n",
                read_s, read_cpu, tok_s, tok_cpu, minidl::get_num_threads());
    std::printf("  %lld kept tokens, %zu distinct\n", static_cast<long long>(tok.tokens.size()),
                tok.types.size());
    expect("messages", corpus.size(), 6046);
    const int64_t per_group[] = {2500, 1400, 250, 500, 1396};
    for (size_t g = 0; g < kSpamGroups.size(); ++g)
        expect(std::string(kSpamGroups[g]).c_str(), count_group(corpus, kSpamGroups[g]),
               per_group[g]);
    int64_t spam = 0;
    for (int64_t l : corpus.labels)
        spam += l;
    expect("spam messages", spam, 1896);
    int64_t no_tokens = 0;
    for (int64_t i = 0; i < tok.num_docs(); ++i)
        no_tokens += tok.doc(i).empty();
    expect("messages without tokens", no_tokens, 0);

    struct Case {
        SplitKind kind;
        int64_t train, test, vocab;
    };
    for (const Case& c : {Case{SplitKind::Random, 4926, 1120, 27769},
                          Case{SplitKind::Temporal, 3250, 2796, 21440}}) {
        std::string name(split_kind_name(c.kind));
        t0 = std::chrono::steady_clock::now();
        Split s = spam_split(corpus, c.kind);
        Vocab vocab = Vocab::build(tok, s.train);
        EncodedDocs train = encode_docs(tok, vocab, s.train, corpus.labels);
        double enc_s = seconds_since(t0);
        std::printf("  %s split: vocabulary + encoding %.3f s\n", name.c_str(), enc_s);
        expect((name + " train").c_str(), static_cast<int64_t>(s.train.size()), c.train);
        expect((name + " test").c_str(), static_cast<int64_t>(s.test.size()), c.test);
        expect((name + " vocabulary").c_str(), vocab.size(), c.vocab);
        expect((name + " encoded train documents").c_str(), train.size(), c.train);
        Split v = spam_split(corpus, c.kind, /*val=*/true);
        expect((name + " train + val (--val)").c_str(),
               static_cast<int64_t>(v.train.size() + v.val.size()), c.train);
        std::printf("  %s --val: %zu train, %zu val\n", name.c_str(), v.train.size(), v.val.size());
    }

    std::string sample_path = default_sample_path();
    std::string committed;
    try {
        committed = read_file(sample_path);
    } catch (const std::exception&) {
        std::printf("  (no committed sample at %s)\n", sample_path.c_str());
        ++failures;
        return;
    }
    std::string expected;
    for (int64_t i : select_sample(corpus))
        expected += sample_line(corpus, i) + "\n";
    expect("committed sample == select_sample(corpus)", committed == expected, 1);
}

void check_wordnet(const std::string& file) {
    auto t0 = std::chrono::steady_clock::now();
    LabeledData wn = load_wordnet_nouns(file);
    double read_s = seconds_since(t0);
    std::printf("WordNet nouns (%s)\n  read + parse %.3f s\n", file.c_str(), read_s);
    // Class sizes in lexicographer file order 03..28 (WordNet 3.0; noun.Tops: 51).
    const int64_t sizes[26] = {51,   6650, 7509, 11587, 3039, 2016, 2964,  5607, 1074,
                               428,  2573, 2624, 3209,  42,   1545, 11087, 641,  8030,
                               1061, 770,  1275, 437,   341,  3544, 2983,  1028};
    std::vector<int64_t> got(26, 0);
    for (int64_t l : wn.data.labels)
        ++got[static_cast<size_t>(l)];
    int64_t want_total = 0, want_test = 0;
    for (int c = 0; c < 26; ++c) {
        expect(std::string(kNounClasses[static_cast<size_t>(c)]).c_str(), got[c], sizes[c]);
        want_total += sizes[c];
        want_test += sizes[c] / 5;  // positions i < n with i % 5 == 4
    }
    expect("synsets", wn.data.size(), want_total);
    expect("glosses outside noun.Tops", wn.data.size() - got[0], 82064);
    expect("test (i % 5 == 4 within each class)", static_cast<int64_t>(wn.split.test.size()),
           want_test);
    expect("train", static_cast<int64_t>(wn.split.train.size()), want_total - want_test);
    TokenizedCorpus tok = tokenize_corpus(wn.data.texts, wn.data.mode);
    Vocab vocab = Vocab::build(tok, wn.split.train);
    std::printf("  vocabulary on the train split: %lld\n", static_cast<long long>(vocab.size()));
}

int make_sample(const std::string& out, const std::string& data_dir) {
    std::optional<std::string> dir = find_spam_corpus(data_dir);
    if (!dir) {
        std::fprintf(stderr, "text_data_check: no corpus under %s (run scripts/fetch_data.sh)\n",
                     data_dir.c_str());
        return 1;
    }
    TextDataset corpus = load_spam_corpus(*dir);
    std::string text;
    std::vector<int64_t> chosen = select_sample(corpus);
    for (int64_t i : chosen)
        text += sample_line(corpus, i) + "\n";
    write_file_atomic(out, text);
    std::printf("text_data_check: wrote %zu messages (%zu bytes) to %s\n", chosen.size(),
                text.size(), out.c_str());
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        std::vector<std::string> args(argv + 1, argv + argc);
        if (!args.empty() && args[0] == "--make-sample") {
            if (args.size() < 2 || args.size() > 3) {
                std::fprintf(stderr, "usage: text_data_check --make-sample FILE [DATA_DIR]\n");
                return 2;
            }
            return make_sample(args[1], args.size() == 3 ? args[2] : default_data_dir());
        }
        std::string data_dir = args.empty() ? default_data_dir() : args[0];
        std::vector<std::string> missing;
        if (auto dir = find_spam_corpus(data_dir))
            check_spam(*dir);
        else
            missing.push_back("SpamAssassin");
        if (auto file = find_wordnet_nouns(data_dir))
            check_wordnet(*file);
        else
            missing.push_back("WordNet data.noun");
        if (failures > 0) {
            std::printf("text_data_check: %d check(s) FAILED\n", failures);
            return 1;
        }
        if (!missing.empty()) {
            std::string what = missing[0];
            for (size_t i = 1; i < missing.size(); ++i)
                what += " and " + missing[i];
            std::printf(
                "text_data_check: skipped: %s not in %s (scripts/fetch_data.sh fetches it)\n",
                what.c_str(), data_dir.c_str());
            return 77;
        }
        std::printf("text_data_check: all checks passed\n");
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "text_data_check: %s\n", e.what());
        return 1;
    }
}
