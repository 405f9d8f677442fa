"""Fashion-MNIST (Debian `dataset-fashion-mnist`) with generated text prompts.

Prompts come from the class (with synonyms) and from attributes measured on the image itself:
brightness (mean intensity of the garment's pixels) and size (fraction of garment pixels), each
split into per-class terciles: bottom -> "dark" / "small", top -> "bright" / "large".
"""
from __future__ import annotations

import gzip
import os
import random

import numpy as np
import torch

DATA_DIR = "/usr/share/datasets/fashion-mnist"
CLASS_NAMES = ["t-shirt", "trousers", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
               "bag", "ankle boot"]
SYNONYMS = [
    ["t-shirt", "top", "tee", "t-shirt top"],
    ["trousers", "pants", "pair of trousers"],
    ["pullover", "sweater", "jumper"],
    ["dress", "summer dress"],
    ["coat", "jacket"],
    ["sandal", "summer sandal"],
    ["shirt", "button-up shirt"],
    ["sneaker", "trainer", "running shoe"],
    ["bag", "handbag", "purse"],
    ["ankle boot", "boot"],
]
TEMPLATES = ["a photo of a {a}{c}", "{a}{c}", "a {a}{c}", "a picture of a {a}{c}",
             "an image of a {a}{c}", "{a}{c}, product photo"]
GARMENT_THRESHOLD = 0.1  # pixel (in [0, 1]) counts as garment above this


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_split(split="train", data_dir=DATA_DIR):
    prefix = "train" if split == "train" else "t10k"
    x = read_idx(os.path.join(data_dir, f"{prefix}-images-idx3-ubyte.gz"))
    y = read_idx(os.path.join(data_dir, f"{prefix}-labels-idx1-ubyte.gz"))
    return x, y.astype(np.int64)


def measure(images_u8):
    """images [N, 28, 28] uint8 -> brightness [N], size [N] (both in [0, 1])."""
    x = images_u8.astype(np.float32) / 255.0
    m = x > GARMENT_THRESHOLD
    size = m.mean(axis=(1, 2))
    bright = (x * m).sum(axis=(1, 2)) / np.maximum(m.sum(axis=(1, 2)), 1)
    return bright, size


def tercile_edges(values, labels):
    """Per-class (low, high) tercile edges: [10, 2]."""
    return np.stack([np.quantile(values[labels == k], [1 / 3, 2 / 3]) for k in range(10)])


class PromptedFashion:
    def __init__(self, split="train", seed=0, p_empty=0.1):
        self.x, self.y = load_split(split)
        self.bright, self.size = measure(self.x)
        tx, ty = load_split("train")
        b, s = measure(tx)
        self.bright_edges, self.size_edges = tercile_edges(b, ty), tercile_edges(s, ty)
        self.rng = random.Random(seed)
        self.p_empty = p_empty

    def attributes(self, i):
        k = self.y[i]
        out = []
        be, se = self.bright_edges[k], self.size_edges[k]
        if self.bright[i] < be[0]:
            out.append("dark")
        elif self.bright[i] > be[1]:
            out.append("bright")
        if self.size[i] < se[0]:
            out.append("small")
        elif self.size[i] > se[1]:
            out.append("large")
        return out

    def prompt(self, i):
        return self.prompt_labeled(i)[0]

    def prompt_labeled(self, i):
        """-> (prompt, (class or -100 for the empty prompt, brightness word, size word)).

        The word labels say what the *prompt* mentions: 0 none, 1 dark/small, 2 bright/large."""
        rng = self.rng
        if rng.random() < self.p_empty:
            return "", (-100, 0, 0)
        cls = rng.choice(SYNONYMS[self.y[i]])
        attrs = [a for a in self.attributes(i) if rng.random() < 0.6]
        rng.shuffle(attrs)
        a = "".join(w + " " for w in attrs)
        labels = (int(self.y[i]), 1 if "dark" in attrs else 2 if "bright" in attrs else 0,
                  1 if "small" in attrs else 2 if "large" in attrs else 0)
        return rng.choice(TEMPLATES).format(a=a, c=cls), labels

    def batch(self, idx):
        """-> images [B, 1, 28, 28] in [-1, 1], prompts list."""
        imgs = torch.from_numpy(self.x[idx].astype(np.float32) / 127.5 - 1.0)[:, None]
        return imgs, [self.prompt(i) for i in idx]

    def batch_labeled(self, idx):
        """-> images [B, 1, 28, 28], prompts, prompt labels [B, 3] (see prompt_labeled)."""
        imgs = torch.from_numpy(self.x[idx].astype(np.float32) / 127.5 - 1.0)[:, None]
        prompts, labels = zip(*(self.prompt_labeled(i) for i in idx))
        return imgs, list(prompts), torch.tensor(labels, dtype=torch.int64)
