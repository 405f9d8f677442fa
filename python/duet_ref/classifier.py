"""A small, separate CNN classifier for Fashion-MNIST, used only to evaluate generated images.

    python3 -m duet_ref.classifier --epochs 4 --out python/duet_ref/assets/fashion_classifier.pt

Its penultimate 128-d features also give a feature-space FID (see evaluate.py).
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import load_split

DEFAULT_PATH = os.path.join(os.path.dirname(__file__), "assets", "fashion_classifier.pt")


class FashionCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 32, 3, padding=1)
        self.c2 = nn.Conv2d(32, 32, 3, padding=1)
        self.c3 = nn.Conv2d(32, 64, 3, padding=1)
        self.c4 = nn.Conv2d(64, 64, 3, padding=1)
        self.bn1, self.bn2 = nn.BatchNorm2d(32), nn.BatchNorm2d(64)
        self.fc1 = nn.Linear(64 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, 10)
        self.drop = nn.Dropout(0.3)

    def features(self, x):
        """x [B, 1, 28, 28] in [-1, 1] -> [B, 128]"""
        x = F.max_pool2d(F.relu(self.c2(F.relu(self.bn1(self.c1(x))))), 2)
        x = F.max_pool2d(F.relu(self.c4(F.relu(self.bn2(self.c3(x))))), 2)
        return F.relu(self.fc1(x.flatten(1)))

    def forward(self, x):
        return self.fc2(self.drop(self.features(x)))


def to_input(images_u8):
    return torch.from_numpy(images_u8.astype(np.float32) / 127.5 - 1.0)[:, None]


def load_classifier(path=DEFAULT_PATH):
    net = FashionCNN()
    net.load_state_dict(torch.load(path))
    return net.eval()


@torch.no_grad()
def predict(net, x, batch=500):
    out, feats = [], []
    for i in range(0, len(x), batch):
        f = net.features(x[i:i + batch])
        feats.append(f)
        out.append(net.fc2(f).argmax(1))
    return torch.cat(out).numpy(), torch.cat(feats).numpy()


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--out", default=DEFAULT_PATH)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    xtr, ytr = load_split("train")
    xte, yte = load_split("test")
    xtr_t, ytr_t, xte_t = to_input(xtr), torch.from_numpy(ytr), to_input(xte)
    net = FashionCNN()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    steps = args.epochs * (len(xtr) // 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps)
    g = torch.Generator().manual_seed(0)
    for ep in range(args.epochs):
        net.train()
        t0 = time.time()
        perm = torch.randperm(len(xtr), generator=g)
        for i in range(len(xtr) // 128):
            idx = perm[i * 128:(i + 1) * 128]
            x = xtr_t[idx]
            # light augmentation: random horizontal flip and +-1 px shift
            if torch.rand(1, generator=g).item() < 0.5:
                x = x.flip(3)
            x = torch.roll(x, shifts=(int(torch.randint(-1, 2, (1,), generator=g)),), dims=(3,))
            loss = F.cross_entropy(net(x), ytr_t[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        net.eval()
        pred, _ = predict(net, xte_t)
        print(f"epoch {ep + 1}: test accuracy {(pred == yte).mean():.4f} ({time.time() - t0:.0f}s)", flush=True)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    torch.save(net.state_dict(), args.out)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
