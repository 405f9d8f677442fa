"""Supervised alignment of the text encoder (training only; nothing here is exported).

No pretrained text encoder can be downloaded here, and the diffusion loss alone teaches a
byte-level encoder from scratch very slowly: after 2.5k steps the pooled features p of
"a photo of a sneaker" and "a photo of a dress" still had cosine similarity 0.99, so the
backbone had nothing to condition on. A linear probe on p predicting what the prompt says
(class, brightness word, size word) fixes that: a short text-only pre-training phase, then the
same loss as a small auxiliary term while the whole model trains, so the features stay
discriminative. The probe is the training-time stand-in for CLIP-style text pre-training.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

N_CLASSES, N_WORDS = 10, 3  # word heads: none / dark|small / bright|large


class TextProbe(nn.Module):
    def __init__(self, d_text):
        super().__init__()
        self.head = nn.Linear(d_text, N_CLASSES + 2 * N_WORDS)

    def forward(self, p):
        """p [B, D_t] -> (class logits [B, 10], brightness logits [B, 3], size logits [B, 3])."""
        z = self.head(p)
        return z[:, :N_CLASSES], z[:, N_CLASSES:N_CLASSES + N_WORDS], z[:, N_CLASSES + N_WORDS:]


def probe_loss(probe, p, labels):
    """Cross-entropy of the probe on pooled features p [B, D_t]; labels [B, 3] (class -100 = none)."""
    cls, bright, size = probe(p)
    loss = F.cross_entropy(cls, labels[:, 0], ignore_index=-100)
    return loss + F.cross_entropy(bright, labels[:, 1]) + F.cross_entropy(size, labels[:, 2])


def probe_accuracy(probe, p, labels):
    cls, _, _ = probe(p)
    keep = labels[:, 0] >= 0
    return (cls.argmax(-1)[keep] == labels[keep, 0]).float().mean().item()


def pretrain_text(model, probe, data, steps, batch=256, lr=1e-3, rng=None, log=print):
    """Text-only phase: trains model.text and the probe on generated prompts (images unused)."""
    params = list(model.text.parameters()) + list(probe.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    n = len(data.y)
    for step in range(steps):
        idx = torch.randint(0, n, (batch,), generator=rng).numpy()
        prompts, labels = zip(*(data.prompt_labeled(i) for i in idx))
        labels = torch.tensor(labels, dtype=torch.int64)
        ids, mask = model.tokenize(list(prompts))
        _, p = model.text(ids, mask)
        loss = probe_loss(probe, p, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % 50 == 0 or step + 1 == steps:
            log(f"text pre-training {step + 1}/{steps}: loss {loss.item():.4f} "
                f"class acc {probe_accuracy(probe, p.detach(), labels):.3f}")
