// core/philox.h — the Philox4x32-10 counter-based random number generator.
//
// Salmon, Moraes, Dror, Shaw: "Parallel random numbers: as easy as 1, 2, 3", SC 2011,
// https://doi.org/10.1145/2063384.2063405. A bijection of a 128-bit counter under a 64-bit key:
// ten rounds of two 32x32->64 multiplies and xors. Any element's random bits are a pure function of
// (seed, counter), so a kernel can draw element i without touching any state, in any order, on
// any device: CPU and CUDA produce the same numbers, whatever the thread count.
//
// Usable from host and device code (nvcc sees __host__ __device__).
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define MDL_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define MDL_HOST_DEVICE inline
#endif

namespace minidl {

struct Philox4 {
    uint32_t v[4];
};

MDL_HOST_DEVICE Philox4 philox4x32_10(uint64_t counter, uint64_t seed) {
    constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
    constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
    uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32);
    uint32_t c2 = 0, c3 = 0;
    uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
    for (int round = 0; round < 10; ++round) {
        const uint64_t p0 = static_cast<uint64_t>(kMul0) * c0;
        const uint64_t p1 = static_cast<uint64_t>(kMul1) * c2;
        const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
        const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
        c1 = static_cast<uint32_t>(p1);
        c3 = static_cast<uint32_t>(p0);
        c0 = n0;
        c2 = n2;
        k0 += kWeyl0;
        k1 += kWeyl1;
    }
    return Philox4{{c0, c1, c2, c3}};
}

// Uniform float in [0, 1) from the top 24 bits (every value exactly representable).
MDL_HOST_DEVICE float philox_uniform(uint32_t bits) {
    return static_cast<float>(bits >> 8) * (1.0f / 16777216.0f);
}

// Uniform float in (0, 1]: safe under log() in Box-Muller.
MDL_HOST_DEVICE float philox_uniform_open0(uint32_t bits) {
    return static_cast<float>((bits >> 8) + 1u) * (1.0f / 16777216.0f);
}

}  // namespace minidl
