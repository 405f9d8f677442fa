// Runs one ONNX graph with ONNX Runtime (Node, CPU) on inputs from a .safetensors or .json file
// and writes every graph output to a .safetensors file.
//
//   node run.mjs GRAPH.onnx INPUTS.(safetensors|json) OUTPUTS.safetensors
//
// safetensors inputs: tensors named like the graph inputs (F32, I64, I32, U8 supported).
// json inputs: {"name": {"dtype": "F32"|"I64", "shape": [..], "data": [flat numbers]}, ...}
// Outputs are written in the graph's output order (F32 / I64 / I32 / U8), metadata {"runtime": "onnxruntime-node <ver>"}.
import fs from 'node:fs';
import { ort, TYPES, readSafetensors, writeSafetensors } from './safetensors_ort.mjs';

function readJson(path) {
  const obj = JSON.parse(fs.readFileSync(path, 'utf8'));
  const out = {};
  for (const [name, e] of Object.entries(obj)) {
    const t = TYPES[e.dtype];
    const data = e.dtype === 'I64' ? BigInt64Array.from(e.data.map(BigInt)) : t[1].from(e.data);
    out[name] = new ort.Tensor(t[0], data, e.shape);
  }
  return out;
}

const [graph, inputsPath, outPath] = process.argv.slice(2);
if (!outPath) {
  console.error('usage: node run.mjs GRAPH.onnx INPUTS.(safetensors|json) OUTPUTS.safetensors');
  process.exit(2);
}
const session = await ort.InferenceSession.create(graph, { executionProviders: ['cpu'], intraOpNumThreads: 1 });
const all = inputsPath.endsWith('.json') ? readJson(inputsPath) : readSafetensors(inputsPath);
const feeds = {};
for (const name of session.inputNames) {
  if (!(name in all)) throw new Error(`${inputsPath}: no tensor for graph input ${name}`);
  feeds[name] = all[name];
}
const results = await session.run(feeds);
const ordered = {};
for (const name of session.outputNames) ordered[name] = results[name];
writeSafetensors(outPath, ordered, { runtime: `onnxruntime-node ${ort.env.versions.node}` });
console.log(`${graph}: ${session.outputNames.map((n) => `${n} [${results[n].dims}]`).join(', ')}`);
