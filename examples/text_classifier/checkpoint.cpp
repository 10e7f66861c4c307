// examples/text_classifier/checkpoint.cpp — see checkpoint.h.
#include "examples/text_classifier/checkpoint.h"

#include <signal.h>

#include <cerrno>
#include <filesystem>
#include <regex>

#include "core/check.h"
#include "core/finite.h"
#include "core/safetensors.h"

namespace textclf {

using json = nlohmann::json;

void save_checkpoint(const std::string& path, const Trainer& trainer, const json& run_info) {
    minidl::StateDict sd = trainer.state_dict();
    sd.metadata["format"] = kCheckpointFormat;
    sd.metadata["version"] = std::to_string(kCheckpointVersion);
    sd.metadata["run"] = run_info.dump();
    // A checkpoint of NaN weights would resume into NaN: refuse, keeping the last good file.
    minidl::require_finite(sd, "save_checkpoint", path);
    // save_safetensors copies device tensors to the host and renames a finished temporary file.
    minidl::save_safetensors(path, sd);
}

Checkpoint load_checkpoint(const std::string& path) {
    Checkpoint c;
    c.state = minidl::load_safetensors(path, minidl::Device::cpu());
    const auto& m = c.state.metadata;
    auto meta = [&](const char* key) -> const std::string& {
        auto it = m.find(key);
        MDL_CHECK(it != m.end(), minidl::FormatError, "load_checkpoint: ", path, ": no '", key,
                  "' in the metadata (not a text_classifier checkpoint)");
        return it->second;
    };
    MDL_CHECK(meta("format") == kCheckpointFormat, minidl::FormatError, "load_checkpoint: ", path,
              ": format is '", meta("format"), "', expected '", kCheckpointFormat, "'");
    MDL_CHECK(meta("version") == std::to_string(kCheckpointVersion), minidl::FormatError,
              "load_checkpoint: ", path, ": version ", meta("version"),
              " is not supported (this program reads version ", kCheckpointVersion, ")");
    try {
        c.config = train_config_from_json(json::parse(meta("config")));
        c.run_info = json::parse(meta("run"));
    } catch (const json::exception& e) {
        throw minidl::FormatError(
            minidl::detail::concat("load_checkpoint: ", path, ": malformed metadata: ", e.what()));
    }
    return c;
}

int remove_abandoned_temp_files(const std::string& dir) {
    namespace fs = std::filesystem;
    static const std::regex temp_name(R"(.+\.tmp\.([0-9]{1,9})\.[0-9]+)");
    int removed = 0;
    std::error_code ec;
    for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
        std::smatch m;
        const std::string name = e.path().filename().string();
        if (!e.is_regular_file(ec) || !std::regex_match(name, m, temp_name)) continue;
        const pid_t writer = static_cast<pid_t>(std::stoll(m[1].str()));
        // kill(pid, 0) probes without signalling: ESRCH means no such process.
        if (::kill(writer, 0) == 0 || errno != ESRCH) continue;
        if (fs::remove(e.path(), ec)) ++removed;
    }
    return removed;
}

}  // namespace textclf
