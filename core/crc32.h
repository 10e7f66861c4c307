// core/crc32.h — CRC-32 of a byte string: the checksum safetensors files written by minidl carry.
//
// The CRC of zlib, PNG and Ethernet (IEEE 802.3): the message, as a polynomial over GF(2) with the
// bits of each byte taken lowest first, times x^32, reduced modulo
//   P(x) = x^32 + x^26 + x^23 + x^22 + x^16 + x^12 + x^11 + x^10 + x^8 + x^7 + x^5 + x^4 + x^2 + x
//   + 1
// (0xEDB88320 in that bit order), with the register starting at and finally XORed with 0xFFFFFFFF.
// It detects every error burst of up to 32 bits, so every single flipped bit. crc32("123456789")
// is 0xCBF43926; Python's zlib.crc32(data) computes the same number.
#pragma once

#include <cstddef>
#include <cstdint>

namespace minidl {

// The CRC-32 of the bytes seen so far followed by [data, data + n), given `crc`, the CRC-32 of the
// bytes seen so far (0 for none): crc32(crc32(0, a), b) == crc32(0, a + b), as zlib's crc32().
uint32_t crc32(uint32_t crc, const void* data, size_t n);

}  // namespace minidl
