// core/rng.h — seeded, counter-based random number generation.
//
// A Generator is a seed plus a counter offset. Each random op reserves as many Philox counter
// blocks as it needs (one block = four 32-bit draws) and passes (seed, first block) to its kernel,
// which computes element i from block offset + i / 4 alone (core/philox.h). Hence:
//   - same seed, same sequence of ops -> bitwise the same numbers on every run and thread count;
//   - CPU and CUDA draw the same uniform bits for the same (seed, offset);
//   - the whole state is two integers, saved in checkpoints (state()/set_state()).
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

namespace minidl {

class Generator {
  public:
    explicit Generator(uint64_t seed = 0) : seed_(seed), offset_(0) {}

    // Restarts the sequence from `seed`.
    void manual_seed(uint64_t seed) {
        seed_ = seed;
        offset_.store(0);
    }
    uint64_t seed() const { return seed_; }

    // Reserves `blocks` counter blocks; returns the first. Thread-safe.
    uint64_t reserve(uint64_t blocks) { return offset_.fetch_add(blocks); }

    // Checkpointing: (seed, offset) is the whole state.
    struct State {
        uint64_t seed, offset;
    };
    State state() const { return {seed_, offset_.load()}; }
    void set_state(State s) {
        seed_ = s.seed;
        offset_.store(s.offset);
    }

    // Host-side draws (data shuffling, noise in examples); each consumes one counter block.
    uint64_t next_u64();
    double next_uniform();                     // [0, 1), 53 random bits
    int64_t randint(int64_t n);                // uniform on [0, n), n > 0, unbiased
    std::vector<int64_t> randperm(int64_t n);  // a uniform random permutation of 0..n-1

  private:
    uint64_t seed_;
    std::atomic<uint64_t> offset_;
};

// The generator used when none is given; seeded with 0 at start.
Generator& default_generator();
// Reseeds the default generator.
void manual_seed(uint64_t seed);

}  // namespace minidl
