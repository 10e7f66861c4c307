#!/usr/bin/env python3
# tests/fuzz/corpus/make_seeds.py — writes the seed corpus of every fuzz target (corpus/<target>/):
# small valid inputs and near-valid ones (one rule broken each), the starting points libFuzzer
# mutates. Run from anywhere; it rewrites the folders next to it.
import json
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    os.makedirs(os.path.join(HERE, target), exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(HERE, target, name), "wb") as f:
        f.write(data)


def safetensors(header, data=b"", pad=True, length=None):
    text = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    if pad:
        text += b" " * ((8 - len(text) % 8) % 8)
    n = len(text) if length is None else length
    return struct.pack("<Q", n) + text + data


def seeds_safetensors():
    f32 = struct.pack("<6f", 1, 2, 3, 4, 5, 6)
    i64 = struct.pack("<q", 7)
    valid = {"__metadata__": {"format": "pt", "step": "3"},
             "step": {"dtype": "I64", "shape": [], "data_offsets": [0, 8]},
             "fc1.weight": {"dtype": "F32", "shape": [2, 3], "data_offsets": [8, 32]},
             "empty": {"dtype": "BF16", "shape": [0, 4], "data_offsets": [32, 32]}}
    write("safetensors", "valid", safetensors(valid, i64 + f32))
    write("safetensors", "valid_empty", safetensors({}))
    write("safetensors", "valid_f64_f16", safetensors(
        {"a": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]},
         "b": {"dtype": "F16", "shape": [2, 1], "data_offsets": [8, 12]}}, bytes(range(12))))
    write("safetensors", "truncated_data", safetensors(valid, i64 + f32[:-1]))
    write("safetensors", "trailing_data", safetensors(valid, i64 + f32 + b"x"))
    write("safetensors", "overlap", safetensors(
        {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
         "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, bytes(12)))
    write("safetensors", "gap", safetensors(
        {"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, bytes(8)))
    write("safetensors", "size_mismatch", safetensors(
        {"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, bytes(8)))
    write("safetensors", "duplicate_key",
          safetensors(b'{"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]},'
                      b'"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}', bytes(4)))
    write("safetensors", "bad_utf8", safetensors(b'{"\xff":{}}'))
    write("safetensors", "huge_length", safetensors({}, length=1 << 40))
    write("safetensors", "not_object", safetensors(b"[1,2,3]"))
    write("safetensors", "bad_dims", safetensors(
        {"a": {"dtype": "F32", "shape": [-1, 2.0], "data_offsets": [0, 0]}}))
    write("safetensors", "overflow_shape", safetensors(
        {"a": {"dtype": "F64", "shape": [4294967296, 4294967296, 0], "data_offsets": [0, 0]}}))
    write("safetensors", "bad_metadata", safetensors({"__metadata__": {"k": 1}}))
    write("safetensors", "unknown_dtype", safetensors(
        {"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}, b"x"))
    write("safetensors", "short", b"\x08\x00\x00")


def seeds_tsv():
    write("tsv", "valid", "label\ttext\nspam\tWin money now\nham\tsee you at 5\n\nham\tok\n")
    write("tsv", "crlf_no_final_newline", "a\tone\r\nb\ttwo\tthree\r\nc\t")
    write("tsv", "no_tab", "spam\tfine\nthis line has no tab\n")
    write("tsv", "empty_label", "\tno label\n")
    write("tsv", "header_only", "label\ttext\n")
    write("tsv", "binary", b"\x00\tx\n\xff\xfe\t\x01\r\r\n")


def seeds_jsonl():
    write("jsonl", "valid_user", '{"label": "spam", "text": "Win money"}\n'
          '{"label": 1, "text": "ok"}\n   \n{"text": "x", "label": "ham", "extra": [1]}\n')
    md5 = "0123456789abcdef0123456789abcdef"
    lines = [json.dumps({"group": g, "id": "0000%d" % i, "md5": md5[:-1] + str(i), "text": "Subject: hi\n\nbody %d" % i})
             for i, g in enumerate(["easy-ham-1", "easy-ham-2", "hard-ham-1", "spam-1", "spam-2"])]
    write("jsonl", "valid_sample", "\n".join(lines) + "\n")
    write("jsonl", "sample_bad_group", json.dumps({"group": "spam-3", "id": "1", "md5": md5, "text": "t"}))
    write("jsonl", "sample_bad_md5", json.dumps({"group": "spam-1", "id": "1", "md5": "ABC", "text": "t"}))
    write("jsonl", "not_json", '{"label": "a", "text": "b"\n')
    write("jsonl", "float_label", '{"label": 1.5, "text": "b"}\n')
    write("jsonl", "empty_label", '{"label": "", "text": "b"}\n')
    write("jsonl", "not_object", '["label", "text"]\n')
    write("jsonl", "escapes", '{"label": "\\u00e9t\\u00e9", "text": "a\\nb\\ud83d\\ude00"}\n')


def seeds_json_lite():
    write("json_lite", "entry", '{"id":"00001","group":"easy-ham-1","checksum":{"type":"MD5",'
          '"value":"7c53336b37003a9286aba55d2945844c"},"text":"Subject: hi\\n\\nbody"}')
    write("json_lite", "whitespace", ' {\n "a" : "b" ,\r\n\t"c":{ } }\n')
    write("json_lite", "escapes", '{"t":"\\"\\\\\\/\\b\\f\\n\\r\\t\\u0041\\u00e9\\u20ac\\ud83d\\ude00"}')
    write("json_lite", "lone_surrogate", '{"t":"\\udc00"}')
    write("json_lite", "high_surrogate_only", '{"t":"\\ud83dx"}')
    write("json_lite", "number", '{"id":1}')
    write("json_lite", "nested", '{"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":{"i":"deep"}}}}}}}}}')
    write("json_lite", "too_deep", '{"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":{"i":{"j":"x"}}}}}}}}}}')
    write("json_lite", "trailing", '{"a":"b"} x')
    write("json_lite", "duplicate", '{"a":"1","a":"2"}')
    write("json_lite", "control_char", '{"a":"x\ty"}')
    write("json_lite", "raw_utf8", '{"a":"caf\xc3\xa9"}'.encode("latin-1"))
    write("json_lite", "bom", b'\xef\xbb\xbf{"a":"b"}')


def seeds_tokenizer():
    # byte 0: max_tokens - 1 in bits 0-5, e-mail mode in bit 6
    write("tokenizer", "email", b"\x5f" + b"From: a@b\nSUBJECT: Win $$$ NOW\nX: y\n\nHello World 42 caf\xc3\xa9\n")
    write("tokenizer", "email_no_blank_line", b"\x7f" + b"Subject: only headers\nTo: x")
    write("tokenizer", "plain_limit", b"\x02" + b"one two three four five")
    write("tokenizer", "corpus", b"\x3f" + b"the cat\x00the dog\x00\x00THE cat sat\x00a a a b b")
    write("tokenizer", "vocab_file", b"\x3f" + b"<pad>\n<unk>\nhello\nworld\n")
    write("tokenizer", "vocab_duplicate", b"\x3f" + b"<pad>\n<unk>\nx\nx")
    write("tokenizer", "separators", b"\x3f" + bytes(range(256)))


for target in ["safetensors", "tsv", "jsonl", "json_lite", "tokenizer"]:
    shutil.rmtree(os.path.join(HERE, target), ignore_errors=True)
seeds_safetensors()
seeds_tsv()
seeds_jsonl()
seeds_json_lite()
seeds_tokenizer()
