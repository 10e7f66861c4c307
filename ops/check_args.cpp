// ops/check_args.cpp — the id range check (see check_args.h).
#include "ops/check_args.h"

#include "core/kernels.h"

namespace minidl::ops_detail {

bool check_ids_in_range(const char* op, const char* arg, const Tensor& ids, int64_t size,
                        const char* size_name, int64_t allowed) {
    check_dtype(op, arg, ids, DType::I64);
    if (ids.numel() == 0) return true;
    int64_t lo = 0, hi = 0;
    kernels_for(ids.device()).minmax_i64(ids, lo, hi);
    if (lo >= 0 && hi < size) return true;
    // Something is out of range (or only the allowed sentinel): find the first offender.
    const std::vector<int64_t> v = ids.to_vector<int64_t>();
    for (size_t i = 0; i < v.size(); ++i) {
        MDL_CHECK((v[i] >= 0 && v[i] < size) || v[i] == allowed, IndexError, op, ": ", arg, "[", i,
                  "] = ", v[i], " is out of range for ", size_name, " ", size,
                  " (valid ids are 0..", size - 1, ")");
    }
    return false;
}

}  // namespace minidl::ops_detail
