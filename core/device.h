// core/device.h — where a tensor's memory lives: the host (CPU) or one CUDA device.
//
// Device::cpu() and Device::cuda(i) are the two kinds. A build without CUDA still knows the CUDA
// kind: creating a tensor there throws DeviceError("built without CUDA; ...").
#pragma once

#include <cstdint>
#include <ostream>
#include <string>

namespace minidl {

enum class DeviceType : uint8_t { CPU, CUDA };

struct Device {
    DeviceType type = DeviceType::CPU;
    int index = 0;

    static constexpr Device cpu() { return Device{DeviceType::CPU, 0}; }
    static constexpr Device cuda(int i = 0) { return Device{DeviceType::CUDA, i}; }

    constexpr bool is_cpu() const { return type == DeviceType::CPU; }
    constexpr bool is_cuda() const { return type == DeviceType::CUDA; }
    constexpr bool operator==(const Device&) const = default;

    // "cpu" or "cuda:0".
    std::string str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }

    // Parses "cpu", "cuda" (device 0) or "cuda:N"; throws DeviceError otherwise.
    static Device parse(const std::string& s);
};

inline std::ostream& operator<<(std::ostream& os, const Device& d) {
    return os << d.str();
}

}  // namespace minidl
