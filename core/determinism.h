// core/determinism.h — process-wide switches for reproducibility and math mode.
//
//   set_deterministic(true)   every kernel gives bitwise the same result run to run on the same
//                             device. The CPU kernels always do; on CUDA it replaces the
//                             atomicAdd scatters of embedding / embedding_bag / index_add backward
//                             by a sort of the ids and a fixed-order sum per id. Default: false.
//   set_allow_tf32(true)      lets CUDA F32 matrix products use TF32 tensor cores (10-bit
//                             mantissa inputs, float accumulation): several times faster, ~1e-3
//                             relative error. Default: false (full F32, as the CPU computes).
//                             No effect on the CPU or on F64/F16/BF16 products.
//
// Both are plain atomics read at kernel launch; changing them between launches is safe from any
// thread. DeterministicGuard sets the mode for a scope and restores the previous one.
#pragma once

namespace minidl {

void set_deterministic(bool enabled);
bool deterministic();

void set_allow_tf32(bool enabled);
bool allow_tf32();

class DeterministicGuard {
  public:
    explicit DeterministicGuard(bool enabled = true) : saved_(deterministic()) {
        set_deterministic(enabled);
    }
    ~DeterministicGuard() { set_deterministic(saved_); }
    DeterministicGuard(const DeterministicGuard&) = delete;
    DeterministicGuard& operator=(const DeterministicGuard&) = delete;

  private:
    bool saved_;
};

}  // namespace minidl
