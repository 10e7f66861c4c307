// core/state_dict.cpp — see state_dict.h.
#include "core/state_dict.h"

#include "core/check.h"

namespace minidl {

const Tensor& StateDict::at(const std::string& name, const char* what) const {
    auto it = tensors.find(name);
    MDL_CHECK(it != tensors.end(), StateError, what, ": no tensor named '", name, "' (it has ",
              tensors.size(), " tensors)");
    return it->second;
}

const std::string& StateDict::meta(const std::string& key, const char* what) const {
    auto it = metadata.find(key);
    MDL_CHECK(it != metadata.end(), StateError, what, ": no metadata key '", key, "'");
    return it->second;
}

void StateDict::merge(const StateDict& other, const std::string& prefix) {
    for (const auto& [k, v] : other.tensors)
        tensors[prefix + k] = v;
    for (const auto& [k, v] : other.metadata)
        metadata[prefix + k] = v;
}

StateDict StateDict::sub(const std::string& prefix) const {
    StateDict out;
    for (const auto& [k, v] : tensors)
        if (k.rfind(prefix, 0) == 0) out.tensors[k.substr(prefix.size())] = v;
    for (const auto& [k, v] : metadata)
        if (k.rfind(prefix, 0) == 0) out.metadata[k.substr(prefix.size())] = v;
    return out;
}

}  // namespace minidl
