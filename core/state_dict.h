// core/state_dict.h — named tensors plus string metadata: what checkpoints are made of.
//
// Module::state_dict() (PyTorch names such as "fc1.weight"), optimizer and trick states all
// produce a StateDict; save_safetensors/load_safetensors (core/safetensors.h) write and read one.
// `metadata` becomes the safetensors header's "__metadata__" (string to string), where step
// counters, RNG state and format versions live.
#pragma once

#include <map>
#include <string>

#include "core/tensor.h"

namespace minidl {

struct StateDict {
    std::map<std::string, Tensor> tensors;
    std::map<std::string, std::string> metadata;

    bool contains(const std::string& name) const { return tensors.count(name) != 0; }
    // The tensor called `name`; throws StateError naming it (and `what`) when absent.
    const Tensor& at(const std::string& name, const char* what = "state_dict") const;
    const std::string& meta(const std::string& key, const char* what = "state_dict") const;

    // Adds every entry of `other` with `prefix` prepended to its names and keys.
    void merge(const StateDict& other, const std::string& prefix = "");
    // The entries whose names start with `prefix`, with the prefix removed.
    StateDict sub(const std::string& prefix) const;
};

}  // namespace minidl
