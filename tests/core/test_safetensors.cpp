// tests/core/test_safetensors.cpp — safetensors save/load: bitwise round trips of every dtype,
// the byte layout of the reference writer, rejection of malformed files (named cases and a seeded
// fuzz), and the atomic-write guarantees.
//
// The layout vectors below are the byte strings asserted by the reference implementation's own
// tests (test_serialization, test_empty in
// https://github.com/huggingface/safetensors/blob/main/safetensors/src/tensor.rs), so a file we
// write is the file the Hugging Face writer would produce.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/safetensors.h"
#include "tests/support/compare.h"

using namespace minidl;
using minidl::test::bitwise_equal;
namespace fs = std::filesystem;

namespace {

// A fresh directory under the system temp dir, removed with its contents at scope exit.
struct TempDir {
    fs::path path;
    TempDir() {
        std::string pattern = (fs::temp_directory_path() / "minidl_safetensors_XXXXXX").string();
        REQUIRE(::mkdtemp(pattern.data()) != nullptr);
        path = pattern;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    std::string file(const std::string& name) const { return (path / name).string(); }
};

std::vector<uint8_t> read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    REQUIRE(in.good());
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
    REQUIRE(out.good());
}

// A file image: the 8-byte little-endian length (of `header` unless given), the header, then
// `data_size` bytes of data.
std::vector<uint8_t> make_file(const std::string& header, size_t data_size = 0,
                               std::optional<uint64_t> length = std::nullopt) {
    const uint64_t n = length.value_or(header.size());
    std::vector<uint8_t> out(8 + header.size() + data_size);
    for (size_t i = 0; i < 8; ++i)
        out[i] = static_cast<uint8_t>(n >> (8 * i));
    for (size_t i = 0; i < header.size(); ++i)
        out[8 + i] = static_cast<uint8_t>(header[i]);
    for (size_t i = 0; i < data_size; ++i)
        out[8 + header.size() + i] = static_cast<uint8_t>(i * 37 + 11);
    return out;
}

// The FormatError message of parsing `bytes`, or "" when it parses.
std::string format_error_of(const std::vector<uint8_t>& bytes, const std::string& what) {
    try {
        parse_safetensors(bytes.data(), bytes.size(), what);
    } catch (const FormatError& e) {
        return e.what();
    }
    return "";
}

bool contains(const std::string& s, const std::string& part) {
    return s.find(part) != std::string::npos;
}

// A tensor whose bytes are random bit patterns: for the float dtypes that covers NaNs with
// assorted payloads, infinities, subnormals and -0, which a value round trip could lose.
Tensor random_bits(const Shape& shape, DType dtype, uint64_t seed) {
    Tensor t = Tensor::empty(shape, dtype);
    std::mt19937_64 rng(seed);
    auto* p = t.raw<uint8_t>();
    for (size_t i = 0; i < t.nbytes(); ++i)
        p[i] = static_cast<uint8_t>(rng());
    return t;
}

// A small model-like state: PyTorch-style names, every dtype, empty and 0-d tensors, specials.
StateDict sample_state() {
    StateDict s;
    s.tensors["embedding.weight"] = random_bits({7, 5}, DType::F32, 1);
    s.tensors["fc1.weight"] = random_bits({3, 5}, DType::F64, 2);
    s.tensors["fc1.bias"] = random_bits({3}, DType::F16, 3);
    s.tensors["fc2.weight"] = random_bits({2, 3}, DType::BF16, 4);
    s.tensors["fc2.bias"] = random_bits({2}, DType::I64, 5);
    const float f32_special[] = {std::numeric_limits<float>::quiet_NaN(),
                                 -std::numeric_limits<float>::infinity(),
                                 std::numeric_limits<float>::denorm_min(), -0.0f, 1.0f};
    Tensor sp = Tensor::empty({5}, DType::F32);
    std::memcpy(sp.data_ptr(), f32_special, sizeof f32_special);
    s.tensors["norm.special"] = sp;
    const double f64_special[] = {std::numeric_limits<double>::signaling_NaN(),
                                  std::numeric_limits<double>::infinity(),
                                  std::numeric_limits<double>::denorm_min()};
    Tensor sp64 = Tensor::empty({3}, DType::F64);
    std::memcpy(sp64.data_ptr(), f64_special, sizeof f64_special);
    s.tensors["norm.special64"] = sp64;
    s.tensors["ids"] =
        Tensor::from_vector(std::vector<int64_t>{std::numeric_limits<int64_t>::min(), -1, 0,
                                                 std::numeric_limits<int64_t>::max()},
                            {4});
    s.tensors["empty.f32"] = Tensor::empty({0}, DType::F32);
    s.tensors["empty.bf16"] = Tensor::empty({3, 0, 2}, DType::BF16);
    s.tensors["scalar.f16"] = random_bits({}, DType::F16, 6);
    s.tensors["scalar.i64"] = Tensor::scalar(-42, DType::I64);
    s.tensors["scalar.f64"] = random_bits({}, DType::F64, 7);
    s.metadata["format"] = "pt";
    s.metadata["step"] = "1200";
    s.metadata["note"] = "UTF-8 ✓, \"quotes\" and \\ backslashes";
    return s;
}

void check_same_state(const StateDict& got, const StateDict& want) {
    CHECK(got.metadata == want.metadata);
    REQUIRE(got.tensors.size() == want.tensors.size());
    for (const auto& [name, t] : want.tensors) {
        CAPTURE(name);
        REQUIRE(got.contains(name));
        const Tensor& g = got.at(name);
        CHECK(g.dtype() == t.dtype());
        CHECK(g.shape() == t.shape());
        CHECK(bitwise_equal(g, t));
        CHECK((!g.storage()->data() || g.storage() != t.storage()));  // a fresh tensor
    }
}

}  // namespace

TEST_CASE("core/safetensors: every dtype round trips bitwise, with empty and 0-d tensors") {
    TempDir dir;
    const StateDict state = sample_state();
    const std::string path = dir.file("model.safetensors");
    save_safetensors(path, state);
    SUBCASE("load_safetensors") {
        check_same_state(load_safetensors(path), state);
    }
    SUBCASE("parse_safetensors") {
        const std::vector<uint8_t> bytes = read_bytes(path);
        const StateDict got = parse_safetensors(bytes.data(), bytes.size(), "model");
        check_same_state(got, state);
        // Fresh tensors: none points into the parsed buffer.
        for (const auto& [name, t] : got.tensors) {
            const auto* p = static_cast<const uint8_t*>(t.data_ptr());
            CHECK((p == nullptr || p < bytes.data() || p >= bytes.data() + bytes.size()));
        }
    }
    SUBCASE("an empty state") {
        save_safetensors(path, StateDict{});
        const StateDict got = load_safetensors(path);
        CHECK(got.tensors.empty());
        CHECK(got.metadata.empty());
    }
}

TEST_CASE("core/safetensors: the bytes written are those of the reference writer") {
    TempDir dir;
    const std::string path = dir.file("ref.safetensors");
    SUBCASE("one f32 tensor (reference test_serialization)") {
        StateDict s;
        s.tensors["attn.0"] =
            Tensor::from_vector(std::vector<float>{0, 1, 2, 3, 4, 5}, {1, 2, 3}, DType::F32);
        save_safetensors(path, s);
        // The reference writer's bytes given the metadata minidl adds: the data's CRC-32
        // (Python: '%08x' % zlib.crc32(data)).
        const std::string header =
            R"({"__metadata__":{"minidl.data_crc32":"91e79017"},)"
            R"("attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}})";
        REQUIRE(header.size() == 112);  // already a multiple of 8: no padding
        std::vector<uint8_t> want = make_file(header);
        const uint8_t data[] = {0, 0, 0,  0,  0, 0, 128, 63, 0, 0, 0,   64,
                                0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64};
        want.insert(want.end(), std::begin(data), std::end(data));
        CHECK(read_bytes(path) == want);
    }
    SUBCASE("no tensors (reference test_empty)") {
        save_safetensors(path, StateDict{});
        CHECK(read_bytes(path) ==
              make_file(R"({"__metadata__":{"minidl.data_crc32":"00000000"}}       )"));
        StateDict s;
        s.metadata["framework"] = "pt";
        save_safetensors(path, s);
        CHECK(read_bytes(path) ==
              make_file(
                  R"({"__metadata__":{"framework":"pt","minidl.data_crc32":"00000000"}}      )"));
    }
    SUBCASE("tensors are ordered by element size, then name, and aligned") {
        StateDict s;
        s.tensors["a.half"] = Tensor::zeros({3}, DType::F16);
        s.tensors["b.bf16"] = Tensor::zeros({1}, DType::BF16);
        s.tensors["c.f32"] = Tensor::zeros({3}, DType::F32);
        s.tensors["d.f64"] = Tensor::zeros({1}, DType::F64);
        s.tensors["e.i64"] = Tensor::zeros({1}, DType::I64);
        s.tensors["f.f32"] = Tensor::zeros({1}, DType::F32);
        save_safetensors(path, s);
        const SafetensorsHeader h = read_safetensors_header(path);
        CHECK(h.header_bytes % 8 == 0);
        CHECK(h.data_bytes == 3 * 2 + 2 + 4 * 4 + 8 + 8);
        std::map<std::string, std::pair<uint64_t, uint64_t>> at;
        for (const SafetensorsEntry& e : h.entries) {
            at[e.name] = {e.begin, e.end};
            CHECK(e.begin % dtype_size(e.dtype) == 0);
        }
        // I64, F64, F32 (by name), BF16, F16: the reference writer's order.
        CHECK(at["e.i64"] == std::pair<uint64_t, uint64_t>{0, 8});
        CHECK(at["d.f64"] == std::pair<uint64_t, uint64_t>{8, 16});
        CHECK(at["c.f32"] == std::pair<uint64_t, uint64_t>{16, 28});
        CHECK(at["f.f32"] == std::pair<uint64_t, uint64_t>{28, 32});
        CHECK(at["b.bf16"] == std::pair<uint64_t, uint64_t>{32, 34});
        CHECK(at["a.half"] == std::pair<uint64_t, uint64_t>{34, 40});
    }
}

TEST_CASE("core/safetensors: read_safetensors_header lists the tensors sorted by name") {
    TempDir dir;
    const std::string path = dir.file("model.safetensors");
    const StateDict state = sample_state();
    save_safetensors(path, state);
    const SafetensorsHeader h = read_safetensors_header(path);
    CHECK(h.metadata == state.metadata);
    REQUIRE(h.entries.size() == state.tensors.size());
    auto it = state.tensors.begin();  // std::map: sorted by name too
    uint64_t total = 0;
    for (const SafetensorsEntry& e : h.entries) {
        CHECK(e.name == it->first);
        CHECK(e.dtype == it->second.dtype());
        CHECK(e.shape == it->second.shape());
        CHECK(e.end - e.begin == it->second.nbytes());
        total += e.end - e.begin;
        ++it;
    }
    CHECK(h.data_bytes == total);
    CHECK(fs::file_size(path) == 8 + h.header_bytes + h.data_bytes);
}

TEST_CASE("core/safetensors: malformed files are rejected with a FormatError naming the problem") {
    struct Case {
        const char* name;
        std::vector<uint8_t> bytes;
        const char* expect;
    };
    const std::string w = R"({"fc1.weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}})";
    auto entry = [](const std::string& body) { return R"({"fc1.weight":)" + body + "}"; };
    const std::vector<Case> cases = {
        {"shorter than 8 bytes", {1, 2, 3}, "3 bytes, too short"},
        {"header length past the end", make_file(w, 24, 200), "runs past the end of the file"},
        {"absurd header length", make_file(w, 24, uint64_t{1} << 62), "exceeds the limit"},
        {"header not UTF-8", make_file("{\"a\xff\":1}"), "not valid UTF-8"},
        {"header not JSON", make_file(R"({"fc1.weight":{)"), "not valid JSON"},
        {"header not an object", make_file("[1, 2]  "), "header is a JSON array"},
        {"entry not an object", make_file(entry("[0, 24]")), "entry is a JSON array"},
        {"missing dtype", make_file(entry(R"({"shape":[2],"data_offsets":[0,8]})"), 8),
         "no \"dtype\""},
        {"missing shape", make_file(entry(R"({"dtype":"F32","data_offsets":[0,8]})"), 8),
         "no \"shape\""},
        {"missing data_offsets", make_file(entry(R"({"dtype":"F32","shape":[2]})"), 8),
         "no \"data_offsets\""},
        {"dtype not a string",
         make_file(entry(R"({"dtype":4,"shape":[2],"data_offsets":[0,8]})"), 8),
         "dtype is a JSON number"},
        {"unknown dtype",
         make_file(entry(R"({"dtype":"I32","shape":[2],"data_offsets":[0,8]})"), 8),
         "unsupported dtype 'I32'"},
        {"shape not an array",
         make_file(entry(R"({"dtype":"F32","shape":2,"data_offsets":[0,8]})"), 8),
         "shape is a JSON number"},
        {"negative dimension",
         make_file(entry(R"({"dtype":"F32","shape":[-2],"data_offsets":[0,8]})"), 8),
         "not a non-negative integer: -2"},
        {"fractional dimension",
         make_file(entry(R"({"dtype":"F32","shape":[2.5],"data_offsets":[0,8]})"), 8),
         "not a non-negative integer: 2.5"},
        {"element count overflow",
         make_file(entry(R"({"dtype":"F32","shape":[4294967296,4294967296],)"
                         R"("data_offsets":[0,8]})"),
                   8),
         "overflows 64 bits"},
        {"element count overflow beside a zero dimension",
         make_file(entry(R"({"dtype":"F32","shape":[0,4294967296,4294967296],)"
                         R"("data_offsets":[0,0]})")),
         "overflows 64 bits (zero dimensions aside)"},
        {"byte size overflow",
         make_file(entry(R"({"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,8]})"),
                   8),
         "byte size of shape [4611686018427387904] x f32 overflows"},
        {"data_offsets not a pair",
         make_file(entry(R"({"dtype":"F32","shape":[2],"data_offsets":[0]})"), 8),
         "not a pair of non-negative integers"},
        {"negative data_offsets",
         make_file(entry(R"({"dtype":"F32","shape":[2],"data_offsets":[-8,0]})"), 8),
         "not a pair of non-negative integers"},
        {"begin after end",
         make_file(entry(R"({"dtype":"F32","shape":[2],"data_offsets":[8,0]})"), 8),
         "data_offsets [8, 0] have begin > end"},
        {"offsets out of range", make_file(w, 16),
         "run past the end of the data buffer (16 bytes)"},
        {"size mismatch",
         make_file(entry(R"({"dtype":"F32","shape":[2,3],"data_offsets":[0,12]})"), 12),
         "data_offsets [0, 12) do not match shape [2, 3] x f32 = 24 bytes"},
        {"overlapping tensors",
         make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                   R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                   12),
         "'a' [0, 8) and 'b' [4, 12) overlap"},
        {"empty tensor inside another",
         make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                   R"("e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}})",
                   8),
         "overlap"},
        {"gap between tensors",
         make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                   R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                   12),
         "gap in the data buffer: bytes [4, 8)"},
        {"gap before the first tensor",
         make_file(entry(R"({"dtype":"F32","shape":[1],"data_offsets":[4,8]})"), 8),
         "gap in the data buffer: bytes [0, 4)"},
        {"trailing bytes", make_file(w, 30), "6 trailing bytes after the last tensor"},
        {"duplicate tensor names",
         make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                   R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                   8),
         "key 'a' more than once"},
        {"metadata not an object", make_file(R"({"__metadata__":["pt"]})"),
         "__metadata__ is a JSON array"},
        {"metadata value not a string", make_file(R"({"__metadata__":{"step":3}})"),
         "__metadata__ value of 'step' is a JSON number"},
        {"deeply nested header", make_file(std::string(100000, '[')), "not valid JSON"},
    };
    for (const Case& c : cases) {
        SUBCASE(c.name) {
            CHECK_THROWS_AS(parse_safetensors(c.bytes.data(), c.bytes.size(), "bad.safetensors"),
                            FormatError);
            const std::string msg = format_error_of(c.bytes, "bad.safetensors");
            CAPTURE(msg);
            CHECK(msg.rfind("parse_safetensors: bad.safetensors: ", 0) == 0);
            CHECK(contains(msg, c.expect));
        }
    }
    SUBCASE("load_safetensors names the file") {
        TempDir dir;
        const std::string path = dir.file("bad.safetensors");
        write_bytes(path, make_file(w, 30));
        CHECK_THROWS_WITH_AS(
            load_safetensors(path),
            doctest::Contains(("load_safetensors: " + path + ": 6 trailing").c_str()), FormatError);
        CHECK_THROWS_WITH_AS(read_safetensors_header(path), doctest::Contains("6 trailing"),
                             FormatError);
        write_bytes(path, {0x10, 0, 0});
        CHECK_THROWS_WITH_AS(load_safetensors(path), doctest::Contains("too short"), FormatError);
    }
    SUBCASE("a missing file or a directory is an I/O error naming the path") {
        TempDir dir;
        const std::string missing = dir.file("missing.safetensors");
        CHECK_THROWS_WITH_AS(load_safetensors(missing), doctest::Contains(missing.c_str()), Error);
        CHECK_THROWS_WITH_AS(load_safetensors(dir.path.string()),
                             doctest::Contains("is a directory"), Error);
    }
}

TEST_CASE("core/safetensors: seeded random corruptions either parse or throw, never crash") {
    // Run under AddressSanitizer, an out-of-bounds read on any of these inputs fails the suite;
    // each mutated file lives in its own exactly-sized heap buffer so that one would be seen.
    TempDir dir;
    const std::string path = dir.file("base.safetensors");
    save_safetensors(path, sample_state());
    const std::vector<uint8_t> base = read_bytes(path);
    const uint64_t header_end = 8 + read_safetensors_header(path).header_bytes;
    const std::string json_chars = "{}[]\":,0123456789-.eE \\u\xff";

    std::mt19937_64 rng(20240607);
    auto below = [&](uint64_t n) { return n == 0 ? 0 : rng() % n; };
    int parsed = 0, rejected = 0;
    for (int trial = 0; trial < 4000; ++trial) {
        std::vector<uint8_t> f = base;
        const int kind = static_cast<int>(below(6));
        const int edits = 1 + static_cast<int>(below(4));
        for (int k = 0; k < edits; ++k) {
            if (kind == 0) {  // bit flips anywhere
                f[below(f.size())] ^= static_cast<uint8_t>(1u << below(8));
            } else if (kind == 1) {  // truncation
                f.resize(below(f.size()));
                if (f.empty()) break;
            } else if (kind == 2) {  // a different header length
                uint64_t n = header_end - 8;
                n = below(2) ? n + below(17) - 8 : rng() >> below(64);
                std::memcpy(f.data(), &n, 8);
            } else if (kind == 3) {  // JSON-ish characters inside the header
                f[8 + below(header_end - 8)] =
                    static_cast<uint8_t>(json_chars[below(json_chars.size())]);
            } else if (kind == 4) {  // random bytes inside the header
                f[8 + below(header_end - 8)] = static_cast<uint8_t>(rng());
            } else {  // a byte inserted or removed in the header, the length left as it was
                const auto at = static_cast<ptrdiff_t>(8 + below(header_end - 8));
                if (below(2))
                    f.insert(f.begin() + at, static_cast<uint8_t>(json_chars[below(8)]));
                else
                    f.erase(f.begin() + at);
            }
        }
        auto exact = std::make_unique<uint8_t[]>(f.size());
        std::memcpy(exact.get(), f.data(), f.size());
        try {
            const StateDict s = parse_safetensors(exact.get(), f.size(), "fuzz");
            uint64_t total = 0;
            for (const auto& [name, t] : s.tensors)
                total += t.nbytes();
            CHECK(total <= f.size());
            ++parsed;
        } catch (const Error&) {
            ++rejected;
        } catch (const std::exception& e) {
            FAIL_CHECK("trial " << trial << " threw a non-minidl exception: " << e.what());
        }
    }
    MESSAGE("fuzz: " << parsed << " mutated files parsed, " << rejected << " rejected");
    CHECK(parsed > 100);     // flips inside the data buffer leave a valid file
    CHECK(rejected > 1000);  // most header damage must be caught
}

TEST_CASE("core/safetensors: saving over a file replaces it and leaves no temporary file") {
    TempDir dir;
    const std::string path = dir.file("ckpt.safetensors");
    StateDict a;
    a.tensors["fc1.weight"] = Tensor::full({2, 2}, 1.0);
    save_safetensors(path, a);
    StateDict b;
    b.tensors["fc1.weight"] = Tensor::full({3}, 2.0, DType::F64);
    b.metadata.emplace("epoch", "2");
    save_safetensors(path, b);
    check_same_state(load_safetensors(path), b);
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir.path))
        names.push_back(e.path().filename().string());
    CHECK(names == std::vector<std::string>{"ckpt.safetensors"});
}

TEST_CASE("core/safetensors: a failed save throws and leaves the existing file untouched") {
    TempDir dir;
    const std::string path = dir.file("ckpt.safetensors");
    save_safetensors(path, sample_state());
    const std::vector<uint8_t> before = read_bytes(path);
    StateDict other;
    other.tensors["w"] = Tensor::ones({4});
    auto files = [&] {
        std::vector<std::string> names;
        for (const auto& e : fs::directory_iterator(dir.path))
            names.push_back(e.path().filename().string());
        return names;
    };

    SUBCASE("into a directory that does not exist") {
        const std::string missing = dir.file("no/such/dir/ckpt.safetensors");
        CHECK_THROWS_WITH_AS(save_safetensors(missing, other), doctest::Contains(missing.c_str()),
                             Error);
        CHECK(!fs::exists(missing));
    }
    SUBCASE("over a directory: the rename fails after the data was written") {
        const std::string target = dir.file("subdir");
        fs::create_directory(target);
        CHECK_THROWS_WITH_AS(save_safetensors(target, other), doctest::Contains("cannot rename"),
                             Error);
        CHECK(fs::is_directory(target));
    }
    SUBCASE("with an invalid state") {
        StateDict bad = other;
        bad.tensors["undefined"] = Tensor();
        CHECK_THROWS_WITH_AS(save_safetensors(path, bad),
                             doctest::Contains("tensor 'undefined' is undefined"), ValueError);
        StateDict reserved = other;
        reserved.tensors["__metadata__"] = Tensor::ones({1});
        CHECK_THROWS_AS(save_safetensors(path, reserved), ValueError);
        StateDict not_utf8 = other;
        not_utf8.tensors["w\xff"] = Tensor::ones({1});
        CHECK_THROWS_WITH_AS(save_safetensors(path, not_utf8), doctest::Contains("UTF-8"),
                             ValueError);
    }
    SUBCASE("stopped at each stage of the write (the crash-test hook throws there)") {
        // A lambda without captures, as the hook is a plain function pointer: statics instead.
        static std::vector<std::pair<std::string, SaveStage>> seen;
        static SaveStage stop_at = SaveStage::HeaderWritten;
        struct Unset {
            ~Unset() { set_save_fault_hook(nullptr); }
        } unset;
        set_save_fault_hook([](const std::string& p, SaveStage s) {
            seen.emplace_back(p, s);
            if (s == stop_at) throw Error("stopped here");
        });
        for (SaveStage stage : {SaveStage::HeaderWritten, SaveStage::Flushed}) {
            stop_at = stage;
            seen.clear();
            CHECK_THROWS_WITH_AS(save_safetensors(path, other), "stopped here", Error);
            REQUIRE(!seen.empty());
            CHECK(seen.back() == std::make_pair(path, stage));
            CHECK(seen.front().second == SaveStage::HeaderWritten);
        }
    }
    CHECK(read_bytes(path) == before);
    for (const std::string& name : files()) {
        CAPTURE(name);
        CHECK(!contains(name, ".tmp."));
    }
}

TEST_CASE("core/safetensors: sample files for the minidl-inspect tests load back as written") {
    // examples/CMakeLists.txt runs this case with MINIDL_INSPECT_SAMPLES_DIR set, then runs
    // minidl-inspect on the files; run alone, it writes them to a temporary directory.
    TempDir tmp;
    const char* env = std::getenv("MINIDL_INSPECT_SAMPLES_DIR");
    const std::string dir = env != nullptr ? env : tmp.path.string();
    fs::create_directories(dir);
    StateDict s;
    s.tensors["fc1.weight"] = Tensor::from_vector(std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3});
    s.tensors["fc1.bias"] = Tensor::zeros({2}, DType::BF16);
    s.tensors["step"] = Tensor::scalar(7, DType::I64);
    s.metadata["format"] = "pt";
    const std::string valid = dir + "/valid.safetensors";
    save_safetensors(valid, s);
    check_same_state(load_safetensors(valid), s);

    std::vector<uint8_t> bytes = read_bytes(valid);
    bytes.resize(bytes.size() - 5);  // the last tensor loses 5 bytes
    const std::string truncated = dir + "/truncated.safetensors";
    write_bytes(truncated, bytes);
    CHECK_THROWS_WITH_AS(load_safetensors(truncated),
                         doctest::Contains("run past the end of the data buffer"), FormatError);
}
