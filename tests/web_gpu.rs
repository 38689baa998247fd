//! In-browser tests (wasm-bindgen-test in headless Chromium with WebGPU; run by
//! `cargo xtask test`): the page sees a WebGPU adapter, the GPU backend starts on it, and its
//! runs agree with the CPU reference to f32 tolerance. Native builds compile this file to nothing.
#![cfg(all(target_arch = "wasm32", feature = "web"))]

use lora_one_lab::config::{InitKind, Preset};
use lora_one_lab::gpu::GpuBackend;
use lora_one_lab::web::backend::{probe_webgpu, GpuStatus};
use lora_one_lab::{CpuBackend, Experiment};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
async fn webgpu_adapter_is_present() {
    match probe_webgpu().await {
        GpuStatus::WebGpu { adapter, .. } => {
            assert!(!adapter.is_empty());
            web_sys::console::log_1(&format!("WebGPU adapter: {adapter}").into());
        }
        other => panic!("no WebGPU adapter in this browser: {other:?}"),
    }
}

#[wasm_bindgen_test]
async fn gpu_backend_matches_cpu_in_the_browser() {
    let mut cfg = Preset::Spectral.config();
    cfg.d = 48;
    cfg.k = 40;
    cfg.r = 4;
    cfg.r_star = 2;
    cfg.steps = 30;
    cfg.inits = InitKind::ALL.to_vec();
    let mut gpu = GpuBackend::new()
        .await
        .expect("GPU backend starts on WebGPU");
    let mut cpu = CpuBackend::new();
    let mut eg = Experiment::new(&cfg).unwrap();
    let mut ec = Experiment::new(&cfg).unwrap();
    eg.run_to_end(&mut gpu, 7, |_| {}).await.expect("GPU run");
    ec.run_to_end(&mut cpu, 7, |_| {}).await.expect("CPU run");
    let (rg, rc) = (eg.report(), ec.report());
    assert_eq!(rg.backend.kind, "gpu");
    // G's singular values (formed and decomposed on the GPU in f32)
    assert_eq!(rg.problem.g_s.len(), rc.problem.g_s.len());
    assert!(!rc.problem.g_s.is_empty());
    for (a, b) in rg.problem.g_s.iter().zip(&rc.problem.g_s) {
        assert!(
            (a - b).abs() <= 1e-4 * rc.problem.g_s[0],
            "σ(G): gpu {a} cpu {b}"
        );
    }
    assert_eq!(rg.runs.len(), rc.runs.len());
    assert_eq!(rc.runs.len(), 3);
    for (g, c) in rg.runs.iter().zip(&rc.runs) {
        assert_eq!(g.records.len(), c.records.len(), "{}", c.label);
        let l0 = c.records[0].loss.abs().max(1e-3);
        let r0 = c.records[0].risk.max(1e-12);
        for (x, y) in c.records.iter().zip(&g.records) {
            assert!(
                (x.loss - y.loss).abs() <= 1e-3 * l0.max(x.loss.abs()),
                "{} step {}: loss cpu {} gpu {}",
                c.label,
                x.step,
                x.loss,
                y.loss
            );
            // in log space where f32 resolves the risk; below that, the GPU's must be as small
            assert!(
                y.risk.is_finite() && y.risk > 0.0,
                "{}: GPU risk {}",
                c.label,
                y.risk
            );
            let ok = if x.risk > 1e-9 * r0 {
                (x.risk.ln() - y.risk.ln()).abs() <= 0.05
            } else {
                y.risk < 1e-7 * r0
            };
            assert!(
                ok,
                "{} step {}: risk cpu {} gpu {}",
                c.label, x.step, x.risk, y.risk
            );
        }
        if let (Some(a), Some(b)) = (c.last().unwrap().sin_a, g.last().unwrap().sin_a) {
            assert!((a - b).abs() < 1e-2, "{}: sin θ_A cpu {a} gpu {b}", c.label);
        }
    }
}

#[wasm_bindgen_test]
async fn gpu_forms_sigma_and_g_like_cpu_in_the_browser() {
    use lora_one_lab::engine::Backend;
    let mut cfg = Preset::Spectral.config();
    cfg.d = 64;
    cfg.k = 48;
    let p = lora_one_lab::Problem::generate(&cfg).unwrap();
    let mut gpu = GpuBackend::new()
        .await
        .expect("GPU backend starts on WebGPU");
    let mut cpu = CpuBackend::new();
    gpu.load(&p).await.expect("GPU load");
    cpu.load(&p).await.expect("CPU load");
    let rel = |a: &nalgebra::DMatrix<f64>, b: &nalgebra::DMatrix<f64>| (a - b).norm() / b.norm();
    let g = gpu.read_g().await.expect("read G");
    let e = rel(&g, cpu.g().unwrap());
    assert!(e < 1e-5, "G: relative error {e}");
    if let (Some(sg), Some(sc)) = (gpu.read_sigma().await.expect("read Σ̂"), cpu.sigma()) {
        let e = rel(&sg, sc);
        assert!(e < 1e-5, "Σ̂: relative error {e}");
    }
}
