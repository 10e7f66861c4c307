#!/usr/bin/env python3
"""examples/text_classifier/text_pipeline_reference.py — the text pipeline's spec in Python.

An independent implementation of the data spec of docs/text_classifier.md (corpus order, splits, Subject + body,
tokens, vocabulary, encoding) in plain Python 3 (standard library only), for two uses:
  * checking the C++ pipeline: it prints the counts that text_data_check and the doctest cases
    assert (split sizes, vocabulary sizes, the first vocabulary entries);
  * a PyTorch run of the same model: `encode()` gives the ids/offsets EmbeddingBag takes, and
    `--write-vocab FILE` writes vocab.txt exactly as the C++ code does (line k = token of id k-1).

  python3 text_pipeline_reference.py [--sample | DATA_DIR] [--split random|temporal] [--val]
DATA_DIR is the folder holding easy-ham-1 ... spam-2 (default .cache/datasets/spam-assassin/data
under the repository root); --sample reads sample/spam_sample.jsonl instead.
"""
import argparse
import collections
import json
import os
import re

GROUPS = ["easy-ham-1", "easy-ham-2", "hard-ham-1", "spam-1", "spam-2"]
HERE = os.path.dirname(os.path.abspath(__file__))
TOKEN = re.compile(rb"[A-Za-z0-9]+")


def load_corpus(data_dir):
    """[(group, md5, text)] in corpus order: group order, then file name; text = JSON "text"."""
    docs = []
    for group in GROUPS:
        folder = os.path.join(data_dir, group)
        for name in sorted(os.listdir(folder)):
            if name.endswith(".json"):
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    docs.append((group, name.split(".")[1], json.load(f)["text"]))
    return docs


def load_sample(path):
    with open(path, encoding="utf-8") as f:
        return [(e["group"], e["md5"], e["text"]) for e in map(json.loads, f) if e]


def split(docs, kind, val=False):
    train, held, test = [], [], []
    for i, (group, md5, _) in enumerate(docs):
        if kind == "random":
            is_test = md5[-1] in "012"
        else:
            is_test = group in ("easy-ham-2", "spam-2")
        if is_test:
            test.append(i)
        elif val and md5[-1] == "3":
            held.append(i)
        else:
            train.append(i)
    return train, held, test


def email_text(message):
    """Subject (rest of the first header line starting with Subject:, any case) + \\n + body."""
    blank = message.find("\n\n")
    if blank < 0:
        return "\n" + message
    subject = ""
    for line in message[:blank].split("\n"):
        if line[:8].encode("utf-8").lower() == b"subject:":
            subject = line[8:]
            break
    return subject + "\n" + message[blank + 2:]


def tokenize(text, max_tokens=512):
    """Maximal runs of ASCII [A-Za-z0-9] in the UTF-8 bytes, lowercased; the first 512."""
    return [t.lower().decode("ascii") for t in TOKEN.findall(text.encode("utf-8"))][:max_tokens]


def build_vocab(token_lists, min_count=2, max_size=30000):
    counts = collections.Counter()
    for tokens in token_lists:
        counts.update(tokens)
    kept = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
    return ["<pad>", "<unk>"] + kept[: max_size - 2]


def encode(token_lists, vocab):
    """(ids, offsets) for EmbeddingBag: unknown -> 1, a document without tokens -> [0]."""
    index = {t: i for i, t in enumerate(vocab)}
    ids, offsets = [], []
    for tokens in token_lists:
        offsets.append(len(ids))
        ids.extend([index.get(t, 1) for t in tokens] or [0])
    return ids, offsets


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data_dir", nargs="?",
                    default=os.path.join(HERE, "../../.cache/datasets/spam-assassin/data"))
    ap.add_argument("--sample", action="store_true")
    ap.add_argument("--split", choices=["random", "temporal"], default=None)
    ap.add_argument("--val", action="store_true")
    ap.add_argument("--write-vocab")
    args = ap.parse_args()
    docs = (load_sample(os.path.join(HERE, "sample/spam_sample.jsonl")) if args.sample
            else load_corpus(args.data_dir))
    tokens = [tokenize(email_text(text)) for _, _, text in docs]
    print(f"documents {len(docs)}, spam {sum(g.startswith('spam') for g, _, _ in docs)}")
    for kind in [args.split] if args.split else ["random", "temporal"]:
        train, held, test = split(docs, kind, args.val)
        vocab = build_vocab(tokens[i] for i in train)
        ids, _ = encode([tokens[i] for i in train], vocab)
        print(f"{kind}: train {len(train)}, val {len(held)}, test {len(test)}, "
              f"vocab {len(vocab)}, train ids {len(ids)}, first {vocab[2:7]}")
        if args.write_vocab:
            with open(args.write_vocab, "w", encoding="utf-8") as f:
                f.writelines(t + "\n" for t in vocab)


if __name__ == "__main__":
    main()
