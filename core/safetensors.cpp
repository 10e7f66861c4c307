// core/safetensors.cpp — see safetensors.h for the format.
//
// Reading treats the file as hostile: every number in the header is checked before it is used —
// the header length against the file size (before anything is allocated), each byte range against
// the data buffer, each range's length against shape x dtype size (with overflow checks), and the
// ranges against each other (they must tile the buffer). Only then are tensors allocated, so a
// tensor's allocation is bounded by the file's size. The rules follow the reference reader,
// https://github.com/huggingface/safetensors/blob/main/safetensors/src/tensor.rs
// (SafeTensors::read_metadata, Metadata::validate), including its 100 MB header limit.
#include "core/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <tuple>
#include <utility>

#include "core/check.h"
#include "core/crc32.h"

namespace minidl {

namespace {

// The data buffer is copied byte for byte into tensors: that is only right on a little-endian
// host, which every machine minidl targets is.
static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian");

// The reference reader refuses larger headers (MAX_HEADER_SIZE): a file claiming more is
// corrupt or hostile, and parsing it would cost time and memory for nothing.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

// Where an error happened: "<op>: <what>: <problem>".
struct Where {
    const char* op;
    const std::string& what;
};

template <typename... Parts>
[[noreturn]] void fail(const Where& w, Parts&&... parts) {
    throw FormatError(detail::concat(w.op, ": ", w.what, ": ", std::forward<Parts>(parts)...));
}

template <typename... Parts>
[[noreturn]] void fail_io(const Where& w, Parts&&... parts) {
    throw Error(detail::concat(w.op, ": ", w.what, ": ", std::forward<Parts>(parts)...));
}

std::optional<DType> dtype_from_name(std::string_view name) {
    for (DType t : {DType::F32, DType::F64, DType::F16, DType::BF16, DType::I64})
        if (safetensors_dtype_name(t) == name) return t;
    return std::nullopt;
}

// Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF. Returns the
// offset of the first bad byte, or n when all is well.
size_t first_invalid_utf8(const uint8_t* s, size_t n) {
    size_t i = 0;
    while (i < n) {
        const uint8_t c = s[i];
        size_t len = 0;
        uint8_t lo = 0x80, hi = 0xBF;  // the allowed range of the second byte
        if (c < 0x80) {
            len = 1;
        } else if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            if (c == 0xE0) lo = 0xA0;  // overlong
            if (c == 0xED) hi = 0x9F;  // surrogates U+D800..U+DFFF
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            if (c == 0xF0) lo = 0x90;  // overlong
            if (c == 0xF4) hi = 0x8F;  // above U+10FFFF
        } else {
            return i;
        }
        if (len > n - i) return i;
        for (size_t k = 1; k < len; ++k) {
            const uint8_t b = s[i + k];
            const uint8_t klo = k == 1 ? lo : 0x80, khi = k == 1 ? hi : 0xBF;
            if (b < klo || b > khi) return i;
        }
        i += len;
    }
    return n;
}

uint64_t read_u64_le(const uint8_t* p) {
    uint64_t v = 0;
    std::memcpy(&v, p, sizeof v);  // little-endian host (static_assert above)
    return v;
}

// Checks the header length N read from the first 8 bytes against the file's size (at least 8,
// which the caller has checked).
void check_header_length(const Where& w, uint64_t n, uint64_t file_size) {
    if (n > kMaxHeaderBytes)
        fail(w, "header length ", n, " exceeds the limit of ", kMaxHeaderBytes,
             " bytes (is this a safetensors file?)");
    if (n > file_size - 8)
        fail(w, "header length ", n, " runs past the end of the file (the file has ", file_size,
             " bytes, leaving ", file_size - 8, " after the 8-byte length)");
}

std::string offsets_str(uint64_t begin, uint64_t end) {
    return detail::concat("[", begin, ", ", end, ")");
}

// Reads one tensor entry {"dtype": ..., "shape": [...], "data_offsets": [begin, end]}. Other
// keys are ignored, as the reference reader does.
SafetensorsEntry parse_entry(const Where& w, const std::string& name, const nlohmann::json& j,
                             uint64_t data_bytes) {
    SafetensorsEntry e;
    e.name = name;
    if (!j.is_object())
        fail(w, "tensor '", name, "': entry is a JSON ", j.type_name(), ", expected an object");
    for (const char* key : {"dtype", "shape", "data_offsets"})
        if (!j.contains(key)) fail(w, "tensor '", name, "': entry has no \"", key, "\"");

    const nlohmann::json& jd = j["dtype"];
    if (!jd.is_string())
        fail(w, "tensor '", name, "': dtype is a JSON ", jd.type_name(), ", expected a string");
    const std::string& dname = jd.get_ref<const std::string&>();
    const std::optional<DType> dtype = dtype_from_name(dname);
    if (!dtype)
        fail(w, "tensor '", name, "': unsupported dtype '", dname,
             "' (minidl reads F32, F64, F16, BF16 and I64)");
    e.dtype = *dtype;

    const nlohmann::json& js = j["shape"];
    if (!js.is_array())
        fail(w, "tensor '", name, "': shape is a JSON ", js.type_name(), ", expected an array");
    // The element count, and the product of the nonzero dimensions: a zero dimension makes the
    // count 0, but ops still multiply the other dimensions (strides, the sizes around a reduced
    // dim), so their product must fit in int64 too. [0, 2^32, 2^32] is refused here although
    // the reference reader and PyTorch accept it: minidl's ops could not use it.
    int64_t numel = 1, nonzero_product = 1;
    for (const nlohmann::json& d : js) {
        // is_number_unsigned: a non-negative integer literal (not -1, not 2.0, not "2").
        if (!d.is_number_unsigned())
            fail(w, "tensor '", name, "': shape ", js.dump(),
                 " has a dimension that is not a non-negative integer: ", d.dump());
        const uint64_t u = d.get<uint64_t>();
        if (u > static_cast<uint64_t>(INT64_MAX))
            fail(w, "tensor '", name, "': shape dimension ", u, " is too large");
        const auto dim = static_cast<int64_t>(u);
        if (dim != 0 && __builtin_mul_overflow(nonzero_product, dim, &nonzero_product))
            fail(w, "tensor '", name, "': the number of elements of shape ", js.dump(),
                 " overflows 64 bits (zero dimensions aside)");
        numel = dim == 0 ? 0 : numel * dim;  // |numel| <= nonzero_product: cannot overflow
        e.shape.push_back(dim);
    }

    const nlohmann::json& jo = j["data_offsets"];
    if (!jo.is_array() || jo.size() != 2 || !jo[0].is_number_unsigned() ||
        !jo[1].is_number_unsigned())
        fail(w, "tensor '", name, "': data_offsets ", jo.dump(),
             " is not a pair of non-negative integers [begin, end]");
    e.begin = jo[0].get<uint64_t>();
    e.end = jo[1].get<uint64_t>();
    if (e.begin > e.end)
        fail(w, "tensor '", name, "': data_offsets [", e.begin, ", ", e.end, "] have begin > end");
    if (e.end > data_bytes)
        fail(w, "tensor '", name, "': data_offsets ", offsets_str(e.begin, e.end),
             " run past the end of the data buffer (", data_bytes, " bytes)");

    uint64_t nbytes = 0;
    if (__builtin_mul_overflow(static_cast<uint64_t>(numel), dtype_size(e.dtype), &nbytes))
        fail(w, "tensor '", name, "': the byte size of shape ", shape_str(e.shape), " x ", e.dtype,
             " overflows 64 bits");
    if (nbytes != e.end - e.begin)
        fail(w, "tensor '", name, "' data_offsets ", offsets_str(e.begin, e.end),
             " do not match shape ", shape_str(e.shape), " x ", e.dtype, " = ", nbytes, " bytes");
    return e;
}

// kChecksumKey's value: exactly 8 lowercase hex digits.
uint32_t parse_checksum(const Where& w, const std::string& text) {
    uint32_t v = 0;
    bool ok = text.size() == 8;
    for (char c : text) {
        const bool digit = c >= '0' && c <= '9', lower = c >= 'a' && c <= 'f';
        ok = ok && (digit || lower);
        v = v * 16 + static_cast<uint32_t>(digit ? c - '0' : c - 'a' + 10);
    }
    if (!ok)
        fail(w, "__metadata__ ", kSafetensorsChecksumKey, " is '", text,
             "', expected 8 lowercase hex digits");
    return v;
}

std::string checksum_str(uint32_t crc) {
    char buf[9];
    std::snprintf(buf, sizeof buf, "%08x", crc);
    return buf;
}

// The header's "__metadata__": an object whose values are all strings. The checksum entry goes
// to h.data_crc32, the others to h.metadata.
void parse_metadata(const Where& w, const nlohmann::json& j, SafetensorsHeader& h) {
    if (!j.is_object())
        fail(w, "__metadata__ is a JSON ", j.type_name(), ", expected an object of strings");
    for (const auto& [key, value] : j.items()) {
        if (!value.is_string())
            fail(w, "__metadata__ value of '", key, "' is a JSON ", value.type_name(),
                 ", expected a string");
        if (key == kSafetensorsChecksumKey)
            h.data_crc32 = parse_checksum(w, value.get<std::string>());
        else
            h.metadata.emplace(key, value.get<std::string>());
    }
}

// Compares the CRC-32 computed over the data buffer with the header's, when it has one.
void verify_checksum(const Where& w, const SafetensorsHeader& h, uint32_t computed) {
    if (h.data_crc32 && *h.data_crc32 != computed)
        fail(w, "the data fails its checksum: CRC-32 ", checksum_str(computed),
             ", the header's __metadata__ ", kSafetensorsChecksumKey, " says ",
             checksum_str(*h.data_crc32),
             " (the file is corrupted: changed bytes, or a bad copy); not loaded");
}

// Parses the JSON text, rejecting duplicate keys in any object (nlohmann::json would silently
// keep the last one; the format forbids them because two readers could disagree on which wins).
nlohmann::json parse_json(const Where& w, const uint8_t* text, size_t n) {
    std::vector<std::set<std::string>> open_objects;
    std::optional<std::string> duplicate;
    auto on_event = [&](int, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
        using E = nlohmann::json::parse_event_t;
        if (event == E::object_start) {
            open_objects.emplace_back();
        } else if (event == E::object_end) {
            if (!open_objects.empty()) open_objects.pop_back();
        } else if (event == E::key && !open_objects.empty() && !duplicate) {
            if (!open_objects.back().insert(parsed.get<std::string>()).second)
                duplicate = parsed.get<std::string>();
        }
        return true;
    };
    // nlohmann::json ends its input at a NUL byte, which would accept "{...}\0<anything>"; a raw
    // NUL is never valid JSON (the reference reader's serde_json refuses it), so refuse it first.
    // (std::find, not memchr: an empty header's `text` may be null.)
    if (const uint8_t* nul = std::find(text, text + n, uint8_t{0}); nul != text + n)
        fail(w, "header is not valid JSON: NUL byte at header offset ", nul - text);
    nlohmann::json j;
    try {
        const auto* first = reinterpret_cast<const char*>(text);
        j = nlohmann::json::parse(first, first + n, on_event);
    } catch (const nlohmann::json::exception& e) {
        fail(w, "header is not valid JSON: ", e.what());
    }
    if (duplicate) fail(w, "header has the key '", *duplicate, "' more than once");
    return j;
}

// Parses and validates the N header bytes of a file of `file_size` bytes.
SafetensorsHeader parse_header(const Where& w, const uint8_t* text, uint64_t n,
                               uint64_t file_size) {
    SafetensorsHeader h;
    h.header_bytes = n;
    h.data_bytes = file_size - 8 - n;  // check_header_length made this non-negative

    const size_t bad = first_invalid_utf8(text, n);
    if (bad != n) fail(w, "header is not valid UTF-8 (bad byte at header offset ", bad, ")");
    const nlohmann::json j = parse_json(w, text, n);
    if (!j.is_object()) fail(w, "header is a JSON ", j.type_name(), ", expected an object");

    for (const auto& [key, value] : j.items()) {
        if (key == "__metadata__")
            parse_metadata(w, value, h);
        else
            h.entries.push_back(parse_entry(w, key, value, h.data_bytes));
    }

    // The tensors must tile [0, data_bytes): sorted by offset, each begins where the previous
    // ended. Empty tensors ([x, x)) sit between others; one inside another tensor is an overlap.
    std::sort(h.entries.begin(), h.entries.end(), [](const auto& a, const auto& b) {
        return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
    });
    uint64_t covered = 0;
    const SafetensorsEntry* previous = nullptr;
    for (const SafetensorsEntry& e : h.entries) {
        if (e.begin < covered)
            fail(w, "tensors '", previous->name, "' ", offsets_str(previous->begin, previous->end),
                 " and '", e.name, "' ", offsets_str(e.begin, e.end), " overlap");
        if (e.begin > covered) {
            if (previous == nullptr)
                fail(w, "gap in the data buffer: bytes ", offsets_str(0, e.begin),
                     " belong to no tensor (the first tensor, '", e.name, "', begins at ", e.begin,
                     "); the tensors must cover the buffer");
            fail(w, "gap in the data buffer: bytes ", offsets_str(covered, e.begin), " between '",
                 previous->name, "' and '", e.name,
                 "' belong to no tensor; the tensors must cover the buffer");
        }
        covered = e.end;
        previous = &e;
    }
    if (covered != h.data_bytes)
        fail(w, h.data_bytes - covered, " trailing bytes after the last tensor (the data buffer ",
             "has ", h.data_bytes, " bytes, the tensors cover ", covered, ")");

    std::sort(h.entries.begin(), h.entries.end(),
              [](const auto& a, const auto& b) { return a.name < b.name; });
    return h;
}

// ---- POSIX file helpers: every failure becomes an exception naming the path -----------------

// Closes the descriptor on scope exit.
struct Fd {
    int fd = -1;
    ~Fd() {
        if (fd >= 0) ::close(fd);
    }
};

std::string errno_str(int err) {
    return std::strerror(err);
}

// An open file ready for reading, and its size.
struct InputFile {
    Fd fd;
    uint64_t size = 0;
};

void open_input(const Where& w, const std::string& path, InputFile& f) {
    f.fd.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (f.fd.fd < 0) fail_io(w, "cannot open: ", errno_str(errno));
    struct stat st {};
    if (::fstat(f.fd.fd, &st) != 0) fail_io(w, "cannot stat: ", errno_str(errno));
    if (S_ISDIR(st.st_mode)) fail_io(w, "is a directory, not a safetensors file");
    f.size = static_cast<uint64_t>(st.st_size);
}

// Reads exactly n bytes at `offset`; a short file (truncated after fstat) is a format error.
void read_exact(const Where& w, const InputFile& f, void* out, uint64_t n, uint64_t offset) {
    auto* p = static_cast<char*>(out);
    while (n > 0) {
        const ssize_t got = ::pread(f.fd.fd, p, n, static_cast<off_t>(offset));
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) fail_io(w, "read error at byte ", offset, ": ", errno_str(errno));
        if (got == 0) fail(w, "file ends at byte ", offset, " (was it truncated while reading?)");
        p += got;
        n -= static_cast<uint64_t>(got);
        offset += static_cast<uint64_t>(got);
    }
}

// Reads the 8-byte length and the header, validated against the file's size.
SafetensorsHeader read_header(const Where& w, const InputFile& f) {
    if (f.size < 8) fail(w, "file has ", f.size, " bytes, too short for the 8-byte header length");
    uint8_t len[8];
    read_exact(w, f, len, 8, 0);
    const uint64_t n = read_u64_le(len);
    check_header_length(w, n, f.size);
    std::vector<uint8_t> text(n);
    read_exact(w, f, text.data(), n, 8);
    return parse_header(w, text.data(), n, f.size);
}

void write_all(const Where& w, int fd, const void* data, size_t n, const std::string& tmp) {
    const auto* p = static_cast<const char*>(data);
    while (n > 0) {
        const ssize_t put = ::write(fd, p, n);
        if (put < 0 && errno == EINTR) continue;
        if (put < 0) fail_io(w, "cannot write '", tmp, "': ", errno_str(errno));
        p += put;
        n -= static_cast<size_t>(put);
    }
}

// A temporary file next to the target; removed on destruction unless committed by rename.
struct TempFile {
    std::string path;
    Fd fd;
    bool renamed = false;
    ~TempFile() {
        if (fd.fd >= 0) ::close(std::exchange(fd.fd, -1));
        if (!renamed && !path.empty()) ::unlink(path.c_str());
    }
};

// Orders tensors for writing, as the reference writer does: decreasing alignment (element size),
// I64 before F64 (its enum order), so each tensor begins at a multiple of its element size.
int write_rank(DType t) {
    switch (t) {
        case DType::I64:
            return 0;
        case DType::F64:
            return 1;
        case DType::F32:
            return 2;
        case DType::BF16:
            return 3;
        case DType::F16:
            return 4;
    }
    return 5;
}

std::atomic<SaveFaultHook> g_save_fault_hook{nullptr};

void save_fault_point(const std::string& path, SaveStage stage) {
    if (SaveFaultHook hook = g_save_fault_hook.load()) hook(path, stage);
}

}  // namespace

void set_save_fault_hook(SaveFaultHook hook) {
    g_save_fault_hook.store(hook);
}

std::string_view safetensors_dtype_name(DType dtype) {
    switch (dtype) {
        case DType::F32:
            return "F32";
        case DType::F64:
            return "F64";
        case DType::F16:
            return "F16";
        case DType::BF16:
            return "BF16";
        case DType::I64:
            return "I64";
    }
    return "?";
}

StateDict parse_safetensors(const void* bytes, size_t size, const std::string& what) {
    const Where w{"parse_safetensors", what};
    const auto* p = static_cast<const uint8_t*>(bytes);
    if (size < 8) fail(w, "file has ", size, " bytes, too short for the 8-byte header length");
    const uint64_t n = read_u64_le(p);
    check_header_length(w, n, size);
    const SafetensorsHeader h = parse_header(w, p + 8, n, size);

    const uint8_t* data = p + 8 + n;
    verify_checksum(w, h, crc32(0, data, h.data_bytes));
    StateDict out;
    out.metadata = h.metadata;
    for (const SafetensorsEntry& e : h.entries) {
        Tensor t = Tensor::empty(e.shape, e.dtype);
        if (e.end > e.begin) std::memcpy(t.data_ptr(), data + e.begin, e.end - e.begin);
        out.tensors.emplace(e.name, std::move(t));
    }
    return out;
}

SafetensorsHeader read_safetensors_header(const std::string& path) {
    const Where w{"read_safetensors_header", path};
    InputFile f;
    open_input(w, path, f);
    return read_header(w, f);
}

StateDict load_safetensors(const std::string& path, Device device) {
    const Where w{"load_safetensors", path};
    InputFile f;
    open_input(w, path, f);
    const SafetensorsHeader h = read_header(w, f);

    // In buffer order, so that the checksum runs over the data buffer as it lies in the file.
    std::vector<const SafetensorsEntry*> in_file_order;
    for (const SafetensorsEntry& e : h.entries)
        in_file_order.push_back(&e);
    std::sort(in_file_order.begin(), in_file_order.end(),
              [](const auto* a, const auto* b) { return a->begin < b->begin; });
    const uint64_t data_start = 8 + h.header_bytes;
    uint32_t crc = 0;
    std::map<std::string, Tensor> host;
    for (const SafetensorsEntry* e : in_file_order) {
        // Read straight into the tensor's storage: no second copy of the file in memory.
        Tensor t = Tensor::empty(e->shape, e->dtype);
        if (e->end > e->begin) {
            read_exact(w, f, t.data_ptr(), e->end - e->begin, data_start + e->begin);
            crc = crc32(crc, t.data_ptr(), e->end - e->begin);
        }
        host.emplace(e->name, std::move(t));
    }
    verify_checksum(w, h, crc);  // before anything is handed out or copied to a device

    StateDict out;
    out.metadata = h.metadata;
    for (auto& [name, t] : host)
        out.tensors.emplace(name, device == Device::cpu() ? std::move(t) : t.to(device));
    return out;
}

void save_safetensors(const std::string& path, const StateDict& state) {
    const Where w{"save_safetensors", path};
    struct Item {
        const std::string* name;
        Tensor host;
    };
    std::vector<Item> items;
    items.reserve(state.tensors.size());
    for (const auto& [name, t] : state.tensors) {
        MDL_CHECK(t.defined(), ValueError, w.op, ": ", path, ": tensor '", name, "' is undefined");
        MDL_CHECK(name != "__metadata__", ValueError, w.op, ": ", path,
                  ": a tensor may not be called \"__metadata__\" (the header's metadata key)");
        MDL_CHECK(!state.metadata.count(kSafetensorsChecksumKey), ValueError, w.op, ": ", path,
                  ": the metadata key \"", kSafetensorsChecksumKey,
                  "\" is the file's own checksum");
        // detach(): the copy to the host is for writing, not part of any graph.
        items.push_back({&name, t.detach().to(Device::cpu())});
    }
    // state.tensors is sorted by name, so a stable sort by rank gives (rank, name) order.
    std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
        return write_rank(a.host.dtype()) < write_rank(b.host.dtype());
    });

    // ordered_json keeps insertion order: "__metadata__" first, then the tensors in buffer
    // order, each as dtype, shape, data_offsets — the layout the reference writer produces.
    uint32_t crc = 0;
    for (const Item& it : items)
        if (it.host.nbytes() > 0) crc = crc32(crc, it.host.data_ptr(), it.host.nbytes());
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [k, v] : state.metadata)
        meta[k] = v;
    meta[kSafetensorsChecksumKey] = checksum_str(crc);
    header["__metadata__"] = std::move(meta);
    uint64_t offset = 0;
    for (const Item& it : items) {
        const uint64_t nbytes = it.host.nbytes();
        nlohmann::ordered_json entry = nlohmann::ordered_json::object();
        entry["dtype"] = std::string(safetensors_dtype_name(it.host.dtype()));
        entry["shape"] = it.host.shape();
        entry["data_offsets"] = {offset, offset + nbytes};
        header[*it.name] = std::move(entry);
        offset += nbytes;
    }
    std::string text;
    try {
        text = header.dump();  // compact, as serde_json writes it
    } catch (const nlohmann::json::exception& e) {
        throw ValueError(detail::concat(
            w.op, ": ", path, ": tensor names and metadata must be valid UTF-8: ", e.what()));
    }
    // Spaces pad the header to a multiple of 8 so that the data buffer starts 8-byte aligned.
    text.append((8 - text.size() % 8) % 8, ' ');
    const uint64_t n = text.size();

    static std::atomic<uint64_t> counter{0};
    TempFile tmp;
    tmp.path = detail::concat(path, ".tmp.", ::getpid(), ".", counter.fetch_add(1));
    tmp.fd.fd = ::open(tmp.path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (tmp.fd.fd < 0) {
        const int err = errno;
        tmp.path.clear();  // nothing was created, nothing to remove
        fail_io(w, "cannot create the temporary file next to it: ", errno_str(err));
    }
    uint8_t len[8];
    std::memcpy(len, &n, sizeof len);  // little-endian host
    write_all(w, tmp.fd.fd, len, sizeof len, tmp.path);
    write_all(w, tmp.fd.fd, text.data(), text.size(), tmp.path);
    save_fault_point(path, SaveStage::HeaderWritten);
    for (const Item& it : items)
        if (it.host.nbytes() > 0)
            write_all(w, tmp.fd.fd, it.host.data_ptr(), it.host.nbytes(), tmp.path);
    // The data must be on disk before the rename makes it visible under the final name.
    if (::fsync(tmp.fd.fd) != 0) fail_io(w, "cannot flush '", tmp.path, "': ", errno_str(errno));
    if (::close(std::exchange(tmp.fd.fd, -1)) != 0)
        fail_io(w, "cannot close '", tmp.path, "': ", errno_str(errno));
    save_fault_point(path, SaveStage::Flushed);
    if (::rename(tmp.path.c_str(), path.c_str()) != 0)
        fail_io(w, "cannot rename '", tmp.path, "' to it: ", errno_str(errno));
    tmp.renamed = true;

    // Make the rename itself durable. Best effort: some file systems refuse fsync on a directory,
    // and the checkpoint is complete either way.
    const size_t slash = path.find_last_of('/');
    const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash + 1);
    Fd dfd;
    dfd.fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd.fd >= 0) ::fsync(dfd.fd);
}

}  // namespace minidl
