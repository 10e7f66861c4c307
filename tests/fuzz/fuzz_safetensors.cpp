// tests/fuzz/fuzz_safetensors.cpp — the safetensors reader (core/safetensors.*) on arbitrary
// bytes, through its three entry points: parse_safetensors (in memory), load_safetensors and
// read_safetensors_header (the same bytes as a file, read with pread).
//
// Properties checked on every input, beyond "no crash, no sanitizer report":
//   - a rejection is a FormatError (the documented error for a malformed file), never another
//     minidl::Error;
//   - the three readers agree: all accept or all reject with the same problem text (the message
//     after "<op>: <source>: ");
//   - an accepted header holds no NUL byte (never valid JSON);
//   - an accepted file is consistent: 8 + header + data bytes = file size, the tensors tile the
//     data buffer, each tensor's bytes are the file's bytes at its offsets, and both loaders
//     return the same names, dtypes, shapes, bytes and metadata;
//   - an accepted shape is one every op can take: the product of its nonzero dimensions fits in
//     int64, so no stride or DimSplit product (contiguous_strides, split_at) overflows, even where
//     a zero dimension makes the element count 0.
#include <cstring>
#include <optional>

#include "core/safetensors.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

using namespace minidl;
using minidl::fuzz::accepts;

// The problem part of "<op>: <source>: <problem>".
std::string problem(const std::string& message, const std::string& op, const std::string& source) {
    const std::string prefix = op + ": " + source + ": ";
    FUZZ_EXPECT(message.rfind(prefix, 0) == 0, "message '", message, "' does not start with '",
                prefix, "'");
    return message.substr(prefix.size());
}

// Runs fn; on rejection checks that it was a FormatError and returns its problem text.
template <typename Fn>
std::optional<std::string> rejection(Fn&& fn, const std::string& op, const std::string& source) {
    std::string message;
    bool format_error = false;
    const bool ok = accepts(
        [&] {
            try {
                fn();
            } catch (const FormatError& e) {
                format_error = true;
                throw;
            }
        },
        &message);
    if (ok) return std::nullopt;
    FUZZ_EXPECT(format_error, op, " rejected with an error other than FormatError: ", message);
    return problem(message, op, source);
}

void expect_same(const StateDict& a, const StateDict& b) {
    FUZZ_EXPECT(a.metadata == b.metadata, "the loaders disagree on the metadata");
    FUZZ_EXPECT(a.tensors.size() == b.tensors.size(), "the loaders disagree on the tensor count");
    for (auto ia = a.tensors.begin(), ib = b.tensors.begin(); ia != a.tensors.end(); ++ia, ++ib) {
        const Tensor &ta = ia->second, &tb = ib->second;
        FUZZ_EXPECT(ia->first == ib->first, "tensor names differ: ", ia->first, " vs ", ib->first);
        FUZZ_EXPECT(ta.dtype() == tb.dtype() && ta.shape() == tb.shape(), "tensor '", ia->first,
                    "' differs in dtype or shape");
        FUZZ_EXPECT(
            ta.nbytes() == tb.nbytes() &&
                (ta.nbytes() == 0 || std::memcmp(ta.data_ptr(), tb.data_ptr(), ta.nbytes()) == 0),
            "tensor '", ia->first, "' differs in its bytes");
    }
}

int fuzz_safetensors(const uint8_t* data, size_t size) {
    static minidl::fuzz::MemFile file;
    file.assign(data, size);
    const std::string source = "input";

    StateDict parsed, loaded;
    SafetensorsHeader header;
    const auto parse_error = rejection([&] { parsed = parse_safetensors(data, size, source); },
                                       "parse_safetensors", source);
    const auto load_error =
        rejection([&] { loaded = load_safetensors(file.path()); }, "load_safetensors", file.path());
    const auto header_error = rejection([&] { header = read_safetensors_header(file.path()); },
                                        "read_safetensors_header", file.path());
    FUZZ_EXPECT(parse_error == load_error && load_error == header_error,
                "the readers disagree: parse_safetensors: ", parse_error.value_or("accepted"),
                " / load_safetensors: ", load_error.value_or("accepted"),
                " / read_safetensors_header: ", header_error.value_or("accepted"));
    if (parse_error) return 0;

    // No JSON text holds a raw NUL byte (nlohmann::json alone would stop reading at one).
    FUZZ_EXPECT(std::memchr(data + 8, 0, header.header_bytes) == nullptr,
                "a header with a NUL byte was accepted");
    expect_same(parsed, loaded);
    FUZZ_EXPECT(8 + header.header_bytes + header.data_bytes == size, "layout sizes ",
                header.header_bytes, " + ", header.data_bytes, " do not add up to ", size - 8);
    FUZZ_EXPECT(header.entries.size() == parsed.tensors.size(), "header lists ",
                header.entries.size(), " tensors, the loader returned ", parsed.tensors.size());
    uint64_t covered = 0;
    for (const SafetensorsEntry& e : header.entries) {
        const Tensor& t = parsed.tensors.at(e.name);
        FUZZ_EXPECT(e.begin <= e.end && e.end <= header.data_bytes, "tensor '", e.name,
                    "' lies outside the data buffer");
        FUZZ_EXPECT(t.dtype() == e.dtype && t.shape() == e.shape && t.nbytes() == e.end - e.begin,
                    "tensor '", e.name, "' does not match its header entry");
        const uint8_t* bytes = data + 8 + header.header_bytes + e.begin;
        FUZZ_EXPECT(t.nbytes() == 0 || std::memcmp(t.data_ptr(), bytes, t.nbytes()) == 0,
                    "tensor '", e.name, "' holds other bytes than the file's");
        int64_t product = 1;
        for (int64_t d : e.shape)
            FUZZ_EXPECT(d == 0 || !__builtin_mul_overflow(product, d, &product), "tensor '", e.name,
                        "': the nonzero dimensions of shape ", shape_str(e.shape),
                        " overflow int64 (strides would overflow)");
        covered += e.end - e.begin;
    }
    FUZZ_EXPECT(covered == header.data_bytes, "the tensors cover ", covered, " of ",
                header.data_bytes, " data bytes");
    return 0;
}

}  // namespace

MINIDL_FUZZ_TARGET("safetensors", fuzz_safetensors)
