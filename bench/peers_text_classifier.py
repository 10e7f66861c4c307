#!/usr/bin/env python3
"""bench/peers_text_classifier.py — the example's data for its peers, and their scores
(bench/compare_peers.sh runs it).

  export --data D --split random|temporal --out DIR
      The example's corpus, Subject + body, tokens, split and vocabulary, imported from
      bench/torch_text_classifier.py (not copied), written for the peers:
        DIR/train.txt, DIR/test.txt   fastText's format, one document a line:
                                      "__label__ham|__label__spam tok tok ...", the example's
                                      tokens (lowercased ASCII runs, the first 512) joined by spaces;
                                      scikit-learn reads the same files
        DIR/train.ids, DIR/test.ids   the bag model's input for bench/libtorch_text_classifier.cpp:
                                      a line "V N", then per document "label id id ..." (the
                                      vocabulary rule's ids, 1 = <unk>, a document with no tokens is
                                      "0"), in the script's document order
        DIR/info.json                 documents per side, V
  score --gold DIR/test.txt --pred FILE
      Accuracy and macro-F1 (the script's macro_f1) of FILE (one "__label__ham|spam" a line, as
      `fasttext predict` writes; an empty line counts as wrong) against the gold labels; prints
      one JSON line.
  init-checksum --vocab V [--seed S]
      The script's initial weights (torch.manual_seed(S), then its Model(V, 2)), each parameter
      reduced to sum_i x_i * (i + 1) in float64; libtorch_text_classifier --init-checksum prints
      the same, and equal lines mean the same initialisation.
  table --records FILE.jsonl [--markdown]
      The side-by-side table of the records compare_peers.sh collected.
"""
import argparse
import importlib.util
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABELS = ["__label__ham", "__label__spam"]


def _import(name, relative_path):
    # torch_text_classifier imports torch at its top: only export and score load it, never the
    # measured peers (scikit-learn's runner reads the exported files instead).
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, relative_path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def export(a):
    bag = _import("torch_text_classifier", os.path.join("bench", "torch_text_classifier.py"))
    docs = bag.load_corpus(a.data)
    train, test = bag.split(docs, a.split)
    vocab = bag.build_vocab(train)
    V = len(vocab) + 2
    os.makedirs(a.out, exist_ok=True)
    for side, part in (("train", train), ("test", test)):
        with open(os.path.join(a.out, side + ".txt"), "w", encoding="utf-8") as f:
            for d in part:
                f.write(LABELS[d["label"]] + " " + " ".join(d["tokens"]) + "\n")
        encoded = bag.encode(part, vocab)  # the script's own id rule, <unk> and [0] included
        with open(os.path.join(a.out, side + ".ids"), "w", encoding="utf-8") as f:
            f.write(f"{V} {len(part)}\n")
            for d, ids in zip(part, encoded):
                f.write(str(d["label"]) + " " + " ".join(str(int(i)) for i in ids) + "\n")
    info = {"split": a.split, "train_docs": len(train), "test_docs": len(test), "vocab": V}
    with open(os.path.join(a.out, "info.json"), "w") as f:
        json.dump(info, f)
    print(json.dumps(info))


def read_labels(path, gold):
    """Class per line of a fastText-format file: its first word's label; -1 where a prediction
    line is empty (fastText writes one for a line with no known word and no </s>)."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            word = line.split(" ", 1)[0].strip()
            if word in LABELS:
                out.append(LABELS.index(word))
            elif gold:
                raise SystemExit(f"peers_text_classifier.py: {path}: no label in {line[:60]!r}")
            else:
                out.append(-1)
    return out


def score(a):
    import torch

    bag = _import("torch_text_classifier", os.path.join("bench", "torch_text_classifier.py"))
    gold = read_labels(a.gold, gold=True)
    pred = read_labels(a.pred, gold=False)
    if len(pred) != len(gold):
        raise SystemExit(f"peers_text_classifier.py: {a.pred} has {len(pred)} predictions, "
                         f"{a.gold} {len(gold)} documents")
    p, g = torch.tensor(pred), torch.tensor(gold)
    print(json.dumps({"test_accuracy": float((p == g).float().mean()),
                      "test_macro_f1": bag.macro_f1(p, g, 2), "test_docs": len(gold),
                      "unpredicted": pred.count(-1)}))


def init_checksum(a):
    import torch

    bag = _import("torch_text_classifier", os.path.join("bench", "torch_text_classifier.py"))
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model = bag.Model(a.vocab, 2)
    for name, p in model.named_parameters():
        x = p.detach().double().flatten()
        w = torch.arange(1, x.numel() + 1, dtype=torch.double)
        print(f"{name} {float((x * w).sum()):.17g}")


def table(a):
    recs = [json.loads(line) for line in open(a.records) if line.strip()]
    head = ["peer", "split", "accuracy", "macro-F1", "train s", "wall s", "peak RSS MB", "note"]
    rows = []
    for r in recs:
        rows.append([r["peer"], r["split"], f"{r['test_accuracy']:.4f}",
                     f"{r['test_macro_f1']:.4f}", f"{r['train_s']:.2f}", f"{r['wall_s']:.2f}",
                     f"{r['peak_rss_mb']:.0f}", r["note"]])
    if a.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "|".join("---:" if 2 <= i < 7 else "---" for i in range(len(head))) + "|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
        return
    width = [max(len(x) for x in col) for col in zip(head, *rows)]
    for row in [head] + rows:
        print("  ".join(x.rjust(w) if 2 <= i < 7 else x.ljust(w)
                        for i, (x, w) in enumerate(zip(row, width))).rstrip())


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("--data", default=os.path.join(ROOT, ".cache/datasets/spam-assassin/data"))
    e.add_argument("--split", default="random", choices=["random", "temporal"])
    e.add_argument("--out", required=True)
    s = sub.add_parser("score")
    s.add_argument("--gold", required=True)
    s.add_argument("--pred", required=True)
    c = sub.add_parser("init-checksum")
    c.add_argument("--vocab", type=int, required=True)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--threads", type=int, default=2)
    t = sub.add_parser("table")
    t.add_argument("--records", required=True)
    t.add_argument("--markdown", action="store_true")
    a = p.parse_args()
    {"export": export, "score": score, "init-checksum": init_checksum, "table": table}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
