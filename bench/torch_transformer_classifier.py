#!/usr/bin/env python3
"""bench/torch_transformer_classifier.py — `text_classifier --model transformer`'s spec in
PyTorch, the anchor minidl's whole-model Transformer benchmark is measured against.

It reuses the bag model's anchor (bench/torch_text_classifier.py: corpus, Subject + body, tokens,
random / temporal splits, the vocabulary rule, macro-F1) and the BERT classifier of
tests/fixtures/torch_bert.py (torch.nn under Hugging Face's BertForSequenceClassification names,
its AdamW groups and warm-up schedule); both are imported from the repository, not copied.

Spec:
  tokens = as the bag model: ASCII [A-Za-z0-9] runs, lowercased, Subject + "\\n" + body, the first
           512 per document
  vocab  = [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4, then the bag rule over the training tokens
           (>= 2 occurrences, count desc then token asc), at most 30,000 entries in all
  input  = [CLS] t1 .. tn [SEP], n <= max_len - 2 (default max_len 128, at most 512), unknown
           tokens [UNK]; right-padded with [PAD] to the batch's longest row; positions 0..L-1,
           token type 0, attention mask 1 on real tokens (CLS/SEP included), 0 on padding
  model  = BERT-Tiny: 2 layers, hidden 128, 2 heads, intermediate 512, 512 positions, GELU (erf),
           LayerNorm eps 1e-12, dropout 0.1; classifier on tanh(pooler(h[:, 0])) after dropout;
           Hugging Face's initialisation
  train  = AdamW(lr 1e-3, betas 0.9/0.999, eps 1e-8, weight decay 0.01 except biases and
           LayerNorm weights); Hugging Face's linear schedule with warm-up W = floor(0.1 T), T the
           run's optimizer steps (the first step at lr 0); grad-norm clip 1.0; batch 32, 5 epochs
  order  = minidl's: each epoch a Fisher-Yates permutation from minidl's data generator
           (Philox4x32-10 keyed with seed + 0x9E3779B97F4A7C15, one counter block per draw,
           rejection-sampled randint), reproduced below so that both see the same batches and
           hence the same padded lengths; --order torch draws torch.randperm as the bag anchor does
  fgm    = --fgm EPS: after the clean backward, for each parameter whose Hugging Face name holds
           "word_embeddings": back up, add EPS * g / ||g|| (when ||g|| is neither 0 nor NaN),
           adversarial forward + backward accumulating into the gradients, restore; then clip, step
  pgd    = --pgd: the reference PGD recipe (bench/torch_text_classifier.py's pgd_step) on
           "word_embeddings", --pgd-eps 1, --pgd-alpha 0.3, --pgd-steps 3
  freelb = --freelb: the authors' loop (zhuchen03/FreeLB run_glue_freelb.py, l2, no max norm) on
           the word embeddings' output, replacing the clean backward: delta_0 = U(-1, 1) * mask *
           init / sqrt(real length * hidden), K passes of (loss / K).backward() with an ascent
           step of lr * g / ||g|| per document between them; --freelb-steps 2, --freelb-lr 0.1,
           --freelb-init 0.6 (text_classifier's defaults)

Run with Debian's PyTorch (apt-get install python3-torch libopenblas0-pthread):
  /usr/bin/python3 bench/torch_transformer_classifier.py \\
      --data .cache/datasets/spam-assassin/data --threads 2 --max-steps 20 --json
Prints one JSON line. step_ms is the mean over the timed steps: every step after the first
WARMUP_STEPS (3), each from building its batch to the scheduler's step; samples_per_s is the
documents of those steps over their time (train_samples_per_s: every step's, over train_s, as
the bag anchor and text_classifier report it). test_accuracy and test_macro_f1 are null when
--max-steps stopped the run early. --out DIR writes what text_classifier --out writes
(model.safetensors under Hugging Face's names, vocab.txt, config.json). --device cuda trains on
the GPU (scripts/gpu_check.sh), each step ending in torch.cuda.synchronize so that step_ms is the
step's own time.
"""
import argparse
import importlib.util
import json
import math
import os
import resource
import struct
import sys
import time
import zlib

T_START = time.perf_counter()
import torch  # noqa: E402  (import time is part of what is measured)
import torch.nn.functional as F  # noqa: E402

T_IMPORTED = time.perf_counter()

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _import(name, relative_path):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, relative_path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bag = _import("torch_text_classifier", os.path.join("bench", "torch_text_classifier.py"))
torch_bert = _import("torch_bert", os.path.join("tests", "fixtures", "torch_bert.py"))

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PAD, UNK, CLS, SEP, MASK = range(5)
MAX_VOCAB = 30000
MAX_POSITIONS = 512
CLASSES = ["ham", "spam"]  # class id -> name (label 1 = a group starting with "spam")
# BERT-Tiny, as text_classifier --model transformer builds it.
BERT_TINY = {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
             "intermediate_size": 512, "max_position_embeddings": MAX_POSITIONS,
             "type_vocab_size": 2, "layer_norm_eps": 1e-12, "hidden_dropout_prob": 0.1,
             "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02}
WARMUP_STEPS = 3  # the first steps, left out of step_ms (allocator and thread-pool warm-up)
DATA_SEED_OFFSET = 0x9E3779B97F4A7C15  # examples/text_classifier/train.h's kDataSeedOffset
M64 = (1 << 64) - 1
M32 = (1 << 32) - 1


# ---- data -------------------------------------------------------------------------------------
def _sample_doc(entry):
    group = entry["group"]
    return {"group": group, "md5": entry["md5"], "label": 1 if group.startswith("spam") else 0,
            "tokens": bag.tokenize(bag.message_text(entry["text"]))}


def load_docs(path):
    """The corpus at `path` as bag.load_corpus gives it, in corpus order: a folder holding
    easy-ham-1 ... spam-2 (or its data/, package/data/ or spam-assassin/data/), or the offline
    sample (a .jsonl file of {"group", "id", "md5", "text"}, or a folder holding
    spam_sample.jsonl), as text_classifier's --data accepts them."""
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return [_sample_doc(json.loads(line)) for line in f if line.strip()]
    for sub in ("", "data", os.path.join("package", "data"), os.path.join("spam-assassin", "data")):
        folder = os.path.join(path, sub)
        if all(os.path.isdir(os.path.join(folder, g)) for g in bag.GROUPS):
            return bag.load_corpus(folder)
    sample = os.path.join(path, "spam_sample.jsonl")
    if os.path.isfile(sample):
        return load_docs(sample)
    raise SystemExit("no SpamAssassin corpus or spam_sample.jsonl at %s" % path)


def build_vocab(train):
    """id -> token: the five specials, then the bag model's rule over the training documents'
    tokens, cut so that the whole list has at most MAX_VOCAB entries."""
    bag_ids = bag.build_vocab(train)  # token -> id from 2, in (count desc, token asc) order
    words = sorted(bag_ids, key=bag_ids.get)
    return SPECIALS + words[:MAX_VOCAB - len(SPECIALS)]


def encode(tokens, token_ids, max_len):
    """[CLS] t1 .. tn [SEP] with the first n <= max_len - 2 tokens; unknown tokens [UNK]."""
    return [CLS] + [token_ids.get(t, UNK) for t in tokens[:max_len - 2]] + [SEP]


def pad_batch(rows):
    """ids [B, L] right-padded with [PAD] to the longest row, key mask [B, L] (1 = token)."""
    L = max(len(r) for r in rows)
    ids = torch.full((len(rows), L), PAD, dtype=torch.long)
    mask = torch.zeros((len(rows), L), dtype=torch.long)
    for b, r in enumerate(rows):
        ids[b, :len(r)] = torch.tensor(r, dtype=torch.long)
        mask[b, :len(r)] = 1
    return ids, mask


# ---- minidl's data order ----------------------------------------------------------------------
def philox4x32_10(counter, key):
    """core/philox.h: Philox4x32-10 of a 128-bit counter (four 32-bit words) under a 64-bit key."""
    c0, c1, c2, c3 = counter
    k0, k1 = key & M32, key >> 32
    for _ in range(10):
        p0 = 0xD2511F53 * c0
        p1 = 0xCD9E8D57 * c2
        c0, c1, c2, c3 = (p1 >> 32) ^ c1 ^ k0, p1 & M32, (p0 >> 32) ^ c3 ^ k1, p0 & M32
        k0 = (k0 + 0x9E3779B9) & M32
        k1 = (k1 + 0xBB67AE85) & M32
    return c0, c1, c2, c3


class MinidlGenerator:
    """core/rng.h's Generator: (seed, offset); each host draw consumes one counter block."""

    def __init__(self, seed):
        self.seed, self.offset = seed & M64, 0

    def next_u64(self):
        block = self.offset
        self.offset += 1
        v = philox4x32_10((block & M32, block >> 32, 0, 0), self.seed)
        return (v[0] << 32) | v[1]

    def randint(self, n):
        limit = M64 - M64 % n  # rejection above the largest multiple of n
        while True:
            x = self.next_u64()
            if x < limit:
                return x % n

    def randperm(self, n):
        p = list(range(n))
        for i in range(n - 1, 0, -1):  # Fisher-Yates from the back
            j = self.randint(i + 1)
            p[i], p[j] = p[j], p[i]
        return p


# ---- output folder ----------------------------------------------------------------------------
def hf_config(vocab_size, max_len, classes=CLASSES):
    config = {"model_type": "bert", "architectures": ["BertForSequenceClassification"],
              "vocab_size": vocab_size}
    config.update(BERT_TINY)
    config.update({"hidden_act": "gelu", "pad_token_id": PAD,
                   "id2label": {str(i): c for i, c in enumerate(classes)},
                   "label2id": {c: i for i, c in enumerate(classes)},
                   "max_length": max_len, "minidl_model": "transformer"})
    return config


def write_safetensors(path, tensors, metadata=None):
    """{name: float32 tensor} as safetensors: 8-byte little-endian header length, the JSON header
    (names sorted, data in that order, offsets relative to the data), the packed data."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().to(torch.float32).contiguous().cpu()
        raw = t.numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    data = b"".join(blobs)
    meta = {"format": "pt"}
    meta.update(metadata or {})
    meta.setdefault("minidl.data_crc32", "%08x" % zlib.crc32(data))
    header["__metadata__"] = meta
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)


def save_hf_dir(out, model, vocab, max_len):
    os.makedirs(out, exist_ok=True)
    write_safetensors(os.path.join(out, "model.safetensors"), model.hf_named())
    with open(os.path.join(out, "vocab.txt"), "w", encoding="utf-8", newline="\n") as f:
        f.write("".join(t + "\n" for t in vocab))
    with open(os.path.join(out, "config.json"), "w", encoding="utf-8") as f:
        json.dump(hf_config(len(vocab), max_len), f, indent=2)
        f.write("\n")


# ---- training ---------------------------------------------------------------------------------
def fgm_step(model, loss_fn, eps):
    """The reference recipe's FGM on every parameter whose name holds "word_embeddings"."""
    targets = [p for name, p in model.hf_named().items() if "word_embeddings" in name]
    backups = []
    for p in targets:
        backups.append(p.detach().clone())
        norm = p.grad.norm()
        if norm != 0 and not torch.isnan(norm):
            with torch.no_grad():
                p.add_(eps * p.grad / norm)
    loss_fn().backward()
    with torch.no_grad():
        for p, b in zip(targets, backups):
            p.copy_(b)


def freelb_step(model, ids, mask, y, steps, adv_lr, init_mag):
    """The FreeLB authors' loop (run_glue_freelb.py, norm_type "l2", adv_max_norm 0) instead of
    the clean forward and backward; the word embeddings' output is recomputed after each pass,
    as the authors do."""
    real = mask.to(torch.float32)
    embeds = model.word_embeddings(ids)
    dims = real.sum(1) * embeds.size(-1)
    delta = torch.zeros_like(embeds).uniform_(-1, 1) * real.unsqueeze(2)
    delta = (delta * (init_mag / torch.sqrt(dims)).view(-1, 1, 1)).detach()
    total = 0.0
    for k in range(steps):
        delta.requires_grad_()
        loss = F.cross_entropy(model(ids, mask, delta), y) / steps
        total += loss.item()
        loss.backward()
        if k == steps - 1:
            break
        g = delta.grad.detach()
        denorm = torch.clamp(torch.norm(g.view(g.size(0), -1), dim=1), min=1e-8).view(-1, 1, 1)
        delta = (delta + adv_lr * g / denorm).detach()
    return total


def evaluate(model, rows, labels, batch, device):
    model.eval()
    preds = []
    with torch.no_grad():
        for b in range(0, len(rows), batch):
            ids, mask = pad_batch(rows[b:b + batch])
            preds.append(model(ids.to(device), mask.to(device)).argmax(1).cpu())
    pred = torch.cat(preds)
    return float((pred == labels).float().mean()), bag.macro_f1(pred, labels, len(CLASSES))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=os.path.join(".cache", "datasets", "spam-assassin", "data"),
                   help="corpus folder, or the offline sample (spam_sample.jsonl)")
    p.add_argument("--split", default="random", choices=["random", "temporal"])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--warmup", type=float, default=0.1, help="warm-up fraction of the steps")
    p.add_argument("--clip", type=float, default=1.0, help="gradient-norm clip")
    p.add_argument("--max-len", type=int, default=128, help="[CLS] ... [SEP] length cap")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--order", default="minidl", choices=["minidl", "torch"],
                   help="epoch permutation: minidl's data generator, or torch.randperm")
    p.add_argument("--fgm", type=float, default=0.0, help="FGM epsilon; 0 = off")
    p.add_argument("--pgd", action="store_true", help="PGD on word_embeddings")
    p.add_argument("--pgd-eps", type=float, default=1.0)
    p.add_argument("--pgd-alpha", type=float, default=0.3)
    p.add_argument("--pgd-steps", type=int, default=3)
    p.add_argument("--freelb", action="store_true", help="FreeLB on the word embeddings' output")
    p.add_argument("--freelb-steps", type=int, default=2)
    p.add_argument("--freelb-lr", type=float, default=0.1)
    p.add_argument("--freelb-init", type=float, default=0.6)
    p.add_argument("--max-steps", type=int, default=0,
                   help="stop after this many optimizer steps (timing); 0 = the whole run")
    p.add_argument("--eval-batch", type=int, default=64)
    p.add_argument("--out", default="", help="write model.safetensors, vocab.txt, config.json")
    p.add_argument("--save-weights", default="", help="write the state_dict (torch.save)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--device", default="cpu", help="cpu or cuda (each step ends in a synchronize)")
    a = p.parse_args(argv)
    if not 2 <= a.max_len <= MAX_POSITIONS:
        p.error("--max-len must be in [2, %d], got %d" % (MAX_POSITIONS, a.max_len))
    if sum([a.fgm > 0, a.pgd, a.freelb]) > 1:
        p.error("--fgm, --pgd and --freelb are alternatives: give one")
    startup_s = bag.process_age_s()  # ready to read the data

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    t0 = time.perf_counter()
    docs = load_docs(a.data)
    train, test = bag.split(docs, a.split)
    vocab = build_vocab(train)
    token_ids = {t: i for i, t in enumerate(vocab) if i >= len(SPECIALS)}
    tr_x = [encode(d["tokens"], token_ids, a.max_len) for d in train]
    te_x = [encode(d["tokens"], token_ids, a.max_len) for d in test]
    tr_y = torch.tensor([d["label"] for d in train])
    te_y = torch.tensor([d["label"] for d in test])
    t_data = time.perf_counter() - t0

    model = torch_bert.BertClassifier(
        len(vocab), BERT_TINY["hidden_size"], BERT_TINY["num_hidden_layers"],
        BERT_TINY["num_attention_heads"], BERT_TINY["intermediate_size"],
        BERT_TINY["max_position_embeddings"], BERT_TINY["type_vocab_size"],
        num_labels=len(CLASSES), hidden_dropout=BERT_TINY["hidden_dropout_prob"],
        attention_dropout=BERT_TINY["attention_probs_dropout_prob"],
        layer_norm_eps=BERT_TINY["layer_norm_eps"],
        initializer_range=BERT_TINY["initializer_range"], pad_token_id=PAD)
    device = torch.device(a.device)
    model.to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    opt = torch.optim.AdamW(torch_bert.adamw_groups(model, a.weight_decay), lr=a.lr,
                            betas=(0.9, 0.999), eps=1e-8)
    steps_per_epoch = math.ceil(len(train) / a.batch)
    total = a.epochs * steps_per_epoch
    warmup = int(a.warmup * total)  # floor(0.1 T); fl(0.1) > 0.1, so 0.1 * 10k is not below k
    sched = torch.optim.lr_scheduler.LambdaLR(opt, torch_bert.linear_warmup(warmup, total))
    data_gen = MinidlGenerator(a.seed + DATA_SEED_OFFSET)

    t1 = time.perf_counter()
    steps, step_s, step_n, step_len, epoch_s, epoch_loss = 0, [], [], [], [], []
    stopped = False
    for epoch in range(a.epochs):
        te = time.perf_counter()
        loss_sum, loss_steps = 0.0, steps
        model.train()
        order = data_gen.randperm(len(train)) if a.order == "minidl" else \
            torch.randperm(len(train)).tolist()
        for b in range(0, len(train), a.batch):
            ts = time.perf_counter()
            idx = order[b:b + a.batch]
            ids, mask = pad_batch([tr_x[i] for i in idx])
            ids, mask, y = ids.to(device), mask.to(device), tr_y[idx].to(device)
            opt.zero_grad()
            adv_loss = lambda: F.cross_entropy(model(ids, mask), y)  # noqa: E731
            if a.freelb:
                loss_sum += freelb_step(model, ids, mask, y, a.freelb_steps, a.freelb_lr,
                                        a.freelb_init)
            else:
                loss = adv_loss()
                loss.backward()
                loss_sum += loss.item()
            if a.fgm:
                fgm_step(model, adv_loss, a.fgm)
            if a.pgd:
                bag.pgd_step(model, adv_loss, a.pgd_eps, a.pgd_alpha, a.pgd_steps,
                             "word_embeddings")
            torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
            opt.step()
            sched.step()
            sync()
            step_s.append(time.perf_counter() - ts)
            step_n.append(len(idx))
            step_len.append(ids.shape[1])
            steps += 1
            if a.max_steps and steps >= a.max_steps:
                stopped = steps < total
                break
        epoch_s.append(time.perf_counter() - te)
        epoch_loss.append(loss_sum / max(1, steps - loss_steps))
        if a.max_steps and steps >= a.max_steps:
            break
    t_train = time.perf_counter() - t1

    acc = f1 = None
    if not stopped:
        acc, f1 = evaluate(model, te_x, te_y, a.eval_batch, device)
    if a.out:
        save_hf_dir(a.out, model, vocab, a.max_len)
    if a.save_weights:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, a.save_weights)

    skip = WARMUP_STEPS if steps > WARMUP_STEPS else 0  # a very short run times every step
    timed_s, timed_n = sum(step_s[skip:]), sum(step_n[skip:])
    sorted_s = sorted(step_s[skip:])
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    out = {"framework": "pytorch " + torch.__version__, "model": "transformer", "device": a.device,
           "split": a.split, "train_docs": len(train), "test_docs": len(test),
           "vocab": len(vocab), "max_len": a.max_len, "epochs": a.epochs, "batch": a.batch,
           "threads": a.threads, "order": a.order, "fgm": a.fgm,
           "pgd": [a.pgd_eps, a.pgd_alpha, a.pgd_steps] if a.pgd else None,
           "freelb": [a.freelb_steps, a.freelb_lr, a.freelb_init] if a.freelb else None,
           "seed": a.seed,
           "steps": steps, "total_steps": total, "lr_warmup_steps": warmup,
           "timed_steps": steps - skip, "warmup_steps_excluded": skip,
           "step_ms": 1000 * timed_s / max(1, steps - skip),
           "step_ms_median": 1000 * sorted_s[len(sorted_s) // 2] if sorted_s else None,
           "first_step_ms": 1000 * step_s[0] if step_s else None,
           "samples_per_s": timed_n / timed_s if timed_s > 0 else None,
           "train_samples_per_s": sum(step_n) / t_train if t_train > 0 else None,
           "mean_batch_len": sum(step_len) / max(1, len(step_len)),
           "import_s": T_IMPORTED - T_START, "startup_s": startup_s, "data_s": t_data,
           "train_s": t_train, "epoch_s": epoch_s,
           "epoch_loss": epoch_loss,
           "test_accuracy": acc, "test_macro_f1": f1, "peak_rss_mb": rss_mb}
    print(json.dumps(out) if a.json else "\n".join("%s: %s" % kv for kv in out.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
