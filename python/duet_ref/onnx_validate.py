"""Checks the exported ONNX graphs against the PyTorch model with ONNX Runtime (Node.js).

    python -m duet_ref.onnx_validate --model DIR [--onnx ONNX_DIR]   (exports to a temp dir if omitted)

Needs `node` and python/onnx_check/node_modules/onnxruntime-node
(`cd python/onnx_check && npm install --ignore-scripts`). Reference = DuetModel itself (float64
sinusoid, torch.fft high-pass, unfold CARAFE). Runs two cases: B=2 with full text length, and
B=3 with a shorter text length L = max_length - 3 (dynamic axes). Prints max |onnx - torch| per output.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile

import torch

from . import safetensors_io as st
from .checkpoint import load_model
from .onnx_export import export_model

HERE = os.path.dirname(os.path.abspath(__file__))
CHECK_DIR = os.path.normpath(os.path.join(HERE, "..", "onnx_check"))
RUN_MJS = os.path.join(CHECK_DIR, "run.mjs")


def runtime_available() -> tuple[bool, str]:
    if shutil.which("node") is None:
        return False, "node is not installed"
    if not os.path.isdir(os.path.join(CHECK_DIR, "node_modules", "onnxruntime-node")):
        return False, f"onnxruntime-node is not installed (cd {CHECK_DIR} && npm install --ignore-scripts)"
    return True, ""


def run_graph(graph_path: str, inputs: dict, work_dir: str) -> dict:
    name = os.path.splitext(os.path.basename(graph_path))[0]
    inp, outp = os.path.join(work_dir, f"{name}.in.safetensors"), os.path.join(work_dir, f"{name}.out.safetensors")
    st.save_file({k: v.contiguous() for k, v in inputs.items()}, inp)
    res = subprocess.run(["node", RUN_MJS, graph_path, inp, outp], capture_output=True, text=True, timeout=300)
    if res.returncode != 0:
        raise RuntimeError(f"node run.mjs {graph_path} failed:\n{res.stdout}\n{res.stderr}")
    return st.load_file(outp)


@torch.no_grad()
def reference_case(model, B: int, L: int, seed: int = 0):
    cfg = model.cfg
    im = cfg["image"]
    prompts = (["  A Photo of a  BRIGHT\tSneaker,   Size XL!  ", "", "dress"] * B)[:B]
    ids, mask = model.tokenize(prompts)
    ids, mask = ids[:, :L], mask[:, :L]
    g = torch.Generator().manual_seed(seed)
    x_t = torch.randn([B, im["channels"], im["height"], im["width"]], generator=g)
    t = torch.tensor(([537.25, 12.0, 999.0] * B)[:B])
    ps = model.encode_ids(ids, mask)
    out = model(x_t, t, ps, refine=True)
    return dict(ids=ids, mask=mask.to(torch.int64), x_t=x_t, t=t, ps=ps, out=out)


def compare(model, onnx_dir: str, work_dir: str, B: int = 2, L: int | None = None) -> dict:
    """-> {"graph/output": max abs error}."""
    L = L or model.cfg["text"]["max_length"]
    ref = reference_case(model, B, L)
    ps, out = ref["ps"], ref["out"]
    kv = {}
    for i, (k, v) in enumerate(ps.kvs):
        kv[f"k{i}"], kv[f"v{i}"] = k, v
    errs = {}

    def check(graph, inputs, expected):
        got = run_graph(os.path.join(onnx_dir, f"{graph}.onnx"), inputs, work_dir)
        for k, v in expected.items():
            if tuple(got[k].shape) != tuple(v.shape):
                raise AssertionError(f"{graph}/{k}: shape {list(got[k].shape)} != {list(v.shape)}")
            errs[f"{graph}/{k}"] = (got[k].to(torch.float32) - v).abs().max().item()

    check("text_encoder", {"ids": ref["ids"], "mask": ref["mask"]}, {"E": ps.e, "p": ps.p})
    check("prompt_kv", {"E": ps.e}, kv)
    check("denoiser", {"x_t": ref["x_t"], "t": ref["t"], **kv, "mask": ref["mask"], "p": ps.p},
          {"eps_s": out["eps_s"], "c": out["c"]})
    check("refiner_fusion", {"x_t": ref["x_t"], "eps_s": out["eps_s"], "t": ref["t"], "c": out["c"]},
          {"eps": out["eps"], "eps_d": out["eps_d"], "alpha": out["alpha"]})
    return errs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--onnx", help="directory with the four graphs (default: export to a temp dir)")
    ap.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args(argv)
    ok, why = runtime_available()
    if not ok:
        raise SystemExit(why)
    model = load_model(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_dir = args.onnx or os.path.join(tmp, "onnx")
        if not args.onnx:
            export_model(model, onnx_dir)
        L = model.cfg["text"]["max_length"]
        worst = 0.0
        for B, l in [(2, L), (3, max(2, L - 3))]:
            errs = compare(model, onnx_dir, tmp, B, l)
            for k, e in errs.items():
                print(f"B={B} L={l:<3} {k:<24} max abs err {e:.3e}")
                worst = max(worst, e)
    print(f"worst {worst:.3e} ({'PASS' if worst <= args.tol else 'FAIL'} at tol {args.tol})")
    if worst > args.tol:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
