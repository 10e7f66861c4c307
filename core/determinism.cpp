// core/determinism.cpp — see determinism.h.
#include "core/determinism.h"

#include <atomic>

namespace minidl {

namespace {
std::atomic<bool> g_deterministic{false};
std::atomic<bool> g_allow_tf32{false};
}  // namespace

void set_deterministic(bool enabled) {
    g_deterministic.store(enabled, std::memory_order_relaxed);
}
bool deterministic() {
    return g_deterministic.load(std::memory_order_relaxed);
}

void set_allow_tf32(bool enabled) {
    g_allow_tf32.store(enabled, std::memory_order_relaxed);
}
bool allow_tf32() {
    return g_allow_tf32.load(std::memory_order_relaxed);
}

}  // namespace minidl
