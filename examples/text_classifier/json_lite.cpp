// examples/text_classifier/json_lite.cpp — objects of strings, read fast (see json_lite.h).
#include "examples/text_classifier/json_lite.h"

#include <array>
#include <cstdint>

namespace textclf {

namespace {

// kPlain[c]: byte c is copied as is inside a string (not '"', not '\\', not a control char).
constexpr std::array<bool, 256> make_plain_table() {
    std::array<bool, 256> t{};
    for (int c = 0x20; c < 256; ++c)
        t[c] = c != '"' && c != '\\';
    return t;
}
constexpr std::array<bool, 256> kPlain = make_plain_table();

struct Reader {
    const char* p;
    const char* end;

    void skip_ws() {
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
            ++p;
    }
    bool eat(char c) {
        skip_ws();
        if (p == end || *p != c) return false;
        ++p;
        return true;
    }
    bool peek(char c) {
        skip_ws();
        return p < end && *p == c;
    }

    bool hex4(uint32_t& v) {
        if (end - p < 4) return false;
        v = 0;
        for (int i = 0; i < 4; ++i) {
            char c = *p++;
            v <<= 4;
            if (c >= '0' && c <= '9')
                v |= static_cast<uint32_t>(c - '0');
            else if (c >= 'a' && c <= 'f')
                v |= static_cast<uint32_t>(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F')
                v |= static_cast<uint32_t>(c - 'A' + 10);
            else
                return false;
        }
        return true;
    }

    static void put_utf8(uint32_t cp, std::string& out) {
        if (cp < 0x80) {
            out.push_back(static_cast<char>(cp));
        } else if (cp < 0x800) {
            out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
            out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
        } else if (cp < 0x10000) {
            out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
            out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
            out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
        } else {
            out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
            out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
            out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
            out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
        }
    }

    // A string starting at the opening quote, decoded into `out`.
    bool string(std::string& out) {
        if (!eat('"')) return false;
        out.clear();
        for (;;) {
            const char* run = p;
            while (p < end && kPlain[static_cast<unsigned char>(*p)])
                ++p;
            out.append(run, p);
            if (p == end) return false;  // unterminated
            char c = *p++;
            if (c == '"') return true;
            if (c != '\\' || p == end) return false;  // a raw control character, or "\" at end
            char e = *p++;
            switch (e) {
                case '"':
                    out.push_back('"');
                    break;
                case '\\':
                    out.push_back('\\');
                    break;
                case '/':
                    out.push_back('/');
                    break;
                case 'b':
                    out.push_back('\b');
                    break;
                case 'f':
                    out.push_back('\f');
                    break;
                case 'n':
                    out.push_back('\n');
                    break;
                case 'r':
                    out.push_back('\r');
                    break;
                case 't':
                    out.push_back('\t');
                    break;
                case 'u': {
                    uint32_t cp;
                    if (!hex4(cp)) return false;
                    if (cp >= 0xDC00 && cp <= 0xDFFF) return false;  // lone low surrogate
                    if (cp >= 0xD800 && cp <= 0xDBFF) {              // needs its low half
                        uint32_t lo;
                        if (end - p < 2 || p[0] != '\\' || p[1] != 'u') return false;
                        p += 2;
                        if (!hex4(lo) || lo < 0xDC00 || lo > 0xDFFF) return false;
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    }
                    put_utf8(cp, out);
                    break;
                }
                default:
                    return false;
            }
        }
    }

    // An object of strings / nested objects; `prefix` names the enclosing key ("" at the top).
    bool object(const std::string& prefix, JsonFields& out, int depth) {
        if (depth > 8 || !eat('{')) return false;
        if (eat('}')) return true;
        std::string key;
        for (;;) {
            if (!string(key) || !eat(':')) return false;
            std::string name = prefix.empty() ? key : prefix + "." + key;
            if (peek('{')) {
                if (!object(name, out, depth + 1)) return false;
            } else {
                out.emplace_back(std::move(name), std::string());
                if (!string(out.back().second)) return false;
            }
            if (eat('}')) return true;
            if (!eat(',')) return false;
        }
    }
};

}  // namespace

bool parse_string_object(std::string_view json, JsonFields& out) {
    out.clear();
    Reader r{json.data(), json.data() + json.size()};
    if (!r.object("", out, 0)) return false;
    r.skip_ws();
    return r.p == r.end;
}

}  // namespace textclf
