// End-to-end test of the built dist/ in headless Chromium (playwright-core, system Chromium).
// Run by `cargo xtask test`, which serves dist/ under a sub-path and sets:
//   E2E_URL (the served URL), E2E_SHOTS (screenshot folder), E2E_TMP (temp folder), CHROMIUM.
import { chromium } from "playwright-core";
import fs from "node:fs";
import path from "node:path";
import os from "node:os";

const BASE = process.env.E2E_URL;
const SHOTS = process.env.E2E_SHOTS || path.resolve("../../target/screenshots");
const TMP = process.env.E2E_TMP || os.tmpdir();
const EXE = process.env.CHROMIUM || "/usr/bin/chromium";
if (!BASE) {
  console.error("E2E_URL is not set (run through `cargo xtask test`)");
  process.exit(2);
}
fs.mkdirSync(SHOTS, { recursive: true });

const failures = [];
const bench = {};
let checks = 0;
function check(cond, what, detail = "") {
  checks++;
  if (cond) {
    console.log(`  ok   ${what}${detail ? `  (${detail})` : ""}`);
  } else {
    console.error(`  FAIL ${what}${detail ? `  (${detail})` : ""}`);
    failures.push(what + (detail ? ` (${detail})` : ""));
  }
}

const COMMON = [
  "--headless=new", "--no-sandbox", "--disable-gpu-sandbox", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
];

async function launch(webgpu, dpr = 1) {
  const dir = fs.mkdtempSync(path.join(TMP, "chromium-"));
  const args = [...COMMON, ...(webgpu ? ["--enable-unsafe-webgpu"] : [])];
  return chromium.launchPersistentContext(dir, {
    executablePath: EXE, headless: true, args, viewport: { width: 1280, height: 900 },
    deviceScaleFactor: dpr,
  });
}

let pageErrors = 0;
function attachLogs(page, tag) {
  page.on("pageerror", (e) => {
    pageErrors++; console.log(`  [${tag} pageerror] ${e}`); failures.push(`${tag}: page error ${e}`); });
  // a console error is a failure too (the page logs none in normal use)
  page.on("console", (m) => {
    if (m.type() === "error") {
      console.log(`  [${tag} console.error] ${m.text()}`);
      failures.push(`${tag}: console error ${m.text().slice(0, 300)}`);
    }
  });
}

async function badge(page) {
  // the probe starts the GPU backend: 13.5–16 s on SwiftShader on the 2-core VM (probe_time.mjs)
  await page.waitForSelector("#gpu-badge:not([data-webgpu=probing])", { timeout: 90000 });
  return page.$eval("#gpu-badge", (e) => ({
    text: e.textContent.trim(), title: e.title || "", webgpu: e.dataset.webgpu, backend: e.dataset.backend, adapter: e.dataset.adapter,
  }));
}

async function download(page, selector) {
  const [dl] = await Promise.all([page.waitForEvent("download", { timeout: 15000 }), page.click(selector)]);
  const file = await dl.path();
  return { name: dl.suggestedFilename(), text: fs.readFileSync(file, "utf8") };
}

/// What shows that a view has drawn.
const READY = { phase: "#phase-canvas[data-ready='1']", lab: "#lab", sweep: "#sweep", toy: "#toy-canvas[data-runs]", digits: "#digits[data-state=done]" };
const q = (page) => new URL(page.url()).searchParams;
const attr = (page, sel, a) => page.$eval(sel, (e, a) => e.getAttribute(a), a);

async function withWebGpu() {
  const ctx = await launch(true);
  const page = ctx.pages()[0] || (await ctx.newPage());
  attachLogs(page, "webgpu");
  try {
    // ---------- load, first chart, badge ----------
    const t0 = Date.now();
    await page.goto(BASE, { waitUntil: "load" });
    await page.waitForSelector("#phase-canvas[data-ready='1']", { timeout: 30000 });
    bench.first_chart_ms = await page.evaluate(() => performance.now());
    console.log(`  first chart drawn ${bench.first_chart_ms.toFixed(0)} ms after navigation start (wall ${Date.now() - t0} ms)`);
    const b = await badge(page);
    console.log(`  badge: ${b.text} [webgpu=${b.webgpu} backend=${b.backend} adapter=${b.adapter}]`);
    check(b.webgpu === "yes", "WebGPU adapter found by the page", b.adapter);
    // SwiftShader is a software adapter: the CPU engine is the default there, and the badge says why
    check(b.backend === "cpu" && /software WebGPU adapter/.test(b.title) && /software/.test(b.adapter),
      "a software WebGPU adapter makes the CPU engine the default, and the badge says why", `${b.text} | ${b.title}`);
    check(new URL(page.url()).pathname.endsWith("/lora-one-lab/"), "served under a sub-path", page.url());

    // ---------- phase portrait ----------
    check(q(page).get("view") === "phase", "default view is the phase portrait in the URL", page.url());
    const trajs = Number(await attr(page, "#phase-canvas", "data-trajectories"));
    check(trajs === 3, "three trajectories plotted", `data-trajectories=${trajs}`);
    const pts = Number(await attr(page, "#phase-canvas", "data-points"));
    check(pts > 3 * 100, "trajectory points drawn", `data-points=${pts}`);
    const rows = await page.$$eval("table.readout tbody tr", (r) => r.map((x) => x.dataset.method));
    check(rows.length === 3, "readout has a row per method", rows.join(", "));
    await page.screenshot({ path: path.join(SHOTS, "phase.png") });

    await page.locator("#phase-canvas").focus();
    await page.keyboard.press("r");
    check((await attr(page, "#phase-canvas", "data-step")) === "0", "key r resets to step 0");
    await page.keyboard.press(".");
    check((await attr(page, "#phase-canvas", "data-step")) === "1", "key . steps once");
    await page.keyboard.press("2");
    const shown = q(page).get("show");
    check(shown === "10110", "key 2 hides LoRA-GA (URL show=10110)", shown);
    await page.keyboard.press("2");
    await page.keyboard.press(" ");
    await page.waitForTimeout(1500);
    const stepPlayed = Number(await attr(page, "#phase-canvas", "data-step"));
    check(stepPlayed > 10, "space plays the animation", `step ${stepPlayed}`);
    const fps = Number(await attr(page, "#fps", "data-fps"));
    bench.phase_fps = fps;
    check(fps >= 20, "animation frame rate", `${fps} fps`);
    await page.keyboard.press(" ");

    // custom start by click
    const box = await page.locator("#phase-canvas").boundingBox();
    await page.mouse.click(box.x + box.width * 0.75, box.y + box.height * 0.2);
    await page.waitForTimeout(300);
    const st = q(page).get("start");
    check(!!st, "click places a custom start (URL start=…)", st);
    check((await attr(page, "#phase-canvas", "data-trajectories")) === "4", "custom trajectory drawn");
    await page.screenshot({ path: path.join(SHOTS, "phase-custom.png") });
    const svg = await download(page, "text=SVG");
    check(svg.text.startsWith("<svg") && svg.text.includes("polyline"), "phase portrait exports as SVG", `${svg.name}, ${svg.text.length} chars`);
    fs.writeFileSync(path.join(SHOTS, "phase-export.svg"), svg.text);
    const png = await download(page, ".phase .exports >> text=PNG");
    check(png.name.endsWith(".png"), "phase portrait exports as PNG", png.name);

    // numeric input → URL → reload round trip
    await page.fill("#in-delta", "1.5");
    await page.press("#in-delta", "Enter");
    await page.locator("#in-eta").fill("0.05");
    await page.press("#in-eta", "Enter");
    await page.waitForTimeout(500);
    check(q(page).get("delta") === "1.5" && q(page).get("eta") === "0.05", "parameters written to the URL", page.url());
    const before = page.url();
    await page.goto(before);
    await page.waitForSelector("#phase-canvas[data-ready='1']");
    await page.waitForTimeout(300);
    check((await page.inputValue("#in-delta")) === "1.5", "reload restores δ from the URL");
    check((await page.inputValue("#in-eta")) === "0.05", "reload restores η from the URL");
    check(page.url() === before, "URL is stable across a reload (same figure)", page.url());

    // PiSSA, opt-in (key 5): at the preset's W0 = 0 it sits on the saddle and the legend says
    // so; with w0 > 0 it starts off the saddle and stops above zero loss (rank 1 spent on W0)
    await page.locator("#phase-canvas").focus();
    await page.keyboard.press("5");
    await page.waitForTimeout(300);
    const note = await page.textContent("#pissa-note").catch(() => "");
    const rowsP = await page.$$eval("table.readout tbody tr", (r) => r.map((x) => x.dataset.method));
    check(q(page).get("show").endsWith("1") && /saddle/.test(note) && rowsP.includes("PiSSA"),
      "key 5 shows PiSSA, which W0 = 0 leaves on the saddle (the legend says so)", `show=${q(page).get("show")}, ${rowsP.join(", ")}, ${note}`);
    const endsW = await attr(page, "#phase-canvas", "data-ends");
    await page.goto(page.url().replace(/w0=[^&]*/, "w0=0.5"));
    await page.waitForSelector("#phase-canvas[data-ready='1']");
    await page.waitForFunction((e) => document.querySelector("#phase-canvas").dataset.ends !== e, endsW, { timeout: 10000 }).catch(() => {});
    await page.waitForFunction(() => document.querySelector("#phase-canvas").dataset.step === "200", null, { timeout: 15000 }).catch(() => {});
    const lossP = await page.$eval("table.readout tr[data-method='PiSSA'] td[data-loss]", (e) => Number(e.dataset.loss)).catch(() => NaN);
    const lossOne = await page.$eval("table.readout tr[data-method='LoRA-One'] td[data-loss]", (e) => Number(e.dataset.loss)).catch(() => NaN);
    const noteGone = !(await page.$("#pissa-note"));
    check(q(page).get("w0") === "0.5" && lossP > 1e-4 && lossOne < 1e-6 && noteGone,
      "with w0 = 0.5 PiSSA leaves the saddle and stops above zero loss where LoRA-One reaches it", `PiSSA ${lossP}, LoRA-One ${lossOne}`);
    await page.screenshot({ path: path.join(SHOTS, "phase-pissa.png") });
    await page.goto(page.url().replace(/w0=[^&]*/, "w0=0").replace(/show=[^&]*/, "show=11110"));
    await page.waitForSelector("#phase-canvas[data-ready='1']");

    // finite N (Σ̂ ≠ I): the trajectories are recomputed (their end points move)
    const endsPop = await attr(page, "#phase-canvas", "data-ends");
    await page.uncheck("#population");
    await page.waitForSelector("#in-n");
    await page.waitForFunction((e) => document.querySelector("#phase-canvas").dataset.ends !== e, endsPop, { timeout: 10000 }).catch(() => {});
    const tN = Number(await attr(page, "#phase-canvas", "data-trajectories"));
    const endsN = await attr(page, "#phase-canvas", "data-ends");
    check(q(page).get("population") === "false" && tN >= 3 && endsN && endsN !== endsPop,
      "finite-N mode recomputes the trajectories", `trajectories ${tN}, n=${q(page).get("n")}, ends ${endsPop} → ${endsN}`);
    await page.screenshot({ path: path.join(SHOTS, "phase-finite-n.png") });
    await page.check("#population");

    // ---------- dynamics lab ----------
    await page.click("#tab-lab");
    await page.waitForSelector("#lab");
    check(q(page).get("view") === "lab", "view switch is in the URL");
    const tRun = Date.now();
    await page.click("button.preset[data-preset=spectral]");
    await page.waitForSelector("#lab[data-state=done]", { timeout: 120000 });
    bench.spectral_wall_ms = Date.now() - tRun;
    bench.spectral_run_ms = Number(await attr(page, "#lab", "data-run-ms"));
    console.log(`  spectral preset: ${bench.spectral_run_ms} ms in the page (${bench.spectral_wall_ms} ms wall)`);
    for (const id of ["chart-risk", "chart-sin", "chart-sv", "chart-cost"]) {
      const n = Number(await attr(page, `#${id}`, "data-points"));
      check(n > 0, `${id} has plotted data`, `data-points=${n}`);
    }
    const ranOn = await page.$eval(".ran-on", (e) => e.textContent);
    const autoNote = await page.$eval(".runbar .note", (e) => e.textContent).catch(() => "");
    check(/cpu|f64/i.test(ranOn) && /software WebGPU adapter/.test(autoNote),
      "compute=auto ran the preset on the CPU engine (software adapter) and said why", `${ranOn} | ${autoNote}`);
    const runRows = await page.$$eval("table.runs tbody tr", (r) => r.map((x) => Number(x.dataset.records)));
    check(runRows.length === 3 && runRows.every((n) => n === 101), "three runs of 101 records", runRows.join(","));
    check(q(page).get("preset") === "spectral" && q(page).get("eta") === "0.5", "preset in the URL", page.url());
    await page.screenshot({ path: path.join(SHOTS, "lab-spectral.png"), fullPage: true });
    const js = JSON.parse((await download(page, "text=Runs as JSON")).text);
    check(js.schema === "lora-one-lab/run@1" && js.runs.length === 3 && js.backend.kind === "cpu",
      "run exports as JSON in the CLI schema", `${js.schema}, ${js.runs.length} runs on ${js.backend.kind}`);
    const csv = (await download(page, "text=Runs as CSV")).text.trim().split("\n");
    check(csv.length === 1 + 3 * 101 && csv[0].startsWith("run,label,init"), "run exports as CSV", `${csv.length} lines`);
    // the GPU on request (compute=gpu), even on a software adapter: the batched WGSL path
    await page.selectOption("#compute", "gpu");
    check(q(page).get("compute") === "gpu", "compute choice in the URL");
    const tGpu = Date.now();
    await page.click("#run");
    await page.waitForSelector("#lab[data-state=done]", { timeout: 120000 });
    bench.spectral_gpu_wall_ms = Date.now() - tGpu;
    bench.spectral_gpu_run_ms = Number(await attr(page, "#lab", "data-run-ms"));
    const ranGpu = await page.$eval(".ran-on", (e) => e.textContent);
    check(/gpu|webgpu|f32/i.test(ranGpu), "compute=gpu runs on the GPU backend", `${ranGpu}, ${bench.spectral_gpu_run_ms} ms`);
    const gpuRows = await page.$$eval("table.runs tbody tr", (r) => r.map((x) => Number(x.dataset.records)));
    check(gpuRows.length === 3 && gpuRows.every((n) => n === 101), "GPU run: three runs of 101 records", gpuRows.join(","));
    // an ensemble: 3 init draws of vanilla, drawn as a median with a band
    await page.selectOption("#compute", "auto");
    check(!q(page).has("compute"), "compute=auto is the default (not in the URL)", page.url());
    await page.goto(`${BASE}?view=lab&preset=alignment&alpha2=0.001&seeds=5&steps=200&d=40&k=40`);
    await page.waitForSelector("#lab");
    await page.click("#run");
    await page.waitForSelector("#lab[data-state=done]", { timeout: 60000 });
    const ensRows = await page.$$eval("table.runs tbody tr", (r) => r.length);
    const ensLegend = await page.$eval(".legend-row", (e) => e.textContent);
    const ensPts = Number(await attr(page, "#chart-risk", "data-points"));
    check(q(page).get("seeds") === "5" && ensRows === 5 && /median of 5 draws, 10–90 % band/.test(ensLegend) && ensPts > 0,
      "seeds=5 runs an ensemble, drawn as its median with a 10–90 % band", `${ensRows} rows | ${ensLegend.slice(0, 80)} | ${ensPts} points`);
    await page.screenshot({ path: path.join(SHOTS, "lab-ensemble.png"), fullPage: true });
    await page.goto(`${BASE}?view=lab&preset=spectral`);
    await page.waitForSelector("#lab");

    // lab URL round trip
    const labUrl = page.url();
    await page.goto(labUrl);
    await page.waitForSelector("#lab");
    check((await page.inputValue("#cfg-eta")) === "0.5" && (await page.inputValue("#cfg-optimiser")) === "preconditioned",
      "lab parameters restored from the URL");
    // validation names the field
    await page.fill("#cfg-r", "0");
    await page.press("#cfg-r", "Enter");
    await page.waitForTimeout(200);
    const err = await page.locator(".runbar .field-error, .field .field-error").allTextContents();
    check(/`r`/.test(err.join(" ")) && /1\.\.=/.test(err.join(" ")), "invalid input shows a field-named error with the range", err.join(" | "));
    await page.fill("#cfg-r", "8");
    await page.press("#cfg-r", "Enter");

    // responsiveness and Stop through the 1500-step, 5-init alignment preset
    await page.click("button.preset[data-preset=alignment]");
    await page.waitForSelector("#lab[data-state=running]", { timeout: 10000 });
    let worst = 0;
    for (let i = 0; i < 8; i++) {
      const lag = await page.evaluate(() => new Promise((r) => { const t = performance.now(); setTimeout(() => r(performance.now() - t), 0); }));
      worst = Math.max(worst, lag);
      await page.waitForTimeout(150);
    }
    bench.alignment_worst_task_lag_ms = worst;
    check(worst < 250, "page stays responsive while running (setTimeout lag)", `${worst.toFixed(1)} ms`);
    await page.waitForFunction(() => Number(document.querySelector("#progress").value) > 0, null, { timeout: 60000 }).catch(() => {});
    const progBefore = Number(await page.$eval("#progress", (e) => e.value));
    const progText = await page.$eval("#progress-text", (e) => e.textContent);
    check(progBefore > 0, "progress reported while running", `${progBefore} ${progText}`);
    await page.click("#stop");
    await page.waitForSelector("#lab[data-state=stopped], #lab[data-state=done]", { timeout: 10000 }).catch(() => {});
    // Stop on a run long enough that it cannot finish first (alignment at 40 000 steps)
    await page.goto(`${BASE}?view=lab&preset=alignment&steps=40000&record_every=10`);
    await page.waitForSelector("#lab");
    await page.click("#run");
    await page.waitForFunction(() => Number(document.querySelector("#progress").value) > 0.01, null, { timeout: 60000 }).catch(() => {});
    await page.click("#stop");
    const stopped = await page.waitForSelector("#lab[data-state=stopped]", { timeout: 10000 }).then(() => true, () => false);
    const progStop = Number(await page.$eval("#progress", (e) => e.value));
    await page.waitForTimeout(600);
    const progLater = Number(await page.$eval("#progress", (e) => e.value));
    const stLater = await attr(page, "#lab", "data-state");
    check(stopped && stLater === "stopped" && progLater === progStop && progStop < 1,
      "Stop ends the run (state stopped, progress frozen before the end)", `progress ${progStop} → ${progLater}, ${stLater}`);
    await page.screenshot({ path: path.join(SHOTS, "lab-alignment-stopped.png"), fullPage: true });

    // switching views mid-run and mid-animation must leave the page working
    const errsBefore = pageErrors;
    await page.click("button.preset[data-preset=alignment]");
    await page.waitForSelector("#lab[data-state=running]", { timeout: 10000 });
    await page.click("#tab-phase");
    await page.waitForSelector("#phase-canvas[data-ready='1']");
    await page.click("#play");
    await page.waitForTimeout(300);
    await page.click("#tab-lab");
    await page.waitForTimeout(600);
    await page.click("#tab-phase");
    await page.waitForSelector("#phase-canvas[data-ready='1']");
    await page.click("#play");
    await page.waitForTimeout(500);
    const stepAfter = Number(await attr(page, "#phase-canvas", "data-step"));
    check(pageErrors === errsBefore && stepAfter > 0, "switching views mid-run and mid-animation keeps the page working",
      `page errors ${pageErrors - errsBefore}, step ${stepAfter}`);
    await page.click("#tab-lab");
    await page.waitForSelector("#lab");
    // the run started before the view switch must still be progressing: wait for its rows
    await page.waitForFunction(() => document.querySelectorAll("table.runs tbody tr").length > 0,
      null, { timeout: 60000 }).catch(() => {});
    const kept = await page.$$eval("table.runs tbody tr", (r) => r.length);
    const st2 = await attr(page, "#lab", "data-state");
    check(kept > 0 && ["running", "done"].includes(st2), "the lab run goes on (results kept) while the other view is shown", `${kept} runs, ${st2}`);
    await page.click("#stop").catch(() => {});

    // ---------- device lost mid-run: the run finishes on the CPU and the page says so ----------
    await page.goto(`${BASE}?view=lab&preset=spectral&compute=gpu&simulate=device-loss`);
    const b2 = await badge(page);
    check(b2.webgpu === "yes", "WebGPU ready before the device-loss run (compute=gpu)", b2.text);
    await page.click("#run");
    await page.waitForSelector("#lab[data-state=done]", { timeout: 120000 });
    const lostNote = await page.$eval(".runbar .note", (e) => e.textContent).catch(() => "");
    const b3 = await page.$eval("#gpu-badge", (e) => e.textContent.trim());
    const ranAfter = await page.$eval(".ran-on", (e) => e.textContent);
    const nLost = Number(await attr(page, "#chart-risk", "data-points"));
    check(/device lost/i.test(lostNote) && b3.startsWith("CPU fallback: GPU failed mid-run: device lost") && /cpu|f64/i.test(ranAfter) && nLost > 0,
      "device loss mid-run: finished on the CPU and said so", `${lostNote} | ${b3} | ${ranAfter} | points ${nLost}`);
    await page.screenshot({ path: path.join(SHOTS, "device-lost.png") });

    // ---------- embed mode ----------
    await page.setViewportSize({ width: 960, height: 700 });
    await page.goto(`${BASE}?view=phase&embed=1&large=1&autoplay=1`);
    await page.waitForSelector("#phase-canvas[data-ready='1']");
    check((await page.$("header.top")) === null, "embed: no page chrome");
    const cls = await page.$eval("body", (e) => e.className);
    check(cls.includes("embed") && cls.includes("large"), "embed: large type", cls);
    const dims = await page.evaluate(() => ({ w: document.documentElement.scrollWidth, h: document.documentElement.scrollHeight }));
    const cb = await page.locator("#phase-canvas").boundingBox();
    check(cb.y + cb.height <= 700 && cb.x + cb.width <= 960 && dims.w <= 960, "embed: plot fits 960×700", JSON.stringify({ canvas: cb, doc: dims }));
    await page.waitForTimeout(800);
    const s1 = Number(await attr(page, "#phase-canvas", "data-step"));
    check(s1 > 0, "embed: autoplay runs", `step ${s1}`);
    await page.keyboard.press(" ");
    await page.waitForTimeout(100);
    await page.evaluate(() => window.postMessage("slide:start", "*"));
    await page.waitForTimeout(150);
    const s2 = Number(await attr(page, "#phase-canvas", "data-step"));
    const playing = await attr(page, "#play", "aria-pressed");
    check(s2 < s1 + 10 && playing === "true", "embed: slide:start message restarts the animation", `step ${s1} → ${s2}, playing ${playing}`);
    await page.waitForTimeout(1500);
    await page.screenshot({ path: path.join(SHOTS, "embed.png") });

    // the browser-sized sweeps on SwiftShader (compute=gpu): the batched WGSL path, timed
    // (fig2 takes ~1.5 min there; E2E_SWIFTSHADER_ALL=1 also times the seeds preset)
    const onSwift = process.env.E2E_SWIFTSHADER_ALL ? [["fig2", 14], ["seeds", 1], ["ln-d-law", 4]] : [["fig2", 14]];
    for (const [preset, n] of onSwift) {
      await page.goto(`${BASE}?view=sweep&sweep=${preset}&compute=gpu`);
      await page.waitForSelector("#sweep");
      const t = Date.now();
      await page.click("#sweep-run");
      await page.waitForSelector("#sweep[data-state=done]", { timeout: 300000 });
      const ms = bench[`sweep_${preset}_swiftshader_ms`] = Date.now() - t;
      const on = await page.$eval("#sweep .ran-on", (e) => e.textContent);
      const cells = Number(await attr(page, "#sweep-canvas", "data-cells"));
      check(cells === n && /GPU/i.test(on) && !/CPU/.test(on), `the ${preset} sweep runs on SwiftShader (compute=gpu)`, `${cells} cells in ${ms} ms, ${on}`);
    }
    await digitsOnGpu(page);
  } finally {
    await ctx.close();
  }
}


// Hostile URLs: markup and script in every parameter, huge numbers, NaN/inf, empty lists,
// duplicate keys, a 100 kB query. The page must not panic or throw, must not inject anything,
// and must say which field it ignored.
async function hostileUrls(page) {
  const XSS = `<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>`;
  const labKeys = ["d", "k", "r", "r_star", "n", "population", "kappa", "spectrum", "delta_basis", "w0_std", "model",
    "noise", "alpha2", "eta", "steps", "optimiser", "damping", "gamma", "normalised", "gamma_stable", "gamma_ga",
    "seed", "seeds", "inits", "record_every", "step_form", "divergence_factor"];
  const phaseKeys = ["delta", "alpha", "eta", "gamma", "gamma_ga", "steps", "population", "n", "seed", "start", "speed", "show", "w0"];
  const enc = (o) => o.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join("&");
  const cases = [
    ["markup in every lab parameter", `view=lab&${enc(labKeys.map((k) => [k, XSS]))}`, ["d", "eta", "alpha2", "inits"]],
    ["markup in every phase parameter", `view=phase&${enc(phaseKeys.map((k) => [k, XSS]))}`, ["delta", "start"]],
    ["markup in the page keys", `view=${encodeURIComponent(XSS)}&compute=${encodeURIComponent(XSS)}&preset=${encodeURIComponent(XSS)}&${encodeURIComponent(XSS)}=1`, ["view", "compute", "preset"]],
    ["huge numbers", "view=lab&d=1e400&k=99999999999999999999999&steps=-1&seed=18446744073709551616&eta=1e309", ["d", "k", "steps", "seed", "eta"]],
    ["NaN and infinities", "view=lab&eta=NaN&gamma=inf&kappa=-inf&damping=nan&alpha2=NaN,1e-3", ["eta", "gamma", "kappa", "damping", "alpha2"]],
    ["empty lists", "view=lab&alpha2=&inits=&spectrum=", ["inits"]],
    ["an empty α² list", "view=lab&alpha2=", ["alpha2"]],
    ["duplicate keys", "view=lab&d=64&d=32&eta=0.5&eta=0.25", ["d", "eta"]],
    ["a 100 kB query", `view=lab&alpha2=${"1e-3,".repeat(20000)}1e-3&${"zz=1&".repeat(100)}`, ["zz"]],
  ];
  for (const [what, query, fields] of cases) {
    const before = pageErrors;
    await page.goto(`${BASE}?${query}`);
    await page.waitForSelector("#lab, #phase-canvas[data-ready='1']", { timeout: 30000 });
    await page.waitForTimeout(300);
    const r = await page.evaluate(() => ({
      pwned: window.__pwned,
      imgs: document.querySelectorAll("img[src='x']").length
        + [...document.querySelectorAll("script")].filter((e) => e.textContent.includes("__pwned")).length,
      // the URL's ignored parameters, and the lab's validation of what it kept
      alert: [...document.querySelectorAll(".error[role=alert], .field-error")].map((e) => e.textContent).join(" "),
    }));
    const named = fields.filter((f) => new RegExp(`(^|[ ;:])${f}: |\`${f}\`: `).test(r.alert));
    check(pageErrors === before && r.pwned === undefined && r.imgs === 0 && named.length === fields.length,
      `hostile URL (${what}): no error, nothing injected, the fields are named`,
      `named ${named.join(",")} of ${fields.join(",")}; ${r.alert.slice(0, 160)}…`);
  }
  // sizes past what a tab can hold: refused before allocating, naming the field and the limit
  for (const [what, query, field] of [
    ["d = k = 8192", "view=lab&d=8192&k=8192&steps=10", "d"],
    ["the issue's residual form at d = 4096", "view=lab&compute=gpu&d=4096&k=4096&steps=10&step_form=residual", "d"],
    ["N = 2^20 rows at d = 8192", "view=lab&d=8192&k=8192&n=1048576&step_form=residual", "n"],
  ]) {
    const before = pageErrors;
    await page.goto(`${BASE}?${query}`);
    await page.waitForSelector("#lab");
    await page.click("#run", { timeout: 1000 }).catch(() => {}); // disabled while invalid
    await page.waitForTimeout(500);
    const msg = (await page.locator(".field-error").allTextContents()).join(" | ");
    check(pageErrors === before && msg.includes(`\`${field}\``) && /GiB/.test(msg) && !/4294967295/.test(msg)
      && (await attr(page, "#lab", "data-state")) !== "running",
      `memory (${what}): refused with the field and the limit, no crash`, msg.slice(0, 200));
  }
}


// The talk embed, proven with the real client: a reveal.js deck (npm reveal.js) with the page
// as `<iframe data-src=…?view=phase&embed=1 data-preload>`, driven as a presenter would.
async function revealDeck() {
  const ctx = await launch(true);
  await ctx.setDefaultTimeout(20000);
  const page = ctx.pages()[0] || (await ctx.newPage());
  await page.setViewportSize({ width: 960, height: 700 });
  attachLogs(page, "reveal");
  const revealDir = path.resolve("node_modules/reveal.js/dist");
  const deckUrl = new URL("deck/index.html", BASE).href.replace("/lora-one-lab/deck/", "/deck/");
  const demo = `${BASE}?view=phase&embed=1`;
  const deck = `<!doctype html><html><head><meta charset="utf-8"><title>deck</title>
<link rel="stylesheet" href="reveal/reveal.css"><link rel="stylesheet" href="reveal/theme/white.css"></head>
<body><div class="reveal"><div class="slides">
<section><h2>LoRA-One</h2></section>
<section><iframe id="demo" data-src="${demo}" data-preload width="960" height="700" style="border:0;margin:0" title="demo"></iframe></section>
<section><h2>Thanks</h2></section>
</div></div>
<script src="reveal/reveal.js"></script>
<script>Reveal.initialize({ postMessage: true, width: 960, height: 700, margin: 0, hash: false, transition: "none", controls: true })
  .then(() => { window.deckReady = true; });</script></body></html>`;
  await ctx.route(`${new URL(deckUrl).origin}/deck/**`, (route) => {
    const u = new URL(route.request().url());
    if (u.pathname === "/deck/index.html") return route.fulfill({ body: deck, contentType: "text/html" });
    const f = path.join(revealDir, u.pathname.replace("/deck/reveal/", ""));
    if (!f.startsWith(revealDir) || !fs.existsSync(f)) return route.fulfill({ status: 404, body: "" });
    return route.fulfill({ body: fs.readFileSync(f), contentType: f.endsWith(".css") ? "text/css" : "text/javascript" });
  });
  try {
    await page.goto(deckUrl);
    await page.waitForFunction(() => window.deckReady === true);
    const frame = async () => {
      const h = await page.waitForSelector("#demo");
      const f = await h.contentFrame();
      await f.waitForSelector("#phase-canvas[data-ready='1']", { timeout: 30000 });
      return f;
    };
    const step = async (f) => Number(await f.$eval("#phase-canvas", (c) => c.dataset.step));
    const playing = async (f) => (await f.$eval("#play", (b) => b.getAttribute("aria-pressed"))) === "true";
    const go = (i) => page.evaluate((i) => Reveal.slide(i), i);
    const indexH = () => page.evaluate(() => Reveal.getIndices().h);

    // arrive on the slide: the animation restarts and keeps advancing (the freeze left it at 3–10)
    const restarts = async (f) => Number(await f.$eval("#phase-canvas", (c) => c.dataset.restarts || "0"));
    let f = await frame(); // preloaded while the first slide shows
    const r0 = await restarts(f);
    await go(1);
    const restarted = await f.waitForFunction((r) => Number(document.querySelector("#phase-canvas").dataset.restarts || "0") > r, r0, { timeout: 5000 }).then(() => true, () => false);
    const a0 = await step(f);
    await page.waitForTimeout(2000);
    const a1 = await step(f);
    check(restarted && a1 >= a0 + 30 && (await playing(f)), "reveal.js: arriving on the slide restarts the animation and it keeps advancing", `restarted ${restarted}, step ${a0} → ${a1} in 2 s`);
    // leave: slide:stop pauses
    await go(2);
    await page.waitForTimeout(300);
    const l0 = await step(f);
    await page.waitForTimeout(800);
    const l1 = await step(f);
    check(!(await playing(f)) && l1 === l0, "reveal.js: leaving the slide pauses the animation", `step ${l0} → ${l1}`);
    // come back: restarts again
    const r1 = await restarts(f);
    await go(1);
    const again = await f.waitForFunction((r) => Number(document.querySelector("#phase-canvas").dataset.restarts || "0") > r, r1, { timeout: 5000 }).then(() => true, () => false);
    const b0 = await step(f);
    await page.waitForTimeout(1500);
    const b1 = await step(f);
    check(again && b0 < l0 && b1 >= b0 + 20 && (await playing(f)), "reveal.js: coming back restarts it", `step ${l0} → ${b0} → ${b1}`);
    // arrive twice quickly (start, stop, start within a few ms)
    await page.evaluate(() => { Reveal.slide(0); Reveal.slide(1); Reveal.slide(0); Reveal.slide(1); });
    await page.waitForTimeout(300);
    const q0 = await step(f);
    await page.waitForTimeout(2000);
    const q1 = await step(f);
    check(q1 >= q0 + 30 && (await playing(f)), "reveal.js: arriving twice quickly still animates", `step ${q0} → ${q1}`);

    // layout at 960×700: no read-out number wraps, nothing under reveal's controls
    const wraps = await f.$$eval("table.readout td", (cells) => cells.filter((c) => {
      const r = document.createRange(); r.selectNodeContents(c);
      return new Set([...r.getClientRects()].map((x) => Math.round(x.top))).size > 1;
    }).map((c) => c.textContent));
    check(wraps.length === 0, "reveal.js: no read-out cell wraps at 960×700", wraps.join(" | "));
    // the box around the deck's visible navigation arrows
    const ctrl = await page.$$eval(".reveal .controls button", (bs) => {
      const rs = bs.map((b) => b.getBoundingClientRect()).filter((r) => r.width > 0 && r.height > 0);
      const x = Math.min(...rs.map((r) => r.x)), y = Math.min(...rs.map((r) => r.y));
      return { x, y, w: Math.max(...rs.map((r) => r.right)) - x, h: Math.max(...rs.map((r) => r.bottom)) - y, n: rs.length };
    });
    const frameBox = await (await page.$("#demo")).boundingBox();
    const under = await f.$$eval("#gpu-badge, button, select, input, table.readout, .legend, #phase-canvas, fieldset, .transport", (els, a) => els
      .filter((e) => e.checkVisibility({ contentVisibilityAuto: true, visibilityProperty: true }))
      .map((e) => {
      const r = e.getBoundingClientRect();
      return { id: e.id || e.className || e.tagName, x: r.x * a.s + a.fx, y: r.y * a.s + a.fy, w: r.width * a.s, h: r.height * a.s };
    }).filter((r) => r.w > 0 && r.h > 0 && r.x < a.c.x + a.c.w && r.x + r.w > a.c.x && r.y < a.c.y + a.c.h && r.y + r.h > a.c.y && !(r.id === "phase-canvas")), { c: ctrl, fx: frameBox.x, fy: frameBox.y, s: frameBox.width / 960 });
    check(ctrl.n > 0 && under.length === 0, "reveal.js: nothing of the demo sits under the deck's controls", JSON.stringify({ ctrl, under }));
    await page.screenshot({ path: path.join(SHOTS, "reveal-deck.png") });

    // the presenter clicks into the plot, then the clicker's keys still drive the deck
    for (const [key, want, from] of [["PageDown", 2, 1], ["PageUp", 0, 1], ["ArrowRight", 2, 1], ["ArrowLeft", 0, 1]]) {
      await go(from);
      await page.waitForTimeout(200);
      f = await frame();
      await f.click("#phase-canvas", { position: { x: 40, y: 40 } });
      await page.keyboard.press(key);
      await page.waitForTimeout(400);
      const at = await indexH();
      check(at === want, `reveal.js: ${key} inside the demo reaches the deck`, `slide ${from} → ${at}`);
    }
    // the demo's own keys stay with the demo
    await go(1);
    f = await frame();
    await f.click("#phase-canvas", { position: { x: 40, y: 40 } });
    await page.waitForTimeout(500);
    await page.keyboard.press("r");
    await page.waitForTimeout(300);
    const rAt = await indexH(), rStep = await step(f), rPlay = await playing(f);
    check(rAt === 1 && rStep === 0 && !rPlay, "reveal.js: the demo's own keys (r: reset) stay in the demo", `slide ${rAt}, step ${rStep}, playing ${rPlay}`);

    // the studies bundle's views embed too: no page chrome, the toy turns by dragging, and the
    // clicker's keys pressed inside reach the deck
    for (const [v, sel] of [["sweep", "#sweep-canvas"], ["toy", "#toy-canvas[data-runs]"], ["digits", "#digits[data-state=done]"]]) {
      await go(1);
      await page.$eval("#demo", (e, u) => { e.src = u; }, `${BASE}?view=${v}&embed=1&large=1`);
      await page.waitForTimeout(500);
      const g = await (await page.$("#demo")).contentFrame();
      await g.waitForSelector(sel, { timeout: 30000 });
      const chrome = await g.$$eval("header.top, .chrome", (els) => els.filter((e) => e.checkVisibility()).map((e) => e.tagName + "." + e.className));
      let turned = true;
      if (v === "toy") {
        const y0 = Number(await g.$eval("#toy-canvas", (c) => c.dataset.yaw));
        const b = await (await page.$("#demo")).boundingBox();
        const cb = await g.$eval("#toy-canvas", (c) => { const r = c.getBoundingClientRect(); return { x: r.x + r.width / 2, y: r.y + r.height / 2 }; });
        const s = b.width / 960;
        await page.mouse.move(b.x + cb.x * s, b.y + cb.y * s);
        await page.mouse.down();
        await page.mouse.move(b.x + cb.x * s + 60, b.y + cb.y * s, { steps: 4 });
        await page.mouse.up();
        await page.waitForTimeout(200);
        turned = Number(await g.$eval("#toy-canvas", (c) => c.dataset.yaw)) !== y0;
      } else {
        await g.click(v === "digits" ? "#digits-canvas" : sel, { position: { x: 40, y: 40 } });
      }
      await page.keyboard.press("PageDown");
      await page.waitForTimeout(400);
      const at = await indexH();
      check(chrome.length === 0 && turned && at === 2, `reveal.js: the ${v} view embeds (no page chrome${v === "toy" ? ", drag turns it" : ""}, PageDown reaches the deck)`,
        `chrome ${chrome.join(",")}; turned ${turned}; slide ${at}`);
    }
  } finally {
    await ctx.close();
  }
}


// Phone (390 px): no view overflows, and the lab shows Run and the charts before its form.
// Accessibility: axe-core on every view in both themes (0 serious or critical violations), every
// control reachable by Tab, charts with text alternatives that state values.
async function phoneAndA11y() {
  const ctx = await launch(false);
  const page = ctx.pages()[0] || (await ctx.newPage());
  attachLogs(page, "a11y");
  const axeSrc = fs.readFileSync(path.resolve("node_modules/axe-core/axe.min.js"), "utf8");
  try {
    await page.setViewportSize({ width: 390, height: 844 });
    for (const v of ["phase", "lab", "sweep", "toy"]) {
      await page.goto(`${BASE}?view=${v}`);
      await page.waitForSelector(READY[v]);
      await page.waitForTimeout(400);
      const o = await page.evaluate(() => ({ sw: document.documentElement.scrollWidth, cw: document.documentElement.clientWidth,
        wide: [...document.querySelectorAll("body *")].filter((e) => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1 && getComputedStyle(e).position !== "fixed").slice(0, 5).map((e) => e.tagName + "." + e.className + "#" + e.id) }));
      check(o.sw <= o.cw, `phone 390 px: the ${v} view does not overflow`, `scrollWidth ${o.sw} vs ${o.cw}; ${o.wide.join(", ")}`);
    }
    await page.goto(`${BASE}?view=lab`);
    await page.waitForSelector(READY.lab);
    const order = await page.evaluate(() => {
      const y = (s) => { const e = document.querySelector(s); return e ? e.getBoundingClientRect().top + scrollY : -1; };
      return { run: y("#run"), charts: y(".charts"), form: y(".params") };
    });
    check(order.run >= 0 && order.form >= 0 && order.run < order.form && order.charts < order.form,
      "phone 390 px: the lab shows Run and the charts before its form", JSON.stringify(order));
    await page.screenshot({ path: path.join(SHOTS, "lab-phone.png"), fullPage: true });

    await page.setViewportSize({ width: 1280, height: 900 });
    for (const scheme of ["light", "dark"]) {
      await page.emulateMedia({ colorScheme: scheme });
      for (const v of ["phase", "lab", "sweep", "toy"]) {
        await page.goto(`${BASE}?view=${v}${v === "lab" ? "&preset=spectral" : ""}`);
        await page.waitForSelector(READY[v]);
        if (v === "lab") {
          await page.click("#run");
          await page.waitForSelector("#lab[data-state=done]", { timeout: 120000 });
        }
        await page.waitForTimeout(300);
        await page.addScriptTag({ content: axeSrc });
        const res = await page.evaluate(async () => {
          const r = await axe.run(document, { resultTypes: ["violations"] });
          return r.violations.filter((x) => ["serious", "critical"].includes(x.impact))
            .map((x) => `${x.id} (${x.impact}): ${x.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(", ")}`);
        });
        check(res.length === 0, `axe-core: no serious or critical violations (${v}, ${scheme})`, res.join(" | "));
      }
    }
    await page.emulateMedia({ colorScheme: "light" });
    // keyboard alone: Tab reaches every control; the focused control shows a focus ring
    for (const v of ["phase", "lab", "sweep", "toy"]) {
      await page.goto(`${BASE}?view=${v}`);
      await page.waitForSelector(READY[v]);
      const want = await page.evaluate(() => {
        const els = [...document.querySelectorAll("button, input, select, textarea, summary, canvas[tabindex], a[href], [tabindex='0']")]
          .filter((e) => e.checkVisibility() && !e.disabled);
        els.forEach((e, i) => { e.dataset.tabk = String(i); });
        return els.length;
      });
      const seen = new Set();
      let ring = 0, stops = 0;
      for (let i = 0; i < want + 15; i++) {
        await page.keyboard.press("Tab");
        const r = await page.evaluate(() => {
          const e = document.activeElement;
          if (!e || e === document.body) return null;
          const cs = getComputedStyle(e);
          return { key: e.dataset.tabk ?? e.outerHTML.slice(0, 60), ring: cs.outlineStyle !== "none" && parseFloat(cs.outlineWidth) >= 2 };
        });
        if (r) { seen.add(r.key); stops++; if (r.ring) ring++; }
      }
      const missed = await page.evaluate((seen) => [...document.querySelectorAll("[data-tabk]")].filter((e) => !seen.includes(e.dataset.tabk))
        .map((e) => e.id || e.outerHTML.slice(0, 60)), [...seen]);
      check(missed.length === 0, `keyboard: Tab reaches every control of the ${v} view`, `${want - missed.length} of ${want}; missed ${missed.join(" | ")}`);
      check(ring >= stops * 0.95, `keyboard: focused controls of the ${v} view show a focus ring`, `${ring} of ${stops} tab stops`);
    }
    // space on the focused Play button plays (operable by keyboard)
    await page.goto(`${BASE}?view=phase`);
    await page.waitForSelector("#phase-canvas[data-ready='1']");
    await page.focus("#play");
    await page.keyboard.press("Enter");
    await page.waitForTimeout(600);
    check((await attr(page, "#play", "aria-pressed")) === "true", "keyboard: Enter on the focused Play button plays");
    // charts carry text alternatives that state values
    const alt = await page.$eval("#phase-canvas", (c) => c.getAttribute("aria-label") || c.textContent || "");
    check(/starts at \(-?[0-9]/.test(alt) && /loss -?[0-9]/.test(alt), "the phase portrait's text alternative states values", alt.slice(0, 160));
    await page.goto(`${BASE}?view=lab&preset=spectral`);
    await page.click("#run");
    await page.waitForSelector("#lab[data-state=done]", { timeout: 120000 });
    const alts = await page.$$eval(".charts canvas", (cs) => cs.map((c) => c.getAttribute("aria-label") || c.textContent || ""));
    check(alts.length === 4 && alts.every((a) => /[0-9]\.[0-9]|e-[0-9]/.test(a)), "every lab chart has a text alternative with values", alts.map((a) => a.slice(0, 60)).join(" | "));
  } finally {
    await ctx.close();
  }
}


// The Sweep view (issue 8): a small ln d law from the URL, then the browser-sized fig2 preset on
// the CPU engine, timed, with live progress; the figure and the table are drawn.
async function sweepView(page) {
  await page.goto(`${BASE}?view=sweep&sweep=ln-d-law&x=${encodeURIComponent("d=16,24,32")}&seeds=2&steps=300`);
  await page.waitForSelector("#sweep");
  check((await page.inputValue("#sw-x")) === "d=16,24,32" && (await page.inputValue("#sw-seeds")) === "2", "sweep parameters restored from the URL");
  await page.click("#sweep-run");
  await page.waitForSelector("#sweep[data-state=done]", { timeout: 60000 });
  const cells = Number(await attr(page, "#sweep-canvas", "data-cells"));
  const rows = await page.$$eval("#sweep table.runs tbody tr", (r) => r.length);
  const alt = await attr(page, "#sweep-canvas", "aria-label");
  check(cells === 3 && rows === 3 && /t\* [0-9]/.test(alt), "a small ln d sweep runs and is drawn (figure, table, text alternative)", `${cells} cells, ${rows} rows; ${alt.slice(0, 120)}`);
  // the browser-sized fig2 preset: 7 α² × 2 d × 2 draws × 800 steps
  const t0 = Date.now();
  await page.click("button.preset[data-sweep=fig2]");
  await page.waitForSelector("#sweep[data-state=running]", { timeout: 5000 }).catch(() => {});
  let seen = 0;
  while ((await attr(page, "#sweep", "data-state")) === "running" && Date.now() - t0 < 60000) {
    const p = Number(await page.$eval("#sweep-progress", (e) => e.value));
    if (p > 0 && p < 1) seen++;
    await page.waitForTimeout(200);
  }
  bench.sweep_fig2_browser_ms = Date.now() - t0;
  const c2 = Number(await attr(page, "#sweep-canvas", "data-cells"));
  check((await attr(page, "#sweep", "data-state")) === "done" && c2 === 14 && bench.sweep_fig2_browser_ms <= 20000 && seen > 0,
    "the browser's fig2 sweep finishes in ≤ 20 s on the CPU engine with live progress", `${c2} cells in ${bench.sweep_fig2_browser_ms} ms, progress seen ${seen} times`);
  check(q(page).get("view") === "sweep" && q(page).get("sweep") === "fig2", "the sweep is in the URL", page.url());
  await page.screenshot({ path: path.join(SHOTS, "sweep-fig2.png"), fullPage: true });
  // the 2-D sweep as a heatmap: hover reads a cell out, another quantity redraws it
  const heatCells = Number(await attr(page, "#sweep-heat", "data-cells"));
  await page.$eval("#sweep-heat", (e) => e.scrollIntoView({ block: "center" }));
  const hb = await (await page.$("#sweep-heat")).boundingBox();
  await page.mouse.move(hb.x + hb.width * 0.45, hb.y + hb.height * 0.5);
  await page.waitForTimeout(200);
  const readout = await page.$eval("#sweep-hover", (e) => e.textContent);
  await page.selectOption("#sweep-quantity", "t_star");
  await page.waitForTimeout(300);
  check(heatCells === 14 && /alpha2 = .*d = .*min over t of sin θ_A [0-9]/.test(readout), "the 2-D sweep is a heatmap with a hover read-out",
    `${heatCells} cells; ${readout}`);
  const ssvg = await download(page, "#sweep-svg");
  check(ssvg.name.endsWith(".svg") && ssvg.text.startsWith("<svg") && ssvg.text.includes("min over t of sin θ_A"), "the sweep figure exports as SVG", `${ssvg.name}, ${ssvg.text.length} B`);
  // a cell opens in the lab: the 9th cell is α² = 1e-5 at d = 64
  await page.click("#sweep table.runs tbody tr:nth-child(9) button.open-lab");
  await page.waitForSelector("#lab");
  check(q(page).get("view") === "lab" && (await page.inputValue("#cfg-d")) === "64" && (await page.inputValue("#cfg-alpha2")) === "0.00001"
    && (await page.inputValue("#cfg-seeds")) === "2" && (await page.inputValue("#cfg-steps")) === "800",
    "a sweep cell opens in the dynamics lab with its configuration", page.url().slice(0, 200));
  // the seeds preset: one setting, many draws, drawn as the spread of the curves
  await page.goto(`${BASE}?view=sweep&sweep=seeds`);
  await page.waitForSelector("#sweep");
  const ts = Date.now();
  await page.click("button.preset[data-sweep=seeds]");
  await page.waitForSelector("#sweep[data-state=done]", { timeout: 60000 });
  bench.sweep_seeds_browser_ms = Date.now() - ts;
  const fig = await attr(page, "#sweep-canvas", "data-figure");
  const draws = await page.$eval("#sweep table.runs tbody tr td:nth-child(7)", (e) => Number(e.textContent));
  check(fig === "spread" && draws === 24 && bench.sweep_seeds_browser_ms <= 20000, "the seeds preset draws the spread of 24 draws' curves in ≤ 20 s",
    `${fig}, ${draws} draws, ${bench.sweep_seeds_browser_ms} ms`);
  await page.screenshot({ path: path.join(SHOTS, "sweep-seeds.png"), fullPage: true });
  // the ln d law at browser size (every step recorded), timed
  await page.goto(`${BASE}?view=sweep&sweep=ln-d-law`);
  await page.waitForSelector("#sweep");
  const tl = Date.now();
  await page.click("button.preset[data-sweep=ln-d-law]");
  await page.waitForSelector("#sweep[data-state=done]", { timeout: 120000 });
  bench.sweep_ln_d_law_browser_ms = Date.now() - tl;
  const lc = Number(await attr(page, "#sweep-canvas", "data-cells"));
  check(lc === 4 && bench.sweep_ln_d_law_browser_ms <= 20000, "the ln-d-law preset (browser size) finishes in ≤ 20 s on the CPU engine", `${lc} cells in ${bench.sweep_ln_d_law_browser_ms} ms`);
}

// The Fig. 3 toy (issue 8): drawn from the URL, the spectral start faster at the median, drag
// and arrow keys rotate it, the camera is in the URL and survives a reload, SVG export, and the
// tab from the other bundle's page reaches it.
async function toyView(page) {
  await page.goto(`${BASE}?view=toy&seeds=6&yaw=30&pitch=20`);
  await page.waitForSelector("#toy-canvas[data-runs='12']", { timeout: 30000 });
  const lora = await page.textContent("#toy-lora"), spec = await page.textContent("#toy-spectral");
  const med = (s) => Number((s.match(/median ([0-9]+) steps/) || [])[1]);
  check(med(spec) < med(lora), "Fig. 3 toy: the spectral start reaches the minimisers sooner (median over the draws)", `${spec} | ${lora}`);
  const pixels = () => page.$eval("#toy-canvas", (c) => c.toDataURL());
  const before = await pixels();
  await page.$eval("#toy-canvas", (e) => e.scrollIntoView({ block: "center" }));
  const box = await (await page.$("#toy-canvas")).boundingBox();
  const [cx, cy] = [box.x + box.width / 2, box.y + box.height / 2];
  await page.mouse.move(cx, cy);
  await page.mouse.down();
  for (let i = 1; i <= 6; i++) await page.mouse.move(cx + 20 * i, cy + 5 * i);
  await page.mouse.up();
  await page.waitForTimeout(300);
  const cam = async () => [Number(await attr(page, "#toy-canvas", "data-yaw")), Number(await attr(page, "#toy-canvas", "data-pitch"))];
  const [yaw, pitch] = await cam();
  const after = await pixels();
  check(Math.abs(yaw - 90) < 0.6 && Math.abs(pitch - 35) < 0.6 && after !== before && q(page).get("yaw") === "90" && q(page).get("pitch") === "35",
    "Fig. 3 toy: dragging rotates the 3-D view, and the camera is in the URL", `yaw ${yaw}, pitch ${pitch}; ${page.url().split("?")[1]}`);
  await page.focus("#toy-canvas");
  await page.keyboard.press("ArrowLeft");
  await page.keyboard.press("ArrowUp");
  await page.waitForTimeout(200);
  const [ky, kp] = await cam();
  check(Math.abs(ky - 85) < 0.6 && Math.abs(kp - 30) < 0.6, "Fig. 3 toy: the arrow keys rotate it", `yaw ${ky}, pitch ${kp}`);
  await page.goto(page.url());
  await page.waitForSelector("#toy-canvas[data-runs='12']");
  const [ry, rp] = await cam();
  check(Math.abs(ry - 85) < 0.6 && Math.abs(rp - 30) < 0.6, "Fig. 3 toy: a reload shows the same view", `yaw ${ry}, pitch ${rp}`);
  await page.screenshot({ path: path.join(SHOTS, "toy.png"), fullPage: true });
  const svg = await download(page, "#toy-svg");
  check(svg.name.endsWith(".svg") && svg.text.startsWith("<svg") && svg.text.includes("minimisers ab = β") && svg.text.includes("spectral init"),
    "Fig. 3 toy: SVG export", `${svg.name}, ${svg.text.length} B`);
  await page.fill("#toy-seeds", "0");
  await page.press("#toy-seeds", "Enter");
  await page.waitForTimeout(200);
  const err = await page.$eval(".toy .field-error", (e) => e.textContent).catch(() => "");
  check(/seeds/.test(err) && /1\.\.=256/.test(err), "Fig. 3 toy: bad input names the field and its range", err);
  // from the app bundle's page, the tab loads the studies bundle with the view
  await page.goto(`${BASE}?view=phase`);
  await page.waitForSelector("#phase-canvas[data-ready='1']");
  await page.click("#tab-toy");
  await page.waitForSelector("#toy-canvas[data-runs]", { timeout: 30000 });
  check(q(page).get("view") === "toy", "the Fig. 3 tab opens the toy from the phase portrait's page", page.url());
}

// The Digits view (issue 9): the data is fetched only when the view opens; the default preset
// (every method, 3 seeds) runs on the CPU engine with progress and draws the table and the
// Fig. 1(c) landscape in ≤ 10 s; the page stays responsive meanwhile.
async function digitsView(page) {
  const fetched = [];
  const onReq = (r) => { if (r.url().endsWith("/digits.bin")) fetched.push(r.url()); };
  page.on("request", onReq);
  await page.goto(`${BASE}?view=sweep`);
  await page.waitForSelector("#sweep");
  await page.waitForTimeout(300);
  const before = fetched.length;
  const t0 = Date.now();
  await page.goto(`${BASE}?view=digits`);
  let worst = 0, samples = 0, progressSeen = 0;
  while (["loading", "idle", "running"].includes(await attr(page, "#digits", "data-state").catch(() => "loading")) && Date.now() - t0 < 120000) {
    const lag = await page.evaluate(() => new Promise((r) => { const t = performance.now(); setTimeout(() => r(performance.now() - t), 0); }));
    if ((await attr(page, "#digits", "data-state").catch(() => "")) === "running") {
      worst = Math.max(worst, lag);
      samples++;
      const p = Number(await page.$eval("#digits-progress", (e) => e.value));
      if (p > 0 && p < 1) progressSeen++;
    }
    await page.waitForTimeout(100);
  }
  page.off("request", onReq);
  bench.digits_browser_ms = Number(await attr(page, "#digits", "data-run-ms"));
  bench.digits_worst_lag_ms = worst;
  const state = await attr(page, "#digits", "data-state");
  const rows = await page.$$eval("#digits-table tbody tr", (r) => r.map((x) => [x.cells[0].textContent, parseFloat(x.cells[1].textContent)]));
  const land = Number(await attr(page, "#digits-canvas", "data-landscape"));
  check(before === 0 && fetched.length === 1, "the digits data is fetched only when the Digits view opens", `${before} before, ${fetched.length} after`);
  check(state === "done" && rows.length === 9 && land === 625 && bench.digits_browser_ms <= 10000 && progressSeen > 0,
    "Digits: the default preset runs in the browser in ≤ 10 s with progress, and draws the table and the landscape",
    `${state}, ${rows.length} rows, landscape ${land} cells, ${bench.digits_browser_ms} ms, progress seen ${progressSeen}×, worst setTimeout lag ${worst.toFixed(1)} ms over ${samples}`);
  check(samples > 3 && worst <= 100, "Digits: the page stays responsive while it runs (worst setTimeout(0) lag ≤ 100 ms; chunks of 10 steps)", `${worst.toFixed(1)} ms over ${samples} samples`);
  const acc = (label) => (rows.find(([l]) => l.startsWith(label)) || [0, NaN])[1];
  check(acc("spectral init alone") > acc("pre-trained") && acc("LoRA_r LoRA-One") > acc("spectral init alone"),
    "Digits: the spectral init alone beats the pre-trained model, and LoRA-One's training beats its start", rows.map((r) => `${r[0]} ${r[1]}`).join(" | "));
  const pre = await page.textContent("#digits-pre");
  check(/held-out accuracy there/.test(pre), "Digits: the pre-training result is stated", pre);
  const svg = await download(page, "#digits-svg");
  check(svg.text.startsWith("<svg") && svg.text.includes("Fig. 1(c)"), "Digits: SVG export", `${svg.name}, ${svg.text.length} B`);
  await page.screenshot({ path: path.join(SHOTS, "digits.png"), fullPage: true });
  // the landscape's paths animate: Play walks the step from W_pre to the end
  await page.click("#digits-play");
  await page.waitForTimeout(1500);
  const mid = await attr(page, "#digits-canvas", "data-step");
  await page.waitForFunction(() => document.querySelector("#digits-canvas").dataset.step === "end", null, { timeout: 10000 }).catch(() => {});
  const end = await attr(page, "#digits-canvas", "data-step");
  check(/^[0-9]+$/.test(mid) && Number(mid) > 0 && Number(mid) < 100 && end === "end", "Digits: Play animates the paths on the landscape", `mid-way step ${mid}, then ${end}`);
  // no WebGPU here: the CPU engine, saying why; compute=gpu falls back and says so
  const onCpu = await page.$eval("#digits-ran-on", (e) => [e.textContent, e.title]);
  check(/on CPU/.test(onCpu[0]) && onCpu[1].length > 0, "Digits: the default runs on the CPU engine and says why", onCpu.join(" | "));
  await page.goto(`${BASE}?view=digits&compute=gpu&seeds=1&pre_steps=30&steps=10`);
  await page.waitForSelector("#digits[data-state=done]", { timeout: 60000 });
  const fb = [await page.textContent("#digits-ran-on"), await page.$eval(".digits .field-error", (e) => e.textContent).catch(() => "")];
  check(/on CPU/.test(fb[0]) && /compute=gpu, but/.test(fb[1]), "Digits: compute=gpu without WebGPU runs on the CPU and says why", fb.join(" | "));
  await page.goto(`${BASE}?view=digits`);
  await page.waitForSelector("#digits[data-state=done]", { timeout: 60000 });
  await page.click("#digits-settings summary");
  await page.fill("#dg-rank", "99");
  await page.press("#dg-rank", "Enter");
  await page.waitForTimeout(200);
  const err = await page.$eval(".digits .field-error", (e) => e.textContent).catch(() => "");
  check(/rank/.test(err) && /1\.\.=32/.test(err), "Digits: bad input names the field and its range", err);
}

// The digits model on WebGPU (SwiftShader here): compute=gpu gives the CPU engine's table.
async function digitsOnGpu(page) {
  const small = "seeds=1&pre_steps=30&steps=10&record_every=5";
  const tableOf = async (compute) => {
    const t = Date.now();
    await page.goto(`${BASE}?view=digits&compute=${compute}&${small}`);
    await page.waitForSelector("#digits[data-state=done]", { timeout: 240000 });
    const rows = await page.$$eval("#digits-table tbody tr", (r) => r.map((x) => [x.cells[0].textContent, parseFloat(x.cells[1].textContent)]));
    const on = await page.textContent("#digits-ran-on");
    const land = Number(await attr(page, "#digits-canvas", "data-landscape"));
    return { rows, on, land, ms: Date.now() - t };
  };
  const c = await tableOf("cpu");
  const g = await tableOf("gpu");
  bench.digits_small_gpu_ms = g.ms;
  bench.digits_small_cpu_ms = c.ms;
  const same = c.rows.length === 9 && g.rows.length === 9 && c.rows.every(([l, a], i) => g.rows[i][0] === l && Math.abs(g.rows[i][1] - a) <= 1.0);
  check(/GPU/.test(g.on) && /CPU/.test(c.on) && same && g.land === 625,
    "Digits: compute=gpu runs the model's passes and the SVD of G on WebGPU, with the CPU engine's table (±1 point)",
    `${g.on} in ${g.ms} ms vs ${c.on} in ${c.ms} ms: ${g.rows.map((r, i) => `${r[0]} ${r[1]}/${c.rows[i] && c.rows[i][1]}`).join(" | ")}`);
  // the GPU lost mid-run: the run restarts on the CPU engine, finishes, and the page says so
  await page.goto(`${BASE}?view=digits&compute=gpu&simulate=device-loss&${small}`);
  await page.waitForSelector("#digits[data-state=done]", { timeout: 240000 });
  const lost = await page.$eval(".digits .field-error", (e) => e.textContent).catch(() => "");
  const lostOn = await page.textContent("#digits-ran-on");
  const lostRows = await page.$$eval("#digits-table tbody tr", (r) => r.map((x) => parseFloat(x.cells[1].textContent)));
  const sameAfter = lostRows.length === 9 && lostRows.every((a, i) => Math.abs(a - c.rows[i][1]) <= 1e-9);
  check(/GPU failed mid-run: .*device lost/.test(lost) && /CPU/.test(lostOn) && sameAfter,
    "Digits: the GPU lost mid-run restarts the run on the CPU engine, which finishes it, and the page says so", `${lost} | ${lostOn} | ${lostRows.join(" ")}`);
}

async function withoutWebGpu() {
  const ctx = await launch(false, 2);
  const page = ctx.pages()[0] || (await ctx.newPage());
  attachLogs(page, "no-webgpu");
  try {
    await page.goto(`${BASE}?view=lab&preset=spectral`);
    const b = await badge(page);
    console.log(`  badge: ${b.text}`);
    check(b.webgpu === "no" && b.text.startsWith("CPU fallback:"), "without the WebGPU flag the badge shows the CPU fallback", b.text);
    await page.click("#run");
    await page.waitForSelector("#lab[data-state=done]", { timeout: 120000 });
    const n = Number(await attr(page, "#chart-risk", "data-points"));
    check(n > 0, "CPU fallback run plots data", `data-points=${n}`);
    await page.screenshot({ path: path.join(SHOTS, "cpu-fallback.png") });
    // the whole 1500-step, 5-init alignment preset on the CPU: responsive throughout
    await page.goto(`${BASE}?view=lab&preset=alignment`);
    await badge(page);
    const tAl = Date.now();
    await page.click("#run");
    let worstAl = 0;
    let samples = 0;
    while ((await attr(page, "#lab", "data-state")) === "running" && Date.now() - tAl < 180000) {
      const lag = await page.evaluate(() => new Promise((r) => { const t = performance.now(); setTimeout(() => r(performance.now() - t), 0); }));
      worstAl = Math.max(worstAl, lag);
      samples++;
      await page.waitForTimeout(100);
    }
    bench.alignment_cpu_wall_ms = Date.now() - tAl;
    bench.alignment_cpu_worst_lag_ms = worstAl;
    bench.alignment_cpu_engine_ms = Number(await attr(page, "#lab", "data-engine-ms"));
    const alRows = await page.$$eval("table.runs tbody tr", (r) => r.map((x) => Number(x.dataset.records)));
    check((await attr(page, "#lab", "data-state")) === "done" && alRows.length === 5 && alRows.every((n) => n === 1501),
      "alignment preset (5 inits × 1500 steps) completes on the CPU", `${alRows.join(",")} in ${bench.alignment_cpu_wall_ms} ms`);
    const nLin = Number(await attr(page, "#chart-sin", "data-linear"));
    check(nLin >= 5 * 1501 * 0.9, "the lab draws vanilla's linearised sin θ_A prediction (alignment preset)", `${nLin} points`);
    const ranWorker = await page.$eval(".ran-on", (e) => e.textContent);
    check(/Web Worker/.test(ranWorker), "the CPU engine runs in a Web Worker", ranWorker);
    check(worstAl <= 16 && samples > 3, "page responsive through the whole alignment run (worst setTimeout(0) lag ≤ 16 ms)", `worst setTimeout lag ${worstAl.toFixed(1)} ms over ${samples} samples`);
    await page.screenshot({ path: path.join(SHOTS, "lab-alignment-cpu.png") });

    // high-DPI: the backing store follows devicePixelRatio
    const px = await page.$eval("#chart-risk", (c) => ({ w: c.width, css: c.getBoundingClientRect().width, dpr: devicePixelRatio }));
    check(px.dpr === 2 && Math.abs(px.w - 2 * px.css) <= 2, "canvases are devicePixelRatio-crisp", JSON.stringify(px));
    // dark theme follows the system setting
    await page.emulateMedia({ colorScheme: "dark" });
    await page.waitForTimeout(400);
    const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    check(bg !== "rgb(255, 255, 255)", "dark theme follows prefers-color-scheme", bg);
    await page.screenshot({ path: path.join(SHOTS, "lab-dark.png") });
    await page.click("#tab-phase");
    await page.waitForSelector("#phase-canvas[data-ready='1']");
    await page.waitForTimeout(300);
    await page.screenshot({ path: path.join(SHOTS, "phase-dark.png") });
    await sweepView(page);
    await toyView(page);
    await digitsView(page);
    await hostileUrls(page);
  } finally {
    await ctx.close();
  }
}

// E2E_ONLY=name runs one part (for development); CI runs them all.
const parts = [["with WebGPU", withWebGpu], ["without WebGPU", withoutWebGpu], ["reveal.js deck", revealDeck], ["phone and accessibility", phoneAndA11y]]
  .filter(([name]) => !process.env.E2E_ONLY || name.startsWith(process.env.E2E_ONLY));
for (const [name, f] of parts) {
  console.log(`\n-- ${name}`);
  try {
    await f();
  } catch (e) {
    console.error(`  FAIL ${name}: ${e.stack || e}`);
    failures.push(`${name}: ${e.message || e}`);
  }
}
fs.writeFileSync(path.join(SHOTS, "bench.json"), JSON.stringify(bench, null, 2));
console.log(`\nbenchmarks: ${JSON.stringify(bench)}`);
console.log(`screenshots: ${SHOTS}`);
if (failures.length) {
  console.log(`\n${failures.length} of ${checks} checks FAILED:\n - ${failures.join("\n - ")}`);
  process.exit(1);
}
console.log(`\nall ${checks} end-to-end checks passed`);
