"""Export a duet model directory (config.json + model.safetensors).

    python -m duet_ref.export --random --config configs/tiny-demo.json --seed 0 --out /tmp/m
    python -m duet_ref.export --checkpoint runs/fashion-duet/last.ckpt --out models/fashion-duet [--dtype f16]

--random: `torch.manual_seed(seed)`, build DuetModel(config) (its normal initialisation), then
RE-INITIALISE the layers that DuetModel initialises to zero, so that every branch is non-trivial
(a test model, not a trained one): every backbone block's adaLN `ada`, `backbone.final.ada`,
`backbone.final.linear` and `refiner.conv_out` get weight and bias ~ N(0, (0.02*init_scale)^2),
drawn from the same global torch RNG, in that order (blocks 0..depth-1, then final.ada,
final.linear, conv_out; weight before bias). Without this eps_s == 0 and r == 0 at init.
RepBN blocks then get mixing weight 0 and random BN statistics (randomize_repbn).

RepBN blocks (backbone.norm = repbn) are written folded (repbn.fold_repbn_state): no norm
tensors, the BN affine folded into the ada and cross.q layers.

--checkpoint: the `ema` state dict of a train.py checkpoint; the config is the checkpoint's
"config" entry.

Tensor names are the PyTorch state_dict keys (persistent tensors only); floating tensors are
cast to --dtype (f32 | f16 | bf16); metadata {"format": "duet", "version": "1"}.
"""
from __future__ import annotations

import argparse

import torch

from . import config as config_mod
from .checkpoint import DTYPE_NAMES, save_state
from .model import DuetModel


def zero_init_layers(model: DuetModel):
    """The layers DuetModel initialises to zero, in re-initialisation order."""
    layers = [blk.ada for blk in model.backbone.blocks]
    layers += [model.backbone.final.ada, model.backbone.final.linear, model.refiner.conv_out]
    return layers


def randomize_zero_init(model: DuetModel, init_scale: float = 1.0):
    std = 0.02 * init_scale
    with torch.no_grad():
        for layer in zero_init_layers(model):
            layer.weight.normal_(0.0, std)
            layer.bias.normal_(0.0, std)
    return model


def randomize_repbn(model: DuetModel):
    """RepBN blocks of a test model: mixing weight 0 (pure RepBN, foldable) and non-trivial BN
    statistics and affine (running_mean ~ N(0, 0.1^2), running_var ~ U(0.5, 2), weight ~ U(0.5, 1.5),
    bias ~ N(0, 0.1^2), eta ~ U(0.5, 1.5)), drawn per norm in module order after the zero-init layers."""
    from .repbn import ProgressiveNorm
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, ProgressiveNorm):
                m.lam.zero_()
                bn = m.rep.bn
                bn.running_mean.normal_(0.0, 0.1)
                bn.running_var.uniform_(0.5, 2.0)
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.normal_(0.0, 0.1)
                m.rep.eta.uniform_(0.5, 1.5)
    return model


def random_model(cfg: dict, seed: int, init_scale: float = 1.0) -> DuetModel:
    torch.manual_seed(seed)
    model = DuetModel(cfg)
    randomize_zero_init(model, init_scale)
    randomize_repbn(model)
    return model.eval()


def checkpoint_state(path: str):
    """-> (ema state_dict, config) of a train.py checkpoint."""
    st = torch.load(path, map_location="cpu")
    return st["ema"], st["config"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--random", action="store_true", help="seeded random weights (needs --config)")
    src.add_argument("--checkpoint", help="train.py checkpoint (runs/*/last.ckpt); exports its EMA weights")
    ap.add_argument("--config", help="config JSON (--random only)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init-scale", type=float, default=1.0, help="--random: std of re-initialised zero layers = 0.02*scale")
    ap.add_argument("--dtype", choices=sorted(DTYPE_NAMES), default="f32")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    if args.random:
        if not args.config:
            ap.error("--random needs --config")
        cfg = config_mod.load(args.config)
        model = random_model(cfg, args.seed, args.init_scale)
        state = model.state_dict()
        counts = model.branch_parameters()
    else:
        state, cfg = checkpoint_state(args.checkpoint)
        counts = None
    save_state(state, cfg, args.out, args.dtype)
    n = sum(v.numel() for v in state.values())
    print(f"wrote {args.out}/config.json and {args.out}/model.safetensors ({len(state)} tensors, {n} values, {args.dtype})")
    if counts:
        print("parameters per branch:", counts)


if __name__ == "__main__":
    main()
