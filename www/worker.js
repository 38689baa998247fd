// The CPU engine's dedicated worker: the page's own wasm module, started in worker mode
// (src/worker.rs). It runs an experiment in chunks and posts what is new after each one.
import init, { worker_start } from "./app.js";
await init({ module_or_path: new URL("./app_bg.wasm", import.meta.url) });
worker_start();
