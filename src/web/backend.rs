//! The compute backend behind the app, and the WebGPU probe for the status badge.
//!
//! `AppBackend` is a plain enum (the engine's `Backend` trait has async methods, so no trait
//! objects): adding the GPU backend is one variant and one line in `make_backend`.

use crate::engine::{Advance, Backend, BackendInfo, EngineError, LoadTiming, MetricBasis, RunSpec};
use crate::gpu::GpuBackend;
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
    async fn start_batch(
        &mut self,
        runs: &[RunSpec],
        basis: &MetricBasis,
    ) -> Result<Vec<Advance>, EngineError> {
        match self {
            AppBackend::Cpu(b) => b.start_batch(runs, basis).await,
            AppBackend::Gpu(b) => b.start_batch(runs, basis).await,
        }
    }
    async fn advance_batch(&mut self, steps: usize) -> Result<Vec<Advance>, EngineError> {
        match self {
            AppBackend::Cpu(b) => b.advance_batch(steps).await,
            AppBackend::Gpu(b) => b.advance_batch(steps).await,
        }
    }
    async fn advance_batch_into(
        &mut self,
        steps: usize,
        sink: &mut dyn FnMut(Vec<Advance>),
    ) -> Result<(), EngineError> {
        match self {
            AppBackend::Cpu(b) => b.advance_batch_into(steps, sink).await,
            AppBackend::Gpu(b) => b.advance_batch_into(steps, sink).await,
        }
    }
}

impl crate::digits::FtCompute for AppBackend {
    async fn eval(
        &mut self,
        net: &crate::digits::Net,
        x: &nalgebra::DMatrix<f64>,
        y: &[usize],
        grad: bool,
    ) -> Result<crate::digits::Eval, EngineError> {
        match self {
            AppBackend::Cpu(_) => {
                crate::digits::FtCompute::eval(&mut crate::digits::CpuFt, net, x, y, grad).await
            }
            AppBackend::Gpu(b) => crate::digits::FtCompute::eval(b.as_mut(), net, x, y, grad).await,
        }
    }
    async fn top_svd(
        &mut self,
        g: &nalgebra::DMatrix<f64>,
        m: usize,
    ) -> Result<TopSvd, EngineError> {
        match self {
            AppBackend::Cpu(_) => {
                crate::digits::FtCompute::top_svd(&mut crate::digits::CpuFt, g, m).await
            }
            AppBackend::Gpu(b) => crate::digits::FtCompute::top_svd(b.as_mut(), g, m).await,
        }
    }
    fn name(&self) -> String {
        match self {
            AppBackend::Cpu(_) => crate::digits::FtCompute::name(&crate::digits::CpuFt),
            AppBackend::Gpu(b) => crate::digits::FtCompute::name(b.as_ref()),
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

pub use crate::urlstate::Compute;

/// Which backend the app computes on by default, and the badge text.
#[derive(Clone, Debug, PartialEq)]
pub struct BackendChoice {
    pub gpu: GpuStatus,
    /// True when runs go to the GPU backend by default (a hardware adapter whose backend
    /// started).
    pub use_gpu: bool,
    /// True when the GPU backend started (also on a software adapter): `compute=gpu` can use it.
    pub gpu_ready: bool,
    /// Why the CPU is used (None when on the GPU).
    pub cpu_reason: Option<String>,
}

impl BackendChoice {
    pub fn probing() -> Self {
        BackendChoice {
            gpu: GpuStatus::Probing,
            use_gpu: false,
            gpu_ready: false,
            cpu_reason: None,
        }
    }

    /// Whether the WebGPU probe is still under way.
    pub fn is_probing(&self) -> bool {
        matches!(self.gpu, GpuStatus::Probing)
    }

    /// The backend one lab run uses: (GPU?, why the CPU when not).
    pub fn for_run(&self, compute: Compute, cfg: &crate::Config) -> (bool, Option<String>) {
        self.pick(compute, || crate::engine::gpu_is_faster(cfg))
    }

    /// The backend a digits run uses (the model's own crossover): (GPU?, why the CPU when not).
    pub fn for_digits(
        &self,
        compute: Compute,
        cfg: &crate::digits::FtConfig,
    ) -> (bool, Option<String>) {
        let (gpu, why) = self.pick(compute, || crate::digits::gpu_is_faster(cfg));
        match crate::digits::gpu_fits(cfg) {
            Err(e) if gpu => (false, Some(format!("compute=gpu, but {e}"))),
            _ => (gpu, why),
        }
    }

    /// `compute=` first, then (auto) a hardware adapter and the size's crossover.
    fn pick(
        &self,
        compute: Compute,
        faster: impl FnOnce() -> Result<(), String>,
    ) -> (bool, Option<String>) {
        match compute {
            Compute::Cpu => (false, Some("compute=cpu".into())),
            Compute::Gpu if self.gpu_ready => (true, None),
            Compute::Gpu => (
                false,
                Some(format!(
                    "compute=gpu, but {}",
                    self.cpu_reason.clone().unwrap_or_else(|| "no GPU".into())
                )),
            ),
            Compute::Auto if !self.use_gpu => (false, self.cpu_reason.clone()),
            Compute::Auto => match faster() {
                Ok(()) => (true, None),
                Err(why) => (false, Some(why)),
            },
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

/// Probe and decide which backend runs the experiments by default: a hardware GPU adapter; a
/// software one (SwiftShader, WebGPU's fallback adapter, or any adapter wgpu reports as
/// `DeviceType::Cpu`) is slower than the CPU engine, so the CPU is the default there and the
/// badge says why (`compute=gpu` still uses it).
pub async fn choose() -> BackendChoice {
    let mut gpu = probe_webgpu().await;
    let (gpu_ready, software, cpu_reason) = match &gpu {
        GpuStatus::WebGpu { fallback, .. } => match GpuBackend::new().await {
            Ok(g) => {
                let soft = *fallback || g.is_software();
                GPU.with(|c| *c.borrow_mut() = Some(Box::new(g)));
                (
                    true,
                    soft,
                    soft.then(|| {
                        "software WebGPU adapter: the CPU engine is faster (compute=gpu uses it anyway)"
                            .to_string()
                    }),
                )
            }
            Err(e) => (
                false,
                false,
                Some(format!("the GPU backend did not start: {e}")),
            ),
        },
        GpuStatus::Unavailable(r) => (false, false, Some(r.clone())),
        GpuStatus::Probing => (false, false, Some("probing".into())),
    };
    if let (GpuStatus::WebGpu { adapter, fallback }, true) = (&mut gpu, software) {
        if !*fallback {
            *fallback = true;
            adapter.push_str(" (software)");
        }
    }
    BackendChoice {
        gpu,
        use_gpu: gpu_ready && !software,
        gpu_ready,
        cpu_reason,
    }
}

/// A backend for one experiment: the GPU when chosen and available, else the CPU.
/// Returns the backend and, when it had to fall back, why.
pub async fn make_backend(use_gpu: bool) -> (AppBackend, Option<String>) {
    if !use_gpu {
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

/// How long a run waits for the page's WebGPU probe. The probe starts the GPU backend, which
/// compiles the engine's kernels: well under a second on a hardware adapter, but 13.5–16 s on
/// SwiftShader on a 2-core machine, and ~21 s with one kernel form tried (measured by
/// `tests/e2e/probe_time.mjs`).
pub const PROBE_WAIT_MS: f64 = 90_000.0;

/// The backend choice once the page's WebGPU probe has finished (a run started in the first
/// moments after load, e.g. with `compute=gpu` in the URL, waits for it rather than falling back
/// to the CPU). Gives up waiting after [`PROBE_WAIT_MS`] and then runs on the CPU, saying why.
pub async fn settled(choice: leptos::prelude::RwSignal<BackendChoice>) -> BackendChoice {
    use leptos::prelude::GetUntracked;
    let t0 = crate::web::util::now_ms();
    loop {
        let c = choice.get_untracked();
        if !c.is_probing() {
            return c;
        }
        if crate::web::util::now_ms() - t0 > PROBE_WAIT_MS {
            return BackendChoice {
                cpu_reason: Some(format!(
                    "the WebGPU probe had not finished after {} s",
                    PROBE_WAIT_MS / 1000.0
                )),
                ..c
            };
        }
        crate::web::util::sleep_ms(20).await;
    }
}
