// examples/text_classifier/io.h — the file helpers the data loaders share.
//
// read_file reads a whole file in one read (the corpus is 6,046 small files: one open, one fstat,
// one read each); write_file_atomic writes a temporary file beside the target, flushes it to disk
// and renames it, so a reader never sees half a file, not even after a crash. I/O failures throw
// minidl::Error naming the path and errno's text.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace textclf {

std::string read_file(const std::string& path);
// Reads into `out` (reusing its capacity).
void read_file_into(const std::string& path, std::string& out);
void write_file_atomic(const std::string& path, std::string_view contents);

// Calls fn(line, line_no) for every line of `contents` ('\n'-separated; the last one may lack its
// '\n'), numbered from 1, the '\n' left out: the line loop of every line-based format here.
template <class Fn>
void for_each_line(std::string_view contents, Fn&& fn) {
    int64_t line_no = 0;
    for (size_t pos = 0; pos < contents.size();) {
        size_t eol = contents.find('\n', pos);
        if (eol == std::string_view::npos) eol = contents.size();
        fn(contents.substr(pos, eol - pos), ++line_no);
        pos = eol + 1;
    }
}

}  // namespace textclf
