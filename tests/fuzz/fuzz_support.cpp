// tests/fuzz/fuzz_support.cpp — the target table, findings and MemFile (see fuzz_support.h).
#include "tests/fuzz/fuzz_support.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>

namespace minidl::fuzz {

namespace {

std::map<std::string, Entry, std::less<>>& targets() {
    static std::map<std::string, Entry, std::less<>> table;
    return table;
}

}  // namespace

bool register_target(const char* name, Entry entry) {
    targets().emplace(name, entry);
    return true;
}

Entry find_target(std::string_view name) {
    auto it = targets().find(name);
    return it == targets().end() ? nullptr : it->second;
}

void finding(const char* file, int line, const std::string& what) {
    std::fprintf(stderr, "fuzz finding at %s:%d: %s\n", file, line, what.c_str());
    std::fflush(stderr);
    std::abort();  // libFuzzer saves the input as a crash; the replay driver's test fails
}

MemFile::MemFile() {
    fd_ = ::memfd_create("minidl-fuzz", MFD_CLOEXEC);
    if (fd_ < 0)
        finding(__FILE__, __LINE__, detail::concat("memfd_create: ", std::strerror(errno)));
    path_ = detail::concat("/proc/self/fd/", fd_);
}

MemFile::~MemFile() {
    if (fd_ >= 0) ::close(fd_);
}

void MemFile::assign(const uint8_t* data, size_t size) {
    if (::ftruncate(fd_, 0) != 0)
        finding(__FILE__, __LINE__, detail::concat("ftruncate: ", std::strerror(errno)));
    size_t done = 0;
    while (done < size) {
        const ssize_t put = ::pwrite(fd_, data + done, size - done, static_cast<off_t>(done));
        if (put < 0 && errno == EINTR) continue;
        if (put <= 0) finding(__FILE__, __LINE__, detail::concat("pwrite: ", std::strerror(errno)));
        done += static_cast<size_t>(put);
    }
}

}  // namespace minidl::fuzz
