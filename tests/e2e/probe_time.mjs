// How long the page's WebGPU probe takes (page load until the badge leaves "probing"): it starts
// the GPU backend, which compiles the engine's kernels. Three loads of the lab in one headless
// Chromium with WebGPU (SwiftShader here). Usage: serve dist/ (e.g. `cargo xtask serve`) and run
//   E2E_URL=http://127.0.0.1:PORT/lora-one-lab/ node tests/e2e/probe_time.mjs
// (from tests/e2e after `cargo xtask test` has installed playwright-core there).
import { chromium } from "playwright-core";
import fs from "node:fs";
const BASE = process.env.E2E_URL;
const dir = fs.mkdtempSync("/tmp/chromium-probe-");
const ctx = await chromium.launchPersistentContext(dir, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium", headless: true,
  args: ["--headless=new", "--no-sandbox", "--disable-gpu-sandbox", "--no-first-run", "--enable-unsafe-webgpu"],
});
const page = ctx.pages()[0] || await ctx.newPage();
for (let i = 0; i < 3; i++) {
  const t = Date.now();
  await page.goto(`${BASE}?view=lab&preset=spectral&compute=gpu`);
  await page.waitForSelector("#gpu-badge:not([data-webgpu=probing])", { timeout: 120000 });
  const txt = await page.$eval("#gpu-badge", (e) => e.textContent.trim());
  console.log(`probe ${i}: ${Date.now() - t} ms: ${txt}`);
}
await ctx.close();
