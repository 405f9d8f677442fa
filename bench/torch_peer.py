"""PyTorch peer for `duet bench`: times the reference model (eager, no_grad) on fixed inputs.

    . scripts/cpu-env.sh; python3 bench/torch_peer.py --model DIR --batch 2 --reps 5 \
        --inputs IN.safetensors --out OUT.json [--eps-out EPS.safetensors] \
        [--steps 20 --gen-reps 1] [--ort-inputs ORT_IN.safetensors]

Stages: prompt encoding (text encoder + every block's K/V, batch B), one denoiser evaluation
without the refiner and one with it (x [B, C, H, W], t [B]). Medians/min/max in ms. The inputs
file (x, t, prompt in metadata) is written when it does not exist, so duet can be run on exactly
the same inputs and its eps compared with --eps-out.

--steps N (> 0): also times a full duet_ref.pipeline.generate (dpmpp_2m, cfg 4, n = max(1, B/2)
images, so the model batch is B) --gen-reps times, no warm-up call (the stage timings above have
already warmed the model up).
--ort-inputs: writes ids, mask (int64, the model's tokenizer, batch B), x_t, t for bench/ort_peer.mjs.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))

import torch  # noqa: E402

from duet_ref import safetensors_io as st  # noqa: E402
from duet_ref.checkpoint import load_model  # noqa: E402


def timed(fn, reps):
    fn()  # warm-up
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": statistics.median(ts), "min_ms": min(ts), "max_ms": max(ts), "reps": reps}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--inputs", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--eps-out")
    ap.add_argument("--steps", type=int, default=0)
    ap.add_argument("--gen-reps", type=int, default=1)
    ap.add_argument("--ort-inputs")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    im = model.cfg["image"]
    if not os.path.exists(args.inputs):
        g = torch.Generator().manual_seed(1)
        x = torch.randn([args.batch, im["channels"], im["height"], im["width"]], generator=g)
        st.save_file({"x": x}, args.inputs, {"prompt": "a photo of a sneaker", "t": "500.5"})
    tensors, meta = st.load(args.inputs)
    x, prompt, tval = tensors["x"], meta["prompt"], float(meta["t"])
    B = x.shape[0]
    t = torch.full((B,), tval)
    res = {"peer": "pytorch", "torch": torch.__version__, "threads": args.threads,
           "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", "(default)"), "batch": B}
    with torch.no_grad():
        res["prompt_encode"] = timed(lambda: model.encode_prompt([prompt] * B), args.reps)
        ps = model.encode_prompt([prompt] * B)
        res["denoise_no_refine"] = timed(lambda: model(x, t, ps, refine=False), args.reps)
        res["denoise_refine"] = timed(lambda: model(x, t, ps, refine=True), args.reps)
        if args.eps_out:
            o = model(x, t, ps, refine=True)
            st.save_file({k: o[k].contiguous() for k in ("eps_s", "eps_d", "eps")}, args.eps_out, {})
        if args.ort_inputs:
            ids, mask = model.tokenize([prompt] * B)
            st.save_file({"ids": ids.to(torch.int64).contiguous(), "mask": mask.to(torch.int64).contiguous(),
                          "x_t": x.contiguous(), "t": t.contiguous()}, args.ort_inputs, {"prompt": prompt})
    if args.steps > 0 and args.gen_reps > 0:
        from duet_ref.pipeline import generate
        n = max(1, B // 2)
        ts = []
        for _ in range(args.gen_reps):
            t0 = time.perf_counter()
            generate(model, [prompt] * n, steps=args.steps, sampler="dpmpp_2m", cfg_scale=4.0, seed=0)
            ts.append((time.perf_counter() - t0) * 1e3)
        res["generate"] = {"median_ms": statistics.median(ts), "min_ms": min(ts), "max_ms": max(ts),
                           "reps": len(ts), "steps": args.steps, "n": n}
    with open(args.out, "w") as f:
        json.dump(res, f, indent=2)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
