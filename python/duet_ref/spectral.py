"""High-pass / low-pass projections HP(r) = real(IFFT2(M * FFT2(r))), LP = I - HP."""
from __future__ import annotations

import numpy as np
import torch


def highpass_mask(h: int, w: int, rho_c: float, tau: float) -> torch.Tensor:
    """M[u, v] over the FFT grid (no fftshift): rho = sqrt(fu^2 + fv^2), fu = fftfreq(h)[u] = u'/h
    with u' the centred index in [-h/2, h/2). M = sigmoid((rho - rho_c) / tau); tau = 0: M = [rho >= rho_c].
    Computed in float64 (rounded to float32 once). Symmetric under (u,v) -> (-u,-v), so HP(r) is real.
    """
    fu = np.fft.fftfreq(h)[:, None]
    fv = np.fft.fftfreq(w)[None, :]
    rho = np.sqrt(fu * fu + fv * fv)
    if tau == 0:
        m = (rho >= rho_c).astype(np.float64)
    else:
        m = 1.0 / (1.0 + np.exp(-(rho - rho_c) / tau))
    return torch.from_numpy(m).to(torch.float32)


def highpass(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x [B, C, H, W] -> HP(x), per channel."""
    X = torch.fft.fft2(x.to(torch.float32))
    return torch.fft.ifft2(X * mask).real.to(x.dtype)


def lowpass(x, mask):
    return x - highpass(x, mask)
