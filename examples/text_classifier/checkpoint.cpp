// examples/text_classifier/checkpoint.cpp — see checkpoint.h.
#include "examples/text_classifier/checkpoint.h"

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

}  // namespace textclf
