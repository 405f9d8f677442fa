"""Tokenizers. The byte-level tokenizer is the only one used by shipped models.

Normalisation (must match src/io/tokenizer.cpp exactly):
  1. ASCII letters A-Z are lower-cased (other bytes unchanged);
  2. runs of ASCII whitespace (space, \\t, \\n, \\v, \\f, \\r) become one space; leading and
     trailing whitespace is removed;
  3. ids = [<bos>] + UTF-8 bytes[: max_length - 2] + [<eos>], then <pad> up to max_length.
"""
from __future__ import annotations

BOS, EOS, PAD = 256, 257, 258
_WS = b" \t\n\v\f\r"


class Tokenizer:
    """Interface: encode(text) -> (ids[max_length], mask[max_length])."""

    max_length: int

    def encode(self, text: str):
        raise NotImplementedError


def normalize(data: bytes) -> bytes:
    out = bytearray()
    pending_space = False
    for b in data:
        if b in _WS:
            pending_space = bool(out)
            continue
        if pending_space:
            out.append(0x20)
            pending_space = False
        out.append(b + 32 if 65 <= b <= 90 else b)
    return bytes(out)


class ByteTokenizer(Tokenizer):
    def __init__(self, max_length: int):
        self.max_length = max_length

    def encode(self, text):
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        body = list(normalize(data)[: self.max_length - 2])
        ids = [BOS] + body + [EOS]
        mask = [1] * len(ids) + [0] * (self.max_length - len(ids))
        ids = ids + [PAD] * (self.max_length - len(ids))
        return ids, mask

    def decode(self, ids) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


def make_tokenizer(cfg: dict) -> Tokenizer:
    return ByteTokenizer(cfg["text"]["max_length"])
