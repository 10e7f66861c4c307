// tests/support/gpu_status.cpp — see gpu_status.h: the run/skip/fail rule of minidl_gpu_tests and
// the probe for a GPU that does not depend on the CUDA runtime.
#include "tests/support/gpu_status.h"

#include <array>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <sstream>

namespace minidl::test {

GpuTestDecision decide_gpu_tests(bool built_with_cuda, int device_count,
                                 const std::string& device_error, bool gpu_present,
                                 const char* visible_devices) {
    if (!built_with_cuda)
        return {GpuTestAction::Skip,
                "skipped: built without CUDA; configure with -DMINIDL_CUDA=ON"};
    if (device_count > 0) return {GpuTestAction::Run, ""};
    const std::string runtime =
        device_error.empty() ? "the CUDA runtime reports 0 devices" : device_error;
    if (!gpu_present)
        return {GpuTestAction::Skip, "skipped: no GPU on this machine (" + runtime + ")"};
    std::string message = "FAILED: a GPU is present but CUDA cannot use it: " + runtime;
    if (visible_devices != nullptr)
        message += std::string(" (CUDA_VISIBLE_DEVICES=\"") + visible_devices + "\")";
    message += "; check the driver (nvidia-smi) against the toolkit the build used";
    return {GpuTestAction::Fail, message};
}

bool lists_gpu(const std::string& nvidia_smi_list) {
    std::istringstream lines(nvidia_smi_list);
    for (std::string line; std::getline(lines, line);)
        if (line.rfind("GPU ", 0) == 0) return true;
    return false;
}

namespace {

// The first /dev/nvidiaN, or "" when there is none.
std::string gpu_device_node() {
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator("/dev", ec)) {
        const std::string name = entry.path().filename().string();
        if (name.size() <= 6 || name.rfind("nvidia", 0) != 0) continue;
        bool digits = true;
        for (size_t i = 6; i < name.size(); ++i)
            digits = digits && std::isdigit(static_cast<unsigned char>(name[i])) != 0;
        if (digits) return entry.path().string();
    }
    return "";
}

std::string run_nvidia_smi_list() {
    std::string out;
    FILE* pipe = popen("nvidia-smi -L 2>/dev/null", "r");
    if (pipe == nullptr) return out;
    std::array<char, 256> buffer{};
    while (fgets(buffer.data(), static_cast<int>(buffer.size()), pipe) != nullptr)
        out += buffer.data();
    pclose(pipe);
    return out;
}

}  // namespace

bool gpu_present(std::string* why) {
    const std::string node = gpu_device_node();
    if (!node.empty()) {
        if (why) *why = node + " exists";
        return true;
    }
    const std::string list = run_nvidia_smi_list();
    if (lists_gpu(list)) {
        if (why) *why = "nvidia-smi -L lists: " + list.substr(0, list.find('\n'));
        return true;
    }
    if (why) *why = "no /dev/nvidiaN, and nvidia-smi -L lists no GPU (or is absent)";
    return false;
}

}  // namespace minidl::test
