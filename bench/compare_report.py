"""Table for bench/compare.sh: duet bench vs the PyTorch and ONNX Runtime peers, plus agreement.

    python3 bench/compare_report.py WORK_DIR/demo WORK_DIR/seed ... [--md OUT.md]

Each directory holds what compare.sh wrote: duet.json, torch.json (scripts/cpu-env.sh's OPENBLAS_CORETYPE: SKYLAKEX on AVX-512 Intel CPUs only),
torch_default.json (no OPENBLAS_CORETYPE), ort.json or ort_skipped.txt, and the eps files
duet_eps / torch_eps / ort_eps .safetensors (eps_s, eps_d, eps of one refine=true evaluation on the
same x, t, prompt). Ratios are peer median / duet median (> 1: duet is faster).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))

from duet_ref import safetensors_io as st  # noqa: E402

STAGES = ["prompt_encode", "denoise_no_refine", "denoise_refine", "generate"]


def load_json(path):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def med(d, stage, key="median_ms"):
    if not d:
        return None
    s = d.get("stages", d).get(stage)
    return None if s is None else s.get(key)


def maxabs(a_path, b_path, name):
    if not (os.path.exists(a_path) and os.path.exists(b_path)):
        return None
    a, _ = st.load(a_path)
    b, _ = st.load(b_path)
    if name not in a or name not in b:
        return None
    return float((a[name].float() - b[name].float()).abs().max())


def fmt(v, spec="{:.2f}"):
    return "–" if v is None else spec.format(v)


def ratio(peer, duet):
    return None if peer is None or duet in (None, 0) else peer / duet


def report(d):
    label = os.path.basename(os.path.normpath(d))
    duet, tsk, tdef = (load_json(os.path.join(d, f)) for f in ("duet.json", "torch.json", "torch_default.json"))
    ort = load_json(os.path.join(d, "ort.json"))
    skipped = os.path.join(d, "ort_skipped.txt")
    lines = []
    name = duet.get("model", label) if duet else label
    params = duet.get("parameters") if duet else None
    lines.append(f"### {label}: {name} ({params / 1e6:.1f}M parameters), batch {duet.get('batch') if duet else '?'}, "
                 f"{duet.get('threads') if duet else '?'} threads" if params else f"### {label}")
    lines.append("")
    lines.append("| stage | duet ms (min–max) | GFLOP | duet GFLOP/s | % FMA peak | PyTorch ms (SKYLAKEX) | PyTorch ms (default) "
                 "| ORT ms | PyTorch/duet | ORT/duet |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    for s in STAGES:
        dm = med(duet, s)
        if dm is None and med(tsk, s) is None:
            continue
        ds = duet["stages"].get(s, {}) if duet else {}
        rng = f"{fmt(dm)} ({fmt(ds.get('min_ms'))}–{fmt(ds.get('max_ms'))})" if dm is not None else "–"
        tm, tdm, om = med(tsk, s), med(tdef, s), med(ort, s)
        lines.append(f"| {s} | {rng} | {fmt(ds.get('gflop'), '{:.3f}')} | {fmt(ds.get('gflops'), '{:.1f}')} | "
                     f"{fmt(ds.get('pct_peak'), '{:.1f}%')} | {fmt(tm)} | {fmt(tdm)} | {fmt(om)} | "
                     f"{fmt(ratio(tm, dm), '{:.2f}×')} | {fmt(ratio(om, dm), '{:.2f}×')} |")
    lines.append("")
    if duet:
        c = duet.get("cpu")
        if c:
            lines.append(f"* CPU: {c['vendor']} {c['model_name']} (family {c['family']} model {c['model']}), "
                         f"{c['logical_cpus']} logical CPUs, {c['usable']['summary']}; duet dispatch: oneDNN "
                         f"{c['onednn_isa']}, Highway {c['highway_target']}, ISA cap {c['isa_cap']}.")
            if c["isa_cap"] not in ("all", ""):
                lines.append(f"* The ISA cap applies to duet and to PyTorch (OPENBLAS_CORETYPE, ONEDNN_MAX_CPU_ISA, "
                             f"scripts/cpu-env.sh) but not to ONNX Runtime: its MLAS kernels dispatch on CPUID "
                             f"and cannot be capped, so ORT ran with this CPU's full ISA.")
        pk = duet["fma_peak"]
        lines.append(f"* FMA peak ({pk['isa']}): {pk['gflops_1t']:.1f} GFLOP/s on 1 thread, "
                     f"{pk['gflops_nt']:.1f} GFLOP/s on {pk['threads']} threads.")
        bg = duet.get("backbone_gemm")
        if bg:
            parts = ", ".join(f"{k} {v['m']}×{v['n']}×{v['k']}: {v['gflops']:.1f} GFLOP/s ({v['pct_peak']:.1f}%)"
                              for k, v in bg.items() if isinstance(v, dict))
            lines.append(f"* Backbone GEMMs in isolation (duet cpu backend linear, M×N×K): {parts}; "
                         f"weighted per block {bg['aggregate_gflops']:.1f} GFLOP/s = {bg['aggregate_pct_peak']:.1f}% of peak.")
        h = duet["heap_step_loop"]
        lines.append(f"* Heap over the timed denoise loop (mallinfo2): in use {h['in_use_before']} → {h['in_use_after']} B, "
                     f"from system {h['from_system_before']} → {h['from_system_after']} B: "
                     f"{'GREW' if h['grew'] else 'no growth'}. Peak RSS {duet['peak_rss_mib']:.0f} MiB.")
        if "generate_info" in duet:
            gi = duet["generate_info"]
            lines.append(f"* generate: {gi['steps']} steps {gi['sampler']}, cfg {gi['cfg_scale']}, n={gi['n']} "
                         f"(model batch {gi['model_batch']}), {gi['model_evaluations']} model calls of which "
                         f"{gi['refiner_evaluations']} with the refiner.")
    if tsk and tdef:
        lines.append(f"* PyTorch {tsk.get('torch')}, {tsk.get('threads')} threads; OPENBLAS_CORETYPE="
                     f"{tsk.get('openblas_coretype')} vs {tdef.get('openblas_coretype')}.")
    if ort:
        lines.append(f"* ONNX Runtime (node) {ort.get('version')}, graph optimisation {ort.get('graph_optimization')}, "
                     f"{ort.get('threads')} intra-op threads.")
    elif os.path.exists(skipped):
        lines.append(f"* ONNX Runtime skipped: {open(skipped).read().strip()}")
    agree = []
    for peer, f in (("PyTorch", "torch_eps.safetensors"), ("ORT", "ort_eps.safetensors")):
        for n in ("eps_s", "eps"):
            v = maxabs(os.path.join(d, "duet_eps.safetensors"), os.path.join(d, f), n)
            if v is not None:
                agree.append(f"{n} vs {peer} {v:.2e}")
    if agree:
        lines.append("* Agreement (max |duet − peer|, same x, t, prompt, refine=true): " + "; ".join(agree) + ".")
    lines.append("")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dirs", nargs="+")
    ap.add_argument("--md")
    args = ap.parse_args()
    text = "\n".join(report(d) for d in args.dirs)
    print(text)
    if args.md:
        with open(args.md, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
