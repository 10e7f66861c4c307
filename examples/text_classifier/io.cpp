// examples/text_classifier/io.cpp — whole-file read and atomic write (see io.h).
#include "examples/text_classifier/io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "core/check.h"

namespace textclf {

using minidl::Error;

namespace {

// Closes the descriptor on every path out, exceptions included.
struct Fd {
    int fd = -1;
    ~Fd() {
        if (fd >= 0) ::close(fd);
    }
};

}  // namespace

void read_file_into(const std::string& path, std::string& out) {
    Fd f;
    f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    MDL_CHECK(f.fd >= 0, Error, "read_file: cannot open '", path, "': ", std::strerror(errno));
    struct stat st {};
    MDL_CHECK(::fstat(f.fd, &st) == 0, Error, "read_file: cannot stat '", path,
              "': ", std::strerror(errno));
    MDL_CHECK(!S_ISDIR(st.st_mode), Error, "read_file: '", path, "' is a directory, not a file");
    // st_size is a hint only (a file may change while read): read until end of file.
    out.resize(static_cast<size_t>(st.st_size) + 1);
    size_t used = 0;
    for (;;) {
        if (used == out.size()) out.resize(out.size() * 2 + 4096);
        ssize_t got = ::read(f.fd, out.data() + used, out.size() - used);
        if (got < 0 && errno == EINTR) continue;
        MDL_CHECK(got >= 0, Error, "read_file: cannot read '", path, "': ", std::strerror(errno));
        if (got == 0) break;
        used += static_cast<size_t>(got);
    }
    out.resize(used);
}

std::string read_file(const std::string& path) {
    std::string out;
    read_file_into(path, out);
    return out;
}

void write_file_atomic(const std::string& path, std::string_view contents) {
    static std::atomic<unsigned> counter{0};
    std::string tmp = minidl::detail::concat(path, ".tmp.", ::getpid(), ".", counter.fetch_add(1));
    Fd f;
    f.fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    MDL_CHECK(f.fd >= 0, Error, "write_file: cannot create '", tmp, "': ", std::strerror(errno));
    size_t done = 0;
    while (done < contents.size()) {
        ssize_t put = ::write(f.fd, contents.data() + done, contents.size() - done);
        if (put < 0 && errno == EINTR) continue;
        if (put < 0) {
            int err = errno;
            ::unlink(tmp.c_str());
            MDL_CHECK(false, Error, "write_file: cannot write '", tmp, "': ", std::strerror(err));
        }
        done += static_cast<size_t>(put);
    }
    // fsync first: after a crash the file under its final name is the whole new file, never an
    // empty one whose data had not reached the disk yet.
    if (::fsync(f.fd) != 0) {
        int err = errno;
        ::unlink(tmp.c_str());
        MDL_CHECK(false, Error, "write_file: cannot flush '", tmp, "': ", std::strerror(err));
    }
    int fd = f.fd;
    f.fd = -1;
    if (::close(fd) != 0 || ::rename(tmp.c_str(), path.c_str()) != 0) {
        int err = errno;
        ::unlink(tmp.c_str());
        MDL_CHECK(false, Error, "write_file: cannot write '", path, "': ", std::strerror(err));
    }
}

}  // namespace textclf
