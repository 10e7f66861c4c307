// examples/text_classifier/kill_points.cpp — see kill_points.h.
#include "examples/text_classifier/kill_points.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/check.h"
#include "core/safetensors.h"

namespace textclf {

namespace {

constexpr const char* kVariable = "TEXTCLF_KILL_AT";

// The write to die in (save:K:STAGE). The hook is a plain function pointer, so its target lives
// here; one armed point per process.
std::atomic<int64_t> g_target_save{0};
std::atomic<minidl::SaveStage> g_target_stage{minidl::SaveStage::HeaderWritten};
std::atomic<int64_t> g_saves_seen{0};

[[noreturn]] void die() {
    ::kill(::getpid(), SIGKILL);
    for (;;)
        ::pause();  // SIGKILL cannot be caught: never reached, but [[noreturn]] must hold
}

void on_save(const std::string&, minidl::SaveStage stage) {
    // Each write passes HeaderWritten first: that is where it is counted.
    if (stage == minidl::SaveStage::HeaderWritten) ++g_saves_seen;
    if (g_saves_seen.load() == g_target_save.load() && stage == g_target_stage.load()) die();
}

int64_t parse_count(const std::string& text, const std::string& value) {
    size_t used = 0;
    int64_t n = -1;
    try {
        n = std::stoll(text, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    MDL_CHECK(used == text.size() && !text.empty() && n >= 0, minidl::ValueError, kVariable, ": '",
              value,
              "' has no valid count; expected step:N, save:K:header or "
              "save:K:flushed (N >= 0, K >= 1)");
    return n;
}

}  // namespace

std::function<void()> arm_kill_points_from_env() {
    const char* raw = std::getenv(kVariable);
    if (raw == nullptr || *raw == '\0') return {};
    const std::string value = raw;
    if (value.rfind("step:", 0) == 0) {
        const int64_t steps = parse_count(value.substr(5), value);
        return [steps, polls = int64_t{0}]() mutable {
            if (polls++ == steps) die();
        };
    }
    const size_t colon = value.find(':', 5);
    const std::string stage = colon == std::string::npos ? "" : value.substr(colon + 1);
    MDL_CHECK(value.rfind("save:", 0) == 0 && (stage == "header" || stage == "flushed"),
              minidl::ValueError, kVariable, ": '", value,
              "' is not step:N, save:K:header or save:K:flushed");
    const int64_t k = parse_count(value.substr(5, colon - 5), value);
    MDL_CHECK(k >= 1, minidl::ValueError, kVariable, ": '", value,
              "': writes are counted from 1 (save:1:... is the first)");
    g_target_save = k;
    g_target_stage =
        stage == "header" ? minidl::SaveStage::HeaderWritten : minidl::SaveStage::Flushed;
    g_saves_seen = 0;
    minidl::set_save_fault_hook(&on_save);
    return {};
}

}  // namespace textclf
