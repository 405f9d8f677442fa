// Web UI test: open the page served by `duet serve`, type a prompt, click Generate, wait for the
// image (progress comes over SSE), check the gallery entry, save a screenshot to docs/webui.png;
// then drop the first image onto the form and run img2img with it (docs/webui-img2img.png).
//
//   DUET_URL=http://127.0.0.1:8080 [DUET_API_KEY=...] [DUET_SCREENSHOT=docs/webui.png] node ui.test.mjs
import { chromium } from "playwright-core";
import assert from "node:assert/strict";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const url = process.env.DUET_URL || "http://127.0.0.1:8080";
const screenshot = process.env.DUET_SCREENSHOT || path.join(here, "..", "..", "docs", "webui.png");

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
let failed = false;
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 720 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  const external = [];
  page.on("request", (r) => {
    if (/^(https?|wss?):/.test(r.url()) && !r.url().startsWith(url)) external.push(r.url());
  });

  await page.goto(url + "/", { waitUntil: "load" });
  if (process.env.DUET_API_KEY) await page.fill("#apikey", process.env.DUET_API_KEY);
  // The model info fills the sampler list.
  await page.waitForFunction(() => document.querySelectorAll("#sampler option").length > 0);
  await page.fill("#prompt", "a photo of an ankle boot");
  await page.fill("#negative", "blurry");
  await page.fill("#steps", process.env.DUET_STEPS || "12");
  await page.fill("#seed", "1234");
  await page.fill("#count", "2");
  await page.click("#generate");

  // Progress over SSE: the bar moves while the job runs, then the images arrive.
  await page.waitForSelector("#gallery .card img.result", { timeout: 120000 });
  await page.waitForFunction(() => document.querySelectorAll("#gallery .card").length === 2,
                             null, { timeout: 120000 });
  const status = await page.textContent("#status");
  assert.match(status, /^done in /, "status line: " + status);
  const bar = await page.$eval("#bar", (e) => e.style.width);
  assert.equal(bar, "100%");
  const cards = await page.$$eval("#gallery .card", (cs) => cs.map((c) => ({
    params: c.querySelector("pre").textContent,
    download: c.querySelector("a").getAttribute("download"),
    loaded: c.querySelector("img").naturalWidth > 0,
  })));
  for (const c of cards) {
    assert.ok(c.loaded, "image decoded");
    assert.match(c.params, /a photo of an ankle boot/);
    assert.match(c.params, /Seed: 1234/);
    assert.match(c.download, /^job_.*\.png$/);
  }
  assert.deepEqual(errors, [], "page errors");
  assert.deepEqual(external, [], "requests outside the server");
  await page.screenshot({ path: screenshot });

  // img2img: drop the first result onto the form as the start image, strength 0.6, one image.
  await page.evaluate(async () => {
    const src = document.querySelector("#gallery .card img").src;
    const blob = await (await fetch(src)).blob();
    const dt = new DataTransfer();
    dt.items.add(new File([blob], "boot.png", { type: "image/png" }));
    document.getElementById("form").dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true }));
  });
  assert.equal(await page.$eval("#initpreview", (e) => e.hidden), false, "start image preview");
  await page.$eval("#strength", (e) => { e.value = "0.6"; e.dispatchEvent(new Event("input")); });
  assert.equal(await page.textContent("#strengthval"), "0.60");
  await page.fill("#prompt", "a dark ankle boot");
  await page.fill("#seed", "99");
  await page.fill("#count", "1");
  await page.click("#generate");
  await page.waitForFunction(() => document.querySelectorAll("#gallery .card").length === 3,
                             null, { timeout: 120000 });
  await page.waitForFunction(() => /^done in /.test(document.getElementById("status").textContent),
                             null, { timeout: 120000 });
  const edited = await page.$eval("#gallery .card", (c) => ({
    params: c.querySelector("pre").textContent,
    loaded: c.querySelector("img").naturalWidth > 0,
  }));
  assert.ok(edited.loaded, "img2img image decoded");
  assert.match(edited.params, /a dark ankle boot/);
  assert.match(edited.params, /img2img, strength 0\.6/);
  assert.deepEqual(errors, [], "page errors");
  const shot2 = screenshot.replace(/\.png$/, "-img2img.png");
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.waitForTimeout(300);  // the progress bar's width transition
  await page.screenshot({ path: shot2, fullPage: true });
  console.log("ui.test: OK (" + cards.length + " images, then img2img; screenshots " + screenshot +
              ", " + shot2 + ")");
} catch (e) {
  failed = true;
  console.error("ui.test: FAILED:", e);
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
