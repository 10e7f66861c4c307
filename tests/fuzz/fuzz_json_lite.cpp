// tests/fuzz/fuzz_json_lite.cpp — the corpus entry reader json_lite (parse_string_object) on
// arbitrary bytes, against nlohmann::json as the reference parser.
//
// nlohmann's SAX events are turned into the same flat field list json_lite produces (document
// order, nested keys "outer.inner"), and:
//   - whatever json_lite accepts, nlohmann accepts too, with the same fields in the same order,
//     and it holds only strings and objects (json_lite does not validate UTF-8, by design; the
//     comparison is made where the input is valid UTF-8);
//   - whatever nlohmann reads as an object of strings and objects, at most 9 levels deep (the
//     nesting json_lite allows), json_lite accepts as well (a byte-order mark excepted: nlohmann
//     skips one, json_lite hands such a text to nlohmann) and a NUL byte (nlohmann ends its input
//     there, accepting "{}\0<anything>"; json_lite rightly refuses the trailing bytes).
#include <nlohmann/json.hpp>

#include "examples/text_classifier/json_lite.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

using namespace minidl::fuzz;
using json = nlohmann::json;

// nlohmann SAX events -> json_lite's field list.
struct FieldCollector : nlohmann::json_sax<json> {
    textclf::JsonFields fields;
    std::vector<std::string> prefixes;  // the names of the open objects
    std::string current_key;
    bool only_strings_and_objects = true;
    bool top_is_object = false;
    size_t max_depth = 0;

    std::string name() const {
        return prefixes.empty() || prefixes.back().empty() ? current_key
                                                           : prefixes.back() + "." + current_key;
    }
    bool other() {
        only_strings_and_objects = false;
        return true;
    }
    bool null() override { return other(); }
    bool boolean(bool) override { return other(); }
    bool number_integer(number_integer_t) override { return other(); }
    bool number_unsigned(number_unsigned_t) override { return other(); }
    bool number_float(number_float_t, const string_t&) override { return other(); }
    bool binary(binary_t&) override { return other(); }
    bool start_array(std::size_t) override { return other(); }
    bool end_array() override { return true; }
    bool string(string_t& s) override {
        if (prefixes.empty()) return other();  // a string outside any object
        fields.emplace_back(name(), s);
        return true;
    }
    bool start_object(std::size_t) override {
        if (prefixes.empty() && fields.empty() && only_strings_and_objects) top_is_object = true;
        prefixes.push_back(prefixes.empty() ? std::string() : name());
        max_depth = std::max(max_depth, prefixes.size());
        return true;
    }
    bool key(string_t& k) override {
        current_key = k;
        return true;
    }
    bool end_object() override {
        prefixes.pop_back();
        return true;
    }
    bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
        return false;
    }
};

bool valid_utf8(std::string_view s) {
    size_t i = 0;
    while (i < s.size()) {
        const auto c = static_cast<unsigned char>(s[i]);
        size_t len = c < 0x80                 ? 1
                     : c >= 0xC2 && c <= 0xDF ? 2
                     : c >= 0xE0 && c <= 0xEF ? 3
                     : c >= 0xF0 && c <= 0xF4 ? 4
                                              : 0;
        if (len == 0 || len > s.size() - i) return false;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
        for (size_t k = 1; k < len; ++k) {
            const auto b = static_cast<unsigned char>(s[i + k]);
            if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xBF)) return false;
        }
        i += len;
    }
    return true;
}

int fuzz_json_lite(const uint8_t* data, size_t size) {
    const std::string_view text = as_text(data, size);
    textclf::JsonFields fields;
    const bool lite_ok = textclf::parse_string_object(text, fields);

    FieldCollector reference;
    const bool nlohmann_ok = json::sax_parse(text.begin(), text.end(), &reference);
    const bool string_object =
        nlohmann_ok && reference.top_is_object && reference.only_strings_and_objects;

    if (lite_ok && valid_utf8(text)) {
        FUZZ_EXPECT(string_object, "json_lite accepted what nlohmann reads as ",
                    nlohmann_ok ? "another shape" : "invalid JSON");
        FUZZ_EXPECT(fields == reference.fields, "json_lite read ", fields.size(),
                    " fields, nlohmann ", reference.fields.size(), " or other values");
    }
    if (string_object && reference.max_depth <= 9 && !text.starts_with("\xEF\xBB\xBF") &&
        text.find('\0') == std::string_view::npos)
        FUZZ_EXPECT(lite_ok, "json_lite rejected an object of strings that nlohmann reads");
    return 0;
}

}  // namespace

MINIDL_FUZZ_TARGET("json_lite", fuzz_json_lite)
