"""DDPM forward process, beta schedules and the reference samplers (DDIM, DPM-Solver++(2M)).

The reference samplers follow diffusers' DDIMScheduler (leading spacing, steps_offset=1,
set_alpha_to_one=False) and DPMSolverMultistepScheduler (dpmsolver++, order 2, lower-order final,
final sigma 0, linspace spacing) so the C++ engine can be checked against them step by step.
"""
from __future__ import annotations

import math

import numpy as np
import torch


def betas_for(schedule: str, T: int = 1000) -> torch.Tensor:
    if schedule == "linear":
        return torch.linspace(1e-4, 0.02, T, dtype=torch.float32)
    if schedule == "scaled_linear":
        return torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, T, dtype=torch.float32) ** 2
    if schedule == "cosine":  # Nichol & Dhariwal, s = 0.008, beta <= 0.999 (diffusers squaredcos_cap_v2)
        f = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
        return torch.tensor([min(1 - f((i + 1) / T) / f(i / T), 0.999) for i in range(T)], dtype=torch.float32)
    raise ValueError(f"unknown beta schedule {schedule!r}")


class Schedule:
    def __init__(self, cfg):
        d = cfg["diffusion"]
        self.T = d["num_train_timesteps"]
        self.prediction = d["prediction_type"]
        self.betas = betas_for(d["beta_schedule"], self.T)
        self.alphas_cumprod = torch.cumprod(1.0 - self.betas, dim=0)

    def q_sample(self, x0, t_idx, noise):
        ab = self.alphas_cumprod[t_idx].to(x0)[:, None, None, None]
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def target(self, x0, t_idx, noise):
        if self.prediction == "epsilon":
            return noise
        ab = self.alphas_cumprod[t_idx].to(x0)[:, None, None, None]
        return ab.sqrt() * noise - (1 - ab).sqrt() * x0  # v

    def to_eps(self, out, x, ab):
        """Model output -> epsilon at alphabar ab (float tensor scalar)."""
        if self.prediction == "epsilon":
            return out
        return ab.sqrt() * out + (1 - ab).sqrt() * x


def ddim_timesteps(T, n):
    step = T // n
    return (np.arange(0, n) * step).round()[::-1].copy().astype(np.int64) + 1


def sample_ddim(eps_fn, x, sched: Schedule, steps: int, callback=None):
    """Deterministic DDIM (eta = 0), diffusers' leading spacing with steps_offset = 1."""
    ac = sched.alphas_cumprod
    ts = ddim_timesteps(sched.T, steps)
    for i, t in enumerate(ts):
        ab = ac[t]
        prev = t - sched.T // steps
        ab_prev = ac[prev] if prev >= 0 else ac[0]
        eps = sched.to_eps(eps_fn(x, float(t), i), x, ab)
        x0 = (x - (1 - ab).sqrt() * eps) / ab.sqrt()
        x = ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps
        if callback:
            callback(i, x)
    return x


def sample_dpmpp_2m(eps_fn, x, sched: Schedule, steps: int, callback=None):
    """DPM-Solver++(2M), data prediction, linspace spacing, lower-order final step to sigma = 0."""
    ac = sched.alphas_cumprod.to(torch.float64)
    T = sched.T
    ts = np.linspace(0, T - 1, steps + 1).round()[::-1][:-1].copy().astype(np.int64)
    sig_tab = ((1 - ac) / ac).sqrt().numpy()
    sigmas = np.interp(ts, np.arange(T), sig_tab)
    sigmas = np.concatenate([sigmas, [0.0]])
    prev_x0 = None
    for i, t in enumerate(ts):
        s, s_next = sigmas[i], sigmas[i + 1]
        a_t, sg_t = 1 / math.sqrt(1 + s * s), s / math.sqrt(1 + s * s)
        ab = torch.tensor(a_t * a_t, dtype=torch.float32)
        eps = sched.to_eps(eps_fn(x, float(t), i), x, ab)
        x0 = (x - sg_t * eps) / a_t
        if s_next == 0:
            x = x0
        else:
            a_n, sg_n = 1 / math.sqrt(1 + s_next ** 2), s_next / math.sqrt(1 + s_next ** 2)
            lam_t, lam_n = math.log(a_t / sg_t), math.log(a_n / sg_n)
            h = lam_n - lam_t
            if prev_x0 is None or i == len(ts) - 1:
                d = x0
            else:
                s_prev = sigmas[i - 1]
                a_p, sg_p = 1 / math.sqrt(1 + s_prev ** 2), s_prev / math.sqrt(1 + s_prev ** 2)
                h_prev = lam_t - math.log(a_p / sg_p)
                r = h_prev / h
                d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * prev_x0
            x = (sg_n / sg_t) * x - a_n * math.expm1(-h) * d
        prev_x0 = x0
        if callback:
            callback(i, x)
    return x


SAMPLERS = {"ddim": sample_ddim, "dpmpp_2m": sample_dpmpp_2m}
