// tests/examples/test_text_pipeline.cpp — the text classifier's text pipeline (text.h,
// json_lite.h): e-mail text extraction, tokenizer, vocabulary, encoding and batching, checked on
// hand-written strings against the spec in examples/text_classifier/text.h. No network, no corpus:
// the real-corpus counts are checked by text_data_check, the loaders by test_text_data.cpp.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "examples/text_classifier/io.h"
#include "examples/text_classifier/json_lite.h"
#include "examples/text_classifier/text.h"

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

std::string temp_path(const std::string& name) {
    return (fs::temp_directory_path() / (numbered("textclf_", ::getpid()) + "_" + name)).string();
}

}  // namespace

TEST_CASE("examples/text: tokens are maximal ASCII alphanumeric runs, lowercased") {
    CHECK(tokenize("Hello, WORLD! abc123 x_y 3.14 e-mail") ==
          Strings{"hello", "world", "abc123", "x", "y", "3", "14", "e", "mail"});
    CHECK(tokenize("MiXeD42CaSe") == Strings{"mixed42case"});
    CHECK(tokenize("a\tb\nc\r\nd  e") == Strings{"a", "b", "c", "d", "e"});
    CHECK(tokenize("").empty());
    CHECK(tokenize(" \n\t.,;!?<>").empty());
    // Every byte that is not [A-Za-z0-9] separates, punctuation included.
    CHECK(tokenize("<html><b>FREE</b>$$$money!!!") == Strings{"html", "b", "free", "b", "money"});
}

TEST_CASE("examples/text: non-ASCII, invalid UTF-8, U+FFFD and NUL bytes separate tokens") {
    SUBCASE("UTF-8 letters are not token bytes") {
        CHECK(tokenize("caf\xC3\xA9 na\xC3\xAFve") == Strings{"caf", "na", "ve"});
    }
    SUBCASE("U+FFFD (EF BF BD), what the corpus JSON holds for invalid bytes") {
        CHECK(tokenize("ab\xEF\xBF\xBD"
                       "cd\xEF\xBF\xBD\xEF\xBF\xBD") == Strings{"ab", "cd"});
    }
    SUBCASE("invalid UTF-8: lone continuation, truncated sequence, 0xFF") {
        CHECK(tokenize("x\x80y\xC3z\xFF\xFEw") == Strings{"x", "y", "z", "w"});
    }
    SUBCASE("NUL bytes inside the string") {
        std::string s("ab\0cd\0\0EF", 9);
        CHECK(tokenize(s) == Strings{"ab", "cd", "ef"});
    }
    SUBCASE("all 256 byte values: exactly the 62 alphanumerics are token bytes") {
        std::string all;
        for (int c = 0; c < 256; ++c) {
            all.push_back(static_cast<char>(c));
            all.push_back(' ');
        }
        Strings toks = tokenize(all, 1000);
        REQUIRE(toks.size() == 62);
        std::set<std::string> uniq(toks.begin(), toks.end());
        CHECK(uniq.size() == 36);  // A-Z and a-z lowercase to the same 26
        CHECK(toks.front() == "0");
        CHECK(toks.back() == "z");
    }
}

TEST_CASE("examples/text: only the first 512 tokens are kept") {
    std::string text;
    for (int i = 0; i < 600; ++i)
        text += numbered("w", i) + " ";
    Strings toks = tokenize(text);
    REQUIRE(toks.size() == 512);
    CHECK(toks.front() == "w0");
    CHECK(toks.back() == "w511");
    CHECK(tokenize(text, 3) == Strings{"w0", "w1", "w2"});
    CHECK_THROWS_AS(tokenize(text, 0), minidl::ValueError);
    SUBCASE("the cap counts the subject's tokens first") {
        Strings e = tokenize_document("Subject: s1 s2\n\n" + text, TextMode::Email);
        REQUIRE(e.size() == 512);
        CHECK(e[0] == "s1");
        CHECK(e[1] == "s2");
        CHECK(e[2] == "w0");
        CHECK(e.back() == "w509");
    }
}

TEST_CASE("examples/text: Subject line + body of an e-mail") {
    SUBCASE("header and body split at the first empty line") {
        std::string m = "From: a@b\nSubject: Hello there\nTo: c@d\n\nBody line\n\nmore";
        EmailParts p = split_email(m);
        CHECK(p.subject == " Hello there");
        CHECK(p.body == "Body line\n\nmore");
        CHECK(email_text(m) == " Hello there\nBody line\n\nmore");
        CHECK(tokenize_document(m, TextMode::Email) ==
              Strings{"hello", "there", "body", "line", "more"});
    }
    SUBCASE("Subject: matched case-insensitively") {
        CHECK(split_email("SUBJECT: up\n\nb").subject == " up");
        CHECK(split_email("subject:low\n\nb").subject == "low");
        CHECK(split_email("sUbJeCt: mixed\n\nb").subject == " mixed");
    }
    SUBCASE("only the first Subject line counts") {
        CHECK(split_email("Subject: one\nSubject: two\n\nb").subject == " one");
    }
    SUBCASE("folded continuation lines are not included") {
        std::string m = "Subject: first part\n  second part\nX: y\n\nbody";
        CHECK(split_email(m).subject == " first part");
        CHECK(tokenize_document(m, TextMode::Email) == Strings{"first", "part", "body"});
    }
    SUBCASE("a header that only contains Subject: is not a Subject line") {
        CHECK(split_email("X-Subject: no\nIn-Reply-Subject: no\n\nb").subject.empty());
        CHECK(split_email(" Subject: indented\n\nb").subject.empty());
    }
    SUBCASE("Subject lines in the body are body text") {
        EmailParts p = split_email("From: x\n\nSubject: in body");
        CHECK(p.subject.empty());
        CHECK(p.body == "Subject: in body");
        CHECK(email_text("From: x\n\nSubject: in body") == "\nSubject: in body");
    }
    SUBCASE("no empty line: all body, no subject") {
        std::string m = "Subject: looks like a header\nbut there is no blank line";
        EmailParts p = split_email(m);
        CHECK(p.subject.empty());
        CHECK(p.body == m);
        CHECK(email_text(m) == "\n" + m);
        CHECK(tokenize_document(m, TextMode::Email).front() == "subject");
    }
    SUBCASE("CRLF mail has no \"\\n\\n\": all body (the spec splits at \\n\\n only)") {
        std::string m = "Subject: crlf\r\n\r\nbody";
        CHECK(split_email(m).subject.empty());
        CHECK(split_email(m).body == m);
    }
    SUBCASE("the first line may be the Subject; an empty header has none") {
        CHECK(split_email("Subject: top\n\nb").subject == " top");
        EmailParts p = split_email("\n\nonly body");
        CHECK(p.subject.empty());
        CHECK(p.body == "only body");
    }
    SUBCASE("Plain mode tokenizes the whole string") {
        CHECK(tokenize_document("From: x\n\nbody", TextMode::Plain) ==
              Strings{"from", "x", "body"});
    }
}

TEST_CASE("examples/text: vocabulary keeps tokens seen >= 2 times, by count then token") {
    // Counts: the 5, b 3, a 3, zz 2 (twice in ONE document: occurrences, not document
    // frequency), c 2, once 1.
    std::vector<Strings> docs = {{"the", "b", "a", "zz", "zz", "once"},
                                 {"the", "the", "b", "a", "c"},
                                 {"the", "the", "b", "a", "c"}};
    Vocab v = Vocab::build(docs);
    CHECK(v.tokens() == Strings{"<pad>", "<unk>", "the", "a", "b", "c", "zz"});
    CHECK(v.size() == 7);
    CHECK(v.id("the") == 2);
    CHECK(v.id("zz") == 6);
    CHECK(v.id("once") == Vocab::kUnk);
    CHECK(v.id("never") == Vocab::kUnk);
    CHECK(v.token(3) == "a");
    CHECK_THROWS_AS(v.token(7), minidl::IndexError);
    CHECK_THROWS_AS(v.token(-1), minidl::IndexError);

    SUBCASE("min_count is an option") {
        CHECK(Vocab::build(docs, {.min_count = 1}).size() == 8);
        CHECK(Vocab::build(docs, {.min_count = 4}).tokens() == Strings{"<pad>", "<unk>", "the"});
    }
    SUBCASE("max_size truncates the sorted list, <pad> and <unk> included") {
        CHECK(Vocab::build(docs, {.max_size = 4}).tokens() ==
              Strings{"<pad>", "<unk>", "the", "a"});
        CHECK(Vocab::build(docs, {.max_size = 2}).size() == 2);
        CHECK_THROWS_AS(Vocab::build(docs, {.max_size = 1}), minidl::ValueError);
    }
    SUBCASE("the default cap is 30,000 entries") {
        // 40,000 distinct tokens with counts 2..: the 29,998 most frequent survive.
        std::vector<std::pair<std::string, int64_t>> counts;
        for (int i = 0; i < 40000; ++i)
            counts.emplace_back(numbered("t", i), 2 + i % 1000);
        Vocab big = Vocab::from_counts(counts);
        REQUIRE(big.size() == 30000);
        CHECK(big.token(2) == "t10999");  // count 1001, the smallest token string among them
        // The last kept entry: the count/ token order cut at exactly 29,998 words.
        std::vector<std::pair<int64_t, std::string>> sorted;
        for (auto& [t, c] : counts)
            sorted.emplace_back(-c, t);
        std::sort(sorted.begin(), sorted.end());
        CHECK(big.token(29999) == sorted[29997].second);
        CHECK(big.id(sorted[29998].second) == Vocab::kUnk);
    }
    SUBCASE("duplicate tokens are rejected") {
        CHECK_THROWS_AS(Vocab::from_counts({{"a", 2}, {"a", 3}}), minidl::ValueError);
    }
}

TEST_CASE("examples/text: encoding maps unknown tokens to 1 and an empty document to [0]") {
    Vocab v = Vocab::build(std::vector<Strings>{{"spam", "spam", "ham", "ham", "eggs", "eggs"}});
    REQUIRE(v.tokens() == Strings{"<pad>", "<unk>", "eggs", "ham", "spam"});
    CHECK(v.encode({"spam", "bacon", "eggs"}) == Ids{4, 1, 2});
    CHECK(v.encode({}) == Ids{0});

    std::vector<std::string> texts = {"Spam ham", "", "!!! ???", "bacon eggs SPAM spam"};
    TokenizedCorpus corpus = tokenize_corpus(texts, TextMode::Plain);
    CHECK(corpus.num_docs() == 4);
    CHECK(corpus.doc_tokens(3) == Strings{"bacon", "eggs", "spam", "spam"});
    CHECK(corpus.types == Strings{"spam", "ham", "bacon", "eggs"});  // first appearance
    Ids labels = {1, 0, 0, 1};
    Ids docs = {0, 1, 2, 3};
    EncodedDocs enc = encode_docs(corpus, v, docs, labels);
    CHECK(enc.ids == Ids{4, 3, 0, 0, 1, 2, 4, 4});
    CHECK(enc.offsets == Ids{0, 2, 3, 4, 8});
    CHECK(enc.labels == labels);
    SUBCASE("a subset, in the order given") {
        Ids some = {3, 0};
        EncodedDocs e2 = encode_docs(corpus, v, some, labels);
        CHECK(e2.ids == Ids{1, 2, 4, 4, 4, 3});
        CHECK(e2.offsets == Ids{0, 4, 6});
        CHECK(e2.labels == Ids{1, 1});
    }
    SUBCASE("bad document indices and label counts are caught") {
        Ids bad = {4};
        CHECK_THROWS_AS(encode_docs(corpus, v, bad, labels), minidl::IndexError);
        Ids short_labels = {1};
        CHECK_THROWS_AS(encode_docs(corpus, v, docs, short_labels), minidl::ValueError);
    }
}

TEST_CASE("examples/text: tokenize_corpus is the per-document tokenizer, for any thread count") {
    // More documents than one block (256) so that the block merge is exercised.
    std::vector<std::string> texts;
    for (int i = 0; i < 700; ++i)
        texts.push_back(numbered("Subject: s", i % 7) + "\n\nword" + std::to_string(i % 301) +
                        numbered(" Shared w", i) + " x\xFF" + "y");
    texts.push_back("no blank line at all");
    int threads = minidl::get_num_threads();
    minidl::set_num_threads(1);
    TokenizedCorpus one = tokenize_corpus(texts, TextMode::Email);
    minidl::set_num_threads(2);
    TokenizedCorpus two = tokenize_corpus(texts, TextMode::Email);
    minidl::set_num_threads(threads);
    CHECK(one.types == two.types);
    CHECK(one.tokens == two.tokens);
    CHECK(one.offsets == two.offsets);
    REQUIRE(one.num_docs() == static_cast<int64_t>(texts.size()));
    for (int64_t d = 0; d < one.num_docs(); ++d)
        REQUIRE(one.doc_tokens(d) == tokenize_document(texts[d], TextMode::Email));
    // Types are numbered by first appearance in the corpus.
    std::set<std::string> seen;
    Strings order;
    for (const auto& t : texts)
        for (const auto& tok : tokenize_document(t, TextMode::Email))
            if (seen.insert(tok).second) order.push_back(tok);
    CHECK(one.types == order);
}

TEST_CASE("examples/text: batches are (ids, offsets, labels) for EmbeddingBag") {
    EncodedDocs data;
    data.ids = {5, 6, 7, 0, 8, 9};
    data.offsets = {0, 3, 4, 6};
    data.labels = {1, 0, 1};
    Ids rows = {2, 0};
    Batch b = make_batch(data, rows);
    CHECK(b.size == 2);
    CHECK(b.ids.shape() == minidl::Shape{5});
    CHECK(b.ids.dtype() == minidl::DType::I64);
    CHECK(b.ids.to_vector<int64_t>() == Ids{8, 9, 5, 6, 7});
    CHECK(b.offsets.to_vector<int64_t>() == Ids{0, 2});
    CHECK(b.labels.to_vector<int64_t>() == Ids{1, 1});
    Ids bad = {3};
    CHECK_THROWS_AS(make_batch(data, bad), minidl::IndexError);
    CHECK_THROWS_AS(make_batch(data, Ids{}), minidl::ValueError);

    SUBCASE("Batcher: consecutive batches, the last one smaller") {
        Batcher batcher(data, 2);
        CHECK(batcher.num_batches() == 2);
        CHECK(batcher.batch(0).labels.to_vector<int64_t>() == Ids{1, 0});
        Batch last = batcher.batch(1);
        CHECK(last.size == 1);
        CHECK(last.ids.to_vector<int64_t>() == Ids{8, 9});
        CHECK(last.offsets.to_vector<int64_t>() == Ids{0});
        CHECK_THROWS_AS(batcher.batch(2), minidl::IndexError);
        CHECK_THROWS_AS(Batcher(data, 0), minidl::ValueError);
    }
    SUBCASE("Batcher: a seeded shuffle is a permutation and is reproducible") {
        EncodedDocs many;
        many.offsets = {0};
        for (int i = 0; i < 50; ++i) {
            many.ids.push_back(i);
            many.offsets.push_back(i + 1);
            many.labels.push_back(i % 2);
        }
        Batcher a(many, 8), b2(many, 8);
        minidl::Generator g1(7), g2(7);
        a.shuffle(g1);
        b2.shuffle(g2);
        CHECK(a.order() == b2.order());
        Ids sorted = a.order();
        std::sort(sorted.begin(), sorted.end());
        for (int i = 0; i < 50; ++i)
            REQUIRE(sorted[i] == i);
        CHECK(a.order() != sorted);  // 50! orders: the identity would mean no shuffle happened
        CHECK(a.num_batches() == 7);
        // Batch k holds the documents order[8k .. 8k+8).
        Ids ids3 = a.batch(3).ids.to_vector<int64_t>();
        CHECK(ids3 == Ids(a.order().begin() + 24, a.order().begin() + 32));
        Batcher c(many, 8);
        c.set_order(a.order());
        CHECK(c.batch(3).ids.to_vector<int64_t>() == ids3);
        CHECK_THROWS_AS(c.set_order(Ids(50, 0)), minidl::ValueError);
        CHECK_THROWS_AS(c.set_order(Ids{0, 1}), minidl::ValueError);
    }
}

TEST_CASE("examples/text: vocab.txt holds the token of id k-1 on line k") {
    Vocab v = Vocab::build(std::vector<Strings>{{"b", "b", "a", "a", "a"}});
    std::string path = temp_path("vocab.txt");
    v.save(path);
    CHECK(read_file(path) == "<pad>\n<unk>\na\nb\n");
    Vocab back = Vocab::load(path);
    CHECK(back.tokens() == v.tokens());
    CHECK(back.id("b") == 3);

    SUBCASE("malformed files are rejected with the file and line") {
        write_file_atomic(path, "<pad>\n<unk>\na\n\nb\n");
        CHECK_THROWS_WITH_AS(Vocab::load(path), doctest::Contains("vocab.txt:4: empty line"),
                             minidl::FormatError);
        write_file_atomic(path, "<unk>\n<pad>\na\n");
        CHECK_THROWS_WITH_AS(Vocab::load(path), doctest::Contains("<pad> and <unk>"),
                             minidl::FormatError);
        write_file_atomic(path, "<pad>\n<unk>\na\na\n");
        CHECK_THROWS_WITH_AS(Vocab::load(path), doctest::Contains("'a' appears twice"),
                             minidl::FormatError);
    }
    fs::remove(path);
    CHECK_THROWS_AS(Vocab::load(path), minidl::Error);
}

TEST_CASE("examples/text: json_lite decodes the corpus entry shape exactly as nlohmann does") {
    const std::vector<std::string> good = {
        R"({"id":"00001","group":"easy-ham-1","checksum":{"type":"MD5","value":"ab"},"text":"x"})",
        R"( { "text" : "tab\tnl\nq\"bs\\sl\/bf\bff\fcr\r" } )",
        R"({"text":"\u00e9\u4e2d\ud83d\ude00\ufffd\u0000end"})",
        "{\"text\":\"raw UTF-8 caf\xC3\xA9 \xEF\xBF\xBD\"}",
        R"({})",
        R"({"a":{},"b":{"c":{"d":"deep"}}})",
    };
    for (const std::string& doc : good) {
        CAPTURE(doc);
        JsonFields fields;
        REQUIRE(parse_string_object(doc, fields));
        nlohmann::json j = nlohmann::json::parse(doc);
        if (j.contains("text")) {
            auto it = std::find_if(fields.begin(), fields.end(),
                                   [](const auto& f) { return f.first == "text"; });
            REQUIRE(it != fields.end());
            CHECK(it->second == j["text"].get<std::string>());
        }
    }
    JsonFields fields;
    REQUIRE(parse_string_object(good[0], fields));
    CHECK(fields == JsonFields{{"id", "00001"},
                               {"group", "easy-ham-1"},
                               {"checksum.type", "MD5"},
                               {"checksum.value", "ab"},
                               {"text", "x"}});
    const std::vector<std::string> rejected = {
        R"({"id":1})",                  // a number: valid JSON, not this shape
        R"({"a":["x"]})",               // an array
        R"({"text":"unterminated})",    // no closing quote
        R"({"text":"bad \x escape"})",  // unknown escape
        R"({"text":"\ud83d alone"})",   // lone high surrogate
        R"({"text":"\ude00"})",         // lone low surrogate
        R"({"text":"\u12G4"})",         // bad hex
        "{\"text\":\"raw\nnewline\"}",  // control character inside a string
        R"({"text":"x"} trailing)",     // bytes after the object
        R"({"text":"x",})",             // trailing comma
        R"({"text" "x"})",              // missing colon
        R"(["text"])",                  // not an object
        "",
    };
    for (const std::string& doc : rejected) {
        CAPTURE(doc);
        CHECK_FALSE(parse_string_object(doc, fields));
    }
}

TEST_CASE("examples/text: json_lite accepts nothing that nlohmann rejects or reads differently") {
    // Seeded mutations of a corpus-shaped entry over an ASCII alphabet rich in JSON syntax
    // (json_lite does not validate UTF-8, so non-ASCII bytes are left out on purpose). Whenever
    // json_lite accepts, nlohmann must accept too and decode the same fields.
    const std::string base =
        R"({"id":"00001","group":"spam-1","checksum":{"type":"MD5","value":"ab"},)"
        R"("text":"Subject: hi\n\nbody \"q\" \\ \u00e9\ud83d\ude00 end"})";
    const std::string alphabet = "\"\\{}:,[]u0aDd8 nxt/";
    minidl::Generator gen(1234);
    int accepted = 0;
    for (int trial = 0; trial < 20000; ++trial) {
        std::string doc = base;
        int edits = 1 + static_cast<int>(gen.randint(3));
        for (int e = 0; e < edits; ++e) {
            auto pos = static_cast<size_t>(gen.randint(static_cast<int64_t>(doc.size())));
            char c = alphabet[static_cast<size_t>(gen.randint(alphabet.size()))];
            switch (gen.randint(3)) {
                case 0:
                    doc[pos] = c;
                    break;
                case 1:
                    doc.insert(pos, 1, c);
                    break;
                default:
                    doc.erase(pos, 1);
                    break;
            }
        }
        JsonFields fields;
        if (!parse_string_object(doc, fields)) continue;
        ++accepted;
        CAPTURE(doc);
        nlohmann::json j;
        REQUIRE_NOTHROW(j = nlohmann::json::parse(doc));
        for (const auto& [name, value] : fields) {
            // "outer.inner" -> /outer/inner (the alphabet has no '.', so a dot is the nesting).
            nlohmann::json::json_pointer ptr;
            size_t dot = name.find('.');
            ptr /= name.substr(0, dot);
            if (dot != std::string::npos) ptr /= name.substr(dot + 1);
            CAPTURE(name);
            REQUIRE(j.contains(ptr));
            // Duplicate keys: nlohmann keeps the last; compare only keys that occur once.
            auto same = [&](const auto& f) { return f.first == name; };
            if (std::count_if(fields.begin(), fields.end(), same) == 1)
                CHECK(j[ptr].get<std::string>() == value);
        }
    }
    CHECK(accepted > 100);  // the mutations must leave many documents valid, or this tests little
}
