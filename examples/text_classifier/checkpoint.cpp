// examples/text_classifier/checkpoint.cpp — see checkpoint.h.
#include "examples/text_classifier/checkpoint.h"

#include <signal.h>

#include <cerrno>
#include <filesystem>
#include <optional>
#include <string_view>

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

namespace {

bool all_digits(std::string_view s) {
    return !s.empty() && s.find_first_not_of("0123456789") == std::string_view::npos;
}

// The writer's pid in a temporary file's name "<target>.tmp.<pid>.<counter>" (see
// core/safetensors.cpp and io.cpp), or nothing when the name has another shape. Parsed by hand: GCC
// 12's std::regex trips -Wmaybe-uninitialized inside libstdc++ under the sanitizer build.
std::optional<pid_t> temp_file_writer(std::string_view name) {
    const size_t last_dot = name.rfind('.');
    if (last_dot == std::string_view::npos || !all_digits(name.substr(last_dot + 1))) return {};
    const size_t pid_dot = name.rfind('.', last_dot - 1);
    if (pid_dot == std::string_view::npos || pid_dot < 5) return {};
    const std::string_view pid = name.substr(pid_dot + 1, last_dot - pid_dot - 1);
    if (!all_digits(pid) || pid.size() > 9) return {};
    if (name.substr(pid_dot - 4, 4) != ".tmp") return {};
    return static_cast<pid_t>(std::stoll(std::string(pid)));
}

}  // namespace

int remove_abandoned_temp_files(const std::string& dir) {
    namespace fs = std::filesystem;
    int removed = 0;
    std::error_code ec;
    for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
        if (!e.is_regular_file(ec)) continue;
        const std::optional<pid_t> writer = temp_file_writer(e.path().filename().string());
        if (!writer) continue;
        // kill(pid, 0) probes without signalling: ESRCH means no such process.
        if (::kill(*writer, 0) == 0 || errno != ESRCH) continue;
        if (fs::remove(e.path(), ec)) ++removed;
    }
    return removed;
}

}  // namespace textclf
