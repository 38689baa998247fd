//! The compute backend behind the app, and the WebGPU probe for the status badge.
//!
//! `AppBackend` is a plain enum (the engine's `Backend` trait has async methods, so no trait
//! objects): adding the GPU backend is one variant and one line in `make_backend`.

use crate::engine::{Advance, Backend, BackendInfo, EngineError, LoadTiming, StepSettings};
use crate::gpu::GpuBackend;
use crate::init::InitFactors;
use crate::linalg::TopSvd;
use crate::{CpuBackend, Problem};
use js_sys::{Function, Promise, Reflect};
use leptos::prelude::window;
use std::cell::RefCell;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

#[allow(clippy::large_enum_variant)]
pub enum AppBackend {
    Cpu(CpuBackend),
    Gpu(Box<GpuBackend>),
}

impl AppBackend {
    pub fn is_gpu(&self) -> bool {
        matches!(self, AppBackend::Gpu(_))
    }
}

thread_local! {
    /// Test hook: lose the GPU device once, mid-run (`?simulate=device-loss`).
    static SIMULATE_LOSS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

pub fn set_simulated_loss(on: bool) {
    SIMULATE_LOSS.with(|c| c.set(on));
}

/// True once after `set_simulated_loss(true)`.
pub fn take_simulated_loss() -> bool {
    SIMULATE_LOSS.with(|c| c.replace(false))
}

thread_local! {
    /// The GPU backend, created once (pipeline creation is the slow part) and lent to each run.
    static GPU: RefCell<Option<Box<GpuBackend>>> = const { RefCell::new(None) };
}

/// Return a backend after a run so the next run reuses the device (a CPU backend is dropped).
pub fn give_back(be: AppBackend) {
    if let AppBackend::Gpu(g) = be {
        GPU.with(|c| *c.borrow_mut() = Some(g));
    }
}

impl Backend for AppBackend {
    fn info(&self) -> BackendInfo {
        match self {
            AppBackend::Cpu(b) => b.info(),
            AppBackend::Gpu(b) => b.info(),
        }
    }
    async fn load(&mut self, problem: &Problem) -> Result<LoadTiming, EngineError> {
        match self {
            AppBackend::Cpu(b) => b.load(problem).await,
            AppBackend::Gpu(b) => b.load(problem).await,
        }
    }
    async fn top_svd(&mut self, m: usize) -> Result<TopSvd, EngineError> {
        match self {
            AppBackend::Cpu(b) => b.top_svd(m).await,
            AppBackend::Gpu(b) => b.top_svd(m).await,
        }
    }
    async fn start(
        &mut self,
        init: &InitFactors,
        settings: &StepSettings,
    ) -> Result<Advance, EngineError> {
        match self {
            AppBackend::Cpu(b) => b.start(init, settings).await,
            AppBackend::Gpu(b) => b.start(init, settings).await,
        }
    }
    async fn advance(&mut self, steps: usize) -> Result<Advance, EngineError> {
        match self {
            AppBackend::Cpu(b) => b.advance(steps).await,
            AppBackend::Gpu(b) => b.advance(steps).await,
        }
    }
}

/// What the browser offers.
#[derive(Clone, Debug, PartialEq)]
pub enum GpuStatus {
    Probing,
    /// navigator.gpu gave an adapter.
    WebGpu {
        adapter: String,
        fallback: bool,
    },
    /// No WebGPU: the reason.
    Unavailable(String),
}

/// Which backend the app computes on, and the badge text.
#[derive(Clone, Debug, PartialEq)]
pub struct BackendChoice {
    pub gpu: GpuStatus,
    /// True when runs go to the GPU backend.
    pub use_gpu: bool,
    /// Why the CPU is used (None when on the GPU).
    pub cpu_reason: Option<String>,
}

impl BackendChoice {
    pub fn probing() -> Self {
        BackendChoice {
            gpu: GpuStatus::Probing,
            use_gpu: false,
            cpu_reason: None,
        }
    }
    pub fn badge(&self) -> String {
        match (&self.gpu, self.use_gpu) {
            (GpuStatus::Probing, _) => "Checking for WebGPU…".into(),
            (GpuStatus::WebGpu { adapter, .. }, true) => format!("WebGPU: {adapter}"),
            (_, false) => format!(
                "CPU fallback: {}",
                self.cpu_reason.clone().unwrap_or_else(|| "no GPU".into())
            ),
            (GpuStatus::Unavailable(r), true) => format!("CPU fallback: {r}"),
        }
    }
    /// "yes" when a WebGPU adapter was found (whatever runs the maths).
    pub fn webgpu_attr(&self) -> &'static str {
        match self.gpu {
            GpuStatus::Probing => "probing",
            GpuStatus::WebGpu { .. } => "yes",
            GpuStatus::Unavailable(_) => "no",
        }
    }
}

fn get(o: &JsValue, k: &str) -> JsValue {
    Reflect::get(o, &JsValue::from_str(k)).unwrap_or(JsValue::UNDEFINED)
}

/// Ask navigator.gpu for an adapter and describe it (vendor, architecture, description).
pub async fn probe_webgpu() -> GpuStatus {
    let nav: JsValue = window().navigator().into();
    let gpu = get(&nav, "gpu");
    if gpu.is_undefined() || gpu.is_null() {
        return GpuStatus::Unavailable("no navigator.gpu in this browser".into());
    }
    let Ok(f) = get(&gpu, "requestAdapter").dyn_into::<Function>() else {
        return GpuStatus::Unavailable("navigator.gpu.requestAdapter missing".into());
    };
    let Ok(p) = f.call0(&gpu).and_then(|p| p.dyn_into::<Promise>()) else {
        return GpuStatus::Unavailable("requestAdapter failed".into());
    };
    let adapter = match JsFuture::from(p).await {
        Ok(a) if !a.is_null() && !a.is_undefined() => a,
        Ok(_) => return GpuStatus::Unavailable("no WebGPU adapter".into()),
        Err(e) => {
            return GpuStatus::Unavailable(format!(
                "requestAdapter rejected: {}",
                e.as_string().unwrap_or_default()
            ))
        }
    };
    let info = get(&adapter, "info");
    let mut parts = Vec::new();
    for k in ["vendor", "architecture", "device", "description"] {
        if let Some(s) = get(&info, k).as_string() {
            if !s.is_empty() && !parts.contains(&s) {
                parts.push(s);
            }
        }
    }
    let fallback = get(&adapter, "isFallbackAdapter")
        .as_bool()
        .unwrap_or(false)
        || get(&info, "isFallbackAdapter").as_bool().unwrap_or(false);
    let mut adapter = if parts.is_empty() {
        "unnamed adapter".to_string()
    } else {
        parts.join(" ")
    };
    if fallback {
        adapter.push_str(" (software)");
    }
    GpuStatus::WebGpu { adapter, fallback }
}

/// Probe and decide which backend runs the experiments.
pub async fn choose() -> BackendChoice {
    let gpu = probe_webgpu().await;
    let (use_gpu, cpu_reason) = match &gpu {
        GpuStatus::WebGpu { .. } => gpu_backend_ready().await,
        GpuStatus::Unavailable(r) => (false, Some(r.clone())),
        GpuStatus::Probing => (false, Some("probing".into())),
    };
    BackendChoice {
        gpu,
        use_gpu,
        cpu_reason,
    }
}

/// Whether the GPU backend can be created here (it is then kept for the runs).
async fn gpu_backend_ready() -> (bool, Option<String>) {
    match GpuBackend::new().await {
        Ok(g) => {
            GPU.with(|c| *c.borrow_mut() = Some(Box::new(g)));
            (true, None)
        }
        Err(e) => (false, Some(format!("the GPU backend did not start: {e}"))),
    }
}

/// A backend for one experiment: the GPU when chosen and available, else the CPU.
/// Returns the backend and, when it had to fall back, why.
pub async fn make_backend(choice: &BackendChoice) -> (AppBackend, Option<String>) {
    if !choice.use_gpu {
        return (cpu_backend(), None);
    }
    if let Some(g) = GPU.with(|c| c.borrow_mut().take()) {
        return (AppBackend::Gpu(g), None);
    }
    match GpuBackend::new().await {
        Ok(g) => (AppBackend::Gpu(Box::new(g)), None),
        Err(e) => (
            cpu_backend(),
            Some(format!("GPU backend unavailable ({e}): running on the CPU")),
        ),
    }
}

pub fn cpu_backend() -> AppBackend {
    AppBackend::Cpu(CpuBackend::new())
}
