// tests/fuzz/replay_main.cpp — the fuzz targets without libFuzzer: runs every file of the given
// files and folders through one target, so the committed seed corpus and every input that ever
// crashed (tests/fuzz/regressions/<target>/) are replayed by the ordinary test suite, in the
// Release and the sanitizer builds alike.
//
//   minidl_fuzz_replay <target> <file or folder>...
//
// Exit status 0 when every input passes; 1 on a non-minidl exception (named with its input); a
// finding aborts with its input named on stderr just before. Folders are read in name order and
// entries starting with '.' are skipped; a missing path is an error (a typo must not pass).
#include <algorithm>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "tests/fuzz/fuzz_support.h"

namespace fs = std::filesystem;

namespace {

std::vector<uint8_t> read_bytes(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: %s <target> <file or folder>...\n", argv[0]);
        return 2;
    }
    const minidl::fuzz::Entry entry = minidl::fuzz::find_target(argv[1]);
    if (entry == nullptr) {
        std::fprintf(stderr, "minidl_fuzz_replay: unknown target '%s'\n", argv[1]);
        return 2;
    }
    std::vector<fs::path> inputs;
    for (int i = 2; i < argc; ++i) {
        const fs::path path = argv[i];
        if (fs::is_directory(path)) {
            std::vector<fs::path> files;
            for (const auto& e : fs::directory_iterator(path))
                if (e.is_regular_file() && !e.path().filename().string().starts_with("."))
                    files.push_back(e.path());
            std::sort(files.begin(), files.end());
            inputs.insert(inputs.end(), files.begin(), files.end());
        } else if (fs::is_regular_file(path)) {
            inputs.push_back(path);
        } else {
            std::fprintf(stderr, "minidl_fuzz_replay: no file or folder '%s'\n", argv[i]);
            return 2;
        }
    }
    for (const fs::path& path : inputs) {
        const std::vector<uint8_t> bytes = read_bytes(path);
        std::fprintf(stderr, "%s: %s (%zu bytes)\n", argv[1], path.c_str(), bytes.size());
        try {
            entry(bytes.data(), bytes.size());
        } catch (const std::exception& e) {
            std::fprintf(stderr, "FAILED: %s: uncaught exception: %s\n", path.c_str(), e.what());
            return 1;
        }
    }
    std::printf("%s: %zu inputs replayed, no finding\n", argv[1], inputs.size());
    return 0;
}
