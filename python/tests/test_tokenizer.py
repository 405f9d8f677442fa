import json
import os

from duet_ref.tokenizer import BOS, EOS, PAD, ByteTokenizer, normalize

from helpers import FIXTURES


def test_normalize():
    assert normalize(b"  A  Photo\tOF\n\na  ") == b"a photo of a"
    assert normalize(b"") == b""
    assert normalize(b" \t\r\n\v\f") == b""
    assert normalize("ÄB".encode()) == "Äb".encode()  # only ASCII A-Z are lower-cased


def test_round_trip_and_padding():
    tok = ByteTokenizer(32)
    ids, mask = tok.encode("Hello  World")
    assert ids[0] == BOS and ids[12] == EOS and ids[13:] == [PAD] * 19
    assert mask == [1] * 13 + [0] * 19
    assert tok.decode(ids) == "hello world"
    ids, _ = tok.encode("café ☕")
    assert tok.decode(ids) == "café ☕"


def test_truncation():
    tok = ByteTokenizer(8)
    ids, mask = tok.encode("abcdefghijk")
    assert ids == [BOS] + list(b"abcdef") + [EOS] and mask == [1] * 8
    ids, mask = ByteTokenizer(2).encode("abc")
    assert ids == [BOS, EOS] and mask == [1, 1]
    ids, mask = ByteTokenizer(5).encode("")
    assert ids == [BOS, EOS, PAD, PAD, PAD] and mask == [1, 1, 0, 0, 0]


def test_fixture_cases():
    with open(os.path.join(FIXTURES, "tokenizer_cases.json"), encoding="utf-8") as f:
        data = json.load(f)
    assert len(data["cases"]) >= 10
    for case in data["cases"]:
        assert bytes.fromhex(case["utf8_hex"]) == case["text"].encode("utf-8")
        ids, mask = ByteTokenizer(case["max_length"]).encode(case["text"])
        assert ids == case["ids"] and mask == case["mask"], case["text"]
