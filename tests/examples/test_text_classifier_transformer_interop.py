#!/usr/bin/env python3
"""tests/examples/test_text_classifier_transformer_interop.py — `text_classifier --model
transformer`'s output folder read as a Hugging Face BERT checkpoint, in PyTorch.

Trains the Transformer for 4 epochs at lr 5e-3 on the committed offline sample with --max-len 64
(so that the weights move well away from their initialisation), then checks
  * config.json: Hugging Face's BertConfig keys with BERT-Tiny's values, model_type "bert",
    architectures ["BertForSequenceClassification"], hidden_act "gelu", pad_token_id 0,
    id2label {"0": "ham", "1": "spam"} and label2id, max_length = the --max-len given,
    minidl_model "transformer";
  * model.safetensors: F32 tensors under exactly BertForSequenceClassification's keys for
    num_hidden_layers layers (no position_ids), shaped as the config says (the set difference is
    printed when not);
  * vocab.txt: one token per line, line k = id k, the five specials [PAD] [UNK] [CLS] [SEP] [MASK]
    first, then the bag model's rule over the sample's training tokens;
and loads the tensors into tests/fixtures/torch_bert.py's BertClassifier (torch.nn under Hugging
Face's names), built from config.json's sizes. Every sample message, tokenized by the spec
(bench/torch_transformer_classifier.py, which reuses bench/torch_text_classifier.py's tokenizer)
and encoded as [CLS] ids [SEP] cut to config.json's max_length, runs through it in eval mode one
document at a time; its logits must equal those `text_classifier predict --json --logits` prints,
|a - b| <= atol + rtol |b| with rtol 1e-4, atol 1e-5. The largest difference is printed.

The comparison sees errors of structure and of
the text pipeline (a token more or less at truncation, a missing [SEP], unknown tokens not [UNK],
shifted positions, unmasked padding, a 1 % error in one weight matrix: each moves most messages'
logits by 1e-4 or more), not an error in a single weight, nor GELU's tanh form against erf; those
are the unit tests' (tests/nn/test_bert*.cpp against tests/fixtures/).

Exit status: 0 pass, 1 fail, 77 skipped (no PyTorch: CTest reports the test as skipped).
  /usr/bin/python3 test_text_classifier_transformer_interop.py --binary B --sample S --work DIR
  /usr/bin/python3 test_text_classifier_transformer_interop.py --self-test --sample S --work DIR
--self-test checks the PyTorch side without the binary: a stand-in for it (this file with
--fake-binary) trains the PyTorch reference briefly and writes the folder with the reference's
writer, and predicts with the model it kept as a torch state_dict; the test must pass on that, and
fail on each of a few corruptions of the folder.
"""
import argparse
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
RTOL, ATOL = 1e-4, 1e-5
MAX_LEN = 64
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CLASSES = ["ham", "spam"]
# BertConfig's keys and the values text_classifier --model transformer writes (BERT-Tiny).
EXPECTED_CONFIG = {"model_type": "bert", "architectures": ["BertForSequenceClassification"],
                   "hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
                   "intermediate_size": 512, "max_position_embeddings": 512,
                   "type_vocab_size": 2, "layer_norm_eps": 1e-12, "hidden_act": "gelu",
                   "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
                   "initializer_range": 0.02, "pad_token_id": 0,
                   "id2label": {"0": "ham", "1": "spam"}, "label2id": {"ham": 0, "spam": 1},
                   "max_length": MAX_LEN, "minidl_model": "transformer"}
CONFIG_KEYS = ["vocab_size"] + list(EXPECTED_CONFIG)


def load_module(name, *relative):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, *relative))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def hf_keys(layers):
    """BertForSequenceClassification's state_dict keys (without the position_ids buffer)."""
    keys = ["bert.embeddings.%s_embeddings.weight" % e for e in ("word", "position", "token_type")]
    keys += ["bert.embeddings.LayerNorm.weight", "bert.embeddings.LayerNorm.bias"]
    for i in range(layers):
        prefix = "bert.encoder.layer.%d." % i
        for module in ("attention.self.query", "attention.self.key", "attention.self.value",
                       "attention.output.dense", "attention.output.LayerNorm",
                       "intermediate.dense", "output.dense", "output.LayerNorm"):
            keys += [prefix + module + ".weight", prefix + module + ".bias"]
    keys += ["bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight",
             "classifier.bias"]
    return keys


class Checks:
    def __init__(self):
        self.failures = 0

    def fail(self, message):
        self.failures += 1
        print("FAIL: " + message)

    def expect(self, ok, message):
        if not ok:
            self.fail(message)
        return ok


def check_config(config, checks):
    missing = [k for k in CONFIG_KEYS if k not in config]
    checks.expect(not missing, "config.json lacks %s" % missing)
    for k, want in EXPECTED_CONFIG.items():
        if k in config:
            got = config[k]
            if isinstance(want, float):  # a float32 round trip of 0.1 is still 0.1 for HF
                ok = isinstance(got, (int, float)) and not isinstance(got, bool) and \
                    math.isclose(got, want, rel_tol=1e-6)
            else:
                ok = got == want and type(got) is type(want)
            checks.expect(ok, "config.json: %s is %r, expected %r" % (k, got, want))
    vocab_size = config.get("vocab_size")
    checks.expect(isinstance(vocab_size, int) and not isinstance(vocab_size, bool) and
                  5 < vocab_size <= 30000, "config.json: vocab_size %r" % (vocab_size,))


def check_vocab(vocab, config, ref, sample, checks):
    """vocab.txt against the spec: specials, then the bag rule over the sample's training split."""
    ok = checks.expect(vocab[:5] == SPECIALS,
                       "vocab.txt's first lines are %r, expected %r" % (vocab[:5], SPECIALS))
    ok &= checks.expect(len(vocab) == config.get("vocab_size"),
                        "vocab.txt has %d lines, config.json's vocab_size is %r"
                        % (len(vocab), config.get("vocab_size")))
    train, _ = ref.bag.split(ref.load_docs(sample), "random")
    expected = ref.build_vocab(train)
    if vocab != expected:
        k = next((i for i, (x, y) in enumerate(zip(vocab, expected)) if x != y),
                 min(len(vocab), len(expected)))
        checks.fail("vocab.txt differs from the spec's vocabulary (%d vs %d entries); first at "
                    "line %d: %r, expected %r" % (len(vocab), len(expected), k,
                                                  vocab[k] if k < len(vocab) else None,
                                                  expected[k] if k < len(expected) else None))
        ok = False
    return ok


def run_check(command, sample, work):
    """The test proper, with `command` the text_classifier binary (a list: program and leading
    arguments). Returns 0 (pass) or 1 (fail)."""
    import torch
    ref = load_module("torch_transformer_classifier", "bench", "torch_transformer_classifier.py")
    interop = load_module("test_text_classifier_interop", "tests", "examples",
                          "test_text_classifier_interop.py")
    torch_bert = ref.torch_bert
    checks = Checks()

    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    model_dir = os.path.join(work, "model")
    subprocess.run(command + ["--model", "transformer", "--data", sample, "--out", model_dir,
                              "--epochs", "4", "--lr", "5e-3", "--max-len", str(MAX_LEN),
                              "--quiet", "--json",
                              "--threads", "1"], check=True, stdout=subprocess.DEVNULL)

    with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    check_config(config, checks)

    tensors, meta = interop.read_safetensors(os.path.join(model_dir, "model.safetensors"))
    checks.expect(meta.get("format") == "pt", "safetensors metadata %r lacks format: pt" % meta)
    layers = config.get("num_hidden_layers", EXPECTED_CONFIG["num_hidden_layers"])
    want = set(hf_keys(layers))
    if not checks.expect(set(tensors) == want, "model.safetensors' keys are not "
                         "BertForSequenceClassification's for %d layers" % layers):
        print("  missing:    %s" % sorted(want - set(tensors)))
        print("  unexpected: %s" % sorted(set(tensors) - want))

    with open(os.path.join(model_dir, "vocab.txt"), encoding="utf-8", newline="") as f:
        vocab_text = f.read()
    checks.expect(vocab_text.endswith("\n") and "\r" not in vocab_text,
                  "vocab.txt is not '\\n'-terminated lines")
    vocab = vocab_text.split("\n")[:-1] if vocab_text.endswith("\n") else vocab_text.split("\n")
    check_vocab(vocab, config, ref, sample, checks)
    if checks.failures:  # the comparison below needs the folder to be what the spec says
        return 1

    classes = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
    model = torch_bert.BertClassifier(
        config["vocab_size"], config["hidden_size"], config["num_hidden_layers"],
        config["num_attention_heads"], config["intermediate_size"],
        config["max_position_embeddings"], config["type_vocab_size"], num_labels=len(classes),
        hidden_dropout=config["hidden_dropout_prob"],
        attention_dropout=config["attention_probs_dropout_prob"],
        layer_norm_eps=config["layer_norm_eps"], initializer_range=config["initializer_range"],
        pad_token_id=config["pad_token_id"])
    shapes = {k: list(v.shape) for k, v in model.hf_named().items()}
    state = {}
    for name, (dtype, shape, raw) in tensors.items():
        checks.expect(dtype == "F32", "%s is %s, expected F32" % (name, dtype))
        checks.expect(shape == shapes[name], "%s has shape %s, expected %s"
                      % (name, shape, shapes[name]))
        if dtype == "F32" and shape == shapes[name]:
            state[name] = torch.frombuffer(bytearray(raw), dtype=torch.float32).reshape(shape)
    if checks.failures:
        return 1
    model.load_hf(state)
    model.eval()
    checks.expect(float(model.word_embeddings.weight[config["pad_token_id"]].abs().max()) == 0,
                  "the [PAD] row of word_embeddings is not 0")

    # Every sample message, one file each, through `text_classifier predict`.
    docs, paths = interop.write_messages(sample, work)
    out = subprocess.run(command + ["predict", "--model", model_dir, "--json", "--logits"] + paths,
                         check=True, stdout=subprocess.PIPE, text=True).stdout
    ours = [json.loads(line) for line in out.splitlines() if line.strip()]
    if not checks.expect(len(ours) == len(docs), "predict printed %d lines for %d files"
                         % (len(ours), len(docs))):
        return 1

    token_ids = {t: i for i, t in enumerate(vocab) if i >= len(SPECIALS)}
    max_length = config["max_length"]
    worst, compared, mismatches, longest = 0.0, 0, 0, 0
    with torch.no_grad():
        for i, d in enumerate(docs):
            row = ref.encode(ref.bag.tokenize(ref.bag.message_text(d["text"])), token_ids,
                             max_length)
            longest = max(longest, len(row))
            ids = torch.tensor([row], dtype=torch.long)
            logits = model(ids, torch.ones_like(ids))[0].tolist()
            mine = ours[i].get("logits")
            if not checks.expect(isinstance(mine, list) and len(mine) == len(logits),
                                 "message %d: predict's logits %r, expected %d values"
                                 % (i, mine, len(logits))):
                continue
            bad = False
            for m, theirs in zip(mine, logits):
                err = abs(m - theirs)
                worst = max(worst, err)
                compared += 1
                bad |= not err <= ATOL + RTOL * abs(theirs)  # NaN fails
            if bad:
                mismatches += 1
                if mismatches <= 5:
                    print("mismatch in message %d (%d ids): text_classifier %r, PyTorch %r"
                          % (i, len(row), mine, logits))
    if mismatches:
        checks.fail("%d of %d messages' logits differ" % (mismatches, len(docs)))
    print("%d messages ([CLS] .. [SEP] up to %d ids), %d logits compared, max |difference| %.3g "
          "(rtol %g, atol %g)" % (len(docs), longest, compared, worst, RTOL, ATOL))
    return 1 if checks.failures else 0


# ---- --self-test: a stand-in for the binary, and corruptions the test must catch ---------------
def fake_binary(args):
    """text_classifier's two command lines the test uses, answered by the PyTorch reference:
    training runs bench/torch_transformer_classifier.py with the same flags, which writes the
    folder with its own writer, and keeps the torch state_dict beside it (DIR.state.pt); predict
    loads that state_dict (torch's module names, not the Hugging Face ones under test) and runs
    every file in one padded batch. --corrupt=WHAT first damages the folder (or the logits)."""
    import torch
    ref = load_module("torch_transformer_classifier", "bench", "torch_transformer_classifier.py")
    corrupt = ""
    if args and args[0].startswith("--corrupt="):
        corrupt, args = args[0].split("=", 1)[1], args[1:]
    if args[0] == "predict":
        p = argparse.ArgumentParser()
        p.add_argument("--model", required=True)
        p.add_argument("--json", action="store_true")
        p.add_argument("--logits", action="store_true")
        p.add_argument("files", nargs="+")
        a = p.parse_args(args[1:])
        config = json.load(open(os.path.join(a.model, "config.json")))
        model = ref.torch_bert.BertClassifier(config["vocab_size"])
        model.load_state_dict(torch.load(a.model + ".state.pt"))
        model.eval()
        vocab = open(os.path.join(a.model, "vocab.txt"), encoding="utf-8").read().split("\n")[:-1]
        token_ids = {t: i for i, t in enumerate(vocab) if i >= len(SPECIALS)}
        rows = []
        for path in a.files:
            with open(path, encoding="utf-8", newline="") as f:
                tokens = ref.bag.tokenize(ref.bag.message_text(f.read()))
            rows.append(ref.encode(tokens, token_ids, config["max_length"]))
        ids, mask = ref.pad_batch(rows)
        with torch.no_grad():
            logits = model(ids, mask)
        if corrupt == "logits":
            logits[7, 1] += 1e-3
        for path, l in zip(a.files, logits.tolist()):
            print(json.dumps({"file": path, "label": CLASSES[int(l[1] > l[0])], "logits": l}))
        return 0
    p = argparse.ArgumentParser()
    for flag in ("--model", "--data", "--out", "--epochs", "--max-len", "--threads"):
        p.add_argument(flag, required=True)
    p.add_argument("--lr", default="1e-3")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(args)
    assert a.model == "transformer"
    ref.main(["--data", a.data, "--epochs", a.epochs, "--lr", a.lr, "--max-len", a.max_len,
              "--threads",
              a.threads, "--out", a.out, "--save-weights", a.out + ".state.pt", "--json"])
    interop = load_module("test_text_classifier_interop", "tests", "examples",
                          "test_text_classifier_interop.py")
    st = os.path.join(a.out, "model.safetensors")
    tensors, meta = interop.read_safetensors(st)
    named = {k: torch.frombuffer(bytearray(raw), dtype=torch.float32).reshape(shape)
             for k, (_, shape, raw) in tensors.items()}
    if corrupt == "extra_key":
        named["bert.embeddings.position_ids"] = torch.arange(512, dtype=torch.float32)[None]
    elif corrupt == "missing_key":
        del named["classifier.bias"]
    elif corrupt == "swap_qk":
        q, k = "bert.encoder.layer.1.attention.self.query.weight", \
            "bert.encoder.layer.1.attention.self.key.weight"
        named[q], named[k] = named[k], named[q]
    elif corrupt == "weight":  # a 1 % error in one matrix
        named["bert.encoder.layer.0.output.dense.weight"] *= 1.01
    elif corrupt == "transposed":
        w = "bert.encoder.layer.0.intermediate.dense.weight"
        named[w] = named[w].t().contiguous()
    if corrupt in ("extra_key", "missing_key", "swap_qk", "weight", "transposed"):
        ref.write_safetensors(st, named)
    if corrupt in ("vocab", "config_act", "config_max_length", "config_id2label"):
        if corrupt == "vocab":
            path = os.path.join(a.out, "vocab.txt")
            lines = open(path, encoding="utf-8").read().split("\n")
            lines[10], lines[11] = lines[11], lines[10]
            open(path, "w", encoding="utf-8").write("\n".join(lines))
        else:
            path = os.path.join(a.out, "config.json")
            config = json.load(open(path))
            if corrupt == "config_act":
                config["hidden_act"] = "gelu_new"
            elif corrupt == "config_max_length":
                config["max_length"] = 128
            else:
                config["id2label"] = {"0": "LABEL_0", "1": "LABEL_1"}  # HF's default names
                config["label2id"] = {"LABEL_0": 0, "LABEL_1": 1}
            json.dump(config, open(path, "w"))
    return 0


def self_test(sample, work):
    prefix = [sys.executable, os.path.abspath(__file__), "--fake-binary"]
    cases = [("", 0), ("logits", 1), ("extra_key", 1), ("missing_key", 1), ("swap_qk", 1),
             ("weight", 1), ("transposed", 1), ("vocab", 1), ("config_act", 1),
             ("config_max_length", 1), ("config_id2label", 1)]
    wrong = 0
    for corrupt, want in cases:
        print("---- self-test: %s" % (corrupt or "the folder as the spec says"))
        command = prefix + (["--corrupt=" + corrupt] if corrupt else [])
        try:
            got = run_check(command, sample, os.path.join(work, corrupt or "clean"))
        except Exception as e:  # noqa: BLE001  (an uncaught error exits 1 in a real run)
            print("exception: %s: %s" % (type(e).__name__, e))
            got = 1
        print("---- %s: exit %d, expected %d%s" % (corrupt or "clean", got, want,
                                                   "" if got == want else "  <-- WRONG"))
        wrong += got != want
    print("self-test: %d of %d cases as expected" % (len(cases) - wrong, len(cases)))
    return 1 if wrong else 0


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--fake-binary":
        return fake_binary(sys.argv[2:])
    p = argparse.ArgumentParser()
    p.add_argument("--binary")
    p.add_argument("--sample", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--self-test", action="store_true",
                   help="check the PyTorch side against a stand-in for the binary")
    a = p.parse_args()
    if not a.self_test and not a.binary:
        p.error("--binary is required (or --self-test)")
    try:
        import torch  # noqa: F401
    except ImportError:
        print("SKIP: PyTorch is not installed (Debian: apt-get install python3-torch)")
        return 77
    if a.self_test:
        return self_test(os.path.abspath(a.sample), a.work)
    return run_check([a.binary], a.sample, a.work)


if __name__ == "__main__":
    sys.exit(main())
