// core/comm.cpp — what every communicator engine shares (core/comm.h): argument checks, the way
// errors name a call, the launcher's environment; and the NCCL entry points of a build without
// NCCL, which throw.
#include "core/comm.h"

#include <cmath>
#include <cstdlib>

namespace minidl {

const char* comm_op_name(CommOp op) {
    switch (op) {
        case CommOp::Sum:
            return "sum";
        case CommOp::Average:
            return "average";
        case CommOp::Max:
            return "max";
        case CommOp::Min:
            return "min";
    }
    return "?";
}

Communicator::Communicator(CommOptions options) : options_(options) {
    set_timeout(options.timeout_s);
}

void Communicator::set_timeout(double seconds) {
    MDL_CHECK(seconds > 0 && std::isfinite(seconds), ValueError,
              "Communicator: the timeout must be a positive number of seconds, got ", seconds);
    options_.timeout_s = seconds;
}

std::string Communicator::where(const char* op) const {
    return detail::concat(op, " on rank ", rank(), " of ", world_size(), " (", backend(), ")");
}

void Communicator::check_tensors(const char* op, const std::vector<Tensor>& tensors, CommOp reduce,
                                 bool allow_half) const {
    for (size_t i = 0; i < tensors.size(); ++i) {
        const Tensor& t = tensors[i];
        MDL_CHECK(t.defined(), StateError, where(op), ": tensor ", i, " is undefined");
        const DType d = t.dtype();
        const bool supported =
            d == DType::F32 || d == DType::F64 || d == DType::I64 || (allow_half && is_half(d));
        MDL_CHECK(supported, DTypeError, where(op), ": tensor ", i, " has dtype ", d,
                  "; supported: f32, f64, i64", allow_half ? ", f16, bf16" : "");
        MDL_CHECK(reduce != CommOp::Average || is_floating(d), DTypeError, where(op),
                  ": average of the integer tensor ", i, " (", d, "); use sum");
    }
}

void Communicator::check_root(const char* op, int root) const {
    MDL_CHECK(root >= 0 && root < world_size(), IndexError, where(op), ": root ", root,
              " out of range for ", world_size(), " ranks");
}

namespace {
int env_int(const char* const* names, int fallback) {
    for (const char* const* n = names; *n != nullptr; ++n)
        if (const char* v = std::getenv(*n)) return std::atoi(v);
    return fallback;
}
}  // namespace

int launch_rank() {
    static const char* const names[] = {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", nullptr};
    return env_int(names, 0);
}

int launch_world_size() {
    static const char* const names[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", nullptr};
    return env_int(names, 1);
}

int launch_local_rank() {
    static const char* const names[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID",
                                        "SLURM_LOCALID", nullptr};
    return env_int(names, 0);
}

bool is_main_process() {
    return launch_rank() == 0;
}

#if !MINIDL_WITH_NCCL
namespace nccl {
namespace {
[[noreturn]] void unavailable(const char* what) {
    throw DeviceError(detail::concat(
        "nccl::", what,
        ": built without NCCL; configure with -DMINIDL_CUDA=ON on a machine where nccl.h and "
        "libnccl are found (the CUDA toolkit's or the libnccl-dev package)"));
}
}  // namespace

bool available() {
    return false;
}
std::vector<std::shared_ptr<Communicator>> init_all(const std::vector<int>&, CommOptions) {
    unavailable("init_all");
}
std::shared_ptr<Communicator> init_rank(Communicator&, int, CommOptions) {
    unavailable("init_rank");
}
}  // namespace nccl
#endif

}  // namespace minidl
