//! Problem upload: Σ̂ = XᵀX/N and G = Xᵀ(Y − XW0)/N formed on the GPU by the register-tiled
//! matmul, from streamed blocks of rows (factored form) or from the kept X and Y (residual form);
//! taken as given in population mode and for benchmarks.

use super::kernels::{encode_all, ew_parts, View};
use super::{from_f32, to_f32, GpuBackend};
use crate::config::{Model, StepForm};
use crate::engine::{EngineError, LoadTiming};
use crate::problem::{chunk_rows, Problem};
use nalgebra::DMatrix;
use web_time::Instant;

/// The problem as it lives on the GPU.
pub(super) struct Loaded {
    pub(super) form: StepForm,
    pub(super) relu: bool,
    pub(super) d: usize,
    pub(super) k: usize,
    pub(super) n: usize,
    /// Σ̂ (identity in population mode); factored form only.
    pub(super) sigma: Option<wgpu::Buffer>,
    pub(super) g: wgpu::Buffer,
    pub(super) delta: wgpu::Buffer,
    pub(super) c0: f64,
    /// X, Y, Z0 = X W0: residual form only.
    pub(super) x: Option<wgpu::Buffer>,
    pub(super) y: Option<wgpu::Buffer>,
    pub(super) z0: Option<wgpu::Buffer>,
}

impl GpuBackend {
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
        self.end_batch(self.loaded_dims_are(d, k));
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
        Ok(())
    }

    pub(super) async fn load_problem(&mut self, p: &Problem) -> Result<LoadTiming, EngineError> {
        let cfg = &p.cfg;
        let (d, k) = (cfg.d, cfg.k);
        let mut timing = LoadTiming::default();
        self.end_batch(self.loaded_dims_are(d, k));
        self.loaded = None;
        self.svd_plan = None;
        self.check_fits(p)?;
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
        let (Some(x), Some(y)) = (p.x.as_deref(), p.y.as_deref()) else {
            return self.load_streamed(p, timing).await;
        };
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
}

impl GpuBackend {
    /// Before allocating: refuse a problem whose buffers this adapter cannot bind, naming the
    /// config field that sets the size and the adapter's limit (the page then falls back to the
    /// CPU engine with this reason on its badge).
    fn check_fits(&self, p: &Problem) -> Result<(), EngineError> {
        let cfg = &p.cfg;
        let (d, k) = (cfg.d as u64, cfg.k as u64);
        let dk_field = if d >= k { "d" } else { "k" };
        let mut bufs = vec![("d", "Σ̂ (d×d)", d * d), (dk_field, "G (d×k)", d * k)];
        if p.x.is_some() {
            let n = p.n() as u64;
            let field = if cfg.n.is_some() { "n" } else { "d" };
            bufs.push((field, "X (N×d)", n * d));
            bufs.push((field, "Y (N×k)", n * k));
        }
        let max = self.ctx.max_binding();
        for (field, what, floats) in bufs {
            let bytes = floats.saturating_mul(4);
            if bytes > max {
                return Err(EngineError::Unsupported(format!(
                    "{field}: {what} needs {} but this GPU ({}) binds at most {} per buffer; reduce {field}",
                    crate::config::fmt_bytes(bytes),
                    self.ctx.info.name,
                    crate::config::fmt_bytes(max),
                )));
            }
        }
        Ok(())
    }

    /// The factored form of a sampled problem without keeping X: blocks of rows of X and of the
    /// residual at W0 are generated on the host (`Problem::chunks`), uploaded once each, and
    /// accumulated into Σ̂ = XᵀX/N and G = XᵀE/N by two matmuls with β = 1. Device memory is
    /// O(d² + dk) plus one block; c0 is summed on the host in f64.
    async fn load_streamed(
        &mut self,
        p: &Problem,
        mut timing: LoadTiming,
    ) -> Result<LoadTiming, EngineError> {
        let cfg = &p.cfg;
        let (d, k, n) = (cfg.d, cfg.k, p.n());
        let rows = chunk_rows(d, k).min(n.max(1));
        let ctx = &self.ctx;
        let xc = ctx.storage("X rows", rows * d)?;
        let ec = ctx.storage("E rows", rows * k)?;
        let g = ctx.storage("G", d * k)?;
        let sigma = ctx.storage("sigma", d * d)?;
        let delta = ctx.storage_init("delta", &to_f32(&p.delta))?;
        let t = Instant::now();
        let inv_n = 1.0 / n as f32;
        let mut c0 = 0.0;
        // wait for the GPU every ~64 MiB of uploads, so staged copies never pile up
        let flush_every = ((64usize << 20) / (4 * rows * (d + k))).max(1);
        for (i, ch) in p.chunks(rows).enumerate() {
            let m = ch.x.nrows();
            c0 += ch.t.norm_squared();
            let queue = &self.ctx.queue;
            queue.write_buffer(&xc, 0, bytemuck::cast_slice(&to_f32(&ch.x)));
            queue.write_buffer(&ec, 0, bytemuck::cast_slice(&to_f32(&ch.t)));
            let beta = if i == 0 { 0.0 } else { 1.0 };
            let b = self.b();
            let ds = [
                b.matmul(
                    d,
                    k,
                    m,
                    (&xc, View::rm_t(d)),
                    (&ec, View::rm(k)),
                    (&g, 0, k),
                    inv_n,
                    beta,
                ),
                b.matmul(
                    d,
                    d,
                    m,
                    (&xc, View::rm_t(d)),
                    (&xc, View::rm(d)),
                    (&sigma, 0, d),
                    inv_n,
                    beta,
                ),
            ];
            let mut enc = self.encoder();
            encode_all(&mut enc, &ds.iter().collect::<Vec<_>>());
            self.submit(enc);
            if (i + 1) % flush_every == 0 {
                self.ctx.finish().await?;
            }
        }
        self.ctx.finish().await?;
        self.ctx.check()?;
        timing.form_g_ms = t.elapsed().as_secs_f64() * 1e3;
        self.loaded = Some(Loaded {
            form: StepForm::Factored,
            relu: false,
            d,
            k,
            n,
            sigma: Some(sigma),
            g,
            delta,
            c0: c0 / (2.0 * n as f64),
            x: None,
            y: None,
            z0: None,
        });
        Ok(timing)
    }
}

pub(super) fn identity_f32(d: usize) -> Vec<f32> {
    let mut v = vec![0f32; d * d];
    for i in 0..d {
        v[i * d + i] = 1.0;
    }
    v
}
