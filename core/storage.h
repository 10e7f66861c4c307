// core/storage.h — a reference-counted block of device memory and its version counter.
//
// Tensors that share a Storage (views, reshapes, detach()) share its bytes and its version
// counter. Every in-place write bumps the version; a tensor saved for backward remembers the
// version it saw, so an in-place change before backward is detected instead of silently
// producing a wrong gradient (see autograd.h, SavedTensor).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "core/device.h"

namespace minidl {

class Storage {
  public:
    // Takes nbytes from the device's caching allocator (no memory for nbytes == 0).
    Storage(size_t nbytes, Device device);
    ~Storage();
    Storage(const Storage&) = delete;
    Storage& operator=(const Storage&) = delete;

    void* data() const { return data_; }
    size_t nbytes() const { return nbytes_; }
    Device device() const { return device_; }

    uint64_t version() const { return version_.load(std::memory_order_relaxed); }
    void bump_version() { version_.fetch_add(1, std::memory_order_relaxed); }

  private:
    void* data_ = nullptr;
    size_t nbytes_ = 0;
    Device device_;
    std::atomic<uint64_t> version_{0};
};

}  // namespace minidl
