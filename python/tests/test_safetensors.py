import json
import struct

import pytest
import torch

from duet_ref import safetensors_io as st


def sample():
    g = torch.Generator().manual_seed(0)
    return {
        "f32": torch.randn(3, 5, generator=g),
        "f16": torch.randn(7, generator=g).half(),
        "bf16": torch.randn(2, 3, generator=g).bfloat16(),
        "i64": torch.tensor([[1, -2, 2 ** 40]]),
        "i32": torch.tensor([3, -4], dtype=torch.int32),
        "u8": torch.tensor([0, 7, 255], dtype=torch.uint8),
        "scalar": torch.tensor(1.5),
        "empty": torch.zeros(0, 4),
    }


def test_round_trip(tmp_path):
    d = sample()
    path = str(tmp_path / "a.safetensors")
    st.save_file(d, path, {"format": "duet", "k": "ünïcode"})
    out, meta = st.load(path)
    assert meta == {"format": "duet", "k": "ünïcode"}
    assert list(out) == list(d)
    for k, v in d.items():
        assert out[k].dtype == v.dtype and out[k].shape == v.shape and torch.equal(out[k], v), k


def test_layout():
    buf = st.serialize(sample(), {"a": "b"})
    (n,) = struct.unpack("<Q", buf[:8])
    assert n % 8 == 0
    header = json.loads(buf[8:8 + n])
    assert buf[8:8 + n].rstrip(b" ") == buf[8:8 + n].rstrip()
    keys = [k for k in header if k != "__metadata__"]
    pos = 0
    for k in keys:  # file order, contiguous, no gaps
        b, e = header[k]["data_offsets"]
        assert b == pos
        pos = e
    assert 8 + n + pos == len(buf)


def _mutate(header_fn=None, data_fn=None):
    buf = st.serialize({"a": torch.ones(2, 2), "b": torch.arange(3)})
    (n,) = struct.unpack("<Q", buf[:8])
    header = json.loads(buf[8:8 + n])
    data = buf[8 + n:]
    if header_fn:
        header_fn(header)
    if data_fn:
        data = data_fn(data)
    hb = json.dumps(header).encode()
    hb += b" " * (-len(hb) % 8)
    return struct.pack("<Q", len(hb)) + hb + data


@pytest.mark.parametrize("bad, msg", [
    (lambda: b"\x01\x02", "shorter"),
    (lambda: struct.pack("<Q", 10 ** 6) + b"{}      ", "exceeds"),
    (lambda: struct.pack("<Q", 8) + b"[1,2]   ", "JSON object"),
    (lambda: struct.pack("<Q", 8) + b"{\"a\":   ", "JSON"),
    (lambda: _mutate(lambda h: h["a"].update(dtype="F64")), "unsupported dtype"),
    (lambda: _mutate(lambda h: h["a"].update(shape=[2, 3])), "needs"),
    (lambda: _mutate(lambda h: h["a"].update(shape=[-1, -4])), "non-negative"),
    (lambda: _mutate(lambda h: h["b"].update(data_offsets=[24, 48])), "gap"),
    (lambda: _mutate(lambda h: h["b"].update(data_offsets=[8, 32])), "overlap"),
    (lambda: _mutate(data_fn=lambda d: d + b"\0" * 8), "tensors cover"),
    (lambda: _mutate(data_fn=lambda d: d[:-8]), "tensors cover"),
    (lambda: _mutate(lambda h: h.update(__metadata__={"a": 1})), "__metadata__"),
    (lambda: _mutate(lambda h: h["a"].update(extra=1)), "exactly"),
])
def test_reader_rejects(bad, msg):
    with pytest.raises(st.SafetensorsError, match=msg):
        st.deserialize(bad())


def test_duplicate_key_rejected():
    hb = b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}'
    hb += b" " * (-len(hb) % 8)
    with pytest.raises(st.SafetensorsError, match="duplicate"):
        st.deserialize(struct.pack("<Q", len(hb)) + hb + b"\x01")
