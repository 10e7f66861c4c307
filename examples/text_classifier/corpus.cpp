// examples/text_classifier/corpus.cpp — SpamAssassin loader (full cache and offline sample), its
// splits, the sample selection, and the TSV / JSONL readers. The rules are in corpus.h.
#include "examples/text_classifier/corpus.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>

#include "core/check.h"
#include "core/parallel.h"
#include "examples/text_classifier/io.h"
#include "examples/text_classifier/json_lite.h"

namespace textclf {

namespace fs = std::filesystem;
using minidl::Error;
using minidl::FormatError;
using minidl::ValueError;
using minidl::detail::concat;
using json = nlohmann::json;

namespace {

constexpr std::string_view kSampleFile = "spam_sample.jsonl";

bool is_hex32(std::string_view s) {
    if (s.size() != 32) return false;
    return std::all_of(s.begin(), s.end(),
                       [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

bool is_spam_group(std::string_view group) {
    return group.starts_with("spam");
}

bool is_group(std::string_view group) {
    return std::find(kSpamGroups.begin(), kSpamGroups.end(), group) != kSpamGroups.end();
}

// "NNNNN.<md5>.json" -> (id, md5); nullopt for any other name.
std::optional<std::pair<std::string, std::string>> parse_entry_name(std::string_view name) {
    if (!name.ends_with(".json")) return std::nullopt;
    name.remove_suffix(5);
    size_t dot = name.find('.');
    if (dot == std::string_view::npos || dot == 0) return std::nullopt;
    std::string_view id = name.substr(0, dot), md5 = name.substr(dot + 1);
    if (!std::all_of(id.begin(), id.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return std::nullopt;
    if (!is_hex32(md5)) return std::nullopt;
    return std::pair{std::string(id), std::string(md5)};
}

// JSON text -> json, or a FormatError "<where>: not valid JSON: ...". nlohmann::json ends its
// input at a NUL byte and would accept "{...}\0<anything>"; a raw NUL is never valid JSON (not
// whitespace, and escaped inside strings), so one is refused before parsing.
json parse_json_text(std::string_view text, const std::string& where) {
    if (const size_t nul = text.find('\0'); nul != std::string_view::npos)
        throw FormatError(concat(where, ": not valid JSON: NUL byte at offset ", nul));
    try {
        return json::parse(text);
    } catch (const json::exception& e) {
        throw FormatError(concat(where, ": not valid JSON: ", e.what()));
    }
}

void start_spam_dataset(TextDataset& d, std::string source, bool is_sample) {
    d.classes = {"ham", "spam"};
    d.mode = TextMode::Email;
    d.source = std::move(source);
    d.is_sample = is_sample;
}

void add_spam_doc(TextDataset& d, std::string group, std::string id, std::string md5,
                  std::string text) {
    d.labels.push_back(is_spam_group(group) ? 1 : 0);
    d.groups.push_back(std::move(group));
    d.ids.push_back(std::move(id));
    d.md5s.push_back(std::move(md5));
    d.texts.push_back(std::move(text));
}

// One corpus entry: the JSON object {"id","group","checksum":{"type","value"},"text"}. Read by
// json_lite (fast); anything it does not accept goes to nlohmann, for unusual-but-valid JSON
// and for a precise error message.
std::string read_entry_text(const std::string& path, std::string_view group, std::string_view md5,
                            std::string& buffer, JsonFields& fields) {
    read_file_into(path, buffer);
    if (!parse_string_object(buffer, fields)) {
        const json entry = parse_json_text(buffer, concat("spam corpus: ", path));
        MDL_CHECK(entry.is_object(), FormatError, "spam corpus: ", path, ": not a JSON object");
        fields.clear();
        for (const char* key : {"group", "text"})
            if (entry.contains(key) && entry[key].is_string()) fields.emplace_back(key, entry[key]);
        const json* sum = entry.contains("checksum") ? &entry["checksum"] : nullptr;
        if (sum != nullptr && sum->is_object() && sum->contains("value") &&
            (*sum)["value"].is_string())
            fields.emplace_back("checksum.value", (*sum)["value"]);
    }
    // The last occurrence of a key wins, as in nlohmann::json.
    auto field = [&](std::string_view key) -> std::string* {
        for (auto it = fields.rbegin(); it != fields.rend(); ++it)
            if (it->first == key) return &it->second;
        return nullptr;
    };
    for (const char* key : {"group", "text"})
        MDL_CHECK(field(key) != nullptr, FormatError, "spam corpus: ", path, ": no string field \"",
                  key, "\"");
    MDL_CHECK(*field("group") == group, FormatError, "spam corpus: ", path, ": group \"",
              *field("group"), "\" differs from its folder ", group);
    if (const std::string* sum = field("checksum.value"))
        MDL_CHECK(*sum == md5, FormatError, "spam corpus: ", path, ": checksum.value ", *sum,
                  " differs from the MD5 in the file name");
    // The decoder grows the string by doubling: keep the corpus at its size, not up to twice it.
    std::string text = std::move(*field("text"));
    text.shrink_to_fit();
    return text;
}

TextDataset load_full_corpus(const std::string& dir) {
    struct Entry {
        std::string group, id, md5, path;
    };
    std::vector<Entry> entries;
    for (std::string_view group : kSpamGroups) {
        fs::path gdir = fs::path(dir) / group;
        MDL_CHECK(fs::is_directory(gdir), Error, "spam corpus: missing folder ", gdir.string(),
                  " (run scripts/fetch_data.sh)");
        std::vector<Entry> in_group;
        for (const auto& f : fs::directory_iterator(gdir)) {
            std::string name = f.path().filename().string();
            if (!name.ends_with(".json")) continue;  // the .txt twins
            auto parsed = parse_entry_name(name);
            MDL_CHECK(parsed.has_value(), FormatError, "spam corpus: ", f.path().string(),
                      ": file name is not NNNNN.<md5>.json");
            in_group.push_back({std::string(group), parsed->first, parsed->second, name});
        }
        // By file name, i.e. by zero-padded id.
        std::sort(in_group.begin(), in_group.end(),
                  [](const Entry& a, const Entry& b) { return a.path < b.path; });
        for (Entry& e : in_group) {
            e.path = (gdir / e.path).string();
            entries.push_back(std::move(e));
        }
    }
    MDL_CHECK(!entries.empty(), Error, "spam corpus: no .json entries under ", dir);
    // Read and parse on the thread pool (6,046 small files: open/read system calls and parsing).
    std::vector<std::string> texts(entries.size());
    minidl::parallel_for(static_cast<int64_t>(entries.size()), 64, [&](int64_t b, int64_t e) {
        std::string buffer;
        JsonFields fields;
        for (int64_t i = b; i < e; ++i) {
            const Entry& en = entries[static_cast<size_t>(i)];
            texts[static_cast<size_t>(i)] =
                read_entry_text(en.path, en.group, en.md5, buffer, fields);
        }
    });
    TextDataset d;
    start_spam_dataset(d, dir, false);
    for (size_t i = 0; i < entries.size(); ++i)
        add_spam_doc(d, std::move(entries[i].group), std::move(entries[i].id),
                     std::move(entries[i].md5), std::move(texts[i]));
    return d;
}

TextDataset load_sample(const std::string& path) {
    std::string contents = read_file(path);
    TextDataset d;
    start_spam_dataset(d, path, true);
    for_each_line(contents, [&](std::string_view line, int64_t line_no) {
        if (line.find_first_not_of(" \t\r") == std::string_view::npos) return;
        json j = parse_json_text(line, concat("spam sample: ", path, ":", line_no));
        for (const char* key : {"group", "id", "md5", "text"})
            MDL_CHECK(j.is_object() && j.contains(key) && j[key].is_string(), FormatError,
                      "spam sample: ", path, ":", line_no, ": no string field \"", key, "\"");
        std::string group = j["group"], md5 = j["md5"];
        MDL_CHECK(is_group(group), FormatError, "spam sample: ", path, ":", line_no,
                  ": unknown group \"", group, "\"");
        MDL_CHECK(is_hex32(md5), FormatError, "spam sample: ", path, ":", line_no,
                  ": md5 is not 32 lowercase hex digits: \"", md5, "\"");
        add_spam_doc(d, std::move(group), j["id"], std::move(md5),
                     std::move(j["text"].get_ref<std::string&>()));
    });
    MDL_CHECK(d.size() > 0, FormatError, "spam sample: ", path, ": no messages");
    return d;
}

}  // namespace

SplitKind parse_split_kind(std::string_view name) {
    if (name == "random") return SplitKind::Random;
    if (name == "temporal") return SplitKind::Temporal;
    throw ValueError(concat("split: unknown split \"", name, "\" (expected random or temporal)"));
}

std::string_view split_kind_name(SplitKind kind) {
    return kind == SplitKind::Random ? "random" : "temporal";
}

std::string default_data_dir() {
    if (const char* env = std::getenv("DATA_DIR"); env != nullptr && *env != '\0') return env;
    return TEXTCLF_DEFAULT_DATA_DIR;
}

std::string default_sample_path() {
    return TEXTCLF_SAMPLE_PATH;
}

std::optional<std::string> find_spam_corpus(const std::string& path) {
    for (const char* sub : {".", "data", "package/data", "spam-assassin/data"}) {
        fs::path dir = (fs::path(path) / sub).lexically_normal();
        std::error_code ec;
        if (fs::is_directory(dir / kSpamGroups[0], ec) && fs::is_directory(dir / "spam-2", ec))
            return dir.has_filename() ? dir.string() : dir.parent_path().string();
    }
    return std::nullopt;
}

TextDataset load_spam_corpus(const std::string& path) {
    std::error_code ec;
    if (fs::is_regular_file(path, ec)) return load_sample(path);
    if (auto dir = find_spam_corpus(path)) return load_full_corpus(*dir);
    fs::path sample = fs::path(path) / kSampleFile;
    if (fs::is_regular_file(sample, ec)) return load_sample(sample.string());
    throw Error(concat("spam corpus: nothing to load at ", path,
                       " (expected a folder holding easy-ham-1 ... spam-2, or ", kSampleFile,
                       "; scripts/fetch_data.sh fetches the corpus)"));
}

TextDataset load_spam_corpus_or_sample(const std::optional<std::string>& data_dir) {
    if (data_dir) return load_spam_corpus(*data_dir);
    if (auto found = find_spam_corpus(default_data_dir())) return load_full_corpus(*found);
    return load_sample(default_sample_path());
}

Split spam_split(const TextDataset& corpus, SplitKind kind, bool val) {
    MDL_CHECK(
        corpus.md5s.size() == corpus.labels.size() && corpus.groups.size() == corpus.labels.size(),
        ValueError, "spam_split: the dataset has no SpamAssassin groups/MD5s (source ",
        corpus.source, ")");
    Split s;
    for (int64_t i = 0; i < corpus.size(); ++i) {
        const std::string& md5 = corpus.md5s[static_cast<size_t>(i)];
        const std::string& group = corpus.groups[static_cast<size_t>(i)];
        bool test;
        if (kind == SplitKind::Random) {
            char last = md5.back();
            test = last == '0' || last == '1' || last == '2';
        } else {
            test = group == "easy-ham-2" || group == "spam-2";
        }
        if (test)
            s.test.push_back(i);
        else if (val && md5.back() == '3')
            s.val.push_back(i);
        else
            s.train.push_back(i);
    }
    return s;
}

std::string sample_line(const TextDataset& corpus, int64_t doc) {
    auto k = static_cast<size_t>(doc);
    // nlohmann's object keeps keys sorted: group, id, md5, text.
    json j = {{"group", corpus.groups.at(k)},
              {"id", corpus.ids.at(k)},
              {"md5", corpus.md5s.at(k)},
              {"text", corpus.texts.at(k)}};
    return j.dump();
}

std::vector<int64_t> select_sample(const TextDataset& corpus, int64_t max_bytes) {
    std::vector<int64_t> chosen;
    for (std::string_view group : kSpamGroups) {
        const int64_t quota = is_spam_group(group) ? 72 : 48;  // 3 x 48 ham = 2 x 72 spam = 144
        // Messages of at most max_bytes first, by MD5 (an arbitrary but fixed order); then, where
        // a group has too few of them (hard-ham is mostly long HTML), the shortest longer ones.
        std::vector<int64_t> test, train;
        for (int64_t i = 0; i < corpus.size(); ++i) {
            if (corpus.groups[static_cast<size_t>(i)] != group) continue;
            char last = corpus.md5s[static_cast<size_t>(i)].back();
            (last == '0' || last == '1' || last == '2' ? test : train).push_back(i);
        }
        auto key = [&](int64_t i) {
            size_t bytes = corpus.texts[static_cast<size_t>(i)].size();
            bool is_long = bytes > static_cast<size_t>(max_bytes);
            return std::tuple(is_long, is_long ? bytes : 0, corpus.md5s[static_cast<size_t>(i)]);
        };
        auto order = [&](std::vector<int64_t>& v, int64_t take) {
            std::sort(v.begin(), v.end(), [&](int64_t a, int64_t b) { return key(a) < key(b); });
            v.resize(std::min<size_t>(v.size(), static_cast<size_t>(take)));
            chosen.insert(chosen.end(), v.begin(), v.end());
        };
        order(test, quota / 3);
        order(train, quota - quota / 3);
    }
    std::sort(chosen.begin(), chosen.end());  // corpus order
    return chosen;
}

// ---- the user's own data ----------------------------------------------------------------------

std::vector<LabeledRow> parse_tsv(std::string_view contents, const std::string& name) {
    std::vector<LabeledRow> rows;
    for_each_line(contents, [&](std::string_view line, int64_t line_no) {
        if (line.ends_with('\r')) line.remove_suffix(1);  // CRLF files
        if (line.empty()) return;
        if (line_no == 1 && line == "label\ttext") return;  // a header
        size_t tab = line.find('\t');
        MDL_CHECK(tab != std::string_view::npos, FormatError, "TSV: ", name, ":", line_no,
                  ": no TAB (expected label<TAB>text)");
        MDL_CHECK(tab > 0, FormatError, "TSV: ", name, ":", line_no, ": empty label");
        rows.push_back(
            {std::string(line.substr(0, tab)), std::string(line.substr(tab + 1)), line_no});
    });
    return rows;
}

std::vector<LabeledRow> parse_jsonl(std::string_view contents, const std::string& name) {
    std::vector<LabeledRow> rows;
    for_each_line(contents, [&](std::string_view line, int64_t line_no) {
        if (line.find_first_not_of(" \t\r") == std::string_view::npos) return;
        const json j = parse_json_text(line, concat("JSONL: ", name, ":", line_no));
        MDL_CHECK(j.is_object(), FormatError, "JSONL: ", name, ":", line_no,
                  ": expected an object {\"label\": ..., \"text\": ...}");
        auto label = j.find("label");
        auto text = j.find("text");
        MDL_CHECK(label != j.end() && (label->is_string() || label->is_number_integer()),
                  FormatError, "JSONL: ", name, ":", line_no,
                  ": \"label\" missing or neither a string nor an integer");
        MDL_CHECK(text != j.end() && text->is_string(), FormatError, "JSONL: ", name, ":", line_no,
                  ": \"text\" missing or not a string");
        std::string label_str = label->is_string() ? label->get<std::string>() : label->dump();
        MDL_CHECK(!label_str.empty(), FormatError, "JSONL: ", name, ":", line_no, ": empty label");
        rows.push_back({std::move(label_str), text->get<std::string>(), line_no});
    });
    return rows;
}

std::vector<LabeledRow> read_labeled_file(const std::string& path) {
    std::string contents = read_file(path);
    if (path.ends_with(".jsonl") || path.ends_with(".json")) return parse_jsonl(contents, path);
    return parse_tsv(contents, path);
}

namespace {

// Labels become class names in run.json and the checkpoint (JSON, which is UTF-8): a label that
// is not valid UTF-8 is refused here, at its line, rather than when the first checkpoint is
// written. Texts may hold any bytes (the tokenizer treats non-ASCII bytes as separators).
void check_label_utf8(const LabeledRow& row, const std::string& name) {
    try {
        (void)json(row.label).dump();
    } catch (const json::type_error&) {
        throw FormatError(
            concat("labelled data: ", name, ":", row.line, ": the label is not valid UTF-8"));
    }
}

}  // namespace

LabeledData make_labeled_data(const std::vector<LabeledRow>& train, const std::string& train_name,
                              const std::vector<LabeledRow>& test, const std::string& test_name,
                              bool val) {
    MDL_CHECK(!train.empty(), FormatError, "labelled data: ", train_name, ": no rows");
    MDL_CHECK(!test.empty(), FormatError, "labelled data: ", test_name, ": no rows");
    for (const auto& r : train)
        check_label_utf8(r, train_name);
    for (const auto& r : test)
        check_label_utf8(r, test_name);
    std::set<std::string> names;
    for (const auto& r : train)
        names.insert(r.label);
    LabeledData out;
    out.data.classes.assign(names.begin(), names.end());  // sorted by byte value
    out.data.mode = TextMode::Plain;
    out.data.source = concat(train_name, " + ", test_name);
    std::map<std::string, int64_t, std::less<>> id;
    for (size_t c = 0; c < out.data.classes.size(); ++c)
        id[out.data.classes[c]] = static_cast<int64_t>(c);
    for (size_t i = 0; i < train.size(); ++i) {
        out.data.texts.push_back(train[i].text);
        out.data.labels.push_back(id.at(train[i].label));
        (val && i % 16 == 3 ? out.split.val : out.split.train).push_back(static_cast<int64_t>(i));
    }
    for (const auto& r : test) {
        auto it = id.find(r.label);
        MDL_CHECK(it != id.end(), FormatError, "labelled data: ", test_name, ":", r.line,
                  ": label \"", r.label, "\" does not occur in the training file ", train_name);
        out.split.test.push_back(out.data.size());
        out.data.texts.push_back(r.text);
        out.data.labels.push_back(it->second);
    }
    return out;
}

LabeledData load_labeled_files(const std::string& train_path, const std::string& test_path,
                               bool val) {
    return make_labeled_data(read_labeled_file(train_path), train_path,
                             read_labeled_file(test_path), test_path, val);
}

}  // namespace textclf
