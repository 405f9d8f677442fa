#!/usr/bin/python3
"""Writes tests/fixtures/rng/torch_randn.safetensors: reference torch.randn draws (CPU, float32).

Run with the system interpreter that has torch (Debian torch 1.13):
    /usr/bin/python3 tests/cpp/gen_rng_reference.py
Tensors:
  randn_s{seed}_n{size}: torch.manual_seed(seed); torch.randn(size)
  seq_s{seed}_k{i}_n{size}: the i-th of several successive torch.randn calls after one manual_seed
"""
import json
import os
import struct
import sys

import torch

SEEDS = [0, 42, 2**40 + 3]
SIZES = [1, 7, 16, 17, 100, 1000, 4 * 28 * 28]
SEQUENCE = [7, 7, 1, 16, 17, 3]  # exercises the cached-normal and tail paths across calls


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "rng", "torch_randn.safetensors")
    tensors = {}
    for seed in SEEDS:
        for n in SIZES:
            torch.manual_seed(seed)
            tensors[f"randn_s{seed}_n{n}"] = torch.randn(n).numpy()
        torch.manual_seed(seed)
        for i, n in enumerate(SEQUENCE):
            tensors[f"seq_s{seed}_k{i}_n{n}"] = torch.randn(n).numpy()
    header = {"__metadata__": {"torch_version": torch.__version__,
                               "cpu_capability": torch.__config__.show().split("CPU capability usage: ")[1].split("\n")[0],
                               "generator": "torch.manual_seed(seed); torch.randn(n) (CPU, float32)"}}
    offset = 0
    blobs = []
    for name, arr in tensors.items():
        data = arr.astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    hjson = json.dumps(header).encode()
    hjson += b" " * ((8 - len(hjson) % 8) % 8)
    with open(out, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for b in blobs:
            f.write(b)
    print(f"wrote {out}: {len(tensors)} tensors, {offset} data bytes")


if __name__ == "__main__":
    main()
