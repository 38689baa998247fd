//! The CPU reference backend (nalgebra, f64). It is the oracle for every GPU kernel and the
//! fallback when no GPU is available.

use crate::config::{Model, Optimiser, StepForm};
use crate::engine::{
    Advance, Backend, BackendInfo, Divergence, EngineError, Factors, LoadTiming, MetricBasis,
    RunSpec, Snapshot, StepSettings,
};
use crate::init::InitFactors;
use crate::linalg::{self, TopSvd};
use crate::problem::Problem;
use nalgebra::DMatrix;
use std::sync::Arc;
use web_time::Instant;

/// How the CPU backend computes truncated SVDs of G.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SvdMethod {
    /// Exact below 1200 rows + columns, randomised subspace iteration above (the default).
    Auto,
    /// Full symmetric-eigen SVD (exact; O((d+k)³)).
    Exact,
    /// Randomised subspace iteration (the GPU algorithm's twin).
    Subspace { oversample: usize, iters: usize },
}

/// Data derived once per problem.
struct Loaded {
    model: Model,
    form: StepForm,
    /// Σ̂ = XᵀX/N (None: Σ̂ = I, population mode; or not needed by the ReLU model).
    sigma: Option<DMatrix<f64>>,
    g: DMatrix<f64>,
    /// ‖Y − XW0‖²/(2N) (½‖Δ‖² in population mode).
    c0: f64,
    w0: DMatrix<f64>,
    delta: DMatrix<f64>,
    /// X and Y (shared with the problem), for the residual form only.
    x: Option<Arc<DMatrix<f64>>>,
    y: Option<Arc<DMatrix<f64>>>,
}

/// G + Σ̂P (the effective gradient), Δ + P (the update AB must reach) and W0 − P (the frozen
/// weight) of an offset init.
struct Offset {
    g_eff: DMatrix<f64>,
    delta_eff: DMatrix<f64>,
    w_frozen: DMatrix<f64>,
}

/// State of the run in progress.
struct Run {
    a: DMatrix<f64>,
    b: DMatrix<f64>,
    /// The d×k matrices an offset init (P = A0B0 ≠ 0) shifts; None for the others, which read
    /// the problem's own (a batch of B runs holds B·(dr + rk) floats, not B·3dk).
    offset: Option<Offset>,
    c_eff: f64,
    settings: StepSettings,
    step: usize,
    limit: f64,
    /// Loss and gradients at the current state.
    cached: Option<(f64, DMatrix<f64>, DMatrix<f64>)>,
    /// Diverged: takes no more steps.
    stopped: bool,
}

pub struct CpuBackend {
    pub svd: SvdMethod,
    loaded: Option<Loaded>,
    /// The batch in progress (each run advanced on its own: the oracle of the batched GPU path).
    runs: Vec<Run>,
}

impl Default for CpuBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuBackend {
    pub fn new() -> Self {
        CpuBackend {
            svd: SvdMethod::Auto,
            loaded: None,
            runs: Vec::new(),
        }
    }

    pub fn with_svd(svd: SvdMethod) -> Self {
        CpuBackend { svd, ..Self::new() }
    }

    /// G = −∇_W L(W0), formed on this backend (after `load`).
    pub fn g(&self) -> Option<&DMatrix<f64>> {
        self.loaded.as_ref().map(|l| &l.g)
    }

    /// The loss at W0, ‖Y − XW0‖²/(2N) (½‖Δ‖² in population mode; 0 for ReLU).
    pub fn c0(&self) -> Option<f64> {
        self.loaded.as_ref().map(|l| l.c0)
    }

    /// Σ̂ (None in population mode or for the ReLU model).
    pub fn sigma(&self) -> Option<&DMatrix<f64>> {
        self.loaded.as_ref().and_then(|l| l.sigma.as_ref())
    }

    /// Loss and gradients (∇_A, ∇_B) at (A, B) of the (first) run in progress, by the
    /// configured form.
    pub fn loss_and_grads(&self) -> Option<(f64, DMatrix<f64>, DMatrix<f64>)> {
        let (l, r) = (self.loaded.as_ref()?, self.runs.first()?);
        Some(eval(l, r, &r.a, &r.b))
    }

    /// Loss and gradients at arbitrary factors of the (first) run in progress
    /// (finite-difference tests).
    pub fn loss_and_grads_at(
        &self,
        a: &DMatrix<f64>,
        b: &DMatrix<f64>,
    ) -> Option<(f64, DMatrix<f64>, DMatrix<f64>)> {
        let (l, r) = (self.loaded.as_ref()?, self.runs.first()?);
        Some(eval(l, r, a, b))
    }
}

fn sigma_times(sigma: &Option<DMatrix<f64>>, m: &DMatrix<f64>) -> DMatrix<f64> {
    match sigma {
        Some(s) => s * m,
        None => m.clone(),
    }
}

/// Loss and (∇_A, ∇_B) at (a, b).
fn eval(
    l: &Loaded,
    run: &Run,
    a: &DMatrix<f64>,
    b: &DMatrix<f64>,
) -> (f64, DMatrix<f64>, DMatrix<f64>) {
    match (l.model, l.form) {
        (Model::Linear, StepForm::Factored) => {
            // ∇_W = Σ̂AB − G_eff; every product is d×r, r×k or r×r.
            let sa = sigma_times(&l.sigma, a);
            let bbt = b * b.transpose();
            let ata_s = a.transpose() * &sa;
            let gbt = run.g_eff(l) * b.transpose();
            let atg = a.transpose() * run.g_eff(l);
            let loss = 0.5 * (&ata_s * &bbt).trace() - (a.transpose() * &gbt).trace() + run.c_eff;
            let grad_a = &sa * &bbt - gbt;
            let grad_b = &ata_s * b - atg;
            (loss, grad_a, grad_b)
        }
        (model, _) => {
            // Residual form: R = f(X(W0' + AB)) − Y.
            let x: &DMatrix<f64> = l.x.as_deref().expect("sampled data");
            let y: &DMatrix<f64> = l.y.as_deref().expect("sampled data");
            let n = x.nrows() as f64;
            let w = run.w_frozen(l) + a * b;
            let z = x * w;
            let (loss, resid) = match model {
                Model::Linear => {
                    let r = z - y;
                    (r.norm_squared() / (2.0 * n), r)
                }
                Model::Relu => {
                    let mut r = z.clone();
                    r.apply(|v| *v = v.max(0.0));
                    r -= y;
                    let loss = r.norm_squared() / (2.0 * n);
                    r.zip_apply(&z, |rv, zv| {
                        if zv <= 0.0 {
                            *rv = 0.0
                        }
                    });
                    (loss, r)
                }
            };
            let grad_w = x.transpose() * resid / n;
            let grad_a = &grad_w * b.transpose();
            let grad_b = a.transpose() * &grad_w;
            (loss, grad_a, grad_b)
        }
    }
}

fn finite(m: &DMatrix<f64>) -> bool {
    m.iter().all(|v| v.is_finite())
}

impl Run {
    fn g_eff<'a>(&'a self, l: &'a Loaded) -> &'a DMatrix<f64> {
        self.offset.as_ref().map_or(&l.g, |o| &o.g_eff)
    }
    fn delta_eff<'a>(&'a self, l: &'a Loaded) -> &'a DMatrix<f64> {
        self.offset.as_ref().map_or(&l.delta, |o| &o.delta_eff)
    }
    fn w_frozen<'a>(&'a self, l: &'a Loaded) -> &'a DMatrix<f64> {
        self.offset.as_ref().map_or(&l.w0, |o| &o.w_frozen)
    }

    fn snapshot(&self, l: &Loaded, loss: f64, t0: Instant) -> Snapshot {
        let ab = &self.a * &self.b;
        Snapshot {
            step: self.step,
            loss,
            risk: 0.5 * (&ab - self.delta_eff(l)).norm_squared(),
            err_f: (&ab - &l.delta).norm(),
            factors: Factors::Full {
                a: self.a.clone(),
                b: self.b.clone(),
            },
            t_ms: t0.elapsed().as_secs_f64() * 1e3,
        }
    }

    fn check(&self, loss: f64) -> Option<Divergence> {
        if !loss.is_finite() || !finite(&self.a) || !finite(&self.b) {
            return Some(Divergence {
                step: self.step,
                reason: format!("non-finite values at step {} (η too large?)", self.step),
            });
        }
        if loss > self.limit {
            return Some(Divergence {
                step: self.step,
                reason: format!(
                    "loss {loss:.3e} exceeded {:.1e} × max(initial loss, 1) at step {} (η too large?)",
                    self.settings.divergence_factor, self.step
                ),
            });
        }
        None
    }
}

impl Backend for CpuBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            kind: "cpu".into(),
            name: match self.svd {
                SvdMethod::Auto => "CPU reference (nalgebra)".into(),
                SvdMethod::Exact => "CPU reference (nalgebra, exact SVD)".into(),
                SvdMethod::Subspace { .. } => {
                    "CPU reference (nalgebra, subspace-iteration SVD)".into()
                }
            },
            precision: "f64".into(),
        }
    }

    async fn load(&mut self, p: &Problem) -> Result<LoadTiming, EngineError> {
        let cfg = &p.cfg;
        let mut timing = LoadTiming::default();
        let loaded = if cfg.population {
            let t = Instant::now();
            let g = p.delta.clone();
            let c0 = 0.5 * p.delta.norm_squared();
            timing.form_g_ms = t.elapsed().as_secs_f64() * 1e3;
            Loaded {
                model: cfg.model,
                form: StepForm::Factored,
                sigma: None,
                g,
                c0,
                w0: p.w0.clone(),
                delta: p.delta.clone(),
                x: None,
                y: None,
            }
        } else {
            let form = if cfg.model == Model::Relu {
                StepForm::Residual
            } else {
                cfg.step_form
            };
            let t = Instant::now();
            let with_sigma = cfg.model == Model::Linear && form == StepForm::Factored;
            let stats = p.stats(with_sigma).expect("sampled problem");
            // Σ̂ and G are formed in one pass over the rows
            timing.sigma_ms = stats.sigma_ms;
            timing.form_g_ms = t.elapsed().as_secs_f64() * 1e3 - stats.sigma_ms;
            let (x, y) = if form == StepForm::Residual {
                let (x, y) = p.samples();
                (Some(x), Some(y))
            } else {
                (None, None)
            };
            Loaded {
                model: cfg.model,
                form,
                sigma: stats.sigma,
                g: stats.g,
                c0: stats.c0,
                w0: p.w0.clone(),
                delta: p.delta.clone(),
                x,
                y,
            }
        };
        self.loaded = Some(loaded);
        self.runs.clear();
        Ok(timing)
    }

    async fn top_svd(&mut self, m: usize) -> Result<TopSvd, EngineError> {
        let l = self
            .loaded
            .as_ref()
            .ok_or_else(|| EngineError::Unsupported("top_svd before load".into()))?;
        let (d, k) = l.g.shape();
        Ok(match self.svd {
            SvdMethod::Auto if d + k > 1200 => linalg::subspace_top_svd(&l.g, m, 8, 6, 0),
            SvdMethod::Auto | SvdMethod::Exact => linalg::exact_top_svd(&l.g, m),
            SvdMethod::Subspace { oversample, iters } => {
                linalg::subspace_top_svd(&l.g, m, oversample, iters, 0)
            }
        })
    }

    async fn start_batch(
        &mut self,
        runs: &[RunSpec],
        _basis: &MetricBasis,
    ) -> Result<Vec<Advance>, EngineError> {
        let l = self
            .loaded
            .as_ref()
            .ok_or_else(|| EngineError::Unsupported("start before load".into()))?;
        self.runs.clear();
        let mut out = Vec::with_capacity(runs.len());
        for spec in runs {
            let (run, adv) = Run::start(l, &spec.init, &spec.settings);
            self.runs.push(run);
            out.push(adv);
        }
        Ok(out)
    }

    async fn advance_batch(&mut self, steps: usize) -> Result<Vec<Advance>, EngineError> {
        let l = self
            .loaded
            .as_ref()
            .ok_or_else(|| EngineError::Unsupported("advance before load".into()))?;
        if self.runs.is_empty() {
            return Err(EngineError::Unsupported("advance before start".into()));
        }
        Ok(self.runs.iter_mut().map(|r| r.advance(l, steps)).collect())
    }
}

impl Run {
    /// A run from its initial factors, and its step-0 snapshot (or divergence).
    fn start(l: &Loaded, init: &InitFactors, settings: &StepSettings) -> (Run, Advance) {
        let (offset, c_eff) = if init.offset {
            let p = &init.a0 * &init.b0;
            let sa0 = sigma_times(&l.sigma, &init.a0);
            let sp = &sa0 * &init.b0;
            let c = l.c0 + p.dot(&l.g) + 0.5 * p.dot(&sp);
            let o = Offset {
                g_eff: &l.g + sp,
                delta_eff: &l.delta + &p,
                w_frozen: &l.w0 - &p,
            };
            (Some(o), c)
        } else {
            (None, l.c0)
        };
        let mut run = Run {
            a: init.a0.clone(),
            b: init.b0.clone(),
            offset,
            c_eff,
            settings: *settings,
            step: 0,
            limit: f64::INFINITY,
            cached: None,
            stopped: false,
        };
        let t0 = Instant::now();
        let (loss, ga, gb) = eval(l, &run, &run.a, &run.b);
        run.limit = settings.divergence_factor * loss.abs().max(1.0);
        let mut adv = Advance::default();
        if let Some(d) = run.check(loss) {
            run.stopped = true;
            adv.diverged = Some(d);
        } else {
            adv.snapshots.push(run.snapshot(l, loss, t0));
        }
        run.cached = Some((loss, ga, gb));
        (run, adv)
    }

    /// Take up to `steps` updates (none once the run has stopped at a divergence).
    fn advance(&mut self, l: &Loaded, steps: usize) -> Advance {
        let run = self;
        if run.stopped {
            return Advance::default();
        }
        let t0 = Instant::now();
        let mut adv = Advance::default();
        let s = run.settings;
        for _ in 0..steps {
            let (_, ga, gb) = run.cached.take().expect("gradient of the current state");
            match s.optimiser {
                Optimiser::Gd => {
                    run.a -= ga * s.eta;
                    run.b -= gb * s.eta;
                }
                Optimiser::Preconditioned => {
                    let r = run.a.ncols();
                    let damp = DMatrix::<f64>::identity(r, r) * s.damping;
                    let pb = &run.b * run.b.transpose() + &damp;
                    let pa = run.a.transpose() * &run.a + &damp;
                    // A ← A − η ∇_A (BBᵀ+λI)^{-1};  B ← B − η (AᵀA+λI)^{-1} ∇_B
                    let da = linalg::spd_solve(&pb, &ga.transpose()).map(|m| m.transpose());
                    let db = linalg::spd_solve(&pa, &gb);
                    match (da, db) {
                        (Some(da), Some(db)) => {
                            run.a -= da * s.eta;
                            run.b -= db * s.eta;
                        }
                        _ => {
                            adv.diverged = Some(Divergence {
                                step: run.step + 1,
                                reason: format!(
                                    "preconditioner BBᵀ+λI or AᵀA+λI is singular at step {} (raise the damping λ)",
                                    run.step + 1
                                ),
                            });
                            run.stopped = true;
                            return adv;
                        }
                    }
                }
            }
            run.step += 1;
            let (loss, ga, gb) = eval(l, run, &run.a, &run.b);
            if let Some(d) = run.check(loss) {
                adv.diverged = Some(d);
                run.stopped = true;
                return adv;
            }
            if s.records(run.step) {
                adv.snapshots.push(run.snapshot(l, loss, t0));
            }
            run.cached = Some((loss, ga, gb));
        }
        adv
    }
}
