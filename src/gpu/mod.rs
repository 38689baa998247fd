//! GPU backend (issue 3): WGSL compute shaders (`shaders/*.wgsl`) through wgpu, in f32, on any
//! WebGPU adapter natively (Vulkan, Metal, DX12, GL) and in the browser.
//!
//! - Σ̂ = XᵀX/N and G = Xᵀ(Y − XW0)/N are formed on the GPU by a register-tiled matmul.
//! - The top-m singular triplets of G come from randomised subspace iteration with Cholesky-QR2
//!   re-orthonormalisation on the GPU (the CPU twin is `linalg::subspace_top_svd`, same seeded
//!   sketch); the final (m+p)×k SVD finishes on the host.
//! - A chunk of optimiser steps is encoded into one command encoder and one submission; only the
//!   per-step (loss, flags) history and the recorded snapshots (risk, ‖AB − Δ‖_F, A, B) are read
//!   back. Divergence is flagged on the device (updates stop) and reported at its step.
//!
//! Semantics follow `cpu.rs` exactly (offset handling of LoRA-GA, divergence rules, snapshots).
//! See `GpuBackend::top_svd` for the stated behaviour on rank-deficient G.
//!
//! Limits: LoRA rank r ≤ 32 and at most 32 singular triplets (the r×r work runs in one
//! workgroup's memory); buffers up to the adapter's storage-binding size (larger problems are
//! refused with `EngineError::Unsupported`); otherwise WebGPU's default limits. Loss values come
//! from the trace identity of SPEC §1 in f32 (they can dip ~1e-7 below 0 at convergence); risk and
//! ‖AB − Δ‖_F are direct reductions, accurate down to the f32 floor of the problem (risk ~1e-10 on
//! the presets). Per-step times inside one submission are not measured: a snapshot's `t_ms`
//! spreads the submission's wall time evenly over its steps.

mod batched;
mod context;
pub mod kernels;
mod mlp;
mod ops;
mod single;
mod svd;
mod upload;

pub use context::GpuOptions;
pub use svd::QR_TOL;

use crate::engine::{
    Advance, Backend, BackendInfo, Divergence, EngineError, LoadTiming, MetricBasis, RunSpec,
};
use crate::linalg::TopSvd;
use crate::problem::Problem;
use context::Context;
use kernels::{Builder, Kernels};
use nalgebra::DMatrix;

/// Row-major f32 copy of a matrix.
pub fn to_f32(m: &DMatrix<f64>) -> Vec<f32> {
    let (r, c) = m.shape();
    let mut v = Vec::with_capacity(r * c);
    for i in 0..r {
        for j in 0..c {
            v.push(m[(i, j)] as f32);
        }
    }
    v
}

/// Matrix from row-major f32 data.
pub fn from_f32(v: &[f32], rows: usize, cols: usize) -> DMatrix<f64> {
    DMatrix::from_fn(rows, cols, |i, j| v[i * cols + j] as f64)
}

/// The WebGPU backend.
pub struct GpuBackend {
    ctx: Context,
    kern: Kernels,
    /// Subspace iteration: oversampling p and power iterations q.
    pub svd_oversample: usize,
    pub svd_iters: usize,
    loaded: Option<upload::Loaded>,
    /// The batch in progress: one persistent dispatch for small problems, or runs advanced one
    /// after the other on the large path.
    batch: Option<BatchState>,
    /// The last batched batch's record and snapshot buffers, until the next batch starts: it
    /// takes those of the same size instead of allocating (a 1024-run ensemble's snapshots are
    /// 128 MiB, 5 ms to allocate on the H200) and lets the others go first.
    spare: Vec<wgpu::Buffer>,
    /// How many of them the last batch took (tests).
    reused: usize,
    svd_plan: Option<svd::SvdPlan>,
    /// Batched kernels compiled with their pack in workgroup memory, by its size in floats.
    batched_variants: Vec<(usize, wgpu::ComputePipeline)>,
    /// Why the batch in progress is on the single-run path (None: batched, or no batch).
    single_path_reason: Option<String>,
    /// The digits model's plans, by data set (`mlp.rs`).
    mlp_plans: Vec<mlp::MlpPlan>,
}

enum BatchState {
    Batched(Box<batched::Batch>),
    Single(Vec<single::Run>),
}

impl GpuBackend {
    /// Create the backend on the default (high-performance) adapter. A missing adapter or
    /// device is an `EngineError::Device`.
    pub async fn new() -> Result<Self, EngineError> {
        Self::with_options(GpuOptions::default()).await
    }

    pub async fn with_options(options: GpuOptions) -> Result<Self, EngineError> {
        let ctx = Context::new(options).await?;
        let kern = Kernels::new(&ctx).await?;
        Ok(GpuBackend {
            ctx,
            kern,
            svd_oversample: 8,
            svd_iters: 4,
            loaded: None,
            batch: None,
            spare: Vec::new(),
            reused: 0,
            svd_plan: None,
            batched_variants: Vec::new(),
            single_path_reason: None,
            mlp_plans: Vec::new(),
        })
    }

    /// Adapter name, API and type.
    pub fn adapter(&self) -> String {
        let i = &self.ctx.info;
        format!("{} ({:?}, {:?})", i.name, i.backend, i.device_type)
    }

    fn b(&self) -> Builder<'_> {
        Builder {
            ctx: &self.ctx,
            k: &self.kern,
        }
    }

    fn submit(&self, enc: wgpu::CommandEncoder) {
        self.ctx.queue.submit([enc.finish()]);
    }

    fn encoder(&self) -> wgpu::CommandEncoder {
        self.ctx.device.create_command_encoder(&Default::default())
    }

    pub(crate) async fn read_buffer(
        &self,
        buf: &wgpu::Buffer,
        floats: usize,
    ) -> Result<Vec<f32>, EngineError> {
        let rb = self.ctx.readback_buffer((floats * 4) as u64)?;
        let mut enc = self.encoder();
        enc.copy_buffer_to_buffer(buf, 0, &rb, 0, (floats * 4) as u64);
        self.submit(enc);
        self.ctx.read(&rb, floats).await
    }

    /// True on a software adapter (wgpu's `DeviceType::Cpu`: lavapipe, llvmpipe, SwiftShader).
    pub fn is_software(&self) -> bool {
        self.ctx.is_software()
    }

    /// Why the batch in progress runs on the single-run path (None when it is batched).
    pub fn single_path_reason(&self) -> Option<&str> {
        self.single_path_reason.as_deref()
    }

    /// Drop the batch in progress; with `keep`, its record and snapshot buffers stay for the next
    /// batch to reuse (a problem of other sizes could not use them: its load lets them go).
    fn end_batch(&mut self, keep: bool) {
        if let Some(BatchState::Batched(b)) = self.batch.take() {
            if keep {
                self.spare = b.into_spare();
            }
        }
        if !keep {
            self.spare.clear();
        }
    }

    /// Whether the problem loaded has these sizes.
    fn loaded_dims_are(&self, d: usize, k: usize) -> bool {
        self.loaded.as_ref().is_some_and(|l| (l.d, l.k) == (d, k))
    }

    /// How many buffers of the previous batch the batch in progress reuses (the batched path's
    /// records and snapshots, where their sizes match).
    pub fn reused_buffers(&self) -> usize {
        self.reused
    }

    /// Whether the batch in progress runs on the batched small-problem path.
    pub fn batched_path(&self) -> Option<bool> {
        match &self.batch {
            Some(BatchState::Batched(_)) => Some(true),
            Some(BatchState::Single(_)) => Some(false),
            None => None,
        }
    }
}

fn nonfinite_reason(step: usize) -> Divergence {
    Divergence {
        step,
        reason: format!("non-finite values at step {step} (η too large?)"),
    }
}

fn loss_reason(loss: f64, factor: f64, step: usize) -> Divergence {
    Divergence {
        step,
        reason: format!(
            "loss {loss:.3e} exceeded {factor:.1e} × max(initial loss, 1) at step {step} (η too large?)"
        ),
    }
}

fn singular_reason(step: usize) -> Divergence {
    Divergence {
        step,
        reason: format!(
            "preconditioner BBᵀ+λI or AᵀA+λI is singular at step {step} (raise the damping λ)"
        ),
    }
}

impl Backend for GpuBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            kind: "gpu".into(),
            name: format!("WebGPU: {}", self.adapter()),
            precision: "f32".into(),
        }
    }

    async fn load(&mut self, p: &Problem) -> Result<LoadTiming, EngineError> {
        self.load_problem(p).await
    }

    async fn top_svd(&mut self, m: usize) -> Result<TopSvd, EngineError> {
        self.svd_top(m).await
    }

    async fn start_batch(
        &mut self,
        runs: &[RunSpec],
        basis: &MetricBasis,
    ) -> Result<Vec<Advance>, EngineError> {
        self.end_batch(true);
        self.reused = 0;
        self.single_path_reason = self.batched_refusal(runs, basis);
        if self.single_path_reason.is_some() {
            self.spare.clear();
            let mut all = Vec::with_capacity(runs.len());
            let mut advs = Vec::with_capacity(runs.len());
            for spec in runs {
                let (run, adv) = self.start_single(&spec.init, &spec.settings).await?;
                all.push(run);
                advs.push(adv);
            }
            self.batch = Some(BatchState::Single(all));
            Ok(advs)
        } else {
            let started = self.start_batched(runs, basis).await;
            self.spare.clear();
            let (batch, advs) = started?;
            self.batch = Some(BatchState::Batched(Box::new(batch)));
            Ok(advs)
        }
    }

    async fn advance_batch_into(
        &mut self,
        steps: usize,
        sink: &mut dyn FnMut(Vec<Advance>),
    ) -> Result<(), EngineError> {
        match self.batch.take() {
            Some(BatchState::Batched(mut b)) => {
                let out = self.advance_batched_into(&mut b, steps, sink).await;
                // keep the batch after a failed advance (the caller may fall back or retry)
                self.batch = Some(BatchState::Batched(b));
                out
            }
            other => {
                // the single-run path: one part, at the end
                self.batch = other;
                sink(self.advance_batch(steps).await?);
                Ok(())
            }
        }
    }

    async fn advance_batch(&mut self, steps: usize) -> Result<Vec<Advance>, EngineError> {
        let mut state = self
            .batch
            .take()
            .ok_or_else(|| EngineError::Unsupported("advance before start".into()))?;
        let out = match &mut state {
            BatchState::Batched(b) => self.advance_batched(b, steps).await,
            BatchState::Single(runs) => {
                let mut advs = Vec::with_capacity(runs.len());
                let mut err = None;
                for run in runs.iter_mut() {
                    match self.advance_single(run, steps).await {
                        Ok(a) => advs.push(a),
                        Err(e) => {
                            err = Some(e);
                            break;
                        }
                    }
                }
                match err {
                    Some(e) => Err(e),
                    None => Ok(advs),
                }
            }
        };
        // keep the batch after a failed advance (the caller may fall back or retry)
        self.batch = Some(state);
        out
    }
}
