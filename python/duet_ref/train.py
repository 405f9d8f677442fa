"""Train a duet model on Fashion-MNIST with generated prompts (resumable, seeded).

    (. scripts/cpu-env.sh && python3 -m duet_ref.train --config configs/fashion-duet.json \
        --out runs/fashion-duet --total-steps 40000 --minutes 120)

scripts/cpu-env.sh sets OPENBLAS_CORETYPE=SKYLAKEX only on Intel CPUs with AVX-512 (elsewhere it
would kill PyTorch with SIGILL).

Loss (seed design): L = l_sem * |eps - eps_s|^2 + l_tex * |HP(eps) - (alpha HP(eps_s) + (1-alpha) eps_d)|^2
Running it again with the same --out continues from runs/.../last.ckpt.
"""
from __future__ import annotations

import argparse
import copy
import csv
import math
import os
import random
import time

import numpy as np
import torch

from . import config as config_mod
from .data import PromptedFashion
from .diffusion import Schedule
from .model import DuetModel
from .repbn import repbn_lambda, set_repbn_lambda
from .spectral import highpass
from .text_probe import TextProbe, pretrain_text, probe_loss


def loss_terms(model, sched, x0, prompts, gen, l_sem=1.0, l_tex=0.65, probe=None, labels=None, l_text=0.0):
    """-> (loss, semantic MSE, texture MSE, fused-eps MSE); with a probe, + l_text * probe loss."""
    B = x0.shape[0]
    t_idx = torch.randint(0, sched.T, (B,), generator=gen)
    noise = torch.randn(x0.shape, generator=gen)
    x_t = sched.q_sample(x0, t_idx, noise)
    target = sched.target(x0, t_idx, noise)
    ps = model.encode_prompt(prompts)
    out = model(x_t, t_idx.to(torch.float32), ps, refine=True)
    m = model.mask_for(x_t)
    a = out["alpha"][:, None, None, None]
    sem = ((target - out["eps_s"]) ** 2).mean()
    tex = ((highpass(target, m) - (a * out["hp_s"] + (1 - a) * out["eps_d"])) ** 2).mean()
    loss = l_sem * sem + l_tex * tex
    if probe is not None and l_text > 0:
        loss = loss + l_text * probe_loss(probe, ps.p, labels)
    return loss, sem.detach(), tex.detach(), ((target - out["eps"]) ** 2).mean().detach()


def build_optimizer(model, lr_bb, lr_ref, wd=0.0):
    slow = list(model.text.parameters()) + list(model.cond.parameters()) + list(model.backbone.parameters())
    fast = list(model.refiner.parameters()) + list(model.gate.parameters())
    return torch.optim.AdamW([{"params": slow, "lr": lr_bb, "base_lr": lr_bb, "group": "backbone"},
                              {"params": fast, "lr": lr_ref, "base_lr": lr_ref, "group": "refiner"}],
                             weight_decay=wd, betas=(0.9, 0.999))


def set_lrs(opt, step, total, warmup):
    """backbone+text: linear warm-up then cosine annealing to 0; refiner+gate: warm-up then constant."""
    w = min(1.0, (step + 1) / warmup)
    for g in opt.param_groups:
        if g["group"] == "backbone":
            prog = min(1.0, step / max(1, total))
            g["lr"] = g["base_lr"] * w * 0.5 * (1 + math.cos(math.pi * prog))
        else:
            g["lr"] = g["base_lr"] * w


def save_checkpoint(path, state):
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def init_from_export(model_dir, args):
    """Exported model dir -> (model, ema, optimiser, config): both copies start from its (EMA) weights.

    Errors name --init-from (a missing directory, a file that is not a duet export, shapes that
    do not match its own config.json) as ValueError.
    """
    from .checkpoint import load_model
    if not os.path.isdir(model_dir):
        raise ValueError(f"--init-from: {model_dir!r} is not a directory (expected config.json + model.safetensors)")
    try:
        loaded = load_model(model_dir)
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"--init-from: cannot load {model_dir!r}: {e}") from None
    model = loaded.train().requires_grad_(True)
    ema = copy.deepcopy(model).requires_grad_(False)
    return model, ema, build_optimizer(model, args.lr_backbone, args.lr_refiner), loaded.cfg


def init_variant_from_export(model_dir, cfg, args):
    """--init-from DIR --init-variant: a model built from `cfg` (e.g. the export's config with
    SLAB / CSWin attention or RepBN norms) starting from every tensor of the export whose name and
    shape match (a layernorm block's ln_c.{weight,bias} feed a repbn block's ln_c.ln.*); the rest
    (dwc / LePE convs, BN statistics) keep their initialisation. -> (model, ema, opt, report)."""
    from .checkpoint import load_model
    src = load_model(model_dir).state_dict()
    model = DuetModel(cfg)
    dst = model.state_dict()
    copied, fresh = 0, []
    for k, v in dst.items():
        s = src.get(k)
        if s is None and ".ln_c.ln." in k:
            s = src.get(k.replace(".ln_c.ln.", ".ln_c."))
        if s is not None and tuple(s.shape) == tuple(v.shape):
            dst[k] = s.clone()
            copied += 1
        else:
            fresh.append(k)
    model.load_state_dict(dst)
    model.train()
    ema = copy.deepcopy(model).requires_grad_(False)
    report = f"{copied} tensors from {model_dir}, {len(fresh)} initialised fresh ({', '.join(fresh[:4])}...)"
    return model, ema, build_optimizer(model, args.lr_backbone, args.lr_refiner), report


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/fashion-duet.json")
    ap.add_argument("--out", default="runs/fashion-duet")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--total-steps", type=int, default=40000, help="length of the cosine schedule")
    ap.add_argument("--minutes", type=float, default=0, help="stop after this wall time (0 = no limit)")
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps in total (0 = total-steps)")
    ap.add_argument("--lr-backbone", type=float, default=1e-4)
    ap.add_argument("--lr-refiner", type=float, default=5e-4)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--lambda-sem", type=float, default=1.0)
    ap.add_argument("--lambda-tex", type=float, default=0.65)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ckpt-minutes", type=float, default=5)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--text-pretrain-steps", type=int, default=150,
                    help="text-only probe pre-training before the first diffusion step (once per run dir)")
    ap.add_argument("--text-aux", type=float, default=0.1, help="weight of the text-probe loss (0 = off)")
    ap.add_argument("--repbn-steps", type=int, default=2000,
                    help="backbone.norm = repbn blocks: the LayerNorm -> RepBN mixing weight falls linearly from 1 "
                         "to 0 over this many steps (0 = RepBN from the first step); export needs it at 0")
    ap.add_argument("--init-variant", action="store_true",
                    help="with --init-from: build the model from --config instead (an attention / norm variant of "
                         "the export's config) and start from every export tensor whose name and shape match")
    ap.add_argument("--init-from", default="",
                    help="exported model dir (config.json + model.safetensors): when --out has no last.ckpt, start "
                         "from its weights (model and EMA both; its config replaces --config; the text encoder counts "
                         "as pre-trained; the EMA decays at --ema from the first step). Ignored when resuming.")
    args = ap.parse_args(argv)
    if args.init_variant and not args.init_from:
        ap.error("--init-variant needs --init-from (the export whose tensors the variant starts from)")

    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    ckpt_path = os.path.join(args.out, "last.ckpt")
    cfg = config_mod.load(args.config)
    torch.manual_seed(args.seed)
    model = DuetModel(cfg)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = build_optimizer(model, args.lr_backbone, args.lr_refiner)
    sched = Schedule(cfg)
    data = PromptedFashion("train", seed=args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    nprng = np.random.default_rng(args.seed)
    probe = TextProbe(cfg["text"]["width"])
    probe_opt = torch.optim.AdamW(probe.parameters(), lr=1e-3, weight_decay=0.0)
    text_pretrained, ema_warm = False, False
    step, elapsed_total = 0, 0.0
    if os.path.exists(ckpt_path):
        st = torch.load(ckpt_path)
        model.load_state_dict(st["model"])
        ema.load_state_dict(st["ema"])
        opt.load_state_dict(st["opt"])
        step, elapsed_total = st["step"], st.get("elapsed", 0.0)
        gen.set_state(st["gen"])
        nprng.bit_generator.state = st["nprng"]
        data.rng.setstate(st["pyrng"])
        cfg = st["config"]
        if "probe" in st:
            probe.load_state_dict(st["probe"])
            probe_opt.load_state_dict(st["probe_opt"])
        text_pretrained = st.get("text_pretrained", False)
        print(f"resumed from {ckpt_path} at step {step}", flush=True)
        ema_warm = st.get("ema_warm", False)
    elif args.init_from and args.init_variant:
        model, ema, opt, report = init_variant_from_export(args.init_from, cfg, args)
        text_pretrained, ema_warm = True, True
        print(f"initialised a variant: {report}", flush=True)
    elif args.init_from:
        model, ema, opt, cfg = init_from_export(args.init_from, args)
        text_pretrained, ema_warm = True, True
        sched = Schedule(cfg)  # the export's own config decides the schedule and the probe's width
        probe = TextProbe(cfg["text"]["width"])
        probe_opt = torch.optim.AdamW(probe.parameters(), lr=1e-3, weight_decay=0.0)
        print(f"initialised from {args.init_from} (exported EMA weights)", flush=True)
    if args.text_pretrain_steps > 0 and not text_pretrained:
        pretrain_text(model, probe, data, args.text_pretrain_steps, rng=gen,
                      log=lambda msg: print(msg, flush=True))
        ema.text.load_state_dict(model.text.state_dict())  # the EMA must not average old text weights back in
        text_pretrained = True
    max_steps = args.max_steps or args.total_steps
    log_path = os.path.join(args.out, "log.csv")
    new_log = not os.path.exists(log_path)
    logf = open(log_path, "a", newline="")
    log = csv.writer(logf)
    if new_log:
        log.writerow(["step", "elapsed_s", "loss", "loss_sem", "loss_tex", "loss_fused", "lr_backbone", "lr_refiner", "samples_per_s"])
    t_start = time.time()
    t_ckpt = t_start
    acc = np.zeros(4)
    n_acc, t_log = 0, time.time()
    perm, pos = nprng.permutation(len(data.y)), 0

    def checkpoint():
        save_checkpoint(ckpt_path, {"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                                    "step": step, "elapsed": elapsed_total + time.time() - t_start,
                                    "gen": gen.get_state(), "nprng": nprng.bit_generator.state,
                                    "pyrng": data.rng.getstate(), "config": cfg, "args": vars(args),
                                    "probe": probe.state_dict(), "probe_opt": probe_opt.state_dict(),
                                    "ema_warm": ema_warm,
                                    "text_pretrained": text_pretrained})

    model.train()
    while step < max_steps:
        if args.minutes and time.time() - t_start > args.minutes * 60:
            break
        if pos + args.batch > len(perm):
            perm, pos = nprng.permutation(len(data.y)), 0
        idx = perm[pos:pos + args.batch]
        pos += args.batch
        x0, prompts, labels = data.batch_labeled(idx)
        set_lrs(opt, step, args.total_steps, args.warmup)
        lam = repbn_lambda(step, args.repbn_steps)
        set_repbn_lambda(model, lam)
        set_repbn_lambda(ema, lam)
        loss, sem, tex, fused = loss_terms(model, sched, x0, prompts, gen, args.lambda_sem, args.lambda_tex,
                                           probe, labels, args.text_aux)
        opt.zero_grad(set_to_none=True)
        probe_opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        probe_opt.step()
        decay = args.ema if ema_warm else min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.mul_(decay).add_(pm.detach(), alpha=1 - decay)
            for be, bm in zip(ema.buffers(), model.buffers()):  # BatchNorm statistics (RepBN) are not averaged
                be.copy_(bm)
        step += 1
        acc += [loss.item(), sem.item(), tex.item(), fused.item()]
        n_acc += 1
        if step % args.log_every == 0:
            now = time.time()
            sps = n_acc * args.batch / (now - t_log)
            lrs = [g["lr"] for g in opt.param_groups]
            row = [step, round(elapsed_total + now - t_start, 1), *np.round(acc / n_acc, 6), *lrs, round(sps, 1)]
            log.writerow(row)
            logf.flush()
            print(f"step {step} loss {acc[0] / n_acc:.4f} sem {acc[1] / n_acc:.4f} tex {acc[2] / n_acc:.4f} "
                  f"fused {acc[3] / n_acc:.4f} {sps:.1f} samples/s", flush=True)
            acc[:] = 0
            n_acc, t_log = 0, now
        if time.time() - t_ckpt > args.ckpt_minutes * 60:
            checkpoint()
            t_ckpt = time.time()
    checkpoint()
    print(f"saved {ckpt_path} at step {step}", flush=True)


if __name__ == "__main__":
    main()
