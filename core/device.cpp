// core/device.cpp — parsing device names (see device.h).
#include "core/device.h"

#include "core/check.h"

namespace minidl {

Device Device::parse(const std::string& s) {
    if (s == "cpu") return Device::cpu();
    if (s == "cuda") return Device::cuda(0);
    if (s.rfind("cuda:", 0) == 0) {
        const std::string idx = s.substr(5);
        bool digits = !idx.empty() && idx.size() < 5;
        for (char c : idx)
            digits = digits && c >= '0' && c <= '9';
        if (digits) return Device::cuda(std::stoi(idx));
    }
    throw DeviceError("Device::parse: unknown device '" + s + "' (expected cpu, cuda or cuda:N)");
}

}  // namespace minidl
