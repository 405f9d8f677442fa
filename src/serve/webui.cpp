// The web UI at `/`: one self-contained page (no CDN, no external files). It talks to the
// JSON API with fetch() so that an API key can be sent as a Bearer header everywhere (the SSE
// stream is read with fetch + a stream reader rather than EventSource, which cannot send headers).
#include "serve/webui.h"

namespace duet::serve {

const char* webui_html() {
  return R"HTML(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>duet</title>
<style>
  :root { --bg:#14161a; --panel:#1d2026; --fg:#e6e6e6; --muted:#9aa0a6; --acc:#6aa8ff; --err:#ff6b6b; }
  * { box-sizing: border-box; }
  body { margin:0; font:14px/1.4 system-ui, sans-serif; background:var(--bg); color:var(--fg); }
  header { padding:12px 20px; border-bottom:1px solid #2b2f36; display:flex; gap:16px; align-items:baseline; }
  header h1 { font-size:18px; margin:0; }
  header span { color:var(--muted); }
  main { display:grid; grid-template-columns: 340px 1fr; gap:20px; padding:20px; }
  form { background:var(--panel); padding:16px; border-radius:8px; display:flex; flex-direction:column; gap:10px; }
  label { display:flex; flex-direction:column; gap:4px; color:var(--muted); font-size:12px; }
  input, select, textarea { background:#111317; color:var(--fg); border:1px solid #343a43; border-radius:5px; padding:7px; font:inherit; }
  textarea { resize:vertical; min-height:60px; }
  .row { display:grid; grid-template-columns: 1fr 1fr; gap:10px; }
  button { background:var(--acc); color:#0b1320; border:0; border-radius:5px; padding:9px; font-weight:600; cursor:pointer; }
  button.secondary { background:#343a43; color:var(--fg); }
  button:disabled { opacity:.5; cursor:default; }
  #progress { height:8px; background:#111317; border-radius:4px; overflow:hidden; }
  #bar { height:100%; width:0; background:var(--acc); transition:width .1s; }
  #status { color:var(--muted); min-height:1.4em; }
  #status.error { color:var(--err); }
  #gallery { display:grid; grid-template-columns: repeat(auto-fill, minmax(220px, 1fr)); gap:14px; align-content:start; }
  .card { background:var(--panel); border-radius:8px; padding:10px; display:flex; flex-direction:column; gap:6px; }
  .card img { width:100%; image-rendering:pixelated; border-radius:4px; background:#000; }
  .card pre { margin:0; white-space:pre-wrap; word-break:break-word; font-size:11px; color:var(--muted); }
  .card a { color:var(--acc); font-size:12px; }
  #initbox { border:1px dashed #343a43; border-radius:5px; padding:8px; display:flex; flex-direction:column; gap:6px; }
  #initbox.over { border-color:var(--acc); }
  #initpreview { max-width:96px; image-rendering:pixelated; border-radius:4px; }
</style>
</head>
<body>
<header><h1>duet</h1><span id="model">loading model info…</span></header>
<main>
  <form id="form">
    <label>Prompt<textarea id="prompt" required placeholder="a photo of an ankle boot"></textarea></label>
    <label>Negative prompt<input id="negative" placeholder=""></label>
    <div class="row">
      <label>Sampler<select id="sampler"></select></label>
      <label>Steps<input id="steps" type="number" min="1" max="1000" value="20"></label>
    </div>
    <div class="row">
      <label>Guidance (CFG)<input id="cfg" type="number" min="0" max="100" step="0.5" value="4"></label>
      <label>Seed (-1 = random)<input id="seed" type="number" value="-1"></label>
    </div>
    <div class="row">
      <label>Count<input id="count" type="number" min="1" max="64" value="1"></label>
      <label>Size<input id="size" placeholder="default"></label>
    </div>
    <div id="initbox">
      <label>Start image (img2img; drop a PNG here or pick one)<input id="init" type="file" accept="image/png"></label>
      <img id="initpreview" alt="start image" hidden>
      <div class="row">
        <label>Strength <span id="strengthval">0.75</span><input id="strength" type="range" min="0" max="1" step="0.05" value="0.75"></label>
        <button id="clearinit" class="secondary" type="button" disabled>No start image</button>
      </div>
    </div>
    <label>API key (if the server needs one)<input id="apikey" type="password" autocomplete="off"></label>
    <div class="row">
      <button id="generate" type="submit">Generate</button>
      <button id="cancel" class="secondary" type="button" disabled>Cancel</button>
    </div>
    <div id="progress"><div id="bar"></div></div>
    <div id="status"></div>
  </form>
  <section id="gallery"></section>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let current = null;

$("apikey").value = localStorage.getItem("duet-api-key") || "";
$("apikey").addEventListener("change", () => localStorage.setItem("duet-api-key", $("apikey").value));

function headers(extra) {
  const h = Object.assign({}, extra || {});
  const k = $("apikey").value.trim();
  if (k) h["Authorization"] = "Bearer " + k;
  return h;
}

// img2img: the start image comes from the file picker or a drop onto the form.
function showInit() {
  const f = $("init").files[0];
  $("initpreview").hidden = !f;
  $("clearinit").disabled = !f;
  if (f) $("initpreview").src = URL.createObjectURL(f);
}
$("init").addEventListener("change", showInit);
$("clearinit").addEventListener("click", () => { $("init").value = ""; showInit(); });
$("strength").addEventListener("input", () => { $("strengthval").textContent = Number($("strength").value).toFixed(2); });
for (const t of ["dragenter", "dragover"])
  $("form").addEventListener(t, (ev) => { ev.preventDefault(); $("initbox").classList.add("over"); });
$("form").addEventListener("dragleave", () => $("initbox").classList.remove("over"));
$("form").addEventListener("drop", (ev) => {
  ev.preventDefault();
  $("initbox").classList.remove("over");
  if (ev.dataTransfer && ev.dataTransfer.files.length) {
    $("init").files = ev.dataTransfer.files;
    showInit();
  }
});

function setStatus(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

async function api(path, opts) {
  const res = await fetch(path, Object.assign({}, opts, { headers: headers(opts && opts.headers) }));
  const text = await res.text();
  let body = null;
  try { body = JSON.parse(text); } catch (e) { body = { raw: text }; }
  if (!res.ok) {
    const msg = body && body.error ? body.error.message + (body.error.param ? " (" + body.error.param + ")" : "") : res.status + " " + res.statusText;
    throw new Error(msg);
  }
  return body;
}

async function loadModel() {
  try {
    const m = (await api("/v1/models")).data[0];
    const d = m.duet;
    $("model").textContent = m.id + " · " + d.default_size + " · sizes in multiples of " + d.size_multiple;
    for (const s of d.samplers) {
      const o = document.createElement("option");
      o.value = o.textContent = s;
      if (s === d.defaults.sampler) o.selected = true;
      $("sampler").appendChild(o);
    }
    $("steps").value = d.defaults.steps;
    $("cfg").value = d.defaults.cfg_scale;
    $("size").placeholder = d.default_size;
  } catch (e) {
    $("model").textContent = "model info unavailable: " + e.message;
  }
}

// Reads the job's SSE stream through fetch (so the API key header is sent).
async function follow(job) {
  const res = await fetch("/v1/jobs/" + job.id + "/events", { headers: headers() });
  if (!res.ok || !res.body) throw new Error("event stream failed: " + res.status);
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const chunk = buf.slice(0, i);
      buf = buf.slice(i + 2);
      let ev = "message", data = "";
      for (const line of chunk.split("\n")) {
        if (line.startsWith("event: ")) ev = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      if (!data) continue;
      const msg = JSON.parse(data);
      if (ev === "progress") {
        const pct = msg.steps ? Math.round(100 * msg.step / msg.steps) : 0;
        $("bar").style.width = pct + "%";
        setStatus(msg.state === "queued" ? "queued…" : "step " + msg.step + " / " + msg.steps);
      } else if (ev === "done") {
        return msg;
      }
    }
  }
  return api("/v1/jobs/" + job.id);
}

function paramsText(job, k) {
  const r = job.request;
  return r.prompt + (r.negative_prompt ? "\nNegative prompt: " + r.negative_prompt : "") +
    "\nSteps: " + r.steps + ", Sampler: " + r.sampler + ", CFG scale: " + r.cfg_scale +
    ", Seed: " + job.seeds[k] + ", Size: " + r.size + (r.n > 1 ? ", Batch pos: " + k : "") +
    (r.init_image ? "\nimg2img, strength " + r.strength : "");
}

async function addImages(job) {
  for (let k = job.images.length - 1; k >= 0; --k) {  // prepended: image 0 ends up first
    const res = await fetch(job.images[k], { headers: headers() });
    if (!res.ok) throw new Error("image download failed: " + res.status);
    const url = URL.createObjectURL(await res.blob());
    const card = document.createElement("div");
    card.className = "card";
    const img = document.createElement("img");
    img.src = url;
    img.alt = job.request.prompt;
    img.className = "result";
    const pre = document.createElement("pre");
    pre.textContent = paramsText(job, k);
    const a = document.createElement("a");
    a.href = url;
    a.download = job.id + "-" + k + ".png";
    a.textContent = "download PNG";
    card.append(img, pre, a);
    $("gallery").prepend(card);
  }
}

$("form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const body = {
    prompt: $("prompt").value,
    negative_prompt: $("negative").value,
    sampler: $("sampler").value || undefined,
    steps: Number($("steps").value),
    cfg_scale: Number($("cfg").value),
    seed: Number($("seed").value),
    n: Number($("count").value),
  };
  if ($("size").value.trim()) body.size = $("size").value.trim();
  $("generate").disabled = true;
  $("bar").style.width = "0%";
  setStatus("submitting…");
  try {
    const init = $("init").files[0];
    if (init) {  // img2img: the job API's multipart form (the size defaults to the image's)
      const form = new FormData();
      form.append("image", init, init.name || "start.png");
      form.append("strength", $("strength").value);
      for (const [k, v] of Object.entries(body)) if (v !== undefined) form.append(k, String(v));
      current = await api("/v1/jobs", { method: "POST", body: form });
    } else {
      current = await api("/v1/jobs", { method: "POST", body: JSON.stringify(body),
                                        headers: { "Content-Type": "application/json" } });
    }
    $("cancel").disabled = false;
    const job = await follow(current);
    if (job.state === "succeeded") {
      $("bar").style.width = "100%";
      await addImages(job);
      setStatus("done in " + job.timings.total_s.toFixed(2) + " s (seed " + job.seeds[0] + ")");
    } else {
      setStatus(job.state + (job.error ? ": " + job.error.message : ""), true);
    }
  } catch (e) {
    setStatus(e.message, true);
  } finally {
    current = null;
    $("generate").disabled = false;
    $("cancel").disabled = true;
  }
});

$("cancel").addEventListener("click", async () => {
  if (!current) return;
  try { await api("/v1/jobs/" + current.id, { method: "DELETE" }); } catch (e) { setStatus(e.message, true); }
});

loadModel();
</script>
</body>
</html>
)HTML";
}

}  // namespace duet::serve
