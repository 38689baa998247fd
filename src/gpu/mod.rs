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

mod context;
pub mod kernels;
mod ops;

pub use context::GpuOptions;

use crate::config::{Model, Optimiser, StepForm};
use crate::engine::{
    Advance, Backend, BackendInfo, Divergence, EngineError, LoadTiming, Snapshot, StepSettings,
};
use crate::init::InitFactors;
use crate::linalg::TopSvd;
use crate::problem::Problem;
use crate::rng::{stream, Rng};
use context::Context;
use kernels::{encode_all, ew_parts, t_big_scratch, Builder, Dispatch, Kernels, View, MAX_SMALL};
use nalgebra::DMatrix;
use web_time::Instant;

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

/// The problem as it lives on the GPU.
struct Loaded {
    form: StepForm,
    relu: bool,
    d: usize,
    k: usize,
    n: usize,
    /// Σ̂ (identity in population mode); factored form only.
    sigma: Option<wgpu::Buffer>,
    g: wgpu::Buffer,
    delta: wgpu::Buffer,
    c0: f64,
    /// X, Y, Z0 = X W0: residual form only.
    x: Option<wgpu::Buffer>,
    y: Option<wgpu::Buffer>,
    z0: Option<wgpu::Buffer>,
}

struct Run {
    settings: StepSettings,
    d: usize,
    k: usize,
    r: usize,
    step: usize,
    limit: f64,
    c_eff: f64,
    factored: bool,
    pending_singular: bool,
    abuf: wgpu::Buffer,
    bmat: wgpu::Buffer,
    state: wgpu::Buffer,
    hist: wgpu::Buffer,
    rec: wgpu::Buffer,
    hist_cap: usize,
    rec_cap: usize,
    st_words: [u32; 16],
    st_params: wgpu::Buffer,
    eval: Vec<Dispatch>,
    update: Vec<Dispatch>,
    risk: Vec<Dispatch>,
    /// Buffers the dispatches reference (kept alive).
    _keep: Vec<wgpu::Buffer>,
}

/// The WebGPU backend.
pub struct GpuBackend {
    ctx: Context,
    kern: Kernels,
    /// Subspace iteration: oversampling p and power iterations q.
    pub svd_oversample: usize,
    pub svd_iters: usize,
    loaded: Option<Loaded>,
    run: Option<Run>,
    svd_plan: Option<SvdPlan>,
}

/// Most steps encoded in one submission, and most bytes of snapshots read back per submission.
const MAX_STEPS_PER_SUBMIT: usize = 2048;
const MAX_READBACK_BYTES: usize = 48 << 20;
/// Pivot tolerance of the Cholesky-QR (relative to the column's squared norm).
pub const QR_TOL: f32 = 1e-6;

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
            run: None,
            svd_plan: None,
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

    /// G as formed on the GPU (after `load`).
    pub async fn read_g(&self) -> Result<DMatrix<f64>, EngineError> {
        let l = self
            .loaded
            .as_ref()
            .ok_or_else(|| EngineError::Unsupported("read_g before load".into()))?;
        let v = self.read_buffer(&l.g, l.d * l.k).await?;
        Ok(from_f32(&v, l.d, l.k))
    }

    /// Σ̂ as formed on the GPU (factored form only).
    pub async fn read_sigma(&self) -> Result<Option<DMatrix<f64>>, EngineError> {
        let l = self
            .loaded
            .as_ref()
            .ok_or_else(|| EngineError::Unsupported("read_sigma before load".into()))?;
        match &l.sigma {
            Some(s) => {
                let v = self.read_buffer(s, l.d * l.d).await?;
                Ok(Some(from_f32(&v, l.d, l.d)))
            }
            None => Ok(None),
        }
    }

    /// The loss constant ‖Y − XW0‖²/(2N) as computed on the GPU.
    pub fn c0(&self) -> Option<f64> {
        self.loaded.as_ref().map(|l| l.c0)
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

    /// Load a linear problem in factored form directly from f32 parts (benchmarks: skips the
    /// O(N d k) formation). `sigma` None means Σ̂ = I.
    pub async fn load_factored(
        &mut self,
        d: usize,
        k: usize,
        sigma: Option<&[f32]>,
        g: &[f32],
        delta: &[f32],
        c0: f64,
    ) -> Result<(), EngineError> {
        let ctx = &self.ctx;
        let sig = match sigma {
            Some(s) => ctx.storage_init("sigma", s)?,
            None => ctx.storage_init("sigma", &identity_f32(d))?,
        };
        let gb = ctx.storage_init("G", g)?;
        let db = ctx.storage_init("delta", delta)?;
        self.ctx.check()?;
        self.svd_plan = None;
        self.loaded = Some(Loaded {
            form: StepForm::Factored,
            relu: false,
            d,
            k,
            n: 0,
            sigma: Some(sig),
            g: gb,
            delta: db,
            c0,
            x: None,
            y: None,
            z0: None,
        });
        self.run = None;
        Ok(())
    }

    fn build_run(&self, init: &InitFactors, settings: &StepSettings) -> Result<Run, EngineError> {
        let l = self
            .loaded
            .as_ref()
            .ok_or_else(|| EngineError::Unsupported("start before load".into()))?;
        let (d, k) = (l.d, l.k);
        let r = init.a0.ncols();
        if r > MAX_SMALL {
            return Err(EngineError::Unsupported(format!(
                "the GPU backend takes LoRA rank r ≤ {MAX_SMALL} (its r×r kernels run in one workgroup), got {r}"
            )));
        }
        let ctx = &self.ctx;
        let b = self.b();
        let factored = l.form == StepForm::Factored;
        let mut keep: Vec<wgpu::Buffer> = Vec::new();

        let a0 = to_f32(&init.a0);
        let b0 = to_f32(&init.b0);
        let abuf = ctx.storage_init("A", &a0)?;
        let bmat = ctx.storage_init("B", &b0)?;
        let mut tw = vec![0f32; d * 3 * r];
        for i in 0..d {
            for c in 0..r {
                tw[i * 3 * r + r + c] = a0[i * r + c];
            }
        }
        let tws = ctx.storage_init("T", &tw)?;
        let rk = ctx.storage("rk", r * k)?;
        let small = ctx.storage("small", 9 * r * r)?;
        let state = ctx.storage_init("state", &[0.0; 4])?;
        let (a0b, b0b) = if init.offset {
            (ctx.storage_init("A0", &a0)?, ctx.storage_init("B0", &b0)?)
        } else {
            (abuf.clone(), bmat.clone())
        };
        let hist_cap = MAX_STEPS_PER_SUBMIT + 1;
        let hist = ctx.storage("hist", 2 * hist_cap)?;
        let rec_cap = MAX_STEPS_PER_SUBMIT + 1;
        let rec = ctx.storage("rec", 2 * rec_cap)?;

        let mut eval: Vec<Dispatch> = Vec::new();
        let part_small = ctx.storage("part_small", t_big_scratch(k, r, r))?;
        let part_gram = ctx.storage("part_gram", t_big_scratch(d, 3 * r, r))?;
        let nparts;
        let loss_scale;
        if factored {
            let sigma = l.sigma.as_ref().expect("factored form has Σ̂");
            let mut scratch = t_big_scratch(d, k, r)
                .max(t_big_scratch(d, 3 * r, r))
                .max(t_big_scratch(k, r, r));
            if init.offset {
                scratch = scratch.max(d * r);
            }
            let part = ctx.storage("part", scratch)?;
            let geff = if init.offset {
                // G_eff = G + Σ̂ A0 B0
                let geff = ctx.storage("G_eff", d * k)?;
                let sa0 = ctx.storage("SA0", d * r)?;
                let mut enc = self.encoder();
                enc.copy_buffer_to_buffer(&l.g, 0, &geff, 0, (d * k * 4) as u64);
                let [d1, d2] = b.tall_skinny(
                    d,
                    d,
                    r,
                    (sigma, View::rm(d)),
                    (&a0b, View::rm(r)),
                    (&sa0, View::rm(r)),
                    1.0,
                )?;
                let ds = [
                    d1,
                    d2,
                    b.rank_update(
                        d,
                        k,
                        r,
                        (&sa0, View::rm(r)),
                        (&b0b, View::rm(k)),
                        &geff,
                        1.0,
                        1.0,
                    ),
                ];
                encode_all(&mut enc, &ds.iter().collect::<Vec<_>>());
                self.submit(enc);
                keep.push(sa0);
                geff
            } else {
                l.g.clone()
            };
            // the four products that need only A, B and the data, then one dispatch for all
            // four segment sums
            let (ts1, j1) = b.tall_skinny_job(
                d,
                d,
                r,
                (sigma, View::rm(d)),
                (&abuf, View::rm(r)),
                (&tws, View::rm(3 * r)),
                1.0,
            )?;
            let (ts2, j2) = b.tall_skinny_job(
                d,
                k,
                r,
                (&geff, View::rm(k)),
                (&bmat, View::rm_t(k)),
                (&tws, View::rm(3 * r).at(2 * r)),
                1.0,
            )?;
            let (tb1, j3) = b.t_big_job(
                d,
                k,
                r,
                (&abuf, View::rm(r)),
                (&geff, View::rm(k)),
                &part,
                (&rk, View::rm(k)),
                1.0,
                0.0,
            );
            let (tb2, j4) = b.t_big_job(
                k,
                r,
                r,
                (&bmat, View::rm_t(k)),
                (&bmat, View::rm_t(k)),
                &part_small,
                (&small, View::rm(r).at(3 * r * r)),
                1.0,
                0.0,
            );
            let red = b.reduce_multi(&[&j1, &j2, &j3, &j4]);
            eval.extend([ts1, ts2, tb1, tb2, red]);
            nparts = 0;
            loss_scale = 0.0;
            keep.push(geff);
            keep.push(part);
        } else {
            let n = l.n;
            let x = l.x.as_ref().expect("residual form keeps X");
            let y = l.y.as_ref().expect("residual form keeps Y");
            let z0 = l.z0.as_ref().expect("residual form keeps Z0");
            let scratch = t_big_scratch(n, d, r)
                .max(t_big_scratch(n, k, r))
                .max(t_big_scratch(d, 3 * r, r))
                .max(t_big_scratch(k, r, r));
            let part = ctx.storage("part", scratch)?;
            let xa = ctx.storage("XA", n * r)?;
            let rbuf = ctx.storage("R", n * k)?;
            let rbt = ctx.storage("RBt", n * r)?;
            nparts = ew_parts(n * k);
            let lossparts = ctx.storage("lossparts", nparts)?;
            let z0eff = if init.offset {
                // X W_frozen = X W0 − (X A0) B0
                let z = ctx.storage("Z0_eff", n * k)?;
                let mut enc = self.encoder();
                enc.copy_buffer_to_buffer(z0, 0, &z, 0, (n * k * 4) as u64);
                let [d1, d2] = b.tall_skinny(
                    n,
                    d,
                    r,
                    (x, View::rm(d)),
                    (&a0b, View::rm(r)),
                    (&xa, View::rm(r)),
                    1.0,
                )?;
                let ds = [
                    d1,
                    d2,
                    b.rank_update(
                        n,
                        k,
                        r,
                        (&xa, View::rm(r)),
                        (&b0b, View::rm(k)),
                        &z,
                        -1.0,
                        1.0,
                    ),
                ];
                encode_all(&mut enc, &ds.iter().collect::<Vec<_>>());
                self.submit(enc);
                z
            } else {
                z0.clone()
            };
            let inv_n = 1.0 / n as f32;
            eval.extend(b.tall_skinny(
                n,
                d,
                r,
                (x, View::rm(d)),
                (&abuf, View::rm(r)),
                (&xa, View::rm(r)),
                1.0,
            )?);
            eval.push(b.residual(n, k, r, l.relu, &xa, &bmat, &rbuf, &lossparts, &z0eff, y));
            eval.extend(b.tall_skinny(
                n,
                k,
                r,
                (&rbuf, View::rm(k)),
                (&bmat, View::rm_t(k)),
                (&rbt, View::rm(r)),
                1.0,
            )?);
            eval.extend(b.t_big(
                n,
                d,
                r,
                (&rbt, View::rm(r)),
                (x, View::rm(d)),
                &part,
                (
                    &tws,
                    View {
                        off: (2 * r) as u32,
                        s0: 1,
                        s1: (3 * r) as u32,
                    },
                ),
                -inv_n,
                0.0,
            ));
            eval.extend(b.t_big(
                n,
                k,
                r,
                (&xa, View::rm(r)),
                (&rbuf, View::rm(k)),
                &part,
                (&rk, View::rm(k)),
                -inv_n,
                0.0,
            ));
            loss_scale = 0.5 * inv_n;
            keep.extend([part, xa, rbuf, rbt, z0eff]);
            keep.push(lossparts);
        }
        // Aᵀ[SA | A | GBᵀ]: partials only; small_step sums its segments
        let (gram_d, gram_job) = b.t_big_job(
            d,
            3 * r,
            r,
            (&abuf, View::rm(r)),
            (&tws, View::rm(3 * r)),
            &part_gram,
            (&small, View::rm(3 * r)),
            1.0,
            0.0,
        );
        eval.push(gram_d);
        if !factored {
            eval.extend(b.t_big(
                k,
                r,
                r,
                (&bmat, View::rm_t(k)),
                (&bmat, View::rm_t(k)),
                &part_small,
                (&small, View::rm(r).at(3 * r * r)),
                1.0,
                0.0,
            ));
        }
        let lossparts = if factored {
            ctx.storage("lossparts", 1)?
        } else {
            keep.last().expect("lossparts").clone()
        };
        let precond = settings.optimiser == Optimiser::Preconditioned;
        let st_words: [u32; 16] = [
            d as u32,
            k as u32,
            r as u32,
            (!factored) as u32,
            precond as u32,
            nparts as u32,
            gram_job.nseg as u32,
            0,
            (settings.eta as f32).to_bits(),
            (settings.damping as f32).to_bits(),
            0f32.to_bits(),
            f32::MAX.to_bits(),
            loss_scale.to_bits(),
            0,
            0,
            0,
        ];
        let (small_d, uab, st_params) = b.step_kernels(
            &st_words, d, k, r, &small, &state, &tws, &bmat, &rk, &abuf, &hist, &lossparts,
            &part_gram,
        );
        eval.push(small_d);
        let riskparts = ctx.storage("riskparts", 2 * kernels::risk_split(d * k).1)?;
        let risk = b.risk(
            d,
            k,
            r,
            init.offset,
            &abuf,
            &bmat,
            &a0b,
            &b0b,
            &l.delta,
            &riskparts,
            &rec,
            &state,
        );
        keep.extend([
            tws, rk, small, a0b, b0b, riskparts, part_small, part_gram, lossparts,
        ]);
        Ok(Run {
            settings: *settings,
            d,
            k,
            r,
            step: 0,
            limit: f64::INFINITY,
            c_eff: 0.0,
            factored,
            pending_singular: false,
            abuf,
            bmat,
            state,
            hist,
            rec,
            hist_cap,
            rec_cap,
            st_words,
            st_params,
            eval,
            update: vec![uab],
            risk: risk.into_iter().collect(),
            _keep: keep,
        })
    }

    /// Encode `n` steps (n = 0: only the evaluation of the current state, for `start`) in one
    /// submission, recording at the steps for which `rec_at(i)` holds (i = 1..=n; i = 0 for the
    /// start). Returns (hist, rec, A snaps, B snaps) as read back.
    async fn run_chunk(
        &self,
        run: &Run,
        start: bool,
        n: usize,
        recs: &[bool],
    ) -> Result<ChunkOut, EngineError> {
        let (d, k, r) = (run.d, run.k, run.r);
        let evals = if start { 1 } else { n };
        let nrec = recs.iter().filter(|&&x| x).count();
        let a_bytes = (d * r * 4) as u64;
        let b_bytes = (r * k * 4) as u64;
        let off_rec = (2 * evals * 4) as u64;
        let off_a = off_rec + (2 * nrec * 4) as u64;
        let off_b = off_a + nrec as u64 * a_bytes;
        let total = off_b + nrec as u64 * b_bytes;
        let rb = self.ctx.readback_buffer(total)?;
        self.ctx
            .queue
            .write_buffer(&run.state, 0, bytemuck::cast_slice(&[0u32; 4]));
        let mut enc = self.encoder();
        let mut ri = 0u64;
        let mut pending: Vec<&Dispatch> = Vec::new();
        for &rec_here in recs.iter().take(evals) {
            if !start {
                pending.extend(run.update.iter());
            }
            pending.extend(run.eval.iter());
            if rec_here {
                pending.extend(run.risk.iter());
                encode_all(&mut enc, &pending);
                pending.clear();
                enc.copy_buffer_to_buffer(&run.abuf, 0, &rb, off_a + ri * a_bytes, a_bytes);
                enc.copy_buffer_to_buffer(&run.bmat, 0, &rb, off_b + ri * b_bytes, b_bytes);
                ri += 1;
            }
        }
        if !pending.is_empty() {
            encode_all(&mut enc, &pending);
        }
        enc.copy_buffer_to_buffer(&run.hist, 0, &rb, 0, off_rec);
        if nrec > 0 {
            enc.copy_buffer_to_buffer(&run.rec, 0, &rb, off_rec, (2 * nrec * 4) as u64);
        }
        self.submit(enc);
        let all = self.ctx.read(&rb, (total / 4) as usize).await?;
        let off = |x: u64| (x / 4) as usize;
        Ok(ChunkOut {
            hist: all[..off(off_rec)].to_vec(),
            rec: all[off(off_rec)..off(off_a)].to_vec(),
            a: all[off(off_a)..off(off_b)].to_vec(),
            b: all[off(off_b)..].to_vec(),
        })
    }

    /// Per-kernel GPU time of one step of the run in progress: each dispatch of the step is
    /// encoded `reps` times in one submission and timed by wall clock (µs per dispatch, in step
    /// order), then the whole step (`"step"`). For benchmarks; it moves the run's state.
    pub async fn profile_step(&self, reps: usize) -> Result<Vec<(String, f64)>, EngineError> {
        let run = self
            .run
            .as_ref()
            .ok_or_else(|| EngineError::Unsupported("profile_step before start".into()))?;
        let reps = reps.clamp(1, MAX_STEPS_PER_SUBMIT);
        let mut out = Vec::new();
        let all: Vec<&Dispatch> = run.update.iter().chain(run.eval.iter()).collect();
        for d in &all {
            let us = self
                .time_dispatches(&run.state, &vec![*d; reps], reps)
                .await?;
            out.push((d.name.to_string(), us));
        }
        let mut step = Vec::new();
        for _ in 0..reps {
            step.extend(all.iter().copied());
        }
        out.push((
            "step".into(),
            self.time_dispatches(&run.state, &step, reps).await?,
        ));
        self.ctx.check()?;
        Ok(out)
    }

    async fn time_dispatches(
        &self,
        state: &wgpu::Buffer,
        ds: &[&Dispatch],
        reps: usize,
    ) -> Result<f64, EngineError> {
        self.ctx
            .queue
            .write_buffer(state, 0, bytemuck::cast_slice(&[0u32; 4]));
        self.ctx.finish().await?;
        let t = Instant::now();
        let mut enc = self.encoder();
        encode_all(&mut enc, ds);
        self.submit(enc);
        self.ctx.finish().await?;
        Ok(t.elapsed().as_secs_f64() * 1e6 / reps as f64)
    }

    /// The subspace-iteration dispatches for width w and `iters` power iterations on the loaded
    /// G, built once and reused while the problem stays loaded.
    fn build_svd_plan(&self, w: usize, iters: usize) -> Result<SvdPlan, EngineError> {
        let l = self
            .loaded
            .as_ref()
            .ok_or_else(|| EngineError::Unsupported("top_svd before load".into()))?;
        let (d, k) = (l.d, l.k);
        let omega = Rng::new(0, stream::SUBSPACE).normal_matrix(k, w, 1.0);
        let ctx = &self.ctx;
        let om = ctx.storage_init("omega", &to_f32(&omega))?;
        let y = ctx.storage("Y", d * w)?;
        let ytmp = ctx.storage("Ytmp", d * w)?;
        let q = ctx.storage("Q", d * w)?;
        let z = ctx.storage("Z", k * w)?;
        let ztmp = ctx.storage("Ztmp", k * w)?;
        let smallm = ctx.storage("small", 3 * w * w)?;
        let proj = ctx.storage("QtG", w * k)?;
        let part = ctx.storage(
            "part",
            t_big_scratch(d, w, w)
                .max(t_big_scratch(k, w, w))
                .max(t_big_scratch(d, k, w)),
        )?;
        let b = self.b();
        let mut ds: Vec<Dispatch> = Vec::new();
        // Cholesky-QR: twice (CholeskyQR2) where orthonormality matters (the final Q), once
        // inside the power iterations, which only need the span (dead columns are dropped either
        // way)
        let cholqr = |ds: &mut Vec<Dispatch>,
                      rows: usize,
                      src: &wgpu::Buffer,
                      tmp: &wgpu::Buffer,
                      dst: &wgpu::Buffer,
                      twice: bool| {
            let passes: Vec<(&wgpu::Buffer, &wgpu::Buffer)> = if twice {
                vec![(src, tmp), (tmp, dst)]
            } else {
                vec![(src, dst)]
            };
            for (from, to) in passes {
                ds.extend(b.cholesky_qr_pass(rows, w, from, to, &part, &smallm));
            }
        };
        ds.extend(b.tall_skinny(
            d,
            k,
            w,
            (&l.g, View::rm(k)),
            (&om, View::rm(w)),
            (&y, View::rm(w)),
            1.0,
        )?);
        cholqr(&mut ds, d, &y, &ytmp, &q, iters == 0);
        for it in 0..iters {
            ds.extend(b.t_big(
                d,
                k,
                w,
                (&q, View::rm(w)),
                (&l.g, View::rm(k)),
                &part,
                (&z, View::rm_t(w)),
                1.0,
                0.0,
            ));
            cholqr(&mut ds, k, &z, &ztmp, &ztmp, false);
            ds.extend(b.tall_skinny(
                d,
                k,
                w,
                (&l.g, View::rm(k)),
                (&ztmp, View::rm(w)),
                (&y, View::rm(w)),
                1.0,
            )?);
            cholqr(&mut ds, d, &y, &ytmp, &q, it + 1 == iters);
        }
        ds.extend(b.t_big(
            d,
            k,
            w,
            (&q, View::rm(w)),
            (&l.g, View::rm(k)),
            &part,
            (&proj, View::rm(k)),
            1.0,
            0.0,
        ));
        let rb = ctx.readback_buffer(((d * w + w * k) * 4) as u64)?;
        Ok(SvdPlan {
            w,
            iters,
            ds,
            q,
            proj,
            rb,
            _keep: vec![om, y, ytmp, z, ztmp, smallm, part],
        })
    }

    fn write_params(&self, run: &mut Run) {
        run.st_words[10] = (run.c_eff as f32).to_bits();
        run.st_words[11] = (run.limit.min(f32::MAX as f64) as f32).to_bits();
        self.ctx
            .queue
            .write_buffer(&run.st_params, 0, bytemuck::cast_slice(&run.st_words));
    }
}

struct SvdPlan {
    w: usize,
    iters: usize,
    ds: Vec<Dispatch>,
    q: wgpu::Buffer,
    proj: wgpu::Buffer,
    rb: wgpu::Buffer,
    _keep: Vec<wgpu::Buffer>,
}

struct ChunkOut {
    hist: Vec<f32>,
    rec: Vec<f32>,
    a: Vec<f32>,
    b: Vec<f32>,
}

fn identity_f32(d: usize) -> Vec<f32> {
    let mut v = vec![0f32; d * d];
    for i in 0..d {
        v[i * d + i] = 1.0;
    }
    v
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
        let cfg = &p.cfg;
        let (d, k) = (cfg.d, cfg.k);
        let mut timing = LoadTiming::default();
        self.run = None;
        self.loaded = None;
        self.svd_plan = None;
        if cfg.population {
            let t = Instant::now();
            let delta = to_f32(&p.delta);
            let db = self.ctx.storage_init("delta", &delta)?;
            let sig = self.ctx.storage_init("sigma", &identity_f32(d))?;
            self.ctx.finish().await?;
            timing.form_g_ms = t.elapsed().as_secs_f64() * 1e3;
            self.loaded = Some(Loaded {
                form: StepForm::Factored,
                relu: false,
                d,
                k,
                n: 0,
                sigma: Some(sig),
                g: db.clone(),
                delta: db,
                c0: 0.5 * p.delta.norm_squared(),
                x: None,
                y: None,
                z0: None,
            });
            return Ok(timing);
        }
        let x = p.x.as_ref().expect("sampled problem has X");
        let y = p.y.as_ref().expect("sampled problem has Y");
        let n = x.nrows();
        let relu = cfg.model == Model::Relu;
        let form = if relu {
            StepForm::Residual
        } else {
            cfg.step_form
        };
        let ctx = &self.ctx;
        let xb = ctx.storage_init("X", &to_f32(x))?;
        let yb = ctx.storage_init("Y", &to_f32(y))?;
        let w0 = ctx.storage_init("W0", &to_f32(&p.w0))?;
        let delta = ctx.storage_init("delta", &to_f32(&p.delta))?;
        let z0 = ctx.storage("Z0", n * k)?;
        let e = ctx.storage("E", n * k)?;
        let g = ctx.storage("G", d * k)?;
        let nparts = ew_parts(n * k);
        let parts = ctx.storage("parts", nparts)?;
        let c0b = ctx.storage("c0", 1)?;
        ctx.finish().await?;
        let b = self.b();
        // G = Xᵀ(Y − X W0)/N (masked for ReLU) and c0 = ‖Y − XW0‖²/(2N)
        let t = Instant::now();
        let ds = [
            b.matmul(
                n,
                k,
                d,
                (&xb, View::rm(d)),
                (&w0, View::rm(k)),
                (&z0, 0, k),
                1.0,
                0.0,
            ),
            b.form_e(n, k, relu, &yb, &z0, &e, &parts),
            b.matmul(
                d,
                k,
                n,
                (&xb, View::rm_t(d)),
                (&e, View::rm(k)),
                (&g, 0, k),
                1.0 / n as f32,
                0.0,
            ),
            b.sum_partials(nparts, 1.0 / (2.0 * n as f32), &parts, &c0b),
        ];
        let mut enc = self.encoder();
        encode_all(&mut enc, &ds.iter().collect::<Vec<_>>());
        self.submit(enc);
        let c0 = if relu {
            0.0
        } else {
            self.read_buffer(&c0b, 1).await?[0] as f64
        };
        self.ctx.finish().await?;
        timing.form_g_ms = t.elapsed().as_secs_f64() * 1e3;
        let sigma = if form == StepForm::Factored {
            let t = Instant::now();
            let s = self.ctx.storage("sigma", d * d)?;
            let dsig = self.b().matmul(
                d,
                d,
                n,
                (&xb, View::rm_t(d)),
                (&xb, View::rm(d)),
                (&s, 0, d),
                1.0 / n as f32,
                0.0,
            );
            let mut enc = self.encoder();
            encode_all(&mut enc, &[&dsig]);
            self.submit(enc);
            self.ctx.finish().await?;
            timing.sigma_ms = t.elapsed().as_secs_f64() * 1e3;
            Some(s)
        } else {
            None
        };
        self.ctx.check()?;
        let residual = form == StepForm::Residual;
        self.loaded = Some(Loaded {
            form,
            relu,
            d,
            k,
            n,
            sigma,
            g,
            delta,
            c0,
            x: residual.then_some(xb),
            y: residual.then_some(yb),
            z0: residual.then_some(z0),
        });
        Ok(timing)
    }

    /// Randomised subspace iteration on the GPU: Y = GΩ with the seeded Gaussian Ω of the CPU
    /// twin (`linalg::subspace_top_svd`, seed 0), `svd_iters` rounds of Z = orth(GᵀQ),
    /// Q = orth(GZ), each orth a Cholesky-QR2; then the (m+p)×k matrix QᵀG is read back and its
    /// SVD finishes on the host.
    ///
    /// Rank-deficient G: a sketch column whose component outside the span of the earlier ones
    /// is below √QR_TOL ≈ 1e-3 of its norm is dropped (a zero column of Q), so singular values
    /// below about 1e-3·σ1 come back as (near) zero, and their vectors are arbitrary; callers
    /// canonicalise (`linalg::canonicalize`), which replaces every vector beyond the numerical
    /// rank (σ ≤ 1e-4 σ1) by the same seeded completion on every backend.
    async fn top_svd(&mut self, m: usize) -> Result<TopSvd, EngineError> {
        let l = self
            .loaded
            .as_ref()
            .ok_or_else(|| EngineError::Unsupported("top_svd before load".into()))?;
        let (d, k) = (l.d, l.k);
        let m = m.min(d.min(k));
        if m > MAX_SMALL {
            return Err(EngineError::Unsupported(format!(
                "the GPU SVD takes at most {MAX_SMALL} singular triplets, asked for {m}"
            )));
        }
        let w = (m + self.svd_oversample).min(d.min(k)).min(MAX_SMALL);
        let iters = self.svd_iters;
        let cached = matches!(&self.svd_plan, Some(p) if p.w == w && p.iters == iters);
        if !cached {
            self.svd_plan = None;
            let plan = self.build_svd_plan(w, iters)?;
            self.svd_plan = Some(plan);
        }
        let plan = self.svd_plan.as_ref().expect("svd plan");
        let ctx = &self.ctx;
        let mut enc = self.encoder();
        encode_all(&mut enc, &plan.ds.iter().collect::<Vec<_>>());
        enc.copy_buffer_to_buffer(&plan.q, 0, &plan.rb, 0, (d * w * 4) as u64);
        enc.copy_buffer_to_buffer(
            &plan.proj,
            0,
            &plan.rb,
            (d * w * 4) as u64,
            (w * k * 4) as u64,
        );
        self.submit(enc);
        let rb = &plan.rb;
        let all = ctx.read(rb, d * w + w * k).await?;
        let qm = from_f32(&all[..d * w], d, w);
        let pm = from_f32(&all[d * w..], w, k);
        // The small w×k matrix P = QᵀG finishes on the host through its w×w Gram in f64
        // (as accurate as an SVD of the f32 P, and ~5× cheaper than nalgebra's SVD of P).
        let eig = nalgebra::SymmetricEigen::new(&pm * pm.transpose());
        let mut idx: Vec<usize> = (0..w).collect();
        idx.sort_by(|&a, &b| eig.eigenvalues[b].total_cmp(&eig.eigenvalues[a]));
        let us = DMatrix::from_fn(w, m, |i, j| eig.eigenvectors[(i, idx[j])]);
        let s: Vec<f64> = idx[..m]
            .iter()
            .map(|&i| eig.eigenvalues[i].max(0.0).sqrt())
            .collect();
        let mut v = pm.transpose() * &us;
        for (j, mut col) in v.column_iter_mut().enumerate() {
            let nrm = col.norm();
            if s[j] > 0.0 && nrm > 0.0 {
                col /= nrm;
            } else {
                col.fill(0.0);
            }
        }
        Ok(TopSvd { u: qm * us, s, v })
    }

    async fn start(
        &mut self,
        init: &InitFactors,
        settings: &StepSettings,
    ) -> Result<Advance, EngineError> {
        self.run = None;
        let mut run = self
            .ctx
            .scoped("allocating a run", || self.build_run(init, settings))
            .await??;
        let t0 = Instant::now();
        let out = self.run_chunk(&run, true, 0, &[true]).await?;
        let c0 = self.loaded.as_ref().map_or(0.0, |l| l.c0);
        let h0 = out.hist[0] as f64;
        let flags = out.hist[1];
        // The small kernel ran with c = 0: for the factored form the loss is h0 + c_eff, where an
        // offset run's c_eff makes the t = 0 loss equal the unmodified model's loss c0.
        let loss = if run.factored {
            run.c_eff = if init.offset { c0 - h0 } else { c0 };
            h0 + run.c_eff
        } else {
            h0
        };
        run.limit = settings.divergence_factor * loss.abs().max(1.0);
        self.write_params(&mut run);
        let mut adv = Advance::default();
        if !loss.is_finite() || flags as u32 & 1 != 0 {
            adv.diverged = Some(nonfinite_reason(0));
        } else if loss > run.limit {
            adv.diverged = Some(loss_reason(loss, settings.divergence_factor, 0));
        } else {
            adv.snapshots.push(Snapshot {
                step: 0,
                loss,
                risk: out.rec[0] as f64,
                err_f: out.rec[1] as f64,
                a: from_f32(&out.a, run.d, run.r),
                b: from_f32(&out.b, run.r, run.k),
                t_ms: t0.elapsed().as_secs_f64() * 1e3,
            });
        }
        run.pending_singular = flags as u32 & 2 != 0;
        self.run = Some(run);
        Ok(adv)
    }

    async fn advance(&mut self, steps: usize) -> Result<Advance, EngineError> {
        let mut run = self
            .run
            .take()
            .ok_or_else(|| EngineError::Unsupported("advance before start".into()))?;
        let t0 = Instant::now();
        let mut adv = Advance::default();
        let mut left = steps;
        let per_rec = (run.d * run.r + run.r * run.k + 2) * 4;
        'outer: while left > 0 {
            if run.pending_singular {
                adv.diverged = Some(singular_reason(run.step + 1));
                break;
            }
            // this submission: up to MAX_STEPS_PER_SUBMIT steps and MAX_READBACK_BYTES of records
            let mut n = 0;
            let mut bytes = 0;
            let mut recs = Vec::new();
            while n < left && n < MAX_STEPS_PER_SUBMIT.min(run.hist_cap).min(run.rec_cap) {
                let rec = run.settings.records(run.step + n + 1);
                if rec && bytes + per_rec > MAX_READBACK_BYTES && n > 0 {
                    break;
                }
                if rec {
                    bytes += per_rec;
                }
                recs.push(rec);
                n += 1;
            }
            let out = match self.run_chunk(&run, false, n, &recs).await {
                Ok(o) => o,
                Err(e) => {
                    self.run = Some(run);
                    return Err(e);
                }
            };
            let elapsed = t0.elapsed().as_secs_f64() * 1e3;
            let mut ri = 0;
            let (d, k, r) = (run.d, run.k, run.r);
            #[allow(clippy::needless_range_loop)]
            for i in 0..n {
                if run.pending_singular {
                    adv.diverged = Some(singular_reason(run.step + 1));
                    break 'outer;
                }
                run.step += 1;
                let loss = out.hist[2 * i] as f64;
                let flags = out.hist[2 * i + 1] as u32;
                if !loss.is_finite() || flags & 1 != 0 {
                    adv.diverged = Some(nonfinite_reason(run.step));
                    break 'outer;
                }
                if loss > run.limit {
                    adv.diverged =
                        Some(loss_reason(loss, run.settings.divergence_factor, run.step));
                    break 'outer;
                }
                if recs[i] {
                    adv.snapshots.push(Snapshot {
                        step: run.step,
                        loss,
                        risk: out.rec[2 * ri] as f64,
                        err_f: out.rec[2 * ri + 1] as f64,
                        a: from_f32(&out.a[ri * d * r..(ri + 1) * d * r], d, r),
                        b: from_f32(&out.b[ri * r * k..(ri + 1) * r * k], r, k),
                        // per-step GPU times are not measured: spread the submission evenly
                        t_ms: elapsed * (i + 1) as f64 / n as f64,
                    });
                    ri += 1;
                }
                run.pending_singular = flags & 2 != 0;
            }
            left -= n;
        }
        self.run = Some(run);
        self.ctx.check()?;
        Ok(adv)
    }
}
