// ops/dropout.cpp — inverted dropout (math in ops/dropout.h): y = x * m with a Philox mask.
#include "ops/dropout.h"

#include "core/kernels.h"
#include "ops/check_args.h"
#include "ops/elementwise.h"

namespace minidl {

using namespace ops_detail;

Tensor dropout_mask(const Shape& shape, double p, DType dtype, Device device, Generator* gen) {
    MDL_CHECK(p >= 0.0 && p <= 1.0, ValueError, "dropout: p must be in [0, 1], got ", p);
    Tensor mask = Tensor::empty(shape, dtype, device);
    Generator& g = gen ? *gen : default_generator();
    // Reserve the counters even for p = 1, so the stream of later draws does not depend on p.
    const uint64_t offset = g.reserve((static_cast<uint64_t>(mask.numel()) + 3) / 4);
    if (mask.numel() == 0) return mask;
    if (p == 1.0) {
        kernels_for(device).fill(mask, 0.0);  // keep nothing (1 / keep_prob would be inf)
    } else {
        kernels_for(device).bernoulli_scaled(mask, 1.0 - p, g.seed(), offset);
    }
    return mask;
}

Tensor dropout(const Tensor& x, double p, bool training, Generator* gen) {
    check_floating("dropout", "x", x);
    MDL_CHECK(p >= 0.0 && p <= 1.0, ValueError, "dropout: p must be in [0, 1], got ", p);
    if (!training || p == 0.0) return x;
    return mul(x, dropout_mask(x.shape(), p, x.dtype(), x.device(), gen));
}

}  // namespace minidl
