// tests/support/fixtures.h — reads the PyTorch reference values in tests/fixtures/*.json.
//
// Every tensor there is {"shape": [...], "dtype": "f32"|"f64"|"i64", "data": [row-major values]}
// (tests/fixtures/make_fixtures.py writes them with Debian's python3-torch).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace minidl::test {

using json = nlohmann::json;

// Parses tests/fixtures/<name>.json; throws std::runtime_error naming the path when it is missing.
json load_fixture(const std::string& name);

// The tensor of a fixture entry, in its own dtype or converted to `as` (on `device`).
Tensor tensor_from_json(const json& j);
Tensor tensor_from_json(const json& j, DType as, Device device = Device::cpu());
// The entry's values as doubles (row-major).
std::vector<double> values_from_json(const json& j);
Shape shape_from_json(const json& j);

}  // namespace minidl::test
