#!/usr/bin/env python3
"""bench/torch_text_classifier.py — the example's spec in PyTorch, the anchor minidl is measured
against (same data, tokeniser, vocabulary, model, optimiser, batch order rule and metrics).

Spec (examples/text_classifier/README.md and docs/text_classifier.md):
  text   = rest of the first header line starting with "Subject:" (case-insensitive) + "\\n" + the
           body after the first empty line (no empty line: all body, no subject); no decoding
  tokens = maximal runs of ASCII [A-Za-z0-9], lowercased; the first 512 per document
  vocab  = training tokens with >= 2 occurrences, by (count desc, token asc), <= 30,000 entries
           with 0 = <pad>, 1 = <unk>; a document with no tokens is [0]
  model  = EmbeddingBag(V, 64, mean) -> Linear(64, 64) -> ReLU -> Linear(64, classes)
  train  = Adam(lr 1e-3), cross-entropy, batch 32, 5 epochs, shuffled each epoch
  split  = random: test = MD5 ending in 0, 1 or 2; temporal: train easy-ham-1, hard-ham-1, spam-1,
           test easy-ham-2, spam-2

Run with Debian's PyTorch (apt-get install python3-torch libopenblas0-pthread):
  /usr/bin/python3 bench/torch_text_classifier.py --data .cache/datasets/spam-assassin/data --json
Prints one JSON line with the figures bench/compare_pytorch.sh compares.
"""
import argparse
import collections
import json
import os
import re
import resource
import sys
import time

T_START = time.perf_counter()
import torch  # noqa: E402  (import time is part of what is measured)
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

T_IMPORTED = time.perf_counter()


def process_age_s():
    """Seconds since this process started (/proc/self/stat's starttime against CLOCK_BOOTTIME),
    as text_classifier's startup_s measures it: interpreter start-up and imports included."""
    try:
        with open("/proc/self/stat") as f:
            stat = f.read()
        start = int(stat[stat.rfind(")") + 2:].split()[19]) / os.sysconf("SC_CLK_TCK")
        return time.clock_gettime(time.CLOCK_BOOTTIME) - start
    except (OSError, ValueError, IndexError):
        return -1.0

GROUPS = ["easy-ham-1", "easy-ham-2", "hard-ham-1", "spam-1", "spam-2"]
TOKEN = re.compile(r"[A-Za-z0-9]+")


def message_text(raw):
    cut = raw.find("\n\n")
    if cut < 0:
        return "\n" + raw
    header, body = raw[:cut], raw[cut + 2:]
    subject = ""
    for line in header.split("\n"):
        if line[:8].lower() == "subject:":
            subject = line[8:]
            break
    return subject + "\n" + body


def tokenize(text):
    return [t.lower() for t in TOKEN.findall(text)][:512]


def load_corpus(data_dir):
    docs = []
    for group in GROUPS:
        folder = os.path.join(data_dir, group)
        for name in sorted(os.listdir(folder)):
            if not name.endswith(".json"):
                continue
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                entry = json.load(f)
            md5 = name.split(".")[1]
            docs.append({"group": group, "md5": md5, "label": 1 if group.startswith("spam") else 0,
                         "tokens": tokenize(message_text(entry["text"]))})
    return docs


def split(docs, how):
    if how == "random":
        test = [d for d in docs if d["md5"][-1] in "012"]
        train = [d for d in docs if d["md5"][-1] not in "012"]
    else:
        train = [d for d in docs if d["group"] in ("easy-ham-1", "hard-ham-1", "spam-1")]
        test = [d for d in docs if d["group"] in ("easy-ham-2", "spam-2")]
    return train, test


def build_vocab(train):
    counts = collections.Counter(t for d in train for t in d["tokens"])
    words = sorted((w for w, c in counts.items() if c >= 2), key=lambda w: (-counts[w], w))
    return {w: i + 2 for i, w in enumerate(words[:30000 - 2])}


def encode(docs, vocab):
    out = []
    for d in docs:
        ids = [vocab.get(t, 1) for t in d["tokens"]] or [0]
        out.append(torch.tensor(ids, dtype=torch.long))
    return out


def batch_of(encoded, labels, idx):
    ids = [encoded[i] for i in idx]
    lens = torch.tensor([len(x) for x in ids])
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), lens.cumsum(0)[:-1]])
    return torch.cat(ids), offsets, labels[idx]


class Model(nn.Module):
    def __init__(self, vocab, classes):
        super().__init__()
        self.embedding = nn.EmbeddingBag(vocab, 64, mode="mean")
        self.fc1 = nn.Linear(64, 64)
        self.fc2 = nn.Linear(64, classes)

    def forward(self, ids, offsets):
        return self.fc2(torch.relu(self.fc1(self.embedding(ids, offsets))))


def adversarial_loss(model, ids, offs, y, a, device):
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=a.amp == "bf16"):
        return F.cross_entropy(model(ids, offs), y)


def pgd_step(model, loss_fn, epsilon=1.0, alpha=0.3, steps=3, emb_name="embedding"):
    """The reference PGD recipe after loss.backward(): back up every gradient, K ascent steps on
    the embedding projected onto the epsilon-ball around E0 (zero_grad between them), the clean
    gradients put back before the last adversarial backward, E0 restored."""
    grad_backup = {n: p.grad.clone() for n, p in model.named_parameters()
                   if p.requires_grad and p.grad is not None}
    emb_backup = {}
    for t in range(steps):
        for name, param in model.named_parameters():
            if param.requires_grad and emb_name in name:
                if t == 0:
                    emb_backup[name] = param.data.clone()
                norm = torch.norm(param.grad)
                if norm != 0 and not torch.isnan(norm):
                    param.data.add_(alpha * param.grad / norm)
                    r = param.data - emb_backup[name]
                    if torch.norm(r) > epsilon:
                        r = epsilon * r / torch.norm(r)
                    param.data = emb_backup[name] + r
        if t != steps - 1:
            model.zero_grad()
        else:
            for name, param in model.named_parameters():
                if name in grad_backup:
                    param.grad = grad_backup[name]
        loss_fn().backward()
    for name, param in model.named_parameters():
        if name in emb_backup:
            param.data = emb_backup[name]


def awp_step(model, opt, loss_fn, adv_lr=1.0, adv_eps=0.01, adv_param="weight"):
    """The reference AWP recipe (Kaggle NLP) after loss.backward(): w += adv_lr g/(|g|+e)(|w|+e),
    clamped to w0 +- adv_eps |w0| element-wise, the clean gradients dropped (zero_grad), the
    adversarial loss back-propagated, w0 restored."""
    e = 1e-6
    backup, bounds = {}, {}
    for name, param in model.named_parameters():
        if param.requires_grad and param.grad is not None and adv_param in name:
            backup[name] = param.data.clone()
            r = adv_eps * param.abs().detach()
            bounds[name] = (param.data - r, param.data + r)
    for name, param in model.named_parameters():
        if name in backup:
            norm1 = torch.norm(param.grad)
            norm2 = torch.norm(param.data.detach())
            if norm1 != 0 and not torch.isnan(norm1):
                param.data.add_(adv_lr * param.grad / (norm1 + e) * (norm2 + e))
                param.data = torch.min(torch.max(param.data, bounds[name][0]), bounds[name][1])
    opt.zero_grad()
    loss_fn().backward()
    for name, param in model.named_parameters():
        if name in backup:
            param.data = backup[name]


def macro_f1(pred, gold, classes):
    f1s = []
    for c in range(classes):
        tp = int(((pred == c) & (gold == c)).sum())
        fp = int(((pred == c) & (gold != c)).sum())
        fn = int(((pred != c) & (gold == c)).sum())
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return sum(f1s) / classes


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", default=".cache/datasets/spam-assassin/data")
    p.add_argument("--split", default="random", choices=["random", "temporal"])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--fgm", type=float, default=0.0, help="FGM epsilon (seed style); 0 = off")
    p.add_argument("--pgd", action="store_true",
                   help="PGD on the embedding (the reference class: eps 1, alpha 0.3, K 3)")
    p.add_argument("--awp", action="store_true",
                   help="AWP on every 'weight' (the reference class: adv_lr 1, adv_eps 0.01)")
    p.add_argument("--ema", type=float, default=0.0, help="EMA decay (seed style); 0 = off")
    p.add_argument("--amp", choices=["", "bf16"], default="")
    p.add_argument("--device", default="cpu")
    p.add_argument("--flush-denormal", action="store_true")
    p.add_argument("--save-weights", default="", help="write the trained state_dict (torch.save)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    startup_s = process_age_s()  # ready to read the data

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    if a.flush_denormal:
        torch.set_flush_denormal(True)
    device = torch.device(a.device)

    t0 = time.perf_counter()
    docs = load_corpus(a.data)
    train, test = split(docs, a.split)
    vocab = build_vocab(train)
    V = len(vocab) + 2
    tr_x, te_x = encode(train, vocab), encode(test, vocab)
    tr_y = torch.tensor([d["label"] for d in train])
    te_y = torch.tensor([d["label"] for d in test])
    t_data = time.perf_counter() - t0

    model = Model(V, 2).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    shadow = {k: v.detach().clone() for k, v in model.named_parameters()} if a.ema else None

    t1 = time.perf_counter()
    steps = 0
    epoch_s = []
    for epoch in range(a.epochs):
        te = time.perf_counter()
        model.train()
        order = torch.randperm(len(train))
        for b in range(0, len(train), a.batch):
            ids, offs, y = batch_of(tr_x, tr_y, order[b:b + a.batch])
            ids, offs, y = ids.to(device), offs.to(device), y.to(device)
            opt.zero_grad()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=a.amp == "bf16"):
                loss = F.cross_entropy(model(ids, offs), y)
            loss.backward()
            if a.fgm:
                w = model.embedding.weight
                backup = w.detach().clone()
                n = w.grad.norm()
                if n != 0 and not torch.isnan(n):
                    with torch.no_grad():
                        w.add_(a.fgm * w.grad / n)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=a.amp == "bf16"):
                    F.cross_entropy(model(ids, offs), y).backward()
                with torch.no_grad():
                    w.copy_(backup)
            if a.pgd:
                pgd_step(model, lambda: adversarial_loss(model, ids, offs, y, a, device))
            if a.awp:
                awp_step(model, opt, lambda: adversarial_loss(model, ids, offs, y, a, device))
            opt.step()
            if shadow is not None:
                with torch.no_grad():
                    for k, v in model.named_parameters():
                        shadow[k].mul_(a.ema).add_(v, alpha=1 - a.ema)
            steps += 1
        epoch_s.append(time.perf_counter() - te)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t_train = time.perf_counter() - t1

    if shadow is not None:
        with torch.no_grad():
            for k, v in model.named_parameters():
                v.copy_(shadow[k])
    model.eval()
    with torch.no_grad():
        preds = []
        for b in range(0, len(test), 256):
            idx = torch.arange(b, min(b + 256, len(test)))
            ids, offs, _ = batch_of(te_x, te_y, idx)
            preds.append(model(ids.to(device), offs.to(device)).argmax(1).cpu())
        pred = torch.cat(preds)
    acc = float((pred == te_y).float().mean())
    if a.save_weights:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, a.save_weights)

    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    out = {"framework": "pytorch " + torch.__version__, "split": a.split,
           "train_docs": len(train), "test_docs": len(test), "vocab": V, "epochs": a.epochs,
           "batch": a.batch, "threads": a.threads, "steps": steps, "import_s": T_IMPORTED - T_START,
           "startup_s": startup_s,
           "data_s": t_data, "train_s": t_train, "epoch_s": epoch_s,
           "train_samples_per_s": len(train) * a.epochs / t_train, "step_ms": 1000 * t_train / steps,
           "test_accuracy": acc, "test_macro_f1": macro_f1(pred, te_y, 2), "peak_rss_mb": rss_mb}
    print(json.dumps(out) if a.json else "\n".join(f"{k}: {v}" for k, v in out.items()))


if __name__ == "__main__":
    sys.exit(main())
