// tests/examples/test_text_data.cpp — the text classifier's data loaders (corpus.h, wordnet.h):
// the committed offline sample and its splits, the full-corpus folder layout (built here in a
// temporary folder), the user's TSV / JSONL files and their error messages, and WordNet lines.
// No network: the real corpora's counts are checked by text_data_check (skipped without them).
//
// The sample's split and vocabulary sizes below were computed by the independent Python
// implementation of the spec, examples/text_classifier/text_pipeline_reference.py --sample
// (--val for the val counts).
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/check.h"
#include "examples/text_classifier/corpus.h"
#include "examples/text_classifier/io.h"
#include "examples/text_classifier/text.h"
#include "examples/text_classifier/wordnet.h"

using namespace textclf;
using Strings = std::vector<std::string>;
using Ids = std::vector<int64_t>;
namespace fs = std::filesystem;

namespace {

// prefix followed by the decimal i ("w" + std::to_string(i) trips a false GCC 12 -Wrestrict).
std::string numbered(const char* prefix, int64_t i) {
    std::string s(prefix);
    s += std::to_string(i);
    return s;
}

// A fresh folder under the system temp dir, removed with its contents at scope exit.
struct TempDir {
    fs::path path;
    TempDir() {
        std::string pattern = (fs::temp_directory_path() / "textclf_XXXXXX").string();
        REQUIRE(::mkdtemp(pattern.data()) != nullptr);
        path = pattern;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    std::string write(const std::string& rel, const std::string& contents) const {
        fs::path p = path / rel;
        fs::create_directories(p.parent_path());
        write_file_atomic(p.string(), contents);
        return p.string();
    }
};

std::string md5_like(int seed) {
    std::string s;
    for (int i = 0; i < 32; ++i)
        s.push_back("0123456789abcdef"[(seed * 7 + i * 13) % 16]);
    return s;
}

bool is_test_digit(const std::string& md5) {
    return md5.back() == '0' || md5.back() == '1' || md5.back() == '2';
}

}  // namespace

TEST_CASE("examples/text: the committed sample loads, labelled and ordered like the corpus") {
    TextDataset s = load_spam_corpus(default_sample_path());
    REQUIRE(s.size() == 288);
    CHECK(s.is_sample);
    CHECK(s.mode == TextMode::Email);
    CHECK(s.classes == Strings{"ham", "spam"});
    REQUIRE(s.groups.size() == 288);
    int64_t spam = 0;
    for (int64_t i = 0; i < s.size(); ++i) {
        CAPTURE(i);
        const std::string& g = s.groups[i];
        REQUIRE(std::find(kSpamGroups.begin(), kSpamGroups.end(), g) != kSpamGroups.end());
        CHECK(s.labels[i] == (g.starts_with("spam") ? 1 : 0));
        CHECK(s.md5s[i].size() == 32);
        CHECK(!s.texts[i].empty());
        spam += s.labels[i];
        if (i > 0) {  // group order, then id order
            auto rank = [](const std::string& grp) {
                return std::find(kSpamGroups.begin(), kSpamGroups.end(), grp) - kSpamGroups.begin();
            };
            bool ordered = rank(s.groups[i - 1]) < rank(g) ||
                           (s.groups[i - 1] == g && s.ids[i - 1] < s.ids[i]);
            CHECK(ordered);
        }
    }
    CHECK(spam == 144);
    for (std::string_view g : kSpamGroups)
        CHECK(std::count(s.groups.begin(), s.groups.end(), g) == (g.starts_with("spam") ? 72 : 48));

    SUBCASE("the folder holding the sample loads the same") {
        TextDataset again = load_spam_corpus(fs::path(default_sample_path()).parent_path());
        CHECK(again.texts == s.texts);
        CHECK(again.md5s == s.md5s);
    }
    SUBCASE("without a fetched corpus, the default is the sample, and it says so") {
        TempDir empty;
        const char* old = std::getenv("DATA_DIR");
        std::string saved = old != nullptr ? old : "";
        ::setenv("DATA_DIR", empty.path.c_str(), 1);
        CHECK(default_data_dir() == empty.path.string());
        TextDataset fallback = load_spam_corpus_or_sample();
        if (old != nullptr)
            ::setenv("DATA_DIR", saved.c_str(), 1);
        else
            ::unsetenv("DATA_DIR");
        CHECK(fallback.is_sample);
        CHECK(fallback.texts == s.texts);
        // An explicit folder is used as given: nothing there is an error, not the sample.
        CHECK_THROWS_AS(load_spam_corpus_or_sample(empty.path.string()), minidl::Error);
    }
}

TEST_CASE("examples/text: sample splits, val hold-out and vocabularies are deterministic") {
    TextDataset s = load_spam_corpus(default_sample_path());
    TokenizedCorpus tok = tokenize_corpus(s.texts, s.mode);

    Split random = spam_split(s, SplitKind::Random);
    CHECK(random.train.size() == 192);
    CHECK(random.test.size() == 96);
    CHECK(random.val.empty());
    for (int64_t i : random.test)
        CHECK(is_test_digit(s.md5s[i]));
    for (int64_t i : random.train)
        CHECK_FALSE(is_test_digit(s.md5s[i]));
    Vocab vr = Vocab::build(tok, random.train);
    CHECK(vr.size() == 3546);
    CHECK(Strings(vr.tokens().begin(), vr.tokens().begin() + 7) ==
          Strings{"<pad>", "<unk>", "the", "to", "a", "and", "of"});
    EncodedDocs enc = encode_docs(tok, vr, random.train, s.labels);
    CHECK(enc.ids.size() == 47785);  // kept tokens of the 192 training messages

    Split temporal = spam_split(s, SplitKind::Temporal);
    CHECK(temporal.train.size() == 168);
    CHECK(temporal.test.size() == 120);
    for (int64_t i : temporal.test)
        CHECK((s.groups[i] == "easy-ham-2" || s.groups[i] == "spam-2"));
    CHECK(Vocab::build(tok, temporal.train).size() == 3426);

    Split rv = spam_split(s, SplitKind::Random, /*val=*/true);
    CHECK(rv.train.size() == 177);
    CHECK(rv.val.size() == 15);
    CHECK(rv.test == random.test);
    for (int64_t i : rv.val)
        CHECK(s.md5s[i].back() == '3');
    Split tv = spam_split(s, SplitKind::Temporal, /*val=*/true);
    CHECK(tv.train.size() == 158);
    CHECK(tv.val.size() == 10);

    CHECK(parse_split_kind("random") == SplitKind::Random);
    CHECK(parse_split_kind("temporal") == SplitKind::Temporal);
    CHECK_THROWS_AS(parse_split_kind("md5"), minidl::ValueError);
    TextDataset plain;
    plain.texts = {"x"};
    plain.labels = {0};
    CHECK_THROWS_AS(spam_split(plain, SplitKind::Random), minidl::ValueError);
}

TEST_CASE("examples/text: the full-corpus layout is read from the .json entries") {
    TempDir tmp;
    const std::string data = "spam-assassin/data/";
    // Two entries per group, written out of order; the .txt twin must be ignored.
    int seed = 0;
    std::vector<std::pair<std::string, std::string>> expected;  // (group, md5) in corpus order
    for (std::string_view g : kSpamGroups) {
        std::string group(g);
        for (const char* id : {"00002", "00001"}) {
            std::string md5 = md5_like(seed++);
            nlohmann::json entry = {
                {"id", id},
                {"group", group},
                {"checksum", {{"type", "MD5"}, {"value", md5}}},
                {"text", "Subject: " + group + " " + id + "\n\nbody \xEF\xBF\xBD"}};
            std::string stem = data + group + "/" + id + "." + md5;
            tmp.write(stem + ".json", entry.dump());
            tmp.write(stem + ".txt", "not this text");
        }
        expected.emplace_back(group, md5_like(seed - 1));  // 00001 sorts first
        expected.emplace_back(group, md5_like(seed - 2));
    }
    std::optional<std::string> dir = find_spam_corpus(tmp.path.string());
    REQUIRE(dir.has_value());
    CHECK(fs::equivalent(*dir, tmp.path / "spam-assassin/data"));
    CHECK(find_spam_corpus((tmp.path / "spam-assassin").string()) == dir);

    TextDataset c = load_spam_corpus(tmp.path.string());
    REQUIRE(c.size() == 10);
    CHECK_FALSE(c.is_sample);
    for (int64_t i = 0; i < 10; ++i) {
        CAPTURE(i);
        CHECK(c.groups[i] == expected[i].first);
        CHECK(c.md5s[i] == expected[i].second);
        CHECK(c.ids[i] == (i % 2 == 0 ? "00001" : "00002"));
        CHECK(c.texts[i] == "Subject: " + c.groups[i] + " " + c.ids[i] + "\n\nbody \xEF\xBF\xBD");
        CHECK(c.labels[i] == (i >= 6 ? 1 : 0));
    }
    CHECK(tokenize_document(c.texts[0], c.mode) == Strings{"easy", "ham", "1", "00001", "body"});

    SUBCASE("valid JSON of another shape is read too (general parser)") {
        std::string md5 = md5_like(99);
        tmp.write(data + "spam-2/00003." + md5 + ".json",
                  "{\"id\": 3, \"group\": \"spam-2\", \"extra\": [1, 2.5, null],\n"
                  " \"text\": \"Subject: odd\\n\\nshape\"}");
        TextDataset c2 = load_spam_corpus(tmp.path.string());
        REQUIRE(c2.size() == 11);
        CHECK(c2.texts.back() == "Subject: odd\n\nshape");
        CHECK(c2.md5s.back() == md5);
    }
    SUBCASE("malformed entries are rejected, naming the file") {
        SUBCASE("file name") {
            tmp.write(data + "spam-1/readme.json", "{}");
            CHECK_THROWS_WITH_AS(load_spam_corpus(tmp.path.string()),
                                 doctest::Contains("readme.json: file name is not"),
                                 minidl::FormatError);
        }
        SUBCASE("invalid JSON") {
            tmp.write(data + "spam-1/00009." + md5_like(50) + ".json", "{\"text\": \"x\"");
            std::string what = "00009." + md5_like(50) + ".json: not valid JSON";
            CHECK_THROWS_WITH_AS(load_spam_corpus(tmp.path.string()),
                                 doctest::Contains(what.c_str()), minidl::FormatError);
        }
        SUBCASE("group differs from the folder") {
            tmp.write(data + "spam-1/00009." + md5_like(51) + ".json",
                      R"({"group":"easy-ham-1","text":"x"})");
            CHECK_THROWS_WITH_AS(load_spam_corpus(tmp.path.string()),
                                 doctest::Contains("differs from its folder spam-1"),
                                 minidl::FormatError);
        }
        SUBCASE("checksum differs from the file name") {
            tmp.write(data + "spam-1/00009." + md5_like(52) + ".json",
                      R"({"group":"spam-1","checksum":{"value":"00"},"text":"x"})");
            CHECK_THROWS_WITH_AS(load_spam_corpus(tmp.path.string()),
                                 doctest::Contains("differs from the MD5 in the file name"),
                                 minidl::FormatError);
        }
        SUBCASE("no text") {
            tmp.write(data + "spam-1/00009." + md5_like(53) + ".json", R"({"group":"spam-1"})");
            CHECK_THROWS_WITH_AS(load_spam_corpus(tmp.path.string()),
                                 doctest::Contains("no string field \"text\""),
                                 minidl::FormatError);
        }
    }
    SUBCASE("nothing loadable") {
        TempDir empty;
        CHECK_FALSE(find_spam_corpus(empty.path.string()).has_value());
        CHECK_THROWS_WITH_AS(load_spam_corpus(empty.path.string()),
                             doctest::Contains("nothing to load"), minidl::Error);
    }
}

TEST_CASE("examples/text: TSV files are label<TAB>text, with errors naming file and line") {
    std::string tsv = "label\ttext\nspam\tWin a prize\r\nham\tlunch\tat noon\n\nspam\t\n";
    std::vector<LabeledRow> rows = parse_tsv(tsv, "train.tsv");
    REQUIRE(rows.size() == 3);
    CHECK(rows[0].label == "spam");
    CHECK(rows[0].text == "Win a prize");  // CR of a CRLF line dropped
    CHECK(rows[0].line == 2);
    CHECK(rows[1].text == "lunch\tat noon");  // only the first TAB splits
    CHECK(rows[2].text.empty());
    CHECK(rows[2].line == 5);
    // "label<TAB>text" is a header only on the first line.
    CHECK(parse_tsv("a\tx\nlabel\ttext\n", "f.tsv").size() == 2);

    CHECK_THROWS_WITH_AS(parse_tsv("ham\tok\nham\tok\nno tab here\n", "train.tsv"),
                         doctest::Contains("train.tsv:3: no TAB"), minidl::FormatError);
    CHECK_THROWS_WITH_AS(parse_tsv("\ttext without label\n", "t.tsv"),
                         doctest::Contains("t.tsv:1: empty label"), minidl::FormatError);
}

TEST_CASE("examples/text: JSONL files hold {label, text} objects, with errors naming the line") {
    std::string jsonl = R"({"label": "spam", "text": "Win\nnow"})"
                        "\n\n"
                        R"({"text": "seven", "label": 7, "extra": true})"
                        "\n";
    std::vector<LabeledRow> rows = parse_jsonl(jsonl, "d.jsonl");
    REQUIRE(rows.size() == 2);
    CHECK(rows[0].label == "spam");
    CHECK(rows[0].text == "Win\nnow");
    CHECK(rows[1].label == "7");
    CHECK(rows[1].line == 3);

    auto fails = [](const std::string& line2, const std::string& what) {
        std::string doc = R"({"label":"a","text":"ok"})"
                          "\n" +
                          line2 + "\n";
        CAPTURE(line2);
        CHECK_THROWS_WITH_AS(parse_jsonl(doc, "d.jsonl"), doctest::Contains(what.c_str()),
                             minidl::FormatError);
    };
    fails(R"({"label": "a", "text": "unterminated)", "d.jsonl:2: not valid JSON");
    fails(R"(["a", "b"])", "d.jsonl:2: expected an object");
    fails(R"({"label": "a"})", "d.jsonl:2: \"text\" missing");
    fails(R"({"label": "a", "text": 5})", "d.jsonl:2: \"text\" missing or not a string");
    fails(R"({"text": "x"})", "d.jsonl:2: \"label\" missing");
    fails(R"({"label": 1.5, "text": "x"})", "d.jsonl:2: \"label\" missing or neither");
    fails(R"({"label": "", "text": "x"})", "d.jsonl:2: empty label");
}

TEST_CASE("examples/text: user files get class ids from the sorted training labels") {
    std::vector<LabeledRow> train = {
        {"spam", "a", 1}, {"ham", "b", 2}, {"9", "c", 3}, {"10", "d", 4}, {"ham", "e", 5}};
    std::vector<LabeledRow> test = {{"ham", "x", 1}, {"10", "y", 2}};
    LabeledData d = make_labeled_data(train, "train.tsv", test, "test.tsv");
    CHECK(d.data.classes == Strings{"10", "9", "ham", "spam"});  // byte order
    CHECK(d.data.labels == Ids{3, 2, 1, 0, 2, 2, 0});
    CHECK(d.split.train == Ids{0, 1, 2, 3, 4});
    CHECK(d.split.test == Ids{5, 6});
    CHECK(d.data.texts[5] == "x");
    CHECK(d.data.mode == TextMode::Plain);

    std::vector<LabeledRow> bad_test = {{"ham", "x", 1}, {"eggs", "y", 2}};
    CHECK_THROWS_WITH_AS(make_labeled_data(train, "train.tsv", bad_test, "test.tsv"),
                         doctest::Contains("test.tsv:2: label \"eggs\" does not occur"),
                         minidl::FormatError);
    CHECK_THROWS_AS(make_labeled_data({}, "train.tsv", test, "test.tsv"), minidl::FormatError);

    SUBCASE("val holds out training rows i % 16 == 3") {
        std::vector<LabeledRow> many;
        for (int i = 0; i < 40; ++i)
            many.push_back({i % 2 ? "a" : "b", numbered("t", i), i + 1});
        LabeledData v = make_labeled_data(many, "tr", many, "te", true);
        CHECK(v.split.val == Ids{3, 19, 35});
        CHECK(v.split.train.size() == 37);
    }
    SUBCASE("files, by extension") {
        TempDir tmp;
        std::string tr = tmp.write("train.tsv", "pos\tgood film\nneg\tbad film\n");
        std::string te = tmp.write("test.jsonl", R"({"label":"neg","text":"awful"})"
                                                 "\n");
        LabeledData f = load_labeled_files(tr, te);
        CHECK(f.data.classes == Strings{"neg", "pos"});
        CHECK(f.data.labels == Ids{1, 0, 0});
        CHECK(f.data.texts == Strings{"good film", "bad film", "awful"});
        CHECK_THROWS_AS(load_labeled_files(tr, tmp.path.string() + "/missing.tsv"), minidl::Error);
    }
}

TEST_CASE("examples/text: WordNet data.noun lines give the gloss and the lexicographer class") {
    std::optional<Synset> s = parse_wordnet_line(
        "00006024 03 n 01 heterotroph 0 001 @ 00004475 n 0000 | an organism that depends on "
        "complex organic substances for nutrition  ",
        "data.noun", 40);
    REQUIRE(s.has_value());
    CHECK(s->offset == "00006024");
    CHECK(s->lex_file == 3);
    CHECK(s->gloss == "an organism that depends on complex organic substances for nutrition");
    s = parse_wordnet_line(
        "02084071 05 n 02 dog 0 domestic_dog 0 001 @ 02083346 n 0000 | a member of the genus "
        "Canis; \"the dog barked all night\"  ",
        "data.noun", 41);
    REQUIRE(s.has_value());
    CHECK(s->lex_file == 5);
    CHECK(kNounClasses[static_cast<size_t>(s->lex_file - 3)] == "noun.animal");
    CHECK(s->gloss == "a member of the genus Canis; \"the dog barked all night\"");

    CHECK_FALSE(parse_wordnet_line("  1 This software and database is being provided", "f", 1));
    CHECK_FALSE(parse_wordnet_line("", "f", 2));

    auto fails = [](const std::string& line, const std::string& what) {
        CAPTURE(line);
        CHECK_THROWS_WITH_AS(parse_wordnet_line(line, "data.noun", 7),
                             doctest::Contains(what.c_str()), minidl::FormatError);
    };
    fails("00006024 02 n 01 x 0 000 | gloss", "data.noun:7: lexicographer file 02");
    fails("00006024 29 n 01 x 0 000 | gloss", "lexicographer file 29");
    fails("00006024 3 n 01 x 0 000 | gloss", "field 2 is not a 2-digit");
    fails("6024 03 n 01 x 0 000 | gloss", "field 1 is not an 8-digit");
    fails("00006024 03 v 01 x 0 000 | gloss", "synset type \"v\"");
    fails("00006024 03 n 01 x 0 000 no gloss", "no gloss");
    fails("garbage", "field 1");
}

TEST_CASE("examples/text: WordNet split puts position i % 5 == 4 of each class in test") {
    std::string contents = "  1 licence line\n  2 another licence line\n";
    // 7 synsets of noun.act (04) interleaved with 6 of noun.time (28).
    for (int i = 0; i < 13; ++i) {
        bool act = i % 2 == 0;
        char buf[128];
        std::snprintf(buf, sizeof buf, "%08d %s n 01 w%d 0 000 | gloss number %d  \n", 1000 + i,
                      act ? "04" : "28", i, i);
        contents += buf;
    }
    LabeledData wn = parse_wordnet_nouns(contents, "mini.noun");
    REQUIRE(wn.data.size() == 13);
    CHECK(wn.data.classes.size() == 26);
    CHECK(wn.data.classes.front() == "noun.Tops");
    CHECK(wn.data.classes.back() == "noun.time");
    CHECK(wn.data.labels[0] == 1);   // noun.act
    CHECK(wn.data.labels[1] == 25);  // noun.time
    CHECK(wn.data.texts[3] == "gloss number 3");
    // noun.act is at indices 0, 2, ..., 12: its 5th (position 4) is index 8; noun.time at
    // 1, 3, ..., 11: its 5th is index 9.
    CHECK(wn.split.test == Ids{8, 9});
    CHECK(wn.split.train.size() == 11);
    CHECK_THROWS_AS(parse_wordnet_nouns("  only licence\n", "empty.noun"), minidl::FormatError);
    TempDir tmp;
    tmp.write("wordnet-root/usr/share/wordnet/data.noun", contents);
    CHECK(find_wordnet_nouns(tmp.path.string()).has_value());
    CHECK(load_wordnet_nouns(tmp.path.string()).data.texts == wn.data.texts);
    TempDir empty;
    CHECK_THROWS_AS(load_wordnet_nouns(empty.path.string()), minidl::Error);
}
