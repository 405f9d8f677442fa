// safetensors <-> onnxruntime-node tensors, shared by run.mjs (the ONNX checks) and
// bench/ort_peer.mjs (the ONNX Runtime benchmark peer). F32, I64, I32 and U8 only.
import fs from 'node:fs';
import ort from 'onnxruntime-node';

const TYPES = {
  F32: ['float32', Float32Array], I64: ['int64', BigInt64Array],
  I32: ['int32', Int32Array], U8: ['uint8', Uint8Array],
};
const FROM_ORT = { float32: 'F32', int64: 'I64', int32: 'I32', uint8: 'U8' };

export { ort, TYPES };

// { name: ort.Tensor } of every tensor in the file (data copied: aligned for the typed arrays).
export function readSafetensors(path) {
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
    bytes.set(buf.subarray(base + b, base + end));
    out[name] = new ort.Tensor(t[0], new t[1](bytes.buffer), e.shape);
  }
  return out;
}

// Writes { name: ort.Tensor } in the given order with string metadata.
export function writeSafetensors(path, tensors, metadata) {
  const header = { __metadata__: metadata };
  const blobs = [];
  let off = 0;
  for (const [name, t] of Object.entries(tensors)) {
    const dt = FROM_ORT[t.type];
    if (!dt) throw new Error(`${path}: tensor ${name}: unsupported type ${t.type}`);
    const bytes = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    header[name] = { dtype: dt, shape: t.dims.map(Number), data_offsets: [off, off + bytes.length] };
    blobs.push(bytes);
    off += bytes.length;
  }
  let h = Buffer.from(JSON.stringify(header), 'utf8');
  h = Buffer.concat([h, Buffer.alloc((8 - (h.length % 8)) % 8, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  fs.writeFileSync(path, Buffer.concat([len, h, ...blobs]));
}
