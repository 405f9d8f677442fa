// ONNX Runtime peer for `duet bench` (Node, CPU execution provider).
//
//   node bench/ort_peer.mjs --onnx ONNX_DIR --inputs ORT_IN.safetensors --out OUT.json \
//        [--reps 5] [--threads 2] [--eps-out EPS.safetensors]
//
// ONNX_DIR holds the four graphs of `python -m duet_ref.onnx_export` (text_encoder, prompt_kv,
// denoiser, refiner_fusion). ORT_IN comes from `bench/torch_peer.py --ort-inputs`: ids, mask
// (int64, the model's tokenizer), x_t, t — the same inputs torch_peer and duet bench use.
// Session options: graph optimisation level "all", intraOpNumThreads = --threads,
// interOpNumThreads 1, sequential execution.
// Stages (one warm-up, then --reps timed runs each; median/min/max in ms):
//   prompt_encode      text_encoder + prompt_kv
//   denoise_no_refine  denoiser                      (-> eps_s)
//   denoise_refine     denoiser + refiner_fusion     (-> eps)
// --eps-out writes eps_s, eps_d, eps of the refine path.
import fs from 'node:fs';
import path from 'node:path';
import { ort, readSafetensors, writeSafetensors } from '../python/onnx_check/safetensors_ort.mjs';

function parseArgs(argv) {
  const a = { reps: 5, threads: 2 };
  for (let i = 0; i < argv.length; i += 2) {
    const k = argv[i].replace(/^--/, '').replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    a[k] = argv[i + 1];
  }
  a.reps = Number(a.reps);
  a.threads = Number(a.threads);
  for (const k of ['onnx', 'inputs', 'out'])
    if (!a[k]) { console.error(`ort_peer: --${k} is required`); process.exit(2); }
  return a;
}

function stats(ts) {
  const s = [...ts].sort((x, y) => x - y);
  const n = s.length;
  const median = n % 2 ? s[(n - 1) / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
  return { median_ms: median, min_ms: s[0], max_ms: s[n - 1], reps: n };
}

async function timed(fn, reps) {
  await fn();  // warm-up
  const ts = [];
  for (let i = 0; i < reps; ++i) {
    const t0 = process.hrtime.bigint();
    await fn();
    ts.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return stats(ts);
}

const args = parseArgs(process.argv.slice(2));
const opts = {
  executionProviders: ['cpu'], graphOptimizationLevel: 'all', intraOpNumThreads: args.threads,
  interOpNumThreads: 1, executionMode: 'sequential',
};
const t0 = process.hrtime.bigint();
const sess = {};
for (const g of ['text_encoder', 'prompt_kv', 'denoiser', 'refiner_fusion'])
  sess[g] = await ort.InferenceSession.create(path.join(args.onnx, `${g}.onnx`), opts);
const loadMs = Number(process.hrtime.bigint() - t0) / 1e6;

const inp = readSafetensors(args.inputs);
const pick = (s, all) => Object.fromEntries(s.inputNames.map((n) => {
  if (!(n in all)) throw new Error(`no tensor for input ${n} of a graph`);
  return [n, all[n]];
}));

async function encode() {
  const te = await sess.text_encoder.run(pick(sess.text_encoder, inp));
  const kv = await sess.prompt_kv.run({ E: te.E });
  return { ...te, ...kv };
}
const enc = await encode();
const all = { ...inp, ...enc };
const denFeeds = pick(sess.denoiser, all);
async function denoise() { return sess.denoiser.run(denFeeds); }
async function denoiseRefine() {
  const d = await sess.denoiser.run(denFeeds);
  const r = await sess.refiner_fusion.run({ x_t: inp.x_t, eps_s: d.eps_s, t: inp.t, c: d.c });
  return { ...d, ...r };
}

const res = {
  peer: 'onnxruntime-node', version: ort.env.versions ? ort.env.versions.common : 'unknown',
  threads: args.threads, graph_optimization: 'all', batch: Number(inp.x_t.dims[0]), load_ms: loadMs,
};
res.prompt_encode = await timed(encode, args.reps);
res.denoise_no_refine = await timed(denoise, args.reps);
res.denoise_refine = await timed(denoiseRefine, args.reps);
res.peak_rss_mib = process.resourceUsage().maxRSS / 1024;
if (args.epsOut) {
  const o = await denoiseRefine();
  writeSafetensors(args.epsOut, { eps_s: o.eps_s, eps_d: o.eps_d, eps: o.eps }, { engine: 'onnxruntime-node' });
}
fs.writeFileSync(args.out, JSON.stringify(res, null, 2));
console.log(JSON.stringify(res));
