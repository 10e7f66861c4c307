#!/usr/bin/env python3
"""bench/compare_summary.py — the tables of bench/compare_pytorch.sh: medians and ratios of the
training runs (runs.jsonl) and of the micro-benchmarks (bench_kernels.json, torch_micro.json) in
--out, written there as summary.md and summary.json and printed.

Ratios are "minidl speed-up": PyTorch's time / minidl's time (throughput: minidl / PyTorch), so
> 1 means minidl is faster; for memory and start-up, PyTorch's / minidl's (> 1: minidl smaller).
Standard library only (runs without torch).
"""
import argparse
import json
import os
import statistics
import sys


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def ratio(a, b):
    return a / b if a and b else None


def fmt(x, digits=2):
    if x is None:
        return "–"
    if isinstance(x, str):
        return x
    return f"{x:,.{digits}f}"


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(fmt(c) if not isinstance(c, str) else c for c in r) + " |"
            for r in rows]
    return "\n".join(out)


def training(records):
    """Per config: medians of each variant's figures and the ratios."""
    by = {}
    for r in records:
        by.setdefault(r["config"], {}).setdefault(r["variant"], []).append(r)
    summary = {}
    for config, variants in by.items():
        s = {}
        for v, runs in variants.items():
            res = [r["result"] for r in runs]
            epochs = [x.get("epoch_s", []) for x in res]
            n_ep = min(len(e) for e in epochs) if epochs else 0
            s[v] = {
                "runs": len(runs),
                "train_samples_per_s": median([x["train_samples_per_s"] for x in res]),
                "step_ms": median([x["step_ms"] for x in res]),
                "peak_rss_mb": median([r["time_v_rss_mb"] for r in runs]),
                "startup_s": median([x.get("startup_s") for x in res]),
                "import_s": median([x.get("import_s") for x in res]),
                "data_s": median([x.get("data_s") for x in res]),
                "wall_s": median([r["wall_s"] for r in runs]),
                "test_accuracy": median([x.get("test_accuracy") for x in res]),
                "epoch_s": [median([e[i] for e in epochs]) for i in range(n_ep)],
                "load1": [r["load1"] for r in runs],
                "samples_per_s_all": [x["train_samples_per_s"] for x in res],
            }
        m, t = s.get("minidl"), s.get("pytorch")
        if m and t:
            s["ratio"] = {
                "throughput": ratio(m["train_samples_per_s"], t["train_samples_per_s"]),
                "peak_rss": ratio(t["peak_rss_mb"], m["peak_rss_mb"]),
                "startup": ratio(t["startup_s"], m["startup_s"]),
                "data": ratio(t["data_s"], m["data_s"]),
            }
        summary[config] = s
    return summary


# The adversarial tricks' step targets: at most this many baseline steps, at least this many times
# faster than PyTorch's same trick.
TRICK_TARGETS = {"fgm": (1.6, 8.0), "pgd": (3.5, 8.0), "awp": (2.0, 8.0)}


def trick_costs(train):
    """Each trick config's step against the b32 step of the same side, and against PyTorch."""
    base = train.get("b32", {})
    out = []
    for config, s in train.items():
        if config in ("b32", "b128", "long"):
            continue
        m, t = s.get("minidl"), s.get("pytorch")
        if not m or not t:
            continue
        target = TRICK_TARGETS.get(config, (None, None))
        mb, tb = base.get("minidl", {}).get("step_ms"), base.get("pytorch", {}).get("step_ms")
        out.append({"config": config,
                    "minidl_vs_baseline": ratio(m["step_ms"], mb) if mb else None,
                    "pytorch_vs_baseline": ratio(t["step_ms"], tb) if tb else None,
                    "speedup": ratio(t["step_ms"], m["step_ms"]),
                    "target_vs_baseline": f"<= {target[0]}" if target[0] else "",
                    "target_speedup": f">= {target[1]}" if target[1] else ""})
    return out


def micro(mk, tm):
    out = {}
    peak = {p["threads"]: p["peak_gflops"] for p in mk.get("peak", [])}
    tg = {(g["n"], g["threads"]): g for g in tm.get("gemm", [])}
    out["gemm"] = []
    for g in mk.get("gemm", []):
        t = tg.get((g["n"], g["threads"]))
        pk = peak.get(g["threads"])
        out["gemm"].append({
            "n": g["n"], "threads": g["threads"], "minidl_gflops": g["gflops"],
            "pytorch_gflops": t["gflops"] if t else None,
            "ratio": ratio(g["gflops"], t["gflops"]) if t else None,
            "peak_gflops": pk, "minidl_of_peak": ratio(g["gflops"], pk),
            "pytorch_of_peak": ratio(t["gflops"], pk) if t else None,
            "openblas_direct_gflops": g.get("openblas_direct_gflops"),
            "vs_openblas_direct": g.get("vs_openblas_direct")})
    triad = {(x["name"], x["threads"]): x["gb_per_s"] for x in mk.get("triad", [])}
    ta = {(a["name"], a["threads"]): a for a in tm.get("adam", [])}
    out["adam"] = []
    for a in mk.get("adam", []):
        t = ta.get((a["name"], a["threads"]))
        out["adam"].append({
            "name": a["name"], "threads": a["threads"], "minidl_ms": a["ms"],
            "minidl_gb_per_s": a["gb_per_s"], "pytorch_ms": t["ms"] if t else None,
            "pytorch_gb_per_s": t["gb_per_s"] if t else None,
            "speedup": ratio(t["ms"], a["ms"]) if t else None,
            "triad_dram_gb_per_s": triad.get(("dram", a["threads"])),
            "triad_l3_gb_per_s": triad.get(("adam_working_set", a["threads"]))})
    # Rows of either side (PyTorch's in-place EMA and minidl's three-op SWA have no twin).
    mv = {(v["name"], v["threads"]): v for v in mk.get("averaging", [])}
    tv = {(v["name"], v["threads"]): v for v in tm.get("averaging", [])}
    out["averaging"] = []
    for key in list(mv) + [k for k in tv if k not in mv]:
        v, t = mv.get(key), tv.get(key)
        out["averaging"].append({
            "name": key[0], "threads": key[1], "minidl_ms": v["ms"] if v else None,
            "minidl_gb_per_s": v["gb_per_s"] if v else None,
            "pytorch_ms": t["ms"] if t else None,
            "pytorch_gb_per_s": t["gb_per_s"] if t else None,
            "speedup": ratio(t["ms"], v["ms"]) if t and v else None,
            "triad_dram_gb_per_s": triad.get(("dram", key[1])),
            "triad_same_bytes_gb_per_s": triad.get(("averaging_working_set", key[1]))})
    to = {(o["name"], o["threads"]): o for o in tm.get("overhead", [])}
    out["overhead"] = []
    for o in mk.get("overhead", []):
        t = to.get((o["name"], o["threads"]))
        out["overhead"].append({"name": o["name"], "threads": o["threads"], "minidl_us": o["us"],
                                "pytorch_us": t["us"] if t else None,
                                "speedup": ratio(t["us"], o["us"]) if t else None})
    ts = {s["threads"]: s for s in tm.get("step", [])}
    out["step"] = []
    for s in mk.get("step", []):
        t = ts.get(s["threads"])
        out["step"].append({"threads": s["threads"], "minidl_ms": s["ms"],
                            "pytorch_ms": t["ms"] if t else None,
                            "speedup": ratio(t["ms"], s["ms"]) if t else None})
    out["peak"] = mk.get("peak", [])
    out["triad"] = mk.get("triad", [])
    return out


def markdown(train, mic, machine):
    md = ["# minidl vs PyTorch — bench/compare_pytorch.sh", "", "```", machine.strip(), "```", ""]
    if train:
        md += ["## Training the example (medians; ratio = minidl speed-up)", ""]
        rows = []
        for config, s in train.items():
            m, t, r = s.get("minidl", {}), s.get("pytorch", {}), s.get("ratio", {})
            loads = m.get("load1", []) + t.get("load1", [])
            rows.append([config, str(m.get("runs", 0)), m.get("train_samples_per_s"),
                         t.get("train_samples_per_s"), r.get("throughput"), m.get("step_ms"),
                         t.get("step_ms"), m.get("test_accuracy"), t.get("test_accuracy"),
                         f"{min(loads):.2f}–{max(loads):.2f}" if loads else "–"])
        md.append(table(["config", "rounds", "minidl samples/s", "PyTorch samples/s", "ratio",
                         "minidl step ms", "PyTorch step ms", "minidl acc", "PyTorch acc",
                         "load"], rows))
        md += ["", "Process figures (medians; ratio = PyTorch / minidl):", ""]
        rows = []
        for config, s in train.items():
            m, t, r = s.get("minidl", {}), s.get("pytorch", {}), s.get("ratio", {})
            rows.append([config, m.get("peak_rss_mb"), t.get("peak_rss_mb"), r.get("peak_rss"),
                         fmt(m.get("startup_s"), 3), fmt(t.get("startup_s"), 3),
                         fmt(t.get("import_s"), 3), m.get("data_s"), t.get("data_s")])
        md.append(table(["config", "minidl peak RSS MB", "PyTorch peak RSS MB", "ratio",
                         "minidl start-up s", "PyTorch start-up s", "PyTorch import s",
                         "minidl data s", "PyTorch data s"], rows))
        tricks = trick_costs(train)
        if tricks:
            md += ["", "The tricks' cost (step medians; against each side's own b32 step, and "
                   "against PyTorch's same trick; issue targets beside):", ""]
            md.append(table(["config", "minidl / its b32", "target", "PyTorch / its b32",
                             "PyTorch / minidl", "target"],
                            [[c["config"], c["minidl_vs_baseline"], c["target_vs_baseline"],
                              c["pytorch_vs_baseline"], c["speedup"], c["target_speedup"]]
                             for c in tricks]))
        if "long" in train:
            md += ["", "Per-epoch seconds over 10 epochs (medians; denormals):", ""]
            rows = []
            for v, s in train["long"].items():
                if v == "ratio" or not s.get("epoch_s"):
                    continue
                e = s["epoch_s"]
                rows.append([v] + [fmt(x, 3) for x in e] + [fmt(e[-1] / e[0], 2)])
            n = max(len(r) for r in rows) - 2 if rows else 0
            md.append(table(["variant"] + [f"e{i + 1}" for i in range(n)] + ["last/first"],
                            rows))
    if mic:
        md += ["", "## GEMM, F32 square (GFLOP/s; ratio = minidl / PyTorch)", ""]
        md.append(table(["n", "threads", "minidl", "PyTorch", "ratio", "OpenBLAS direct, "
                         "interleaved", "ratio to it", "measured peak", "minidl of peak",
                         "PyTorch of peak"],
                        [[str(g["n"]), str(g["threads"]), g["minidl_gflops"], g["pytorch_gflops"],
                          g["ratio"], g["openblas_direct_gflops"], g["vs_openblas_direct"],
                          g["peak_gflops"], g["minidl_of_peak"], g["pytorch_of_peak"]]
                         for g in mic["gemm"]]))
        md += ["", "\"OpenBLAS direct\": the sgemm PyTorch calls, timed inside bench_kernels "
               "call by call alternating with minidl's (only in an OpenBLAS build)."]
        md += ["", "## Adam step, 27,769 x 64 (ms; GB/s against the triad)", ""]
        md.append(table(["gradient", "threads", "minidl ms", "minidl GB/s", "PyTorch ms",
                         "PyTorch GB/s", "speed-up", "triad DRAM GB/s", "triad L3 GB/s"],
                        [[a["name"], str(a["threads"]), a["minidl_ms"], a["minidl_gb_per_s"],
                          a["pytorch_ms"], a["pytorch_gb_per_s"], a["speedup"],
                          a["triad_dram_gb_per_s"], a["triad_l3_gb_per_s"]]
                         for a in mic["adam"]]))
        if mic.get("averaging"):
            md += ["", "## EMA and SWA updates, the example model's 1.78 M parameters (ms; GB/s "
                   "against the triad)", ""]
            md.append(table(["update", "threads", "minidl ms", "minidl GB/s", "PyTorch ms",
                             "PyTorch GB/s", "speed-up", "triad DRAM GB/s",
                             "triad, same bytes, GB/s"],
                            [[v["name"], str(v["threads"]), v["minidl_ms"], v["minidl_gb_per_s"],
                              v["pytorch_ms"], v["pytorch_gb_per_s"], v["speedup"],
                              v["triad_dram_gb_per_s"], v["triad_same_bytes_gb_per_s"]]
                             for v in mic["averaging"]]))
        md += ["", "## Per-op overhead, tiny tensors (µs per op)", ""]
        md.append(table(["op", "threads", "minidl µs", "PyTorch µs", "speed-up"],
                        [[o["name"], str(o["threads"]), o["minidl_us"], o["pytorch_us"],
                          o["speedup"]] for o in mic["overhead"]]))
        if mic.get("denormal"):
            md += ["", "## Denormals: Adam step, steps 1-100 vs 801-900 of zero gradients (ms)",
                   ""]
            md.append(table(["framework", "flush-to-zero", "threads", "early ms", "late ms",
                             "late / early"],
                            [[d["framework"], "always (built in)" if d["framework"] == "minidl"
                              else str(d.get("flush_denormal")), str(d["threads"]),
                              d["early_ms"], d["late_ms"], d["late_over_early"]]
                             for d in mic["denormal"]]))
        md += ["", "## The example step on a synthetic batch (ms)", ""]
        md.append(table(["threads", "minidl ms", "PyTorch ms", "speed-up"],
                        [[str(s["threads"]), s["minidl_ms"], s["pytorch_ms"], s["speedup"]]
                         for s in mic["step"]]))
    return "\n".join(md) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="out/bench")
    a = p.parse_args()
    path = lambda name: os.path.join(a.out, name)  # noqa: E731
    records = []
    if os.path.exists(path("runs.jsonl")):
        with open(path("runs.jsonl")) as f:
            records = [json.loads(line) for line in f if line.strip()]
    mk = tm = None
    if os.path.exists(path("bench_kernels.json")) and os.path.exists(path("torch_micro.json")):
        with open(path("bench_kernels.json")) as f:
            mk = json.load(f)
        with open(path("torch_micro.json")) as f:
            tm = json.load(f)
    train = training(records) if records else {}
    mic = micro(mk, tm) if mk and tm else {}
    for name in ("denormal_minidl.json", "denormal_torch.json"):
        if mic and os.path.exists(path(name)):
            with open(path(name)) as f:
                mic.setdefault("denormal", []).extend(
                    dict(d, framework=name[9:-5]) for d in json.load(f).get("denormal", []))
    machine = open(path("machine.txt")).read() if os.path.exists(path("machine.txt")) else ""
    with open(path("summary.json"), "w") as f:
        json.dump({"training": train, "tricks": trick_costs(train) if train else [],
                   "micro": mic}, f, indent=1)
    md = markdown(train, mic, machine)
    with open(path("summary.md"), "w") as f:
        f.write(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
