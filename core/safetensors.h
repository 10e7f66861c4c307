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
// Integrity: every file save_safetensors writes carries the CRC-32 (core/crc32.h, zlib's) of its
// data buffer in __metadata__ under kSafetensorsChecksumKey, as 8 lowercase hex digits (a string,
// as the format requires of metadata values: PyTorch's and Hugging Face's readers load the file
// as usual and pass the key through). load_safetensors and parse_safetensors verify it before
// returning anything and throw FormatError on a mismatch, so a flipped bit in the tensor data is
// caught; the size checks above catch a truncated file. Files without the key (written by other
// programs) load unverified. The key is the file's own: it is not in the returned metadata, and
// save_safetensors refuses it in the caller's. A change to the header itself (names, shapes,
// other metadata) is not covered by the checksum; most such changes break the header's
// validation instead.
//
// Errors: malformed files throw FormatError naming the file and the problem; I/O failures
// (missing file, unwritable directory) throw Error naming the path; invalid arguments to
// save_safetensors (an undefined tensor, a tensor called "__metadata__") throw ValueError.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "core/shape.h"
#include "core/state_dict.h"

namespace minidl {

// The __metadata__ key of the data buffer's CRC-32.
inline constexpr const char* kSafetensorsChecksumKey = "minidl.data_crc32";

// Writes `state` to `path` atomically: the file is written to `path + ".tmp.<pid>.<n>"` in the
// same directory, flushed to disk, then renamed over `path`, so a crash or an error never leaves
// a half-written checkpoint (the temporary file is removed on error). CUDA tensors are copied to
// the host. `state.metadata` becomes the header's "__metadata__".
void save_safetensors(const std::string& path, const StateDict& state);

// Crash testing: when a hook is set, save_safetensors calls it with the target path at two
// moments of every write — once the header is in the temporary file (the data not yet), and once
// the whole temporary file is flushed but not yet renamed — so that a test program can kill
// itself there and check that the previous file survives (examples/text_classifier/kill_points.h).
// nullptr (the default) removes it. A plain atomic pointer: set it before any thread writes.
enum class SaveStage { HeaderWritten, Flushed };
using SaveFaultHook = void (*)(const std::string& path, SaveStage stage);
void set_save_fault_hook(SaveFaultHook hook);

// Reads the checkpoint at `path` into fresh tensors on `device` (never views of the file),
// validating the whole header against the file size before reading any data, and the data
// against the header's checksum (when it has one) before returning.
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
    std::map<std::string, std::string> metadata;  // without the checksum entry
    std::optional<uint32_t> data_crc32;           // the checksum entry, when there is one
    uint64_t header_bytes = 0;                    // N, the JSON header's length
    uint64_t data_bytes = 0;                      // the data buffer's length
};

// Reads and validates only the header of the file at `path` (the data is not read, so neither is
// the checksum verified): every other check that load_safetensors makes, for tools that list a
// checkpoint's contents.
SafetensorsHeader read_safetensors_header(const std::string& path);

// The dtype's name in safetensors headers: "F32", "F64", "F16", "BF16", "I64".
std::string_view safetensors_dtype_name(DType dtype);

}  // namespace minidl
