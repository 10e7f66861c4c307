// tests/fuzz/fuzz_support.h — what every fuzz target shares: how a target is declared, how a
// finding is reported, and an in-memory file for the readers that take a path.
//
// Each tests/fuzz/fuzz_<target>.cpp defines one function `int f(const uint8_t*, size_t)` that feeds
// the bytes to the real code and declares it with MINIDL_FUZZ_TARGET(name, f). Built with
// MINIDL_LIBFUZZER (the MINIDL_FUZZ=ON build) that becomes libFuzzer's LLVMFuzzerTestOneInput;
// otherwise it registers f under `name` for the replay driver (replay_main.cpp), which runs the
// committed seed corpus and regressions in the ordinary test suite.
//
// A minidl::Error thrown by the code under test is an expected rejection of bad input
// (InternalError excepted: that is minidl's own broken invariant). A violated property is a
// finding: FUZZ_EXPECT prints it and aborts, which libFuzzer and the replay driver both report.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/check.h"

namespace minidl::fuzz {

using Entry = int (*)(const uint8_t* data, size_t size);

// The replay driver's table of targets.
bool register_target(const char* name, Entry entry);
Entry find_target(std::string_view name);

[[noreturn]] void finding(const char* file, int line, const std::string& what);

// Runs fn(); a minidl::Error other than InternalError is a rejection (returns false with its
// message in *message when given), anything else propagates.
template <typename Fn>
bool accepts(Fn&& fn, std::string* message = nullptr) {
    try {
        fn();
        return true;
    } catch (const InternalError& e) {
        finding(__FILE__, __LINE__, detail::concat("InternalError: ", e.what()));
    } catch (const Error& e) {
        if (message != nullptr) *message = e.what();
        return false;
    }
}

// A memfd (anonymous in-memory file) reachable by a path, /proc/self/fd/<fd>: the readers that
// take a path read the fuzz input without touching the disk.
class MemFile {
  public:
    MemFile();
    ~MemFile();
    MemFile(const MemFile&) = delete;
    MemFile& operator=(const MemFile&) = delete;

    void assign(const uint8_t* data, size_t size);  // the file's whole contents
    const std::string& path() const { return path_; }

  private:
    int fd_ = -1;
    std::string path_;
};

inline std::string_view as_text(const uint8_t* data, size_t size) {
    return {reinterpret_cast<const char*>(data), size};
}

}  // namespace minidl::fuzz

#define FUZZ_EXPECT(cond, ...)                                                           \
    do {                                                                                 \
        if (!(cond))                                                                     \
            ::minidl::fuzz::finding(__FILE__, __LINE__,                                  \
                                    ::minidl::detail::concat(#cond, ": ", __VA_ARGS__)); \
    } while (0)

#ifdef MINIDL_LIBFUZZER
#define MINIDL_FUZZ_TARGET(name, fn)                                          \
    extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) { \
        return fn(data, size);                                                \
    }
#else
#define MINIDL_FUZZ_TARGET(name, fn)                            \
    [[maybe_unused]] static const bool fuzz_target_registered = \
        ::minidl::fuzz::register_target(name, fn);
#endif
