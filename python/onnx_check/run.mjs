// Runs one ONNX graph with ONNX Runtime (Node, CPU) on inputs from a .safetensors or .json file
// and writes every graph output to a .safetensors file.
//
//   node run.mjs GRAPH.onnx INPUTS.(safetensors|json) OUTPUTS.safetensors
//
// safetensors inputs: tensors named like the graph inputs (F32, I64, I32, U8 supported).
// json inputs: {"name": {"dtype": "F32"|"I64", "shape": [..], "data": [flat numbers]}, ...}
// Outputs are written in the graph's output order (F32 / I64 / I32 / U8), metadata {"runtime": "onnxruntime-node <ver>"}.
import fs from 'node:fs';
import ort from 'onnxruntime-node';

const TYPES = {
  F32: ['float32', Float32Array, 4], I64: ['int64', BigInt64Array, 8],
  I32: ['int32', Int32Array, 4], U8: ['uint8', Uint8Array, 1],
};
const FROM_ORT = { float32: 'F32', int64: 'I64', int32: 'I32', uint8: 'U8' };

function readSafetensors(path) {
  const buf = fs.readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const base = 8 + n;
  const out = {};
  for (const [name, e] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const t = TYPES[e.dtype];
    if (!t) throw new Error(`${path}: tensor ${name}: unsupported dtype ${e.dtype}`);
    const [b, end] = e.data_offsets;
    const bytes = new Uint8Array(end - b);
    bytes.set(buf.subarray(base + b, base + end));  // copy: aligned for the typed array
    out[name] = new ort.Tensor(t[0], new t[1](bytes.buffer), e.shape);
  }
  return out;
}

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

function writeSafetensors(path, tensors, metadata) {
  const header = { __metadata__: metadata };
  const blobs = [];
  let off = 0;
  for (const [name, t] of Object.entries(tensors)) {
    const dt = FROM_ORT[t.type];
    if (!dt) throw new Error(`output ${name}: unsupported type ${t.type}`);
    const bytes = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    header[name] = { dtype: dt, shape: t.dims.map(Number), data_offsets: [off, off + bytes.length] };
    blobs.push(bytes);
    off += bytes.length;
  }
  let h = Buffer.from(JSON.stringify(header), 'utf8');
  const pad = (8 - (h.length % 8)) % 8;
  h = Buffer.concat([h, Buffer.alloc(pad, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  fs.writeFileSync(path, Buffer.concat([len, h, ...blobs]));
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
