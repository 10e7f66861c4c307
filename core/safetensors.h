// core/safetensors.h — reading and writing checkpoints in the safetensors format.
//
// Format (https://github.com/huggingface/safetensors#format, reference reader and writer in
// https://github.com/huggingface/safetensors/blob/main/safetensors/src/tensor.rs):
//
//   bytes [0, 8)        N, the header length, unsigned 64-bit little-endian
//   bytes [8, 8 + N)    the header: a UTF-8 JSON object
//                         {"__metadata__": {"key": "value", ...},            (optional)
//                          "fc1.weight": {"dtype": "F32", "shape": [3, 4],
//                                         "data_offsets": [BEGIN, END]}, ...}
//   bytes [8 + N, EOF)  the data buffer; tensor t occupies [8 + N + BEGIN, 8 + N + END)
//
// Tensors are little-endian, row-major and packed; END - BEGIN = numel(shape) * dtype size. The
// tensors tile the buffer exactly: no overlap, no gap, nothing after the last one. Empty tensors
// (a dimension of 0) take no bytes; 0-d tensors have shape []. Header keys are unique. minidl
// also refuses a shape whose nonzero dimensions multiply past 2^63 - 1 (its ops compute strides
// from them), even when a zero dimension makes it empty.
//
// minidl reads and writes the dtypes it has: F32, F64, F16, BF16, I64. Like the reference writer,
// save_safetensors orders tensors by decreasing element size, then by name, so every tensor starts
// at a multiple of its element size, and pads the header with spaces to a multiple of 8 bytes.
//
// Errors: malformed files throw FormatError naming the file and the problem; I/O failures
// (missing file, unwritable directory) throw Error naming the path; invalid arguments to
// save_safetensors (an undefined tensor, a tensor called "__metadata__") throw ValueError.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "core/shape.h"
#include "core/state_dict.h"

namespace minidl {

// Writes `state` to `path` atomically: the file is written to `path + ".tmp.<pid>.<n>"` in the
// same directory, flushed to disk, then renamed over `path`, so a crash or an error never leaves
// a half-written checkpoint (the temporary file is removed on error). CUDA tensors are copied to
// the host. `state.metadata` becomes the header's "__metadata__".
void save_safetensors(const std::string& path, const StateDict& state);

// Reads the checkpoint at `path` into fresh tensors on `device` (never views of the file),
// validating the whole header against the file size before reading any data.
StateDict load_safetensors(const std::string& path, Device device = Device::cpu());

// Parses a safetensors file held in memory (`size` bytes at `bytes`) into fresh CPU tensors.
// `what` names the source in error messages. Never reads outside [bytes, bytes + size).
StateDict parse_safetensors(const void* bytes, size_t size, const std::string& what);

// One tensor of a header: its name, dtype, shape and byte range in the data buffer.
struct SafetensorsEntry {
    std::string name;
    DType dtype = DType::F32;
    Shape shape;
    uint64_t begin = 0, end = 0;  // [begin, end) relative to the start of the data buffer
};

// A validated header: entries sorted by name, the metadata, and the layout sizes.
struct SafetensorsHeader {
    std::vector<SafetensorsEntry> entries;
    std::map<std::string, std::string> metadata;
    uint64_t header_bytes = 0;  // N, the JSON header's length
    uint64_t data_bytes = 0;    // the data buffer's length
};

// Reads and validates only the header of the file at `path` (the data is not read): every check
// that load_safetensors makes, for tools that list a checkpoint's contents.
SafetensorsHeader read_safetensors_header(const std::string& path);

// The dtype's name in safetensors headers: "F32", "F64", "F16", "BF16", "I64".
std::string_view safetensors_dtype_name(DType dtype);

}  // namespace minidl
