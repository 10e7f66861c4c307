// core/crc32.cpp — CRC-32, table-driven eight bytes at a time ("slicing-by-8", Kounavis & Berry,
// "A Systematic Approach to Building High Performance Software-Based CRC Generators", ISCC 2005).
//
// table[0][b] is the CRC register's update for one byte b: b shifted through P(x) eight times.
// table[k][b] = the update for b followed by k zero bytes, so eight bytes fold into the register
// with eight independent lookups XORed together instead of eight dependent steps.
#include "core/crc32.h"

#include <array>
#include <bit>
#include <cstring>

namespace minidl {

namespace {

static_assert(std::endian::native == std::endian::little, "the 8-byte step reads little-endian");

constexpr uint32_t kPolynomial = 0xEDB88320u;  // P(x), lowest-order bit first

constexpr std::array<std::array<uint32_t, 256>, 8> make_tables() {
    std::array<std::array<uint32_t, 256>, 8> t{};
    for (uint32_t b = 0; b < 256; ++b) {
        uint32_t c = b;
        for (int bit = 0; bit < 8; ++bit)
            c = (c & 1u) ? kPolynomial ^ (c >> 1) : c >> 1;
        t[0][b] = c;
    }
    for (size_t k = 1; k < 8; ++k)
        for (uint32_t b = 0; b < 256; ++b)
            t[k][b] = (t[k - 1][b] >> 8) ^ t[0][t[k - 1][b] & 0xFFu];
    return t;
}

constexpr auto kTables = make_tables();

}  // namespace

uint32_t crc32(uint32_t crc, const void* data, size_t n) {
    const auto* p = static_cast<const uint8_t*>(data);
    uint32_t c = ~crc;
    for (; n >= 8; n -= 8, p += 8) {
        uint32_t lo = 0, hi = 0;
        std::memcpy(&lo, p, 4);
        std::memcpy(&hi, p + 4, 4);
        lo ^= c;
        c = kTables[7][lo & 0xFFu] ^ kTables[6][(lo >> 8) & 0xFFu] ^
            kTables[5][(lo >> 16) & 0xFFu] ^ kTables[4][lo >> 24] ^ kTables[3][hi & 0xFFu] ^
            kTables[2][(hi >> 8) & 0xFFu] ^ kTables[1][(hi >> 16) & 0xFFu] ^ kTables[0][hi >> 24];
    }
    for (; n > 0; --n, ++p)
        c = kTables[0][(c ^ *p) & 0xFFu] ^ (c >> 8);
    return ~c;
}

}  // namespace minidl
