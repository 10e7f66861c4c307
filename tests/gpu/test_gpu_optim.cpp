// tests/gpu/test_gpu_optim.cpp — adam_step / sgd_step / ema_update / swa_update /
// unscale_and_check on CUDA
// against the CPU kernels, over several steps, for every parameter dtype, with sizes that take
// the packed (16-byte) path, its tail, and the one-element path of misaligned views.
//
// Tolerances: the same float operations on both sides; fused multiply-adds may round
// differently: F32 parameters and state rtol 1e-5, atol 1e-6 after 3 steps (the dtype's), 16-bit
// parameters the dtype's (the update rounds to 16 bits). Adam's state is F32 for every dtype.
// unscale_and_check scales by a power of two here: exact, compared bitwise.
#include <doctest/doctest.h>

#include <limits>

#include "tests/gpu/gpu_support.h"

using namespace minidl;
using namespace minidl::gpu_test;

namespace {
const std::vector<int64_t> kSizes{1, 3, 4, 1027, 65536};
}  // namespace

TEST_CASE("gpu/optim: adam_step matches the CPU (Adam, AdamW, amsgrad, maximize)") {
    struct Case {
        const char* name;
        AdamArgs args;
    };
    const std::vector<Case> cases{
        {"adam", AdamArgs{}},
        {"adam wd", AdamArgs{.lr = 1e-2, .weight_decay = 0.1}},
        {"adamw", AdamArgs{.lr = 1e-2, .weight_decay = 0.1, .decoupled_weight_decay = true}},
        {"adam amsgrad maximize",
         AdamArgs{.lr = 3e-3, .beta2 = 0.99, .amsgrad = true, .maximize = true}},
    };
    for (DType dt : float_dtypes()) {
        for (int64_t n : kSizes) {
            for (const Case& c : cases) {
                const std::string what = describe(std::string("adam_step ") + c.name, dt, {n});
                Both r = run_both(what,
                                  {random_cpu({n}, dt, 171), random_cpu({n}, dt, 172),
                                   Tensor::zeros({n}), Tensor::zeros({n}), Tensor::zeros({n})},
                                  [&](Kernels& k, std::vector<Tensor>& t) {
                                      for (int64_t step = 1; step <= 3; ++step) {
                                          AdamArgs a = c.args;
                                          a.step = step;
                                          k.adam_step(t[0], t[1], t[2], t[3], &t[4], a);
                                      }
                                  });
                check_parity(r.gpu[0], r.cpu[0], what + " param");
                check_parity(r.gpu[2], r.cpu[2], what + " exp_avg", tolerance(DType::F32));
                check_parity(r.gpu[3], r.cpu[3], what + " exp_avg_sq", tolerance(DType::F32));
                if (c.args.amsgrad)
                    check_parity(r.gpu[4], r.cpu[4], what + " max_exp_avg_sq",
                                 tolerance(DType::F32));
            }
        }
    }
}

TEST_CASE("gpu/optim: adam_step on a misaligned view takes the one-element path") {
    // Rows 1.. of a [5, 3] tensor start 12 bytes in: not 16-byte aligned.
    const Tensor p = random_cpu({5, 3}, DType::F32, 181), g = random_cpu({5, 3}, DType::F32, 182);
    Both r = run_both("adam_step misaligned", {p, g, Tensor::zeros({4, 3}), Tensor::zeros({4, 3})},
                      [](Kernels& k, std::vector<Tensor>& t) {
                          Tensor pv = t[0].narrow0(1, 4), gv = t[1].narrow0(1, 4);
                          k.adam_step(pv, gv, t[2], t[3], nullptr, AdamArgs{.lr = 0.1});
                      });
    check_parity(r.gpu[0], r.cpu[0], "adam_step misaligned param");
}

TEST_CASE("gpu/optim: sgd_step matches the CPU (momentum, dampening, nesterov, wd, maximize)") {
    const std::vector<std::pair<const char*, SgdArgs>> cases{
        {"plain", SgdArgs{.lr = 0.1}},
        {"momentum", SgdArgs{.lr = 0.1, .momentum = 0.9, .dampening = 0.1}},
        {"nesterov wd",
         SgdArgs{.lr = 0.05, .momentum = 0.9, .weight_decay = 1e-2, .nesterov = true}},
        {"maximize", SgdArgs{.lr = 0.1, .momentum = 0.5, .maximize = true}},
    };
    for (DType dt : float_dtypes()) {
        for (int64_t n : kSizes) {
            for (const auto& [name, args] : cases) {
                const std::string what = describe(std::string("sgd_step ") + name, dt, {n});
                Both r = run_both(
                    what, {random_cpu({n}, dt, 191), random_cpu({n}, dt, 192), Tensor::zeros({n})},
                    [&](Kernels& k, std::vector<Tensor>& t) {
                        for (int step = 0; step < 3; ++step) {
                            SgdArgs a = args;
                            a.first_step = step == 0;
                            k.sgd_step(t[0], t[1], &t[2], a);
                        }
                    });
                check_parity(r.gpu[0], r.cpu[0], what + " param");
                if (args.momentum != 0.0)
                    check_parity(r.gpu[2], r.cpu[2], what + " momentum_buffer",
                                 tolerance(DType::F32));
            }
        }
    }
}

TEST_CASE("gpu/optim: ema_update matches the CPU") {
    for (DType dt : float_dtypes()) {
        for (int64_t n : kSizes) {
            const std::string what = describe("ema_update", dt, {n});
            Both r = run_both(what, {random_cpu({n}, DType::F32, 201), random_cpu({n}, dt, 202)},
                              [](Kernels& k, std::vector<Tensor>& t) {
                                  for (int i = 0; i < 3; ++i)
                                      k.ema_update(t[0], t[1], 0.999);
                              });
            check_parity(r.gpu[0], r.cpu[0], what, tolerance(DType::F32));
        }
    }
}

TEST_CASE("gpu/optim: swa_update is bitwise the CPU's (three rounded operations, no FMA)") {
    for (DType dt : float_dtypes()) {
        for (int64_t n : kSizes) {
            const std::string what = describe("swa_update", dt, {n});
            Both r = run_both(what, {random_cpu({n}, dt, 203), random_cpu({n}, dt, 204)},
                              [](Kernels& k, std::vector<Tensor>& t) {
                                  for (int64_t averaged = 1; averaged <= 3; ++averaged)
                                      k.swa_update(t[0], t[1], averaged);
                              });
            check_bitwise(r.gpu[0], r.cpu[0], what);
        }
    }
}

TEST_CASE("gpu/optim: unscale_and_check scales every gradient and flags inf/NaN on the device") {
    const float inf = std::numeric_limits<float>::infinity();
    for (DType dt : float_dtypes()) {
        for (bool poison : {false, true}) {
            const std::string what =
                describe(std::string("unscale_and_check") + (poison ? " with inf" : ""), dt, {});
            Tensor g2 = random_cpu({4099}, dt, 212, -1000.0, 1000.0);
            if (poison) {
                std::vector<double> v = g2.to_vector<double>();
                v[4000] = inf;
                g2 = Tensor::from_vector(v, {4099}, dt);
            }
            Both r = run_both(what,
                              {random_cpu({33}, dt, 211, -1000.0, 1000.0), g2, Tensor(),
                               Tensor::full({1}, 0.125), Tensor::zeros({1})},
                              [](Kernels& k, std::vector<Tensor>& t) {
                                  std::vector<Tensor> grads{t[0], t[1], t[2]};
                                  k.unscale_and_check(grads, t[3], t[4]);
                              });
            check_bitwise(r.gpu[0], r.cpu[0], what + " grad 0");
            check_bitwise(r.gpu[1], r.cpu[1], what + " grad 1");
            check_bitwise(r.gpu[4], r.cpu[4], what + " found_inf");
            CHECK(r.gpu[4].item() == (poison ? 1.0 : 0.0));
        }
    }
}

TEST_CASE("gpu/optim: unscale_and_check over many gradients of mixed dtypes, in batched launches") {
    // 100 gradients, F32 with every fifth BF16 (79 F32 in two launches of at most 48, 20 BF16 in
    // one), sizes from 1 to beyond one block's chunk, the 51st undefined; an inf in the 91st (in
    // the second F32 launch) sets found_inf; every gradient is scaled exactly (a power of two).
    for (bool poison : {false, true}) {
        std::vector<Tensor> inputs;
        for (int i = 0; i < 100; ++i) {
            const DType dt = i % 5 == 4 ? DType::BF16 : DType::F32;
            const int64_t n = 1 + (i * 977) % 9001;
            Tensor g = random_cpu({n}, dt, 300 + static_cast<uint64_t>(i), -100.0, 100.0);
            if (poison && i == 90) {
                std::vector<double> v = g.to_vector<double>();
                v[static_cast<size_t>(n / 2)] = std::numeric_limits<double>::infinity();
                g = Tensor::from_vector(v, {n}, dt);
            }
            inputs.push_back(i == 50 ? Tensor() : g);
        }
        inputs.push_back(Tensor::full({1}, 0.25));
        inputs.push_back(Tensor::zeros({1}));
        const std::string what =
            std::string("unscale_and_check, 100 gradients") + (poison ? " with inf" : "");
        Both r = run_both(what, inputs, [](Kernels& k, std::vector<Tensor>& t) {
            std::vector<Tensor> grads(t.begin(), t.begin() + 100);
            k.unscale_and_check(grads, t[100], t[101]);
        });
        for (int i = 0; i < 100; ++i)
            if (i != 50) check_bitwise(r.gpu[i], r.cpu[i], what + " grad " + std::to_string(i));
        check_bitwise(r.gpu[101], r.cpu[101], what + " found_inf");
        CHECK(r.gpu[101].item() == (poison ? 1.0 : 0.0));
    }
}
