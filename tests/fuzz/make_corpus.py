#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz harnesses (tests/fuzz/corpus/<target>/) from the repository's own small files:
configs/, tests/data/. Large real files (checkpoints, 2-11 MB tokenizers) are cut down to small valid ones that keep
their structure (tensor names and dtypes, pre-tokenizer, normalizer, added tokens). Run from anywhere:
    python3 tests/fuzz/make_corpus.py
The output is deterministic; regression inputs added by hand (corpus/<target>/regress-*) are left alone."""
import glob
import json
import os
import shutil
import struct

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
OUT = os.path.join(ROOT, "tests", "fuzz", "corpus")
SIZES = {"F32": 4, "BF16": 2, "F16": 2, "I32": 4, "I64": 8, "U8": 1, "F64": 8, "BOOL": 1}


def target(name):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        if not f.startswith("regress-"):
            os.remove(os.path.join(d, f))
    return d


def write(d, name, data):
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def safetensors(tensors, metadata=None, pad=0):
    """tensors: [(name, dtype, shape)]; data bytes are a counter pattern."""
    hdr, off, blob = {}, 0, b""
    if metadata is not None:
        hdr["__metadata__"] = metadata
    for name, dt, shape in tensors:
        n = SIZES[dt]
        for s in shape:
            n *= s
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + n]}
        blob += bytes((off + i) & 0xFF for i in range(n))
        off += n
    h = json.dumps(hdr, separators=(",", ":")).encode() + b" " * pad
    return struct.pack("<Q", len(h)) + h + blob


def real_header(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    return json.loads(b[8 : 8 + n])


def shrink(shape):
    return [min(s, 3) for s in shape]


def main():
    d = target("safetensors")
    for model in ("tiny-llama/bf16", "tiny-qwen3/f32", "tiny-gpt2/bf16"):
        h = real_header(os.path.join(ROOT, "tests/data/models", model, "model.safetensors"))
        ts = [(k, v["dtype"], shrink(v["shape"])) for k, v in sorted(h.items()) if k != "__metadata__"]
        write(d, model.replace("/", "-") + ".safetensors", safetensors(ts, h.get("__metadata__"), pad=5))
    write(d, "dtypes.safetensors", safetensors([(k, k, [2, 1]) for k in SIZES] + [("empty", "F32", [0, 4])]))
    write(d, "scalar.safetensors", safetensors([("s", "F64", [])]))
    write(d, "empty-header.safetensors", safetensors([]))
    # an index over the harness's fixed shards a.safetensors (tensor x) and b.safetensors (tensor y)
    write(d, "index.json", json.dumps({"metadata": {"total_size": 16},
                                       "weight_map": {"x": "a.safetensors", "y": "b.safetensors"}}))

    d = target("config")
    for p in sorted(glob.glob(os.path.join(ROOT, "tests/data/models/*/*/config.json"))):
        write(d, os.path.relpath(p, os.path.join(ROOT, "tests/data/models")).replace("/", "-"), open(p, "rb").read())
    write(d, "stories260K-config.json", open(os.path.join(ROOT, "configs/models/stories260K/config.json"), "rb").read())
    for p in sorted(glob.glob(os.path.join(ROOT, "configs/shapes/*.json"))):
        write(d, "shape-" + os.path.basename(p), open(p, "rb").read())

    d = target("tokenizer_load")
    shutil.copy(os.path.join(ROOT, "configs/models/stories260K/tokenizer.json"), os.path.join(d, "stories260K.json"))
    for name, keep, added in (("gpt2", 400, 1), ("qwen3", 400, 4)):
        t = json.load(open(os.path.join(ROOT, "tests/data/tokenizers", name, "tokenizer.json")))
        vocab = {k: v for k, v in t["model"]["vocab"].items() if v < keep}
        merges = []
        for m in t["model"]["merges"]:
            a, b = m.split(" ", 1) if isinstance(m, str) else m
            if a in vocab and b in vocab and a + b in vocab:
                merges.append(m)
        t["model"]["vocab"], t["model"]["merges"] = vocab, merges
        t["added_tokens"] = [dict(a, id=keep + i) for i, a in enumerate(t["added_tokens"][:added])]
        write(d, name + "-small.json", json.dumps(t, ensure_ascii=False))

    d = target("tokenizer_encode")
    srcs = (("stories", 0, "tests/data/stories260K/encodings.jsonl"), ("gpt2", 1, "tests/data/tokenizers/gpt2/encodings.jsonl"),
            ("qwen3", 2, "tests/data/tokenizers/qwen3/encodings.jsonl"))
    for name, sel, p in srcs:
        lines = [json.loads(l)["text"] for l in open(os.path.join(ROOT, p), encoding="utf-8") if l.strip()]
        for i, text in enumerate(lines[:6]):
            write(d, "%s-%d" % (name, i), bytes([sel | (4 if i % 2 else 0)]) + text.encode())
    write(d, "bad-utf8", b"\x01ab\xc3(\xff")

    d = target("prompts")
    for p in ("configs/prompts/stories.jsonl", "configs/prompts/stories_ids.jsonl", "tests/data/golden/stories.jsonl"):
        write(d, os.path.basename(os.path.dirname(p)) + "-" + os.path.basename(p), open(os.path.join(ROOT, p), "rb").read())
    write(d, "all-fields.jsonl",
          '{"id": 7, "prompt_ids": [1, 2, 3], "n": 3, "max_new_tokens": 5, "temperature": 0.7, "top_p": 0.9, '
          '"top_k": 40, "stop_ids": [2]}\n\n  \n{"id": "t", "prompt": "Hi \\u00e9\\n", "temperature": 0}\n')
    # records of the tokenize / detokenize verbs (cli_jsonl): rejected as prompts, read by cli_jsonl_each
    write(d, "records.jsonl", '{"text": "Hello", "meta": {"a": [1, "}"]}}\n{}\n{"x": "\\"", "ids": null}\n'
          '{"ids": [1, 2], "\\u0069ds": 3}\n')

    d = target("h5log")
    for p in ("stories-t1.rollouts.h5", "stories-t1.scores.h5", "qwen3-t0.rollouts.h5", "qwen3-t0.scores.h5"):
        shutil.copy(os.path.join(ROOT, "tests/data/golden", p), os.path.join(d, p))


if __name__ == "__main__":
    main()
