#!/usr/bin/env python3
"""bench/torch_gpu_bench.py — bench_kernels' GPU sections (bench/bench_gpu.cpp) in PyTorch.

The same shapes and the same timing rule as minidl's side, so that scripts/gpu_check.sh can put
the two JSON reports next to each other (bench/summarize_gpu.py):

  gemm   torch.matmul at 4096^3: fp32 (allow_tf32 False, PyTorch's default for matmul), tf32,
         fp16 and bf16 (tensor cores, fp32 accumulation). TFLOP/s = 2 n^3 / t.
  copy   dst.copy_(src) of 256 MiB: GB/s = 2 * bytes / t (read + write).
  adam   one torch.optim.Adam step on a 27,769 x 64 fp32 table with a dense gradient, with
         PyTorch's default implementation (foreach) and with fused=True where it exists;
         GB/s = 28 bytes per element / t.
  step   the example model's step: zero_grad, EmbeddingBag(V, 64, mean) -> Linear(64, 64) ->
         ReLU -> Linear(64, 2), cross-entropy, backward, Adam(lr 1e-3) — on the batch of
         bench_util.h's ExampleBatch (the same splitmix64 ids).
  attention  forward + backward of attention at bench_transformer.cpp's shapes (B = 32, 2 heads,
         D = 64, L = 128 and 512, lengths uniform in [L/2, L] from splitmix64 seed 7, padded keys
         masked, dropout 0.1), fp32 and bf16: the composite (scores, masked fill, softmax,
         dropout, product with v) and torch.nn.functional.scaled_dot_product_attention (PyTorch
         >= 2.0; its fused kernels where the mask allows them).
  amp    x [8192, 4096] -> Linear(4096, 4096) -> ReLU -> Linear(4096, 4096) -> mean of squares,
         backward, in fp32 (TF32 off) and under torch.autocast fp16 / bf16.

Timing (bench_util.h's time_calls): warm up, then repeat the call, synchronising after each,
until min_total_s has passed and at least min_reps calls were made; report the median (and the
best). Usage:

  python3 bench/torch_gpu_bench.py [--device cuda] [--only gemm,copy,adam,step,attention,amp] [--quick]
                                   [--json FILE]

--device cpu --quick runs the same code on small shapes (a check of the script itself).
"""
import argparse
import contextlib
import json
import math
import statistics
import sys
import time

import torch
import torch.nn.functional as F

# The example's shapes, batch and model: the same as the CPU side's (bench_util.h's ExampleBatch).
from torch_micro import C, V, Model, SplitMix64, example_batch


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn, device, min_total_s, min_reps, max_reps, warmup):
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    start = time.perf_counter()
    while len(times) < max_reps and (len(times) < min_reps or time.perf_counter() - start < min_total_s):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times), len(times)


def gemm(device, name, dtype, tf32, n, scale):
    torch.backends.cuda.matmul.allow_tf32 = tf32
    g = torch.Generator(device=device).manual_seed(1)
    a = torch.randn(n, n, generator=g, device=device).to(dtype)
    b = torch.randn(n, n, generator=g, device=device).to(dtype)
    med, best, reps = time_calls(lambda: torch.matmul(a, b), device, 0.5 * scale, 10, 400, 3)
    torch.backends.cuda.matmul.allow_tf32 = False
    flop = 2.0 * n ** 3
    r = {"name": name, "n": n, "ms": 1e3 * med, "tflops": flop / med / 1e12,
         "best_tflops": flop / best / 1e12, "reps": reps}
    print(f"gemm {name} {n}^3: {r['tflops']:.1f} TFLOP/s", file=sys.stderr)
    return r


def copy(device, n, scale):
    src = torch.ones(n, device=device)
    dst = torch.empty(n, device=device)
    med, best, _ = time_calls(lambda: dst.copy_(src), device, 0.5 * scale, 10, 1000, 3)
    nbytes = 2.0 * 4.0 * n
    r = {"name": "device_copy", "bytes": nbytes, "ms": 1e3 * med, "gb_per_s": nbytes / med / 1e9,
         "best_gb_per_s": nbytes / best / 1e9}
    print(f"device copy: {r['gb_per_s']:.0f} GB/s", file=sys.stderr)
    return r


def adam(device, scale, fused, rows=V, cols=C, label="adam_dense_28k_x_64"):
    g = torch.Generator(device=device).manual_seed(2)
    p = torch.nn.Parameter(torch.randn(rows, cols, generator=g, device=device))
    p.grad = 0.01 * torch.randn(rows, cols, generator=g, device=device)
    kwargs = {"lr": 1e-3}
    if fused:
        kwargs["fused"] = True
    opt = torch.optim.Adam([p], **kwargs)
    med, best, _ = time_calls(opt.step, device, 0.5 * scale, 20, 5000, 3)
    nbytes = 28.0 * rows * cols
    name = label + ("_fused" if fused else "")
    r = {"name": name, "numel": rows * cols, "bytes": nbytes, "ms": 1e3 * med,
         "gb_per_s": nbytes / med / 1e9, "best_gb_per_s": nbytes / best / 1e9}
    print(f"adam {name}: {r['ms'] * 1e3:.1f} us, {r['gb_per_s']:.0f} GB/s", file=sys.stderr)
    return r


def example_step(device, scale):
    torch.manual_seed(0)
    model = Model().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    ids, offsets, labels = (t.to(device) for t in example_batch())

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(ids, offsets), labels).backward()
        opt.step()

    chunk = 50 if device.type == "cuda" else 10

    def steps():
        for _ in range(chunk):
            step()

    med, best, _ = time_calls(steps, device, (1.0 if device.type == "cuda" else 1.5) * scale, 5, 200, 2)
    r = {"name": "example_step", "device": str(device), "ids_per_batch": int(ids.numel()),
         "ms": 1e3 * med / chunk, "best_ms": 1e3 * best / chunk, "steps_per_s": chunk / med}
    print(f"example step {device}: {r['ms']:.3f} ms", file=sys.stderr)
    return r


def amp_step(device, name, low, batch, width, scale):
    torch.manual_seed(3)
    fc1 = torch.nn.Linear(width, width).to(device)
    fc2 = torch.nn.Linear(width, width).to(device)
    g = torch.Generator(device=device).manual_seed(4)
    x = torch.randn(batch, width, generator=g, device=device)
    torch.backends.cuda.matmul.allow_tf32 = False

    def step():
        fc1.zero_grad(set_to_none=True)
        fc2.zero_grad(set_to_none=True)
        ctx = torch.autocast(device_type=device.type, dtype=low) if low is not None else contextlib.nullcontext()
        with ctx:
            y = fc2(torch.relu(fc1(x)))
            loss = (y * y).mean()
        loss.backward()

    med, best, _ = time_calls(step, device, 1.0 * scale, 5, 200, 2)
    flop = 6.0 * 2.0 * batch * width * width
    r = {"name": name, "batch": batch, "width": width, "ms": 1e3 * med, "best_ms": 1e3 * best,
         "tflops": flop / med / 1e12}
    print(f"amp mlp step {name}: {r['ms']:.2f} ms", file=sys.stderr)
    return r


def attention(device, scale):
    B, H, D = 32, 2, 64
    rows = []
    for dtype_name, dtype in [("F32", torch.float32), ("BF16", torch.bfloat16)]:
        for L in (128, 512):
            g = torch.Generator().manual_seed(3)
            q, k, v = (torch.randn(B, H, L, D, generator=g).to(device, dtype).requires_grad_()
                       for _ in range(3))
            up = torch.randn(B, H, L, D, generator=g).to(device, dtype)
            sm = SplitMix64(7)
            lengths = torch.tensor([L // 2 + int(sm.uniform() * (L // 2 + 1)) for _ in range(B)])
            masked = (torch.arange(L)[None, :] >= lengths[:, None])[:, None, None, :].to(device)

            def composite():
                s = q @ k.transpose(-1, -2) / math.sqrt(D)
                p = F.dropout(torch.softmax(s.masked_fill(masked, float("-inf")), -1), 0.1)
                return p @ v

            def sdpa():
                return F.scaled_dot_product_attention(q, k, v, attn_mask=~masked, dropout_p=0.1)

            kinds = [("composite", composite)]
            if hasattr(F, "scaled_dot_product_attention"):
                kinds.append(("sdpa", sdpa))
            for name, fn in kinds:
                def call():
                    for x in (q, k, v):
                        x.grad = None
                    (fn() * up).sum().backward()
                med, best, reps = time_calls(call, device, 0.5 * scale, 5, 200, 2)
                rows.append({"name": name, "dtype": dtype_name, "L": L, "ms": 1e3 * med,
                             "best_ms": 1e3 * best, "reps": reps})
                print(f"attention {name} {dtype_name} L={L}: {1e3 * med:.3f} ms", file=sys.stderr)
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--only", default="")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", default="", help="write the report here (default: stdout)")
    a = p.parse_args()
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit(f"--device {a.device}: torch.cuda.is_available() is False")
    wants = lambda s: not a.only or s in a.only.split(",")
    scale = 0.25 if a.quick else 1.0
    small = device.type != "cuda"  # a check of the script on the CPU: small shapes
    n = 256 if small else 4096
    report = {"framework": "pytorch", "version": torch.__version__, "device": str(device),
              "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}
    if wants("gemm"):
        report["gemm"] = []
        for name, dtype, tf32 in [("fp32", torch.float32, False), ("tf32", torch.float32, True),
                                  ("fp16", torch.float16, False), ("bf16", torch.bfloat16, False)]:
            try:
                report["gemm"].append(gemm(device, name, dtype, tf32, n, scale))
            except RuntimeError as e:  # e.g. fp16 matmul on an old PyTorch's CPU
                print(f"gemm {name}: not available ({e})", file=sys.stderr)
    if wants("copy"):
        report["copy"] = copy(device, (1 << 20) if small else (64 << 20), scale)
    if wants("adam"):
        report["adam"] = adam(device, scale, fused=False)
        try:
            report["adam_fused"] = adam(device, scale, fused=True)
        except (RuntimeError, TypeError, ValueError) as e:  # fused=True: PyTorch >= 2.0, CUDA
            print(f"adam fused: not available ({e})", file=sys.stderr)
        if device.type == "cuda" and not small:  # beyond the L2: against the memory's bandwidth
            report["adam_large"] = adam(device, scale, False, 65536, 1024, "adam_dense_64m")
            try:
                report["adam_large_fused"] = adam(device, scale, True, 65536, 1024, "adam_dense_64m")
            except (RuntimeError, TypeError, ValueError) as e:
                print(f"adam fused: not available ({e})", file=sys.stderr)
    if wants("step"):
        report["step"] = example_step(device, scale)
    if wants("attention"):
        report["attention"] = attention(device, scale)
    if wants("amp"):
        batch, width = (256, 256) if small else (8192, 4096)
        lows = [("fp32", None), ("bf16", torch.bfloat16)]
        if device.type == "cuda":  # CPU autocast is bf16 only
            lows.insert(1, ("fp16", torch.float16))
        report["amp"] = [amp_step(device, name, low, batch, width, scale) for name, low in lows]
    text = json.dumps(report)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    main()
