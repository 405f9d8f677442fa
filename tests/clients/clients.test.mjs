// Real clients against a running `duet serve` (DUET_URL; DUET_API_KEY if the server wants one):
// the official OpenAI Node library (images.generate, images.edit) and the official MCP
// TypeScript SDK client (streamable HTTP: initialize, tools/list, tools/call generate_image).
// Every answer is checked (PNG signature, size, parameters text, determinism by seed); any
// failed check exits 1. Run by scripts/test-clients.sh.
import assert from 'node:assert/strict';
import OpenAI, { toFile } from 'openai';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const base = process.env.DUET_URL;
if (!base) throw new Error('set DUET_URL (e.g. http://127.0.0.1:8080)');
const apiKey = process.env.DUET_API_KEY || 'unused';

// The PNG's width and height from its IHDR chunk, and its tEXt "parameters" chunk.
function pngInfo(buf) {
  assert.equal(buf.subarray(0, 8).toString('hex'), '89504e470d0a1a0a', 'not a PNG');
  const info = { width: buf.readUInt32BE(16), height: buf.readUInt32BE(20), parameters: null };
  for (let off = 8; off + 8 <= buf.length; ) {
    const len = buf.readUInt32BE(off);
    const type = buf.subarray(off + 4, off + 8).toString('latin1');
    if (type === 'tEXt') {
      const data = buf.subarray(off + 8, off + 8 + len);
      const zero = data.indexOf(0);
      if (data.subarray(0, zero).toString('latin1') === 'parameters')
        info.parameters = data.subarray(zero + 1).toString('latin1');
    }
    off += 12 + len;
  }
  return info;
}

const checks = [];
async function check(name, fn) {
  try {
    await fn();
    checks.push(name);
    console.log(`ok   ${name}`);
  } catch (e) {
    console.error(`FAIL ${name}: ${e.stack || e}`);
    process.exitCode = 1;
  }
}

const models = await (await fetch(`${base}/v1/models`, {
  headers: { Authorization: `Bearer ${apiKey}` },
})).json();
const duetInfo = models.data[0].duet;
const size = duetInfo.default_size;
const [W, H] = size.split('x').map(Number);
const openai = new OpenAI({ apiKey, baseURL: `${base}/v1`, maxRetries: 0 });

let generated;
await check('openai images.generate', async () => {
  const r = await openai.images.generate({
    prompt: 'a photo of a sneaker', n: 2, size, response_format: 'b64_json',
    // duet's extensions ride along in the body
    steps: 6, seed: 42,
  });
  assert.equal(r.data.length, 2);
  const png = Buffer.from(r.data[0].b64_json, 'base64');
  const info = pngInfo(png);
  assert.equal(info.width, W);
  assert.equal(info.height, H);
  assert.match(info.parameters, /Seed: 42/);
  generated = png;
  const again = await openai.images.generate({ prompt: 'a photo of a sneaker', n: 2, size, steps: 6, seed: 42 });
  assert.equal(again.data[0].b64_json, r.data[0].b64_json, 'same seed, same image');
});

await check('openai images.edit', async () => {
  const image = await toFile(generated, 'sneaker.png', { type: 'image/png' });
  const r = await openai.images.edit({
    image, prompt: 'a dark sneaker', n: 1, response_format: 'b64_json', steps: 6, seed: 7, strength: 0.5,
  });
  assert.equal(r.data.length, 1);
  const png = Buffer.from(r.data[0].b64_json, 'base64');
  const info = pngInfo(png);
  assert.equal(info.width, W);
  assert.match(info.parameters, /Denoising strength: 0\.5/);
  assert.notEqual(png.toString('base64'), generated.toString('base64'));
  // A mask: OpenAI's rule, transparent pixels are edited. Bad input is a 400 naming the field.
  await assert.rejects(
    openai.images.edit({ image: await toFile(Buffer.from('GIF89a'), 'x.gif'), prompt: 'x' }),
    (e) => e.status === 400 && e.param === 'image');
  await assert.rejects(
    openai.images.edit({ image: await toFile(generated, 'a.png', { type: 'image/png' }), prompt: 'x', strength: 3 }),
    (e) => e.status === 400 && e.param === 'strength');
});

await check('mcp tools/list + tools/call generate_image', async () => {
  const client = new Client({ name: 'duet-client-test', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(`${base}/mcp`), {
    requestInit: { headers: { Authorization: `Bearer ${apiKey}` } },
  });
  await client.connect(transport);
  assert.equal(client.getServerVersion().name, 'duet');
  const { tools } = await client.listTools();
  assert.deepEqual(tools.map((t) => t.name), ['generate_image']);
  assert.ok(tools[0].inputSchema.properties.prompt);
  const res = await client.callTool({
    name: 'generate_image', arguments: { prompt: 'a photo of a sneaker', count: 2, steps: 6, seed: 42 },
  });
  const images = res.content.filter((c) => c.type === 'image');
  assert.equal(images.length, 2);
  assert.equal(images[0].mimeType, 'image/png');
  // the same pixels (and parameters) as images.generate with that seed
  assert.equal(images[0].data, generated.toString('base64'));
  const text = res.content.find((c) => c.type === 'text').text;
  assert.match(text, /Seed: 42/);
  // a bad argument is a JSON-RPC error naming it
  await assert.rejects(
    client.callTool({ name: 'generate_image', arguments: { prompt: 'x', count: 0 } }),
    (e) => e.code === -32602 && /count/.test(e.message));
  await client.close();
});

console.log(`${checks.length}/3 client checks passed`);
