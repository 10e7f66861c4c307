// tests/support/fixtures.cpp — see fixtures.h.
#include "tests/support/fixtures.h"

#include <fstream>
#include <stdexcept>

namespace minidl::test {

json load_fixture(const std::string& name) {
    const std::string path = std::string(MINIDL_FIXTURES_DIR) + "/" + name + ".json";
    std::ifstream in(path);
    if (!in) throw std::runtime_error("fixture not found: " + path);
    return json::parse(in);
}

Shape shape_from_json(const json& j) {
    return j.at("shape").get<Shape>();
}

std::vector<double> values_from_json(const json& j) {
    std::vector<double> v;
    for (const auto& x : j.at("data"))
        v.push_back(x.get<double>());
    return v;
}

Tensor tensor_from_json(const json& j) {
    const std::string dt = j.at("dtype").get<std::string>();
    const DType dtype = dt == "i64" ? DType::I64 : dt == "f64" ? DType::F64 : DType::F32;
    return tensor_from_json(j, dtype);
}

Tensor tensor_from_json(const json& j, DType as, Device device) {
    const Shape shape = shape_from_json(j);
    if (j.at("dtype").get<std::string>() == "i64") {
        std::vector<int64_t> v;
        for (const auto& x : j.at("data"))
            v.push_back(x.get<int64_t>());
        return Tensor::from_vector(v, shape, as, device);
    }
    return Tensor::from_vector(values_from_json(j), shape, as, device);
}

}  // namespace minidl::test
