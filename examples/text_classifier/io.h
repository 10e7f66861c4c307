// examples/text_classifier/io.h — the file helpers the data loaders share.
//
// read_file reads a whole file in one read (the corpus is 6,046 small files: one open, one fstat,
// one read each); write_file_atomic writes a temporary file beside the target and renames it, so
// a reader never sees half a file. I/O failures throw minidl::Error naming the path and errno's
// text.
#pragma once

#include <string>
#include <string_view>

namespace textclf {

std::string read_file(const std::string& path);
// Reads into `out` (reusing its capacity).
void read_file_into(const std::string& path, std::string& out);
void write_file_atomic(const std::string& path, std::string_view contents);

}  // namespace textclf
