#!/usr/bin/env python3
"""tests/examples/test_text_classifier_interop.py — text_classifier's model.safetensors in PyTorch.

Trains a small model on the committed offline sample with the text_classifier binary, reads its
model.safetensors with the small reader below (the format: 8-byte little-endian header length N,
N bytes of JSON {name: {dtype, shape, data_offsets}}, then the packed little-endian data), loads
the tensors into the PyTorch model of bench/torch_text_classifier.py (same parameter names), and
checks that PyTorch's logits on every sample message equal those `text_classifier predict
--logits` prints, |a - b| <= atol + rtol |b| with rtol 1e-4, atol 1e-5 (float32 sums of up to
512 embeddings in a different order). The PyTorch side tokenizes with the bench script's own
implementation of the spec and maps tokens through vocab.txt, so the text pipeline is
cross-checked too.

Exit status: 0 pass, 1 fail, 77 skipped (no PyTorch: CTest reports the test as skipped).
Run by CTest (examples/CMakeLists.txt) as
  /usr/bin/python3 test_text_classifier_interop.py --binary B --sample S --work DIR
"""
import argparse
import importlib.util
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def read_safetensors(path):
    """{name: (dtype, shape, bytes)} and the metadata of a safetensors file."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    data = blob[8 + n:]
    if "minidl.data_crc32" in meta:  # minidl's checksum of the data buffer: zlib's CRC-32
        assert meta["minidl.data_crc32"] == "%08x" % zlib.crc32(data), meta
    out = {}
    for name, e in header.items():
        begin, end = e["data_offsets"]
        out[name] = (e["dtype"], e["shape"], data[begin:end])
    return out, meta


def write_messages(sample, work):
    """The sample's messages (JSONL) and one file per message under work/docs, for predict."""
    docs = [json.loads(line) for line in open(sample, encoding="utf-8") if line.strip()]
    doc_dir = os.path.join(work, "docs")
    os.makedirs(doc_dir)
    paths = []
    for i, d in enumerate(docs):
        path = os.path.join(doc_dir, "%04d.eml" % i)
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(d["text"])
        paths.append(path)
    return docs, paths


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--binary", required=True)
    p.add_argument("--sample", required=True)
    p.add_argument("--work", required=True)
    a = p.parse_args()
    try:
        import torch
    except ImportError:
        print("SKIP: PyTorch is not installed (Debian: apt-get install python3-torch)")
        return 77

    spec = importlib.util.spec_from_file_location(
        "torch_text_classifier", os.path.join(ROOT, "bench", "torch_text_classifier.py"))
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)

    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(a.work)
    model_dir = os.path.join(a.work, "model")
    subprocess.run([a.binary, "--data", a.sample, "--out", model_dir, "--epochs", "3",
                    "--lr", "0.01", "--quiet", "--json", "--threads", "1"],
                   check=True, stdout=subprocess.DEVNULL)

    tensors, meta = read_safetensors(os.path.join(model_dir, "model.safetensors"))
    assert meta.get("format") == "pt", meta
    assert "minidl.data_crc32" in meta, meta
    state = {}
    for name, (dtype, shape, raw) in tensors.items():
        assert dtype == "F32", (name, dtype)
        state[name] = torch.frombuffer(bytearray(raw), dtype=torch.float32).reshape(shape)
    vocab_tokens = open(os.path.join(model_dir, "vocab.txt"), encoding="utf-8").read().split("\n")
    if vocab_tokens and vocab_tokens[-1] == "":
        vocab_tokens.pop()
    V = len(vocab_tokens)
    assert vocab_tokens[:2] == ["<pad>", "<unk>"], vocab_tokens[:2]
    vocab = {t: i for i, t in enumerate(vocab_tokens) if i >= 2}

    model = ref.Model(V, 2)
    missing = model.load_state_dict(state, strict=True)
    assert not missing.missing_keys and not missing.unexpected_keys, missing
    model.eval()

    # Every sample message, one file each, through `text_classifier predict`.
    docs, paths = write_messages(a.sample, a.work)
    out = subprocess.run([a.binary, "predict", "--model", model_dir, "--json", "--logits"] + paths,
                         check=True, stdout=subprocess.PIPE, text=True).stdout
    ours = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert len(ours) == len(docs), (len(ours), len(docs))

    encoded = ref.encode([{"tokens": ref.tokenize(ref.message_text(d["text"]))} for d in docs],
                         vocab)
    worst = 0.0
    rtol, atol = 1e-4, 1e-5
    failures = 0
    with torch.no_grad():
        for i, ids in enumerate(encoded):
            logits = model(ids, torch.zeros(1, dtype=torch.long))[0].tolist()
            for mine, theirs in zip(ours[i]["logits"], logits):
                err = abs(mine - theirs)
                worst = max(worst, err)
                if err > atol + rtol * abs(theirs):
                    failures += 1
                    if failures <= 5:
                        print("mismatch in message %d: text_classifier %r, PyTorch %r"
                              % (i, ours[i]["logits"], logits))
    print("%d messages, %d logits compared, max |difference| %.3g (rtol %g, atol %g)"
          % (len(docs), 2 * len(docs), worst, rtol, atol))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
