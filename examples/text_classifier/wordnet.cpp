// examples/text_classifier/wordnet.cpp — data.noun parser and the per-class split (spec in
// wordnet.h).
#include "examples/text_classifier/wordnet.h"

#include <filesystem>

#include "core/check.h"
#include "examples/text_classifier/io.h"

namespace textclf {

namespace fs = std::filesystem;
using minidl::Error;
using minidl::FormatError;

namespace {

// The next space-separated field of `rest` (consumed), or "" at the end.
std::string_view next_field(std::string_view& rest) {
    size_t start = rest.find_first_not_of(' ');
    if (start == std::string_view::npos) {
        rest = {};
        return {};
    }
    size_t end = rest.find(' ', start);
    if (end == std::string_view::npos) end = rest.size();
    std::string_view field = rest.substr(start, end - start);
    rest.remove_prefix(end);
    return field;
}

bool all_digits(std::string_view s) {
    if (s.empty()) return false;
    for (char c : s)
        if (c < '0' || c > '9') return false;
    return true;
}

}  // namespace

std::optional<Synset> parse_wordnet_line(std::string_view line, const std::string& name,
                                         int64_t line_no) {
    if (line.ends_with('\r')) line.remove_suffix(1);
    if (line.starts_with("  ") || line.find_first_not_of(' ') == std::string_view::npos)
        return std::nullopt;
    std::string_view rest = line;
    std::string_view offset = next_field(rest);
    std::string_view lex = next_field(rest);
    std::string_view type = next_field(rest);
    MDL_CHECK(all_digits(offset) && offset.size() == 8, FormatError, "WordNet: ", name, ":",
              line_no, ": field 1 is not an 8-digit synset offset: \"", offset, "\"");
    MDL_CHECK(all_digits(lex) && lex.size() == 2, FormatError, "WordNet: ", name, ":", line_no,
              ": field 2 is not a 2-digit lexicographer file number: \"", lex, "\"");
    int lex_file = (lex[0] - '0') * 10 + (lex[1] - '0');
    MDL_CHECK(lex_file >= 3 && lex_file <= 28, FormatError, "WordNet: ", name, ":", line_no,
              ": lexicographer file ", lex, " is not a noun file (03-28)");
    MDL_CHECK(type == "n", FormatError, "WordNet: ", name, ":", line_no, ": synset type \"", type,
              "\" is not n (a noun)");
    size_t bar = line.find("| ");
    MDL_CHECK(bar != std::string_view::npos, FormatError, "WordNet: ", name, ":", line_no,
              ": no gloss (\"| \")");
    std::string_view gloss = line.substr(bar + 2);
    size_t last = gloss.find_last_not_of(" \t");
    gloss = last == std::string_view::npos ? std::string_view{} : gloss.substr(0, last + 1);
    return Synset{std::string(offset), lex_file, std::string(gloss)};
}

std::optional<std::string> find_wordnet_nouns(const std::string& path) {
    std::error_code ec;
    if (fs::is_regular_file(path, ec)) return path;
    for (const char* sub :
         {"data.noun", "usr/share/wordnet/data.noun", "wordnet-root/usr/share/wordnet/data.noun"}) {
        fs::path p = fs::path(path) / sub;
        if (fs::is_regular_file(p, ec)) return p.lexically_normal().string();
    }
    return std::nullopt;
}

LabeledData parse_wordnet_nouns(std::string_view contents, const std::string& name) {
    LabeledData out;
    out.data.classes.assign(kNounClasses.begin(), kNounClasses.end());
    out.data.mode = TextMode::Plain;
    out.data.source = name;
    std::array<int64_t, kNounClasses.size()> seen{};  // synsets per class so far
    for_each_line(contents, [&](std::string_view line, int64_t line_no) {
        std::optional<Synset> s = parse_wordnet_line(line, name, line_no);
        if (!s) return;
        int64_t cls = s->lex_file - 3;
        int64_t index = out.data.size();
        out.data.texts.push_back(std::move(s->gloss));
        out.data.labels.push_back(cls);
        (seen[static_cast<size_t>(cls)]++ % 5 == 4 ? out.split.test : out.split.train)
            .push_back(index);
    });
    MDL_CHECK(out.data.size() > 0, FormatError, "WordNet: ", name, ": no synsets");
    return out;
}

LabeledData load_wordnet_nouns(const std::string& path) {
    std::optional<std::string> file = find_wordnet_nouns(path);
    MDL_CHECK(file.has_value(), Error, "WordNet: no data.noun at ", path,
              " (scripts/fetch_data.sh fetches it)");
    return parse_wordnet_nouns(read_file(*file), *file);
}

}  // namespace textclf
