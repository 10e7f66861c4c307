// tests/core/test_safetensors_integrity.cpp — the CRC-32 that every file save_safetensors writes
// carries: the checksum itself (zlib's check value), a flipped bit anywhere in the data refused by
// both readers, a truncated file refused at every length, files of other programs (no checksum)
// still loading, and the key kept out of the caller's metadata.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/crc32.h"
#include "core/safetensors.h"
#include "tests/support/compare.h"

using namespace minidl;
namespace fs = std::filesystem;

namespace {

struct TempDir {
    fs::path path;
    TempDir() {
        std::string pattern = (fs::temp_directory_path() / "minidl_integrity_XXXXXX").string();
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
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
    REQUIRE(out.good());
}

StateDict small_state() {
    StateDict s;
    s.tensors["fc1.weight"] = Tensor::arange(0, 6).view({2, 3});
    s.tensors["fc1.bias"] = Tensor::from_vector(std::vector<float>{-1.5f, 2.25f}, {2});
    s.tensors["step"] = Tensor::scalar(7, DType::I64);
    s.metadata["format"] = "pt";
    return s;
}

uint64_t data_start(const std::vector<uint8_t>& file) {
    uint64_t n = 0;
    std::memcpy(&n, file.data(), 8);
    return 8 + n;
}

}  // namespace

TEST_CASE("core/crc32: zlib's CRC-32, in one call or in pieces") {
    const char* check = "123456789";
    CHECK(crc32(0, check, 9) == 0xCBF43926u);  // the CRC-32 check value (zlib.crc32 gives it)
    CHECK(crc32(0, nullptr, 0) == 0u);
    std::vector<uint8_t> bytes(77);
    for (size_t i = 0; i < bytes.size(); ++i)
        bytes[i] = static_cast<uint8_t>(i * 37 + 11);
    const uint32_t whole = crc32(0, bytes.data(), bytes.size());
    for (size_t cut = 0; cut <= bytes.size(); ++cut) {
        CAPTURE(cut);
        CHECK(crc32(crc32(0, bytes.data(), cut), bytes.data() + cut, bytes.size() - cut) == whole);
    }
    // Every single-bit change alters it.
    for (size_t bit = 0; bit < bytes.size() * 8; ++bit) {
        bytes[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
        CHECK(crc32(0, bytes.data(), bytes.size()) != whole);
        bytes[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
    }
}

TEST_CASE("core/safetensors: written files carry the data's CRC-32 as a string in __metadata__") {
    TempDir dir;
    const std::string path = dir.file("m.safetensors");
    const StateDict state = small_state();
    save_safetensors(path, state);
    const std::vector<uint8_t> file = read_bytes(path);
    const uint64_t start = data_start(file);
    const uint32_t crc = crc32(0, file.data() + start, file.size() - start);
    const std::string header(file.begin() + 8, file.begin() + static_cast<int64_t>(start));
    char hex[9];
    std::snprintf(hex, sizeof hex, "%08x", crc);
    CHECK(header.find(std::string("\"minidl.data_crc32\":\"") + hex + "\"") != std::string::npos);
    const SafetensorsHeader h = read_safetensors_header(path);
    REQUIRE(h.data_crc32.has_value());
    CHECK(*h.data_crc32 == crc);
    // The key is the file's own: the caller gets back exactly its metadata.
    CHECK(h.metadata == state.metadata);
    CHECK(load_safetensors(path).metadata == state.metadata);
    StateDict with_key = state;
    with_key.metadata[kSafetensorsChecksumKey] = "00000000";
    CHECK_THROWS_WITH_AS(save_safetensors(dir.file("other.safetensors"), with_key),
                         doctest::Contains("minidl.data_crc32"), ValueError);
    CHECK_FALSE(fs::exists(dir.file("other.safetensors")));
}

TEST_CASE("core/safetensors: a flipped bit anywhere in the data is refused by both readers") {
    TempDir dir;
    const std::string path = dir.file("m.safetensors");
    save_safetensors(path, small_state());
    const std::vector<uint8_t> good = read_bytes(path);
    const uint64_t start = data_start(good);
    uint64_t data_bytes = 0;
    for (const auto& [name, t] : small_state().tensors)
        data_bytes += t.nbytes();
    REQUIRE(good.size() - start == data_bytes);
    for (uint64_t byte = start; byte < good.size(); ++byte) {
        for (int bit : {0, 7}) {
            CAPTURE(byte);
            CAPTURE(bit);
            std::vector<uint8_t> bad = good;
            bad[byte] ^= static_cast<uint8_t>(1u << bit);
            write_bytes(path, bad);
            CHECK_THROWS_WITH_AS(load_safetensors(path), doctest::Contains("fails its checksum"),
                                 FormatError);
            CHECK_THROWS_WITH_AS(parse_safetensors(bad.data(), bad.size(), "m"),
                                 doctest::Contains("m: the data fails its checksum"), FormatError);
        }
    }
    // A changed checksum is a mismatch too, and a malformed one is named.
    std::string text(good.begin(), good.end());
    const size_t at = text.find("\"minidl.data_crc32\":\"") + 21;
    for (const char* value : {"00000000", "ABCDEF01", "1234567z"}) {
        CAPTURE(value);
        std::string bad = text;
        bad.replace(at, 8, value);
        write_bytes(path, {bad.begin(), bad.end()});
        CHECK_THROWS_AS(load_safetensors(path), FormatError);
    }
    std::string bad = text;
    bad.replace(at, 8, "1234567z");
    write_bytes(path, {bad.begin(), bad.end()});
    CHECK_THROWS_WITH_AS(load_safetensors(path),
                         doctest::Contains("'1234567z', expected 8 lowercase hex digits"),
                         FormatError);
}

TEST_CASE("core/safetensors: a file truncated at any length is refused") {
    TempDir dir;
    const std::string path = dir.file("m.safetensors");
    save_safetensors(path, small_state());
    const std::vector<uint8_t> good = read_bytes(path);
    for (size_t len = 0; len < good.size(); ++len) {
        CAPTURE(len);
        write_bytes(path, {good.begin(), good.begin() + static_cast<int64_t>(len)});
        CHECK_THROWS_AS(load_safetensors(path), FormatError);
        CHECK_THROWS_AS(parse_safetensors(good.data(), len, "m"), FormatError);
    }
}

TEST_CASE("core/safetensors: files without a checksum (other writers) load unverified") {
    // The reference writer's own test file (test_serialization in safetensors/src/tensor.rs).
    const std::string header =
        R"({"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}})";
    std::vector<uint8_t> file(8);
    file[0] = static_cast<uint8_t>(header.size());
    file.insert(file.end(), header.begin(), header.end());
    for (float v : {0.f, 1.f, 2.f, 3.f, 4.f, 5.f}) {
        uint8_t b[4];
        std::memcpy(b, &v, 4);
        file.insert(file.end(), b, b + 4);
    }
    TempDir dir;
    const std::string path = dir.file("ref.safetensors");
    write_bytes(path, file);
    CHECK_FALSE(read_safetensors_header(path).data_crc32.has_value());
    const StateDict got = load_safetensors(path);
    CHECK(got.at("attn.0").to_vector<float>() == std::vector<float>{0, 1, 2, 3, 4, 5});
    CHECK(got.metadata.empty());
    CHECK(parse_safetensors(file.data(), file.size(), "ref").tensors.size() == 1);
}
