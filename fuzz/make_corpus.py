#!/usr/bin/env python3
"""Regenerates the seed corpora under fuzz/corpus/ from files in the repository (fixtures,
configs) plus a few hand-written cases. Small on purpose (< 1 MB in all); libFuzzer grows its own
working corpus elsewhere (scripts/fuzz.sh uses build-fuzz/corpus-work/)."""
import io
import json
import os
import struct
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fuzz" / "corpus"


def put(target, name, data):
    d = OUT / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def safetensors(header, data=b""):
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data


DSIZE = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "U8": 1, "I8": 1}


def shrink(path):
    """A real file's tensor table (names, dtypes, ranks) with every dim cut to 1: valid, tiny."""
    raw = Path(path).read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + n])
    out, off = {}, 0
    if "__metadata__" in hdr:
        out["__metadata__"] = hdr.pop("__metadata__")
    for k, v in hdr.items():
        shape = [1] * len(v["shape"])
        nb = DSIZE[v["dtype"]]
        out[k] = {"dtype": v["dtype"], "shape": shape, "data_offsets": [off, off + nb]}
        off += nb
    return safetensors(out, bytes(range(256)) * (off // 256) + bytes(off % 256))


def main():
    # --- safetensors
    put("safetensors", "tiny-demo-golden", shrink(ROOT / "tests/fixtures/tiny-demo/golden.safetensors"))
    put("safetensors", "awkward-model", shrink(ROOT / "tests/fixtures/awkward/model.safetensors"))
    put("safetensors", "empty", safetensors({}))
    put("safetensors", "dtypes", safetensors(
        {"__metadata__": {"format": "pt"},
         "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
         "b": {"dtype": "F16", "shape": [1, 1], "data_offsets": [8, 10]},
         "c": {"dtype": "BF16", "shape": [], "data_offsets": [10, 12]},
         "d": {"dtype": "U8", "shape": [3], "data_offsets": [12, 15]},
         "e": {"dtype": "I64", "shape": [1], "data_offsets": [15, 23]},
         "z": {"dtype": "F32", "shape": [0, 4], "data_offsets": [23, 23]}},
        struct.pack("<2f", 1.5, float("nan")) + b"\x00\x3c\x80\x3f\x01\x02\x03" + struct.pack("<q", -1)))
    # --- config
    for p in sorted((ROOT / "configs").glob("*.json")) + sorted((ROOT / "tests/fixtures").glob("*/config.json")):
        put("config", p.parent.name + "-" + p.name if p.parent.name != "configs" else p.name, p.read_bytes())
    put("config", "empty-object", "{}")
    # --- tokenizer (first byte = max_length - 2)
    cases = json.loads((ROOT / "tests/fixtures/tokenizer_cases.json").read_text())["cases"]
    for i, c in enumerate(cases[:24]):
        put("tokenizer", f"case{i:02d}", bytes([min(c["max_length"] - 2, 255)]) + bytes.fromhex(c["utf8_hex"]))
    # --- parameters
    params = [
        "a photo of an ankle boot\nNegative prompt: blurry\nSteps: 20, Sampler: dpmpp_2m, CFG scale: 4, Seed: 123, Size: 28x28, Model: fashion-duet",
        "multi\nline prompt\nSteps: 3, Sampler: ddim, Refine: \"every 3, from 0\", Seed: 1",
        "only a prompt",
        "Steps: 20, Sampler: \"bad",
        "x\nNegative prompt: a\nb\nA: 1, B: \"q\\\"uoted\\n\", C: \u00e9",
    ]
    for i, t in enumerate(params):
        put("parameters", f"p{i}", t)
    # --- serve request bodies
    bodies = [
        {"prompt": "a shoe", "steps": 4, "n": 2, "size": "16x16", "seed": 7},
        {"prompt": "x", "negative_prompt": "y", "sampler": "euler_a", "cfg_scale": 2.5, "refine_every": 0,
         "response_format": "b64_json", "model": "fake-duet", "width": 32, "height": 24, "seed": -1},
        {"prompt": "x", "steps": 2.0, "n": None, "user": "u", "quality": "hd", "style": "vivid"},
        {"prompt": "x", "steps": 3, "cache": "block:1,0,0.1,0.2,0.9", "cfg_interval": [0.5, 20]},
    ]
    for i, b in enumerate(bodies):
        put("serve_request", f"b{i}", json.dumps(b))
    put("serve_request", "not-object", "[1, 2]")
    # --- png (PIL when available; else a hand-made 1x1 gray PNG)
    try:
        from PIL import Image, PngImagePlugin
        pngs = {
            "gray8": Image.new("L", (5, 3), 100),
            "rgb8": Image.new("RGB", (4, 4), (10, 200, 30)),
            "rgba8": Image.new("RGBA", (3, 2), (1, 2, 3, 4)),
            "la8": Image.new("LA", (2, 2), (9, 200)),
            "palette": Image.new("P", (4, 2), 3),
            "gray16": Image.new("I;16", (3, 3), 40000),
            "bilevel": Image.new("1", (9, 2), 1),
        }
        for name, im in pngs.items():
            info = PngImagePlugin.PngInfo()
            if name == "gray8":
                info.add_text("parameters", params[0])
            if name == "rgb8":
                info.add_itxt("parameters", "caf\u00e9\nSteps: 1, Sampler: ddim, Seed: 2", zip=True)
            if name == "la8":
                info.add_text("Comment", "x" * 100, zip=True)
            buf = io.BytesIO()
            im.save(buf, "PNG", pnginfo=info, interlace=(name == "rgba8"))
            put("png", name, buf.getvalue())
    except ImportError:
        def chunk(t, d):
            return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
        put("png", "gray1x1", b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00\x80")) + chunk(b"IEND", b""))


if __name__ == "__main__":
    main()
