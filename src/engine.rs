//! The engine API: a `Backend` trait (CPU reference, GPU) and the backend-agnostic `Experiment`
//! driver that forms G, builds the initialisations, runs them in chunks and records SPEC §4's
//! metrics. Chunked stepping lets a caller show progress, yield to the browser and stop.

use crate::config::{Config, ConfigError, InitKind, Optimiser};
use crate::init::{self, InitFactors};
use crate::linalg::{self, TopSvd};
use crate::problem::Problem;
use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};
use std::fmt;
use web_time::Instant;

/// What went wrong in the engine (never a panic).
#[derive(Clone, Debug, PartialEq)]
pub enum EngineError {
    Config(ConfigError),
    /// The backend cannot do this (too large for the adapter, unsupported feature, …).
    Unsupported(String),
    /// The GPU device was lost or an allocation failed.
    Device(String),
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::Config(e) => write!(f, "invalid configuration: {e}"),
            EngineError::Unsupported(m) => write!(f, "unsupported: {m}"),
            EngineError::Device(m) => write!(f, "device error: {m}"),
        }
    }
}

impl std::error::Error for EngineError {}

impl From<ConfigError> for EngineError {
    fn from(e: ConfigError) -> Self {
        EngineError::Config(e)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BackendInfo {
    /// "cpu" or "gpu".
    pub kind: String,
    /// Human description: adapter name and API for the GPU, "nalgebra f64" for the CPU.
    pub name: String,
    /// Arithmetic precision of the training loop.
    pub precision: String,
}

/// Time spent forming Σ̂ and G on a backend.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct LoadTiming {
    pub sigma_ms: f64,
    pub form_g_ms: f64,
}

/// Optimiser settings of one run.
#[derive(Clone, Copy, Debug)]
pub struct StepSettings {
    pub eta: f64,
    pub optimiser: Optimiser,
    pub damping: f64,
    /// Record a snapshot at every step t with t % record_every == 0, and at `last_step`.
    pub record_every: usize,
    pub last_step: usize,
    /// A loss above this is divergence.
    pub divergence_factor: f64,
}

impl StepSettings {
    pub fn from_config(cfg: &Config) -> Self {
        StepSettings {
            eta: cfg.eta,
            optimiser: cfg.optimiser,
            damping: cfg.damping,
            record_every: cfg.record_every,
            last_step: cfg.steps,
            divergence_factor: cfg.divergence_factor,
        }
    }
    pub fn records(&self, t: usize) -> bool {
        t % self.record_every == 0 || t == self.last_step
    }
}

/// The state of a run at step t as a backend reports it: loss, risk and ‖AB − Δ‖_F computed on
/// the backend, and the factors (small: d×r and r×k) for the alignment metrics.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub step: usize,
    pub loss: f64,
    pub risk: f64,
    pub err_f: f64,
    pub a: DMatrix<f64>,
    pub b: DMatrix<f64>,
    /// Milliseconds since the start of the `advance` call that produced it.
    pub t_ms: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Divergence {
    pub step: usize,
    pub reason: String,
}

#[derive(Clone, Debug, Default)]
pub struct Advance {
    pub snapshots: Vec<Snapshot>,
    pub diverged: Option<Divergence>,
}

/// One engine API, two backends. All methods are async so that the GPU backend can await buffer
/// maps in the browser; the CPU backend's futures are ready at once.
#[allow(async_fn_in_trait)]
pub trait Backend {
    fn info(&self) -> BackendInfo;
    /// Upload the problem; form Σ̂ = XᵀX/N, G = −∇_W L(W0) and the loss constant.
    async fn load(&mut self, problem: &Problem) -> Result<LoadTiming, EngineError>;
    /// The top-m singular triplets of G (raw: callers canonicalise them).
    async fn top_svd(&mut self, m: usize) -> Result<TopSvd, EngineError>;
    /// Begin a run from the given factors; returns the snapshot of step 0.
    async fn start(
        &mut self,
        init: &InitFactors,
        settings: &StepSettings,
    ) -> Result<Advance, EngineError>;
    /// Take `steps` updates of the current run; snapshots at recorded steps. Stops at divergence.
    async fn advance(&mut self, steps: usize) -> Result<Advance, EngineError>;
}

/// One recorded row of SPEC §4.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub step: usize,
    pub loss: f64,
    pub risk: f64,
    /// sin θ_A: largest principal angle between span of A's top-min(r, r*) left singular
    /// vectors and G's top-r* left singular subspace. None while A = 0.
    pub sin_a: Option<f64>,
    /// sin θ_B likewise for B's right singular vectors and G's. None while B = 0.
    pub sin_b: Option<f64>,
    /// ‖A_tB_t − Δ‖_F.
    pub err_f: f64,
    /// Singular values of A_tB_t, descending.
    pub sv_ab: Vec<f64>,
    /// Training wall time so far, ms.
    pub wall_ms: f64,
    /// Phase-portrait projection (r = 1 only): [uᵀA, Bv, ‖A_⊥‖ + ‖B_⊥‖] with u, v Δ's singular vectors.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub proj: Option<[f64; 3]>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunResult {
    pub init: InitKind,
    pub alpha2: Option<f64>,
    pub label: String,
    /// The init's own cost: forming G plus its truncated SVD (0 for vanilla, which needs neither),
    /// plus building the factors.
    pub init_ms: f64,
    pub train_ms: f64,
    pub diverged: Option<Divergence>,
    /// True when the user stopped the run before its last step.
    pub stopped: bool,
    pub records: Vec<Record>,
}

impl RunResult {
    pub fn last(&self) -> Option<&Record> {
        self.records.last()
    }
}

/// Facts about the problem shown next to the curves.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ProblemSummary {
    pub n: usize,
    pub delta_s: Vec<f64>,
    /// Top singular values of G (as many as the inits needed).
    pub g_s: Vec<f64>,
    /// Numerical rank of G among those (σ > 1e-4 σ1).
    pub g_rank: usize,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct CostSummary {
    pub sigma_ms: f64,
    pub form_g_ms: f64,
    pub svd_ms: f64,
}

/// The whole result of an experiment: the CLI's JSON schema, also used by the web app's export.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub schema: String,
    pub config: Config,
    pub backend: BackendInfo,
    pub problem: ProblemSummary,
    pub cost: CostSummary,
    pub runs: Vec<RunResult>,
}

pub const SCHEMA: &str = "lora-one-lab/run@1";

/// Where an experiment stands after a chunk of work.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Progress {
    /// Index of the run in progress (== number of runs when all are done).
    pub run: usize,
    pub runs: usize,
    /// Step of the run in progress.
    pub step: usize,
    pub steps: usize,
    pub done: bool,
}

impl Progress {
    /// Fraction of all steps of all runs done, in [0, 1].
    pub fn fraction(&self) -> f64 {
        if self.runs == 0 {
            return 1.0;
        }
        ((self.run as f64) + (self.step as f64) / (self.steps.max(1) as f64)) / self.runs as f64
    }
}

struct Prepared {
    timing: LoadTiming,
    svd_ms: f64,
    g: TopSvd,
    g_rank: usize,
    u_rs: DMatrix<f64>,
    v_rs: DMatrix<f64>,
}

/// Drives the runs of one configuration on one backend.
pub struct Experiment {
    pub problem: Problem,
    plan: Vec<(InitKind, Option<f64>)>,
    prepared: Option<Prepared>,
    runs: Vec<RunResult>,
    /// Index into `plan` of the run in progress, and its step.
    current: Option<(usize, usize)>,
    backend_info: Option<BackendInfo>,
}

impl Experiment {
    pub fn new(cfg: &Config) -> Result<Self, ConfigError> {
        let problem = Problem::generate(cfg)?;
        Ok(Self::from_problem(problem))
    }

    pub fn from_problem(problem: Problem) -> Self {
        let plan = problem.cfg.runs();
        Experiment {
            problem,
            plan,
            prepared: None,
            runs: Vec::new(),
            current: None,
            backend_info: None,
        }
    }

    pub fn cfg(&self) -> &Config {
        &self.problem.cfg
    }

    pub fn runs(&self) -> &[RunResult] {
        &self.runs
    }

    pub fn progress(&self) -> Progress {
        let runs = self.plan.len();
        let steps = self.cfg().steps;
        match self.current {
            Some((i, t)) => Progress {
                run: i,
                runs,
                step: t,
                steps,
                done: false,
            },
            None => Progress {
                run: self.runs.len(),
                runs,
                step: 0,
                steps,
                done: self.runs.len() == runs && self.prepared.is_some(),
            },
        }
    }

    /// Load the problem on the backend and compute G's canonical truncated SVD.
    pub async fn prepare<B: Backend>(&mut self, be: &mut B) -> Result<(), EngineError> {
        self.backend_info = Some(be.info());
        let timing = be.load(&self.problem).await?;
        let m = init::svd_rank_needed(self.cfg());
        let t = Instant::now();
        let raw = be.top_svd(m).await?;
        let svd_ms = ms(t);
        let (g, g_rank) = linalg::canonicalize(raw, self.cfg().seed);
        let rs = self.cfg().r_star.min(g.s.len());
        let u_rs = g.u.columns(0, rs).into_owned();
        let v_rs = g.v.columns(0, rs).into_owned();
        self.prepared = Some(Prepared {
            timing,
            svd_ms,
            g,
            g_rank,
            u_rs,
            v_rs,
        });
        Ok(())
    }

    /// Do up to `budget` optimiser steps of work (starting runs as needed). Returns progress;
    /// call again until `done`. Each call does at least one unit of work.
    pub async fn step<B: Backend>(
        &mut self,
        be: &mut B,
        budget: usize,
    ) -> Result<Progress, EngineError> {
        if self.prepared.is_none() {
            self.prepare(be).await?;
            return Ok(self.progress());
        }
        let steps = self.cfg().steps;
        let settings = StepSettings::from_config(self.cfg());
        let mut budget = budget.max(1);
        while budget > 0 {
            match self.current {
                None => {
                    let i = self.runs.len();
                    if i >= self.plan.len() {
                        break;
                    }
                    let (kind, alpha2) = self.plan[i];
                    let prep = self.prepared.as_ref().expect("prepared");
                    let t = Instant::now();
                    let factors = init::build(self.cfg(), kind, alpha2, &prep.g);
                    let build_ms = ms(t);
                    let init_ms = if kind == InitKind::Vanilla {
                        build_ms
                    } else {
                        prep.timing.form_g_ms + prep.svd_ms + build_ms
                    };
                    self.runs.push(RunResult {
                        init: kind,
                        alpha2,
                        label: init::label(kind, alpha2),
                        init_ms,
                        train_ms: 0.0,
                        diverged: None,
                        stopped: false,
                        records: Vec::new(),
                    });
                    let adv = be.start(&factors, &settings).await?;
                    self.absorb(adv, 0.0);
                    self.current = if self.runs[i].diverged.is_some() {
                        None
                    } else {
                        Some((i, 0))
                    };
                }
                Some((i, t0)) => {
                    let n = budget.min(steps - t0);
                    let t = Instant::now();
                    let adv = be.advance(n).await?;
                    let dt = ms(t);
                    let base = self.runs[i].train_ms;
                    self.runs[i].train_ms += dt;
                    self.absorb(adv, base);
                    budget -= n;
                    let t1 = t0 + n;
                    self.current = if self.runs[i].diverged.is_some() || t1 >= steps {
                        None
                    } else {
                        Some((i, t1))
                    };
                }
            }
        }
        Ok(self.progress())
    }

    /// Stop the run in progress (it keeps its records) and skip the remaining runs.
    pub fn stop(&mut self) {
        if let Some((i, _)) = self.current.take() {
            self.runs[i].stopped = true;
        }
        self.plan.truncate(self.runs.len());
    }

    /// Run everything to the end, calling `on_progress` after each chunk.
    pub async fn run_to_end<B: Backend>(
        &mut self,
        be: &mut B,
        chunk: usize,
        mut on_progress: impl FnMut(&Progress),
    ) -> Result<(), EngineError> {
        loop {
            let p = self.step(be, chunk).await?;
            on_progress(&p);
            if p.done {
                return Ok(());
            }
        }
    }

    fn absorb(&mut self, adv: Advance, base_ms: f64) {
        let prep = self.prepared.as_ref().expect("prepared");
        let cfg = &self.problem.cfg;
        let m = cfg.r.min(cfg.r_star);
        let run = self.runs.last_mut().expect("a run");
        for s in adv.snapshots {
            let sin_a =
                linalg::top_left_subspace(&s.a, m).map(|q| linalg::sin_theta(&prep.u_rs, &q));
            let sin_b = linalg::top_left_subspace(&s.b.transpose(), m)
                .map(|q| linalg::sin_theta(&prep.v_rs, &q));
            let proj = if cfg.r == 1 {
                let u = self.problem.delta_u.column(0);
                let v = self.problem.delta_v.column(0);
                let a = u.dot(&s.a.column(0));
                let b = s.b.row(0).transpose().dot(&v);
                let a_perp = (s.a.column(0) - u * a).norm();
                let b_perp = (s.b.row(0).transpose() - v * b).norm();
                Some([a, b, a_perp + b_perp])
            } else {
                None
            };
            run.records.push(Record {
                step: s.step,
                // The factored loss ½tr(..) − tr(..) + c cancels down to ε·c (1e-16 in f64, 1e-7
                // in f32); a true sum of squares is never negative, so round-off below 0 is cut.
                loss: s.loss.max(0.0),
                risk: s.risk,
                sin_a,
                sin_b,
                err_f: s.err_f,
                sv_ab: linalg::product_singular_values(&s.a, &s.b),
                wall_ms: base_ms + s.t_ms,
                proj,
            });
        }
        if adv.diverged.is_some() {
            run.diverged = adv.diverged;
        }
    }

    /// Everything so far as a serialisable report (the CLI's JSON schema).
    pub fn report(&self) -> Report {
        let cfg = self.cfg();
        let mut config = cfg.clone();
        if !config.population {
            config.n = Some(cfg.n_samples());
        }
        let (problem, cost) = match &self.prepared {
            Some(p) => (
                ProblemSummary {
                    n: self.problem.n(),
                    delta_s: self.problem.delta_s.clone(),
                    g_s: p.g.s.clone(),
                    g_rank: p.g_rank,
                },
                CostSummary {
                    sigma_ms: p.timing.sigma_ms,
                    form_g_ms: p.timing.form_g_ms,
                    svd_ms: p.svd_ms,
                },
            ),
            None => (
                ProblemSummary {
                    n: self.problem.n(),
                    delta_s: self.problem.delta_s.clone(),
                    g_s: vec![],
                    g_rank: 0,
                },
                CostSummary::default(),
            ),
        };
        Report {
            schema: SCHEMA.to_string(),
            config,
            backend: self.backend_info.clone().unwrap_or(BackendInfo {
                kind: "none".into(),
                name: "not started".into(),
                precision: String::new(),
            }),
            problem,
            cost,
            runs: self.runs.clone(),
        }
    }

    /// The canonical truncated SVD of G (after `prepare`).
    pub fn g_svd(&self) -> Option<&TopSvd> {
        self.prepared.as_ref().map(|p| &p.g)
    }
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}
