#!/usr/bin/env python3
"""bench/torch_micro.py — bench_kernels' CPU sections measured in PyTorch, with the same JSON keys
(bench/compare_pytorch.sh puts the two reports side by side).

  /usr/bin/python3 bench/torch_micro.py [--threads 1,2] [--sizes 256,512,1024,2048]
                                        [--only gemm,adam,averaging,overhead,step,attention]
                                        [--quick]
                                        [--json FILE]

Sections (at every thread count of --threads; torch.set_num_threads):
  gemm      torch.mm(a, b), F32 square n x n x n: GFLOP/s = 2 n^3 / t.
  adam      one torch.optim.Adam step (lr 1e-3, defaults otherwise) on a 27,769 x 64 F32 table:
            "dense" with a full random gradient; "row_sparse" with the gradient the example
            batch's EmbeddingBag backward leaves — in PyTorch that gradient is a dense tensor
            (nn.EmbeddingBag's default sparse=False, the example's setting), so Adam reads and
            writes every element either way ("grad_layout": "dense"). Bytes are counted as in
            bench_kernels (28 bytes per element dense; 24 per element + 4 per touched element)
            so the GB/s columns compare time for the same work.
  averaging the write-up's EMA class (shadow = (1 - d) p + d shadow, then clone), the same
            average in place (mul_, add_: "ema_in_place", a row minidl has no twin for) and
            torch.optim.swa_utils.AveragedModel.update_parameters on the example's model (the
            step section's), 12 bytes per parameter as bench_kernels counts them.
  denormal  (only when named in --only) 1000 zero-gradient Adam steps after a random one, step
            time early against late (first moments subnormal), without and with
            torch.set_flush_denormal(True).
  overhead  per-op cost for tiny tensors: a + b of two [4] tensors under no_grad, and
            sum(linear(x [4, 16], w [16, 16], bias)).backward().
  attention forward + backward of the attention composite, B = 32, 2 heads, D = 64, L = 128 and
            512, lengths uniform in [L/2, L] (splitmix64 seed 7, as bench_transformer.cpp),
            padded keys masked, dropout 0.1 (bench_kernels --only attention).
  step      the example model's training step (zero_grad, EmbeddingBag(mean) -> Linear -> ReLU
            -> Linear, cross-entropy, backward, Adam) on bench_util.h's synthetic batch: the same
            splitmix64 generator, seed and id rule, so both frameworks train on identical ids.
torch.set_num_threads does not reach OpenBLAS in Debian's build (its BLAS_INFO is "generic"; the
OpenBLAS pool keeps one thread per core), so a "1 thread" GEMM would run on 2: the OpenBLAS
thread count is set alongside, through openblas_set_num_threads of the library torch loaded
("blas_threads" in the report; null where that library is not OpenBLAS).
Timing as bench_util.h: warm-up calls, then repeated calls for at least a minimum time; the
median per call (and the minimum) is reported.
"""
import argparse
import ctypes
import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

V, C, H, K, BAGS = 27769, 64, 64, 2, 32
MASK = (1 << 64) - 1


class SplitMix64:
    """splitmix64, as bench_util.h's SplitMix64."""

    def __init__(self, seed):
        self.state = seed & MASK

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def uniform(self):
        return (self.next() >> 11) * 2.0 ** -53


def example_batch(seed=7):
    """bench_util.h's ExampleBatch: 32 bags of 200..400 log-uniform ids, alternating labels."""
    rng = SplitMix64(seed)
    ids, offsets, labels = [], [], []
    for b in range(BAGS):
        offsets.append(len(ids))
        n = 200 + rng.next() % 201
        for _ in range(n):
            u = rng.uniform()
            ids.append(min(V - 1, max(1, int(math.pow(float(V), u)))))
        labels.append(b % 2)
    return (torch.tensor(ids, dtype=torch.long), torch.tensor(offsets, dtype=torch.long),
            torch.tensor(labels, dtype=torch.long))


def openblas():
    """The OpenBLAS torch loaded (found in /proc/self/maps), or None."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line and ".so" in line}
        for path in sorted(paths):
            lib = ctypes.CDLL(path)
            if hasattr(lib, "openblas_set_num_threads"):
                return lib
    except OSError:
        pass
    return None


def set_threads(t):
    torch.set_num_threads(t)
    lib = openblas()
    if lib is None:
        return None
    lib.openblas_set_num_threads(t)
    return int(lib.openblas_get_num_threads())


def time_calls(fn, min_total_s, min_reps, max_reps, warmup=2):
    for _ in range(warmup):
        fn()
    t, total = [], 0.0
    while len(t) < max_reps and (len(t) < min_reps or total < min_total_s):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
        total += t[-1]
    t.sort()
    n = len(t)
    median = t[n // 2] if n % 2 else 0.5 * (t[n // 2 - 1] + t[n // 2])
    return median, t[0], n


def gemm(n, threads, scale):
    g = torch.Generator().manual_seed(1)
    a = torch.randn(n, n, generator=g)
    b = torch.randn(n, n, generator=g)
    with torch.no_grad():
        med, best, reps = time_calls(lambda: torch.mm(a, b), 0.6 * scale, 3, 500)
    flop = 2.0 * n ** 3
    j = {"n": n, "threads": threads, "ms": 1e3 * med, "gflops": flop / med / 1e9,
         "best_gflops": flop / best / 1e9, "reps": reps}
    print(f"gemm n={n} threads={threads}: {j['gflops']:.1f} GFLOP/s", file=sys.stderr)
    return j


def adam(threads, scale):
    g = torch.Generator().manual_seed(2)
    p = nn.Parameter(torch.randn(V, C, generator=g))
    opt = torch.optim.Adam([p], lr=1e-3)
    out = []
    p.grad = torch.randn(V, C, generator=g) * 0.01
    med, best, _ = time_calls(opt.step, 0.5 * scale, 10, 5000)
    nbytes = 28.0 * V * C
    out.append({"name": "dense", "threads": threads, "numel": V * C, "ms": 1e3 * med,
                "bytes": nbytes, "gb_per_s": nbytes / med / 1e9,
                "best_gb_per_s": nbytes / best / 1e9, "grad_layout": "dense"})
    print(f"adam dense threads={threads}: {1e3 * med:.2f} ms", file=sys.stderr)

    p.grad = None
    ids, offsets, _ = example_batch()
    F.embedding_bag(ids, p, offsets, mode="mean").sum().backward()
    touched = int(torch.unique(ids).numel())
    med, best, _ = time_calls(opt.step, 0.5 * scale, 10, 5000)
    nbytes = 24.0 * V * C + 4.0 * touched * C
    out.append({"name": "row_sparse", "threads": threads, "numel": V * C,
                "touched_rows": touched, "ms": 1e3 * med, "bytes": nbytes,
                "gb_per_s": nbytes / med / 1e9, "best_gb_per_s": nbytes / best / 1e9,
                "grad_layout": "dense"})
    print(f"adam embedding-bag grad ({touched} rows touched, dense layout) threads={threads}: "
          f"{1e3 * med:.2f} ms", file=sys.stderr)
    return out


def overhead(threads, scale):
    out = []
    iters = int(20000 * scale) + 100
    a, b = torch.ones(4), torch.ones(4)

    def adds():
        with torch.no_grad():
            for _ in range(iters):
                c = a + b  # noqa: F841
    med, _, _ = time_calls(adds, 0.3 * scale, 5, 200, 1)
    out.append({"name": "add_4", "threads": threads, "us": 1e6 * med / iters})

    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 16, generator=g)
    w = torch.randn(16, 16, generator=g, requires_grad=True)
    bias = torch.randn(16, generator=g, requires_grad=True)
    n = iters // 10

    def linears():
        for _ in range(n):
            F.linear(x, w, bias).sum().backward()
    med, _, _ = time_calls(linears, 0.3 * scale, 5, 200, 1)
    out.append({"name": "linear_fwd_bwd_4x16x16", "threads": threads, "us": 1e6 * med / n})
    for j in out:
        print(f"overhead {j['name']} threads={threads}: {j['us']:.2f} us", file=sys.stderr)
    return out


def denormal(threads, flush):
    """bench_kernels' denormal section: 1000 zero-gradient Adam steps after one random one; the
    median step of steps 1-100 against steps 801-900 (first moments subnormal), with
    torch.set_flush_denormal(flush)."""
    torch.set_flush_denormal(flush)
    g = torch.Generator().manual_seed(4)
    p = nn.Parameter(torch.randn(V, C, generator=g))
    opt = torch.optim.Adam([p], lr=1e-3)
    p.grad = torch.randn(V, C, generator=g) * 0.01
    opt.step()
    p.grad = torch.zeros(V, C)
    t = []
    for _ in range(1000):
        t0 = time.perf_counter()
        opt.step()
        t.append(time.perf_counter() - t0)
    torch.set_flush_denormal(False)
    early, late = sorted(t[:100])[50], sorted(t[800:900])[50]
    j = {"name": "adam_zero_grad_1000_steps", "threads": threads, "flush_denormal": flush,
         "early_ms": 1e3 * early, "late_ms": 1e3 * late, "late_over_early": late / early}
    print(f"denormal threads={threads} flush={flush}: steps 1-100 {1e3 * early:.2f} ms, "
          f"steps 801-900 {1e3 * late:.2f} ms", file=sys.stderr)
    return j


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.EmbeddingBag(V, C, mode="mean")
        self.fc1 = nn.Linear(C, H)
        self.fc2 = nn.Linear(H, K)

    def forward(self, ids, offsets):
        return self.fc2(torch.relu(self.fc1(self.embedding(ids, offsets))))


class WriteUpEMA:
    """The write-up's EMA class (register, then update after each optimizer step)."""

    def __init__(self, model, decay):
        self.model, self.decay = model, decay
        self.shadow = {n: p.data.clone() for n, p in model.named_parameters() if p.requires_grad}

    def update(self):
        for name, param in self.model.named_parameters():
            if param.requires_grad:
                new_average = (1.0 - self.decay) * param.data + self.decay * self.shadow[name]
                self.shadow[name] = new_average.clone()


def averaging(threads, scale):
    torch.manual_seed(3)
    model = Model()
    numel = sum(p.numel() for p in model.parameters())
    nbytes = 12.0 * numel  # read the parameter and the average, write the average
    out = []

    def row(name, fn):
        med, best, _ = time_calls(fn, 0.5 * scale, 10, 5000)
        out.append({"name": name, "threads": threads, "numel": numel, "ms": 1e3 * med,
                    "bytes": nbytes, "gb_per_s": nbytes / med / 1e9,
                    "best_gb_per_s": nbytes / best / 1e9})
        print(f"averaging {name} threads={threads}: {1e3 * med:.3f} ms", file=sys.stderr)

    ema = WriteUpEMA(model, 0.999)
    row("ema", ema.update)
    # The same average written in place, as a performance-minded user would (timm's ModelEmaV2
    # form without its copy): two passes, no allocation.
    shadow = [p.detach().clone() for p in model.parameters()]

    def ema_in_place():
        with torch.no_grad():
            for s, p in zip(shadow, model.parameters()):
                s.mul_(0.999).add_(p, alpha=0.001)
    row("ema_in_place", ema_in_place)
    swa = torch.optim.swa_utils.AveragedModel(model)
    swa.update_parameters(model)  # the first update copies; the timed ones average
    row("swa", lambda: swa.update_parameters(model))
    return out


def step(threads, scale):
    torch.manual_seed(0)
    model = Model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    ids, offsets, labels = example_batch()
    chunk = 10

    def steps():
        for _ in range(chunk):
            opt.zero_grad()
            F.cross_entropy(model(ids, offsets), labels).backward()
            opt.step()
    med, best, _ = time_calls(steps, 1.5 * scale, 5, 200, 2)
    ms = 1e3 * med / chunk
    j = {"name": "example_step", "device": "cpu", "threads": threads,
         "ids_per_batch": int(ids.numel()), "row_sparse_grads": False, "ms": ms,
         "best_ms": 1e3 * best / chunk, "steps_per_s": 1e3 / ms}
    print(f"example step cpu threads={threads}: {ms:.2f} ms", file=sys.stderr)
    return j


def attention(threads, scale):
    """PyTorch 1.13's attention is the composite (no scaled_dot_product_attention): scores, masked
    fill, softmax, dropout, the product with v; forward + backward of sum(out * upstream)."""
    B, H, D = 32, 2, 64
    out = []
    for L in (128, 512):
        g = torch.Generator().manual_seed(3)
        q, k, v = (torch.randn(B, H, L, D, generator=g).requires_grad_() for _ in range(3))
        up = torch.randn(B, H, L, D, generator=g)
        sm = SplitMix64(7)
        lengths = torch.tensor([L // 2 + int(sm.uniform() * (L // 2 + 1)) for _ in range(B)])
        masked = (torch.arange(L)[None, :] >= lengths[:, None])[:, None, None, :]

        def call():
            for x in (q, k, v):
                x.grad = None
            s = q @ k.transpose(-1, -2) / math.sqrt(D)
            p = F.dropout(torch.softmax(s.masked_fill(masked, float("-inf")), -1), 0.1)
            ((p @ v) * up).sum().backward()
        med, best, reps = time_calls(call, 1.0 * scale, 3, 200, 1)
        out.append({"name": "composite", "threads": threads, "L": L, "ms": 1e3 * med,
                    "best_ms": 1e3 * best, "reps": reps})
        print(f"attention composite L={L} threads={threads}: {1e3 * med:.1f} ms", file=sys.stderr)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", default="1,2")
    p.add_argument("--sizes", default="256,512,1024,2048")
    p.add_argument("--only", default="")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", default="")
    a = p.parse_args()
    only = set(filter(None, a.only.split(",")))
    wants = lambda s: not only or s in only  # noqa: E731
    scale = 0.25 if a.quick else 1.0
    report = {"framework": "pytorch " + torch.__version__, "device": "cpu",
              "gemm_backend": "mkl" if torch.backends.mkl.is_available() else "blas (OpenBLAS)"}
    for t in [int(x) for x in a.threads.split(",") if x]:
        report.setdefault("blas_threads", []).append({"threads": t, "blas": set_threads(t)})
        if wants("gemm"):
            for n in [int(x) for x in a.sizes.split(",") if x]:
                report.setdefault("gemm", []).append(gemm(n, t, scale))
        if wants("adam"):
            report.setdefault("adam", []).extend(adam(t, scale))
        if wants("averaging"):
            report.setdefault("averaging", []).extend(averaging(t, scale))
        if wants("overhead"):
            report.setdefault("overhead", []).extend(overhead(t, scale))
        if only and "denormal" in only:  # ~1000 steps each: on request, as in bench_kernels
            report.setdefault("denormal", []).extend([denormal(t, False), denormal(t, True)])
        if wants("step"):
            report.setdefault("step", []).append(step(t, scale))
        if wants("attention"):
            report.setdefault("attention", []).extend(attention(t, scale))
    text = json.dumps(report, indent=1)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    sys.exit(main())
