// examples/minidl_inspect/main.cpp — minidl-inspect: lists the tensors of a safetensors file.
//
//   minidl-inspect FILE          one line per tensor, sorted by name: name, dtype, shape and byte
//                                size; then a total line, the data's checksum (minidl's
//                                files carry one, core/safetensors.h) and the header's metadata
//   minidl-inspect --json FILE   the same as one JSON object, for scripts
//
// The whole header is validated (read_safetensors_header makes every check that load_safetensors
// makes: offsets, sizes, coverage of the data buffer) but the tensor data is not read, so a large
// checkpoint is listed at once. A malformed or missing file prints "minidl-inspect: <error>" on
// stderr and exits with status 1. Format: https://github.com/huggingface/safetensors#format
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/safetensors.h"

namespace {

using minidl::SafetensorsEntry;
using minidl::SafetensorsHeader;

std::string crc_hex(uint32_t crc) {
    char buf[9];
    std::snprintf(buf, sizeof buf, "%08x", crc);
    return buf;
}

void print_text(const SafetensorsHeader& h) {
    // Column widths from the longest name, dtype and shape, so the columns line up.
    size_t wname = 0, wdtype = 0, wshape = 0;
    for (const SafetensorsEntry& e : h.entries) {
        wname = std::max(wname, e.name.size());
        wdtype = std::max(wdtype, minidl::safetensors_dtype_name(e.dtype).size());
        wshape = std::max(wshape, minidl::shape_str(e.shape).size());
    }
    for (const SafetensorsEntry& e : h.entries) {
        std::cout << std::left << std::setw(static_cast<int>(wname)) << e.name << "  "
                  << std::setw(static_cast<int>(wdtype)) << minidl::safetensors_dtype_name(e.dtype)
                  << "  " << std::setw(static_cast<int>(wshape)) << minidl::shape_str(e.shape)
                  << "  " << e.end - e.begin << " bytes\n";
    }
    std::cout << "total: " << h.entries.size()
              << (h.entries.size() == 1 ? " tensor, " : " tensors, ") << h.data_bytes
              << " bytes of data (header " << h.header_bytes << " bytes)\n";
    std::cout << "checksum: ";
    if (h.data_crc32)
        std::cout << "CRC-32 " << crc_hex(*h.data_crc32) << " (verified when the file is loaded)\n";
    else
        std::cout << "none (not written by minidl)\n";
    if (h.metadata.empty()) {
        std::cout << "metadata: none\n";
        return;
    }
    std::cout << "metadata:\n";
    for (const auto& [key, value] : h.metadata)
        std::cout << "  " << key << ": " << value << "\n";
}

void print_json(const std::string& path, const SafetensorsHeader& h) {
    nlohmann::ordered_json out = nlohmann::ordered_json::object();
    out["file"] = path;
    out["header_bytes"] = h.header_bytes;
    out["data_bytes"] = h.data_bytes;
    nlohmann::ordered_json tensors = nlohmann::ordered_json::array();
    for (const SafetensorsEntry& e : h.entries) {
        nlohmann::ordered_json t = nlohmann::ordered_json::object();
        t["name"] = e.name;
        t["dtype"] = std::string(minidl::safetensors_dtype_name(e.dtype));
        t["shape"] = e.shape;
        t["data_offsets"] = {e.begin, e.end};
        t["bytes"] = e.end - e.begin;
        tensors.push_back(std::move(t));
    }
    out["tensors"] = std::move(tensors);
    out["data_crc32"] = h.data_crc32 ? nlohmann::ordered_json(crc_hex(*h.data_crc32)) : nullptr;
    out["metadata"] = nlohmann::ordered_json::object();
    for (const auto& [key, value] : h.metadata)
        out["metadata"][key] = value;
    // The file's strings are valid UTF-8 (the reader checks), so dump cannot throw on them.
    std::cout << out.dump(2) << "\n";
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Lists the tensors of a safetensors checkpoint: name, dtype, shape, bytes.",
                 "minidl-inspect"};
    std::string path;
    bool json = false;
    app.add_option("file", path, "the .safetensors file")->required();
    app.add_flag("--json", json, "print one JSON object instead of a table");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }

    try {
        const SafetensorsHeader h = minidl::read_safetensors_header(path);
        if (json)
            print_json(path, h);
        else
            print_text(h);
    } catch (const std::exception& e) {
        std::cout.flush();
        std::cerr << "minidl-inspect: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
