// bench/bench_transformer.cpp — the Transformer sections of bench_kernels (bench/torch_micro.py
// measures the same in PyTorch 1.13, whose attention is the composite: no fused kernel).
//
//   attention    scaled_dot_product_attention forward + backward, B = 32, 2 heads, D = 64, at
//                L = 128 and 512; each row's length uniform in [L/2, L] (splitmix64, seed 7: the
//                same lengths in both frameworks), padded keys masked, dropout 0.1; q, k, v
//                N(0, 1); the backward of sum(out * upstream). Both the fused op and minidl's
//                own composite (matmul, softmax, dropout) are timed; on a GPU (bench_gpu.cpp)
//                in F32 and BF16, each call followed by a device synchronisation.
//   checkpoint   the peak bytes the allocator held during one BERT-Tiny training forward +
//                backward (2 layers, hidden 128, 2 heads, intermediate 512, dropout 0.1, vocabulary
//                30,000) at B = 32 and L = 512, with gradient_checkpointing then without: the
//                peak counter only grows, so the run with checkpointing goes first and the second
//                peak is the larger run's. Bytes are above what was in use before the forward
//                (the weights).
#include <functional>
#include <iostream>
#include <stdexcept>

#include "bench/bench_cpu.h"
#include "bench/bench_util.h"
#include "core/allocator.h"
#include "core/autograd.h"
#include "core/backend.h"
#include "core/kernels.h"
#include "nn/bert.h"
#include "ops/ops.h"

namespace bench {

using minidl::DType;
using minidl::Tensor;
using nlohmann::json;

namespace {

// lengths uniform in [L/2, L] from splitmix64(seed): torch_micro.py draws the same.
std::vector<int64_t> draw_lengths(int64_t B, int64_t L, uint64_t seed) {
    SplitMix64 g(seed);
    std::vector<int64_t> lengths;
    for (int64_t b = 0; b < B; ++b)
        lengths.push_back(L / 2 +
                          static_cast<int64_t>(g.uniform() * static_cast<double>(L / 2 + 1)));
    return lengths;
}

Tensor key_mask(const std::vector<int64_t>& lengths, int64_t L) {
    std::vector<int64_t> m;
    for (int64_t n : lengths)
        for (int64_t j = 0; j < L; ++j)
            m.push_back(j < n ? 1 : 0);
    return Tensor::from_vector(m, {static_cast<int64_t>(lengths.size()), L});
}

}  // namespace

std::vector<json> cpu_attention(int threads, double scale) {
    return attention_rows(minidl::Device::cpu(), DType::F32, threads, scale);
}

std::vector<json> attention_rows(minidl::Device device, DType dtype, int threads, double scale) {
    constexpr int64_t B = 32, H = 2, D = 64;
    const bool gpu = !device.is_cpu();
    const std::function<void()> sync = [device] { minidl::kernels_for(device).synchronize(); };
    std::vector<json> out;
    for (int64_t L : {int64_t{128}, int64_t{512}}) {
        minidl::Generator gen(3);
        auto leaf = [&] {
            return Tensor::randn({B, H, L, D}, &gen).to(dtype).to(device).set_requires_grad();
        };
        Tensor q = leaf(), k = leaf(), v = leaf();
        const Tensor up = Tensor::randn({B, H, L, D}, &gen).to(dtype).to(device);
        minidl::AttentionOptions o{.key_mask = key_mask(draw_lengths(B, L, 7), L).to(device),
                                   .dropout_p = 0.1};
        for (const bool fused : {true, false}) {
            auto call = [&] {
                for (Tensor* t : {&q, &k, &v})
                    t->set_grad(Tensor());
                const Tensor y = fused ? minidl::scaled_dot_product_attention(q, k, v, o)
                                       : minidl::attention_composite(q, k, v, o);
                minidl::sum(minidl::mul(y, up)).backward();
            };
            const Timing t = gpu ? time_calls(call, 0.5 * scale, 5, 200, 2, sync)
                                 : time_calls(call, 1.0 * scale, 3, 200, 1);
            json row = {{"name", fused ? "fused" : "composite"},
                        {"dtype", std::string(minidl::dtype_name(dtype))},
                        {"L", L},
                        {"ms", 1e3 * t.median_s},
                        {"best_ms", 1e3 * t.min_s}};
            if (!gpu) row["threads"] = threads;
            out.push_back(row);
            std::cerr << "attention " << (fused ? "fused" : "composite") << " "
                      << minidl::dtype_name(dtype) << " L=" << L << " on " << device.str() << ": "
                      << 1e3 * t.median_s << " ms\n";
        }
    }
    return out;
}

json cpu_checkpoint_memory(int threads) {
    constexpr int64_t B = 32, L = 512;
    minidl::nn::BertConfig c;
    c.vocab_size = 30000;
    minidl::Generator gen(5);
    std::vector<int64_t> ids;
    const std::vector<int64_t> lengths = draw_lengths(B, L, 7);
    for (int64_t b = 0; b < B; ++b)
        for (int64_t j = 0; j < L; ++j)
            ids.push_back(j < lengths[b] ? 5 + gen.randint(c.vocab_size - 5) : 0);
    const Tensor id_tensor = Tensor::from_vector(ids, {B, L});
    const Tensor mask = key_mask(lengths, L);
    const Tensor labels = Tensor::zeros({B}, DType::I64);
    json out{{"threads", threads}, {"B", B}, {"L", L}};
    size_t previous_peak = minidl::cpu_allocator().stats().peak_bytes_in_use;
    for (const bool checkpointing : {true, false}) {
        c.gradient_checkpointing = checkpointing;
        minidl::manual_seed(1);
        minidl::nn::BertForSequenceClassification model(c);
        const size_t before = minidl::cpu_allocator().stats().bytes_in_use;
        const auto t0 = Clock::now();
        minidl::cross_entropy(model.forward(id_tensor, mask), labels).backward();
        const double s = seconds_since(t0);
        const size_t peak_total = minidl::cpu_allocator().stats().peak_bytes_in_use;
        // The counter only grows: a run below an earlier peak leaves no figure of its own.
        if (peak_total <= previous_peak)
            throw std::runtime_error(
                "checkpoint: the peak did not grow; run --only checkpoint alone");
        previous_peak = peak_total;
        const size_t peak = peak_total - before;
        const char* key = checkpointing ? "with" : "without";
        out[key] = {{"peak_bytes", peak}, {"step_s", s}};
        std::cerr << "checkpoint " << key << ": peak " << peak / 1048576.0 << " MiB above the "
                  << "weights, forward + backward " << s << " s\n";
    }
    out["ratio"] =
        out["with"]["peak_bytes"].get<double>() / out["without"]["peak_bytes"].get<double>();
    return out;
}

}  // namespace bench
