// core/rng.cpp — host-side draws of the counter-based generator (see rng.h).
#include "core/rng.h"

#include "core/check.h"
#include "core/philox.h"

namespace minidl {

uint64_t Generator::next_u64() {
    const Philox4 r = philox4x32_10(reserve(1), seed_);
    return (static_cast<uint64_t>(r.v[0]) << 32) | r.v[1];
}

double Generator::next_uniform() {
    return static_cast<double>(next_u64() >> 11) * 0x1.0p-53;
}

int64_t Generator::randint(int64_t n) {
    MDL_CHECK(n > 0, ValueError, "Generator::randint: n must be positive, got ", n);
    // Rejection sampling: draws above the largest multiple of n would bias the low residues.
    const uint64_t un = static_cast<uint64_t>(n);
    const uint64_t limit = UINT64_MAX - UINT64_MAX % un;
    uint64_t x;
    do {
        x = next_u64();
    } while (x >= limit);
    return static_cast<int64_t>(x % un);
}

std::vector<int64_t> Generator::randperm(int64_t n) {
    MDL_CHECK(n >= 0, ValueError, "Generator::randperm: n must be non-negative, got ", n);
    std::vector<int64_t> p(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i)
        p[i] = i;
    // Fisher-Yates, from the back.
    for (int64_t i = n - 1; i > 0; --i)
        std::swap(p[i], p[randint(i + 1)]);
    return p;
}

Generator& default_generator() {
    static Generator gen(0);
    return gen;
}

void manual_seed(uint64_t seed) {
    default_generator().manual_seed(seed);
}

}  // namespace minidl
