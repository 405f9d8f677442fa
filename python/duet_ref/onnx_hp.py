"""High-pass projection as real matrix products (for ONNX/TensorRT, which have no FFT).

spectral.highpass(x, M) = real(IFFT2(M * FFT2(x))) over the last two axes. With the DFT matrices
F_N[a, b] = exp(-2*pi*i*a*b/N) = C_N - i S_N  (C_N = cos(2 pi a b / N), S_N = sin(2 pi a b / N),
both symmetric), FFT2(x) = F_H x F_W and IFFT2(Y) = conj(F_H) Y conj(F_W) / (H W). Hence

    A = C_H x C_W - S_H x S_W,        B = -(C_H x S_W + S_H x C_W)      (FFT2(x) = A + iB)
    A' = M * A,   B' = M * B                                            (elementwise, M [H, W])
    P = C_H A' - S_H B',              Q = C_H B' + S_H A'
    HP(x) = (P C_W - Q S_W) / (H W)

i.e. 12 MatMuls (broadcast over [B, C]) and elementwise ops. The 1/(H W) is folded into C_W, S_W
of the last product. The matrices are computed in float64 (angles reduced exactly with
(a*b) mod N) and rounded to float32; they are constants, so a graph using this module is fixed
to one (H, W).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn


def dft_cos_sin(n: int):
    """C[a, b] = cos(2 pi (a b mod n) / n), S = sin(...), float64 numpy [n, n]."""
    ab = (np.arange(n)[:, None] * np.arange(n)[None, :]) % n
    ang = 2.0 * np.pi * ab / n
    return np.cos(ang), np.sin(ang)


class MatmulHighpass(nn.Module):
    """HP(x) for x [..., H, W] with a fixed mask M [H, W] (from spectral.highpass_mask)."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        H, W = mask.shape
        ch, sh = dft_cos_sin(H)
        cw, sw = dft_cos_sin(W)
        f = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(torch.float32)
        self.register_buffer("ch", f(ch))
        self.register_buffer("sh", f(sh))
        self.register_buffer("cw", f(cw))
        self.register_buffer("sw", f(sw))
        self.register_buffer("cw_n", f(cw / (H * W)))
        self.register_buffer("sw_n", f(sw / (H * W)))
        self.register_buffer("mask", mask.to(torch.float32).clone())

    def forward(self, x):
        xc, xs = x @ self.cw, x @ self.sw                # x C_W, x S_W
        a = self.ch @ xc - self.sh @ xs
        b = -(self.ch @ xs + self.sh @ xc)
        a, b = a * self.mask, b * self.mask
        p = self.ch @ a - self.sh @ b
        q = self.ch @ b + self.sh @ a
        return p @ self.cw_n - q @ self.sw_n


def highpass_matmul(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return MatmulHighpass(mask).to(x.device)(x)
