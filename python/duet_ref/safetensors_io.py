"""Minimal safetensors writer/reader (no dependency on the `safetensors` package).

File layout (the standard safetensors format):
  * bytes 0..7: little-endian uint64 N = length of the JSON header in bytes;
  * bytes 8..8+N: UTF-8 JSON object, padded with spaces (0x20) so that N is a multiple of 8.
    Optional key "__metadata__" maps strings to strings. Every other key is a tensor:
    {"dtype": "F32"|"F16"|"BF16"|"I64"|"I32"|"U8", "shape": [..], "data_offsets": [begin, end]}
    with offsets relative to the start of the data section (byte 8 + N);
  * the data section: raw little-endian C-order tensor data. The writer stores tensors in the
    order given (JSON key order == data order), contiguous with no gaps and nothing after the last.

The reader validates all of this (header size, JSON, duplicate keys, dtypes, shapes, offsets
vs. shape*itemsize, contiguity/no gaps/no overlap, trailing bytes) and raises SafetensorsError.
"""
from __future__ import annotations

import json
import os
import struct
from collections import OrderedDict

import numpy as np
import torch

# dtype name -> (torch dtype, itemsize)
DTYPES = {
    "F32": (torch.float32, 4),
    "F16": (torch.float16, 2),
    "BF16": (torch.bfloat16, 2),
    "I64": (torch.int64, 8),
    "I32": (torch.int32, 4),
    "U8": (torch.uint8, 1),
}
_TORCH_TO_NAME = {v[0]: k for k, v in DTYPES.items()}
_TORCH_TO_NAME[torch.bool] = "U8"  # bools are stored as 0/1 bytes
MAX_HEADER = 100 * 1024 * 1024


class SafetensorsError(ValueError):
    pass


def _to_bytes(t: torch.Tensor) -> tuple[str, bytes]:
    t = t.detach().cpu().contiguous()
    if t.dtype not in _TORCH_TO_NAME:
        raise SafetensorsError(f"unsupported dtype {t.dtype}")
    name = _TORCH_TO_NAME[t.dtype]
    if t.dtype == torch.bool:
        t = t.to(torch.uint8)
    if t.dtype == torch.bfloat16:
        arr = t.view(torch.int16).numpy()
    else:
        arr = t.numpy()
    arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
    return name, arr.tobytes(order="C")


def _plan(tensors, metadata):
    """-> (8-byte length + header bytes incl. padding, list of tensors to write in order)."""
    header = OrderedDict()
    if metadata:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise SafetensorsError("__metadata__ must map strings to strings")
        header["__metadata__"] = dict(metadata)
    items, off = [], 0
    for name, t in tensors.items():
        if name == "__metadata__":
            raise SafetensorsError("tensor name __metadata__ is reserved")
        if isinstance(t, np.ndarray):
            t = torch.from_numpy(np.ascontiguousarray(t))
        if t.dtype not in _TORCH_TO_NAME:
            raise SafetensorsError(f"tensor {name!r}: unsupported dtype {t.dtype}")
        dt = _TORCH_TO_NAME[t.dtype]
        nbytes = t.numel() * DTYPES[dt][1]
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + nbytes]}
        items.append(t)
        off += nbytes
    hb = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    hb += b" " * ((-len(hb)) % 8)
    return struct.pack("<Q", len(hb)) + hb, items


def serialize(tensors, metadata: dict | None = None) -> bytes:
    """tensors: mapping name -> torch.Tensor (or numpy array), written in iteration order."""
    head, items = _plan(tensors, metadata)
    return head + b"".join(_to_bytes(t)[1] for t in items)


def save_file(tensors, path: str, metadata: dict | None = None):
    """Streams the file (one tensor's bytes in memory at a time besides the inputs)."""
    head, items = _plan(tensors, metadata)
    with open(path, "wb") as f:
        f.write(head)
        for t in items:
            f.write(_to_bytes(t)[1])


def _no_dup(pairs):
    out = OrderedDict()
    for k, v in pairs:
        if k in out:
            raise SafetensorsError(f"duplicate key {k!r} in header")
        out[k] = v
    return out


def deserialize(buf: bytes, name: str = "<bytes>"):
    """-> (OrderedDict name -> torch.Tensor in data order, metadata dict)."""
    def fail(msg):
        raise SafetensorsError(f"{name}: {msg}")

    if len(buf) < 8:
        fail("file shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", buf[:8])
    if n > MAX_HEADER or 8 + n > len(buf):
        fail(f"header length {n} exceeds the file size {len(buf)}")
    try:
        header = json.loads(buf[8:8 + n].decode("utf-8"), object_pairs_hook=_no_dup)
    except SafetensorsError as e:
        fail(str(e))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        fail(f"header is not valid UTF-8 JSON ({e})")
    if not isinstance(header, dict):
        fail("header is not a JSON object")
    meta = header.pop("__metadata__", {}) or {}
    if not isinstance(meta, dict) or any(not isinstance(k, str) or not isinstance(v, str) for k, v in meta.items()):
        fail("__metadata__ must map strings to strings")
    data_len = len(buf) - 8 - n
    entries = []
    for key, e in header.items():
        if not isinstance(e, dict) or set(e) != {"dtype", "shape", "data_offsets"}:
            fail(f"tensor {key!r}: entry must have exactly dtype, shape, data_offsets")
        if e["dtype"] not in DTYPES:
            fail(f"tensor {key!r}: unsupported dtype {e['dtype']!r}")
        shape = e["shape"]
        if not isinstance(shape, list) or any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in shape):
            fail(f"tensor {key!r}: shape must be a list of non-negative integers")
        offs = e["data_offsets"]
        if (not isinstance(offs, list) or len(offs) != 2
                or any(not isinstance(o, int) or isinstance(o, bool) or o < 0 for o in offs) or offs[1] < offs[0]):
            fail(f"tensor {key!r}: data_offsets must be [begin, end] with 0 <= begin <= end")
        numel = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if offs[1] - offs[0] != numel * DTYPES[e["dtype"]][1]:
            fail(f"tensor {key!r}: data_offsets span {offs[1] - offs[0]} bytes, shape {shape} x "
                 f"{e['dtype']} needs {numel * DTYPES[e['dtype']][1]}")
        entries.append((offs[0], offs[1], key, e["dtype"], shape))
    pos = 0
    for b, end, key, _, _ in sorted(entries, key=lambda x: (x[0], x[1])):
        if b != pos:
            fail(f"tensor {key!r}: starts at {b}, expected {pos} (gap or overlap)")
        pos = end
    if pos != data_len:
        fail(f"data section is {data_len} bytes, tensors cover {pos}")
    out = OrderedDict()
    base = 8 + n
    for b, end, key, dt, shape in sorted(entries, key=lambda x: (x[0], x[1])):
        tdt, size = DTYPES[dt]
        count = (end - b) // size
        if tdt == torch.bfloat16:
            arr = np.frombuffer(buf, dtype="<i2", count=count, offset=base + b).copy()
            t = torch.from_numpy(arr).view(torch.bfloat16)
        else:
            npdt = {torch.float32: "<f4", torch.float16: "<f2", torch.int64: "<i8",
                    torch.int32: "<i4", torch.uint8: "u1"}[tdt]
            arr = np.frombuffer(buf, dtype=npdt, count=count, offset=base + b)
            t = torch.from_numpy(arr.astype(np.dtype(npdt).newbyteorder("="), copy=True))
        out[key] = t.reshape(shape)
    return out, dict(meta)


def load(path: str):
    """-> (OrderedDict of tensors in file order, metadata). The file is memory-mapped and copied
    tensor by tensor (no second full copy of a multi-GB file)."""
    import mmap

    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return deserialize(b"", path)
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            return deserialize(mm, path)
        finally:
            try:
                mm.close()
            except BufferError:  # a view is still referenced; the GC closes it later
                pass


def load_file(path: str):
    return load(path)[0]


def read_metadata(path: str) -> dict:
    return load(path)[1]
