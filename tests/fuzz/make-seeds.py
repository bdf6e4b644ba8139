#!/usr/bin/env python3
"""tests/fuzz/make-seeds.py: (re)writes the seed corpora of the harnesses
added for issue 8 (fuzz_index, fuzz_config, fuzz_tokenizer_json,
fuzz_tokenizer_model, fuzz_roundtrip) and a few extra safetensors / GGUF
seeds, from the shared stories260K files (QT_DATA, default ../shared/data)
and from hand-made edge cases. Deterministic; every file stays under 20 KB.
Run from the project root: python3 tests/fuzz/make-seeds.py
Inputs found by fuzzing (crashes, after their fix) are added by hand next
to these and named crash-<what>."""
import json, os, random, struct

DATA = os.environ.get("QT_DATA", "../shared/data")
M = os.path.join(DATA, "models/stories260K-f32")
C = "tests/fuzz/corpus"


def put(h, name, b):
    if isinstance(b, str):
        b = b.encode()
    d = os.path.join(C, h)
    os.makedirs(d, exist_ok=True)
    assert len(b) < 20000, (h, name, len(b))
    with open(os.path.join(d, name), "wb") as f:
        f.write(b)


def read(p):
    with open(p, "rb") as f:
        return f.read()


# ---- fuzz_index: model.safetensors.index.json (see fuzz_index.c's folder)
S1, S2 = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
good = {"metadata": {"total_size": 17}, "weight_map": {"a": S1, "b": S2, "c": S2}}
put("fuzz_index", "valid", json.dumps(good, indent=2))
put("fuzz_index", "valid-compact", json.dumps(good, separators=(",", ":")))
put("fuzz_index", "missing-shard", json.dumps({"weight_map": {"a": S1, "b": "model-00003.safetensors"}}))
put("fuzz_index", "unmapped", json.dumps({"weight_map": {"a": S1}}))
put("fuzz_index", "wrong-shard", json.dumps({"weight_map": {"a": S2, "b": S2, "c": S2}}))
put("fuzz_index", "dotdot", json.dumps({"weight_map": {"a": "../model/" + S1, "b": S2, "c": S2}}))
put("fuzz_index", "absolute", json.dumps({"weight_map": {"a": "/etc/passwd", "b": S2, "c": S2}}))
put("fuzz_index", "symlink", json.dumps({"weight_map": {"a": S1, "b": S2, "c": S2, "d": "link.safetensors"}}))
put("fuzz_index", "symlink-odd", json.dumps({"weight_map": {"a": S1, "b": S2, "c": S2, "d": "link.safetensors"}}) + " ")
put("fuzz_index", "stray-used", json.dumps({"weight_map": {"a": S1, "b": S2, "c": S2, "e": "stray.safetensors"}}))
put("fuzz_index", "dup-key", '{"weight_map": {"a": "%s", "a": "%s", "b": "%s", "c": "%s"}}' % (S1, S1, S2, S2))
put("fuzz_index", "non-string", '{"weight_map": {"a": 1, "b": "%s", "c": "%s"}}' % (S2, S2))
put("fuzz_index", "no-map", '{"metadata": {}}')
put("fuzz_index", "self", json.dumps({"weight_map": {"a": "model.safetensors.index.json"}}))
put("fuzz_index", "truncated", json.dumps(good)[:40])
put("fuzz_index", "deep", "[" * 70 + "]" * 70)

# ---- fuzz_config: config.json, quantization_config, quant_state blobs
put("fuzz_config", "stories-config", read(os.path.join(M, "config.json")))
g = os.path.join(DATA, "golden/transformers-bnb-int8/config.json")
if os.path.exists(g):
    put("fuzz_config", "golden-int8-config", read(g))
put("fuzz_config", "quant-state-nf4",
    '{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [64, 172]}')
put("fuzz_config", "quant-state-dq",
    '{"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [172, 64], '
    '"nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": 0.03202391415834427}')
put("fuzz_config", "quant-state-fp4-3d",
    '{"quant_type": "fp4", "blocksize": 4096, "dtype": "float16", "shape": [2, 3, 4]}')
put("fuzz_config", "quant-state-q8",
    '{"quant_type": "q8", "blocksize": 32, "dtype": "float16", "shape": [8]}')
put("fuzz_config", "floats",
    '{"a": 1.0, "b": 1e-05, "c": -0.0, "d": 1E+300, "e": 12345678901234567890, "f": [true, false, null], '
    '"g": "\\u00e9\\ud83d\\ude00\\n", "torch_dtype": "bfloat16"}')
put("fuzz_config", "nested", json.dumps({"text_config": {"hidden_size": 4, "rope_scaling": {"type": "linear", "factor": 2.0}},
                                         "quantization_config": None}))
put("fuzz_config", "deep-65", "[" * 65 + "]" * 65)
put("fuzz_config", "dup", '{"a": 1, "a": 2}')

# ---- fuzz_tokenizer_json
tj = read(os.path.join(M, "tokenizer.json"))
put("fuzz_tokenizer_json", "stories", tj)
d = json.loads(tj)
put("fuzz_tokenizer_json", "stories-compact", json.dumps(d, separators=(",", ":"), ensure_ascii=False))
small = json.loads(tj)
keep = {k: v for k, v in small["model"]["vocab"].items() if v < 300}
small["model"]["vocab"] = keep
small["model"]["merges"] = [m for m in small["model"]["merges"]
                            if all(p in keep for p in (m.split(" ") if isinstance(m, str) else m))
                            and "".join(m.split(" ") if isinstance(m, str) else m) in keep]
put("fuzz_tokenizer_json", "stories-small", json.dumps(small, separators=(",", ":"), ensure_ascii=False))
arr = json.loads(json.dumps(small))
arr["model"]["merges"] = [m.split(" ") if isinstance(m, str) else m for m in arr["model"]["merges"]]
put("fuzz_tokenizer_json", "merges-as-arrays", json.dumps(arr, separators=(",", ":"), ensure_ascii=False))
meta = json.loads(json.dumps(small))
meta["normalizer"] = None
meta["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": True}
put("fuzz_tokenizer_json", "metaspace", json.dumps(meta, separators=(",", ":"), ensure_ascii=False))


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD))  + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


bu = bytes_to_unicode()
vocab = {bu[b]: b for b in range(256)}
merges = []
for w in ["he", "ll", "hell", "hello", "\u0120w", "or", "\u0120wor", "ld", "\u0120world"]:
    pass
def addm(a, b):
    vocab.setdefault(a + b, len(vocab))
    merges.append(a + " " + b)
for a, b in [("h", "e"), ("l", "l"), ("he", "ll"), ("hell", "o"), ("\u0120", "w"), ("o", "r"),
             ("\u0120w", "or"), ("l", "d"), ("\u0120wor", "ld"), ("1", "2")]:
    addm(a, b)
bl = {"version": "1.0", "added_tokens": [{"id": len(vocab), "content": "<|endoftext|>", "special": True,
                                          "single_word": False, "lstrip": False, "rstrip": False, "normalized": False}],
      "normalizer": None,
      "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
      "post_processor": None, "decoder": {"type": "ByteLevel"},
      "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "vocab": vocab, "merges": merges}}
put("fuzz_tokenizer_json", "byte-level", json.dumps(bl, separators=(",", ":"), ensure_ascii=False))
l3 = json.loads(json.dumps(bl))
l3["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
    {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
     "behavior": "Isolated", "invert": False},
    {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
l3["model"]["ignore_merges"] = True
put("fuzz_tokenizer_json", "llama3-like", json.dumps(l3, separators=(",", ":"), ensure_ascii=False))
put("fuzz_tokenizer_json", "truncated", tj[:3000])
put("fuzz_tokenizer_json", "unigram", '{"model": {"type": "Unigram", "vocab": [["a", -1.0]]}}')

# ---- fuzz_tokenizer_model: SentencePiece protobuf
tm = read(os.path.join(M, "tokenizer.model"))
put("fuzz_tokenizer_model", "stories", tm)
put("fuzz_tokenizer_model", "truncated-half", tm[:len(tm) // 2])


def varint(v):
    out = b""
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field(num, wt, payload):
    key = varint(num << 3 | wt)
    if wt == 2:
        return key + varint(len(payload)) + payload
    return key + payload


def piece(text, score, typ=None):
    b = field(1, 2, text.encode()) + field(2, 5, struct.pack("<f", score))
    if typ is not None:
        b += field(3, 0, varint(typ))
    return field(1, 2, b)


pieces = piece("<unk>", 0, 2) + piece("<s>", 0, 3) + piece("</s>", 0, 3)
pieces += b"".join(piece("<0x%02X>" % i, 0, 6) for i in range(256))
for i, p in enumerate(["\u2581", "e", "h", "l", "o", "\u2581h", "ll", "\u2581he", "llo", "\u2581hello"]):
    pieces += piece(p, -float(i))
trainer = field(2, 2, field(3, 0, varint(2)) + field(35, 0, varint(1)))
normal = field(3, 2, field(3, 0, varint(1)) + field(4, 0, varint(0)))
put("fuzz_tokenizer_model", "tiny-bpe", pieces + trainer + normal)
put("fuzz_tokenizer_model", "tiny-unigram", pieces + field(2, 2, field(3, 0, varint(1))) + normal)
put("fuzz_tokenizer_model", "tiny-no-fallback",
    pieces[:0] + piece("<unk>", 0, 2) + piece("a", -1) + piece("\u2581", -2) + field(2, 2, field(3, 0, varint(2))) + normal)
put("fuzz_tokenizer_model", "huge-length", b"\x0a\xff\xff\xff\xff\x0f")

# ---- fuzz_roundtrip: [scheme|dq<<4, block selector, src type, values...]
rng = random.Random(8)
def floats(n, scale=1.0):
    return struct.pack("<%df" % n, *[rng.gauss(0, scale) for _ in range(n)])
for s in range(5):
    put("fuzz_roundtrip", "s%d-f32" % s, bytes([s, 1, 0]) + floats(200))
    put("fuzz_roundtrip", "s%d-f16" % s, bytes([s, 2, 1]) + struct.pack("<200e", *[rng.gauss(0, 0.05) for _ in range(200)]))
    put("fuzz_roundtrip", "s%d-bf16" % s, bytes([s, 0, 2]) + b"".join(struct.pack("<f", rng.gauss(0, 3))[2:] for _ in range(300)))
put("fuzz_roundtrip", "nf4-dq", bytes([16, 0, 0]) + floats(1024))
put("fuzz_roundtrip", "fp4-dq", bytes([17, 0, 0]) + floats(1024, 100.0))
special = struct.pack("<8f", float("nan"), float("inf"), -float("inf"), 1e-45, -0.0, 3e38, -3e38, 1e-40)
for s in range(5):
    put("fuzz_roundtrip", "s%d-special" % s, bytes([s, 0, 0]) + special * 8)
put("fuzz_roundtrip", "q8-big", bytes([3, 0, 0]) + struct.pack("<4f", 1e7, -2e7, 5e6, 1.0) * 8)
put("fuzz_roundtrip", "q8-tiny", bytes([3, 0, 0]) + struct.pack("<4f", 1e-6, -2e-7, 5e-8, 1e-39) * 8)
put("fuzz_roundtrip", "int8-wide", bytes([2, 63, 0]) + floats(640, 1000.0))

# ---- extra safetensors / GGUF seeds: truncated real headers
st = read(os.path.join(M, "model.safetensors"))
n = struct.unpack("<Q", st[:8])[0]
put("fuzz_safetensors", "stories-header-only", st[:8 + n])
put("fuzz_safetensors", "stories-truncated", st[:8 + n // 2])
gg = os.path.join(DATA, "models/stories260K-gguf/stories260K.gguf")
if os.path.exists(gg):
    put("fuzz_gguf", "stories-truncated-8k", read(gg)[:8192])
