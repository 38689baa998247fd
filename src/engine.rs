//! The engine API: a `Backend` trait (CPU reference, GPU) and the backend-agnostic `Experiment`
//! driver that forms G, builds the initialisations, runs them in chunks and records SPEC §4's
//! metrics. Chunked stepping lets a caller show progress, yield to the browser and stop.

use crate::config::{Config, ConfigError, InitKind, Optimiser, RunPlan};
use crate::init::{self, InitFactors};
use crate::linalg::{self, TopSvd};
use crate::problem::Problem;
use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;
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
    /// Σ̂'s share where the backend times it apart (the CPU reference, and the GPU's
    /// residual-form load); the GPU's streamed load forms Σ̂ with G in one pass and counts both
    /// in `form_g_ms`.
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

/// What a snapshot carries about the factors, for the alignment metrics.
#[derive(Clone, Debug)]
pub enum Factors {
    /// The factors themselves (d×r and r×k).
    Full { a: DMatrix<f64>, b: DMatrix<f64> },
    /// The alignment metrics themselves, formed on the device (so that recording a step reads
    /// back O(r) numbers instead of O((d+k)r)): sin θ_A and sin θ_B against the
    /// [`MetricBasis`] (None when the factor is 0) and the singular values of AB, descending.
    /// The batched GPU path forms them from the r×r Grams `AᵀA`, `BBᵀ`, `RᵀR` and `SᵀS`
    /// (`R = (I − UUᵀ)A`, `S = (I − VVᵀ)Bᵀ`); `linalg::gram_metrics` is its CPU twin.
    Aligned {
        sin_a: Option<f64>,
        sin_b: Option<f64>,
        sv_ab: Vec<f64>,
    },
}

/// G's top-r* singular bases, against which sin θ_A and sin θ_B are measured (d×r*, k×r*).
#[derive(Clone, Debug)]
pub struct MetricBasis {
    pub u: DMatrix<f64>,
    pub v: DMatrix<f64>,
}

/// The state of a run at step t as a backend reports it: loss, risk and ‖AB − Δ‖_F computed on
/// the backend, and what the alignment metrics need ([`Factors`]).
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub step: usize,
    pub loss: f64,
    pub risk: f64,
    pub err_f: f64,
    pub factors: Factors,
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

/// One run of a batch: its initial factors and its optimiser settings (each run of a batch may
/// have its own η, damping, init scale and init draw; all share the loaded problem).
#[derive(Clone, Debug)]
pub struct RunSpec {
    pub init: InitFactors,
    pub settings: StepSettings,
}

/// One engine API, two backends. All methods are async so that the GPU backend can await buffer
/// maps in the browser; the CPU backend's futures are ready at once.
///
/// Runs are advanced as a batch: every run of the batch shares the loaded problem (Σ̂, G) and
/// takes the same number of steps per call; a run that diverges stops at its step and the others
/// go on. The CPU backend computes a batch run by run (the oracle); the GPU backend advances
/// small problems' batches in one persistent dispatch (see `gpu::batched`).
#[allow(async_fn_in_trait)]
pub trait Backend {
    fn info(&self) -> BackendInfo;
    /// Upload the problem; form Σ̂ = XᵀX/N, G = −∇_W L(W0) and the loss constant.
    async fn load(&mut self, problem: &Problem) -> Result<LoadTiming, EngineError>;
    /// The top-m singular triplets of G (raw: callers canonicalise them).
    async fn top_svd(&mut self, m: usize) -> Result<TopSvd, EngineError>;
    /// Begin a batch of runs (replacing any previous one); returns, per run, the snapshot of
    /// step 0 or its divergence. `basis` is what snapshots of [`Factors::Aligned`] are measured
    /// against.
    async fn start_batch(
        &mut self,
        runs: &[RunSpec],
        basis: &MetricBasis,
    ) -> Result<Vec<Advance>, EngineError>;
    /// Take `steps` updates of every live run of the batch; per run, snapshots at its recorded
    /// steps and its divergence (runs already stopped get an empty `Advance`).
    async fn advance_batch(&mut self, steps: usize) -> Result<Vec<Advance>, EngineError>;
    /// `advance_batch` in parts: each part (per run, the snapshots and divergence of a stretch
    /// of the steps, in order) goes to `sink` as soon as the backend has it, so that the
    /// caller's work on it overlaps the backend's (the GPU's batched path hands over each
    /// chunk's records while the next chunk runs). The parts of one call, joined per run, are
    /// what `advance_batch` returns. By default one part, at the end.
    async fn advance_batch_into(
        &mut self,
        steps: usize,
        sink: &mut dyn FnMut(Vec<Advance>),
    ) -> Result<(), EngineError> {
        sink(self.advance_batch(steps).await?);
        Ok(())
    }

    /// Begin a batch of one run (returns full factors' snapshots on every backend).
    async fn start(
        &mut self,
        init: &InitFactors,
        settings: &StepSettings,
    ) -> Result<Advance, EngineError> {
        let basis = MetricBasis {
            u: DMatrix::zeros(init.a0.nrows(), 0),
            v: DMatrix::zeros(init.b0.ncols(), 0),
        };
        let spec = RunSpec {
            init: init.clone(),
            settings: *settings,
        };
        let mut v = self
            .start_batch(std::slice::from_ref(&spec), &basis)
            .await?;
        Ok(v.pop().unwrap_or_default())
    }
    /// Advance a batch of one run.
    async fn advance(&mut self, steps: usize) -> Result<Advance, EngineError> {
        let mut v = self.advance_batch(steps).await?;
        Ok(v.pop().unwrap_or_default())
    }
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
    /// Vanilla runs with GD (d + k ≤ `linearised::MAX_DIMS`): sin θ_A of the linearised dynamics
    /// from the same A0 at this step (the talk's power-iteration prediction).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub lin_sin_a: Option<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunResult {
    pub init: InitKind,
    pub alpha2: Option<f64>,
    /// Init draw of an ensemble (`seeds` > 1): 0 is the seed's own draw.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub draw: usize,
    /// Same label for every draw of one setting (ensembles group by it).
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

impl Report {
    /// Read a run file (`lora-one-lab run --out FILE.json`, the web app's JSON export) for
    /// `plot`: every error names the field (its path in the document). Beyond the types, the
    /// schema tag, the config and the numbers a figure draws are checked: steps within the
    /// config's, losses and risks finite or absent (a diverged step may be recorded as null).
    pub fn from_json(text: &str) -> Result<Report, ConfigError> {
        let r: Report = crate::config::json_at_path(text)?;
        if r.schema != SCHEMA {
            return Err(ConfigError::new(
                "schema",
                format!("expected `{SCHEMA}`, got `{}`", clip(&r.schema)),
            ));
        }
        r.config
            .validate()
            .map_err(|e| ConfigError::new(&format!("config.{}", e.field), e.message))?;
        for (i, run) in r.runs.iter().enumerate() {
            for (j, rec) in run.records.iter().enumerate() {
                let at = |f: &str| format!("runs[{i}].records[{j}].{f}");
                if rec.step > r.config.steps {
                    return Err(ConfigError::new(
                        &at("step"),
                        format!(
                            "must be ≤ config.steps = {}, got {}",
                            r.config.steps, rec.step
                        ),
                    ));
                }
                for (name, v) in [("loss", rec.loss), ("risk", rec.risk), ("err_f", rec.err_f)] {
                    if !v.is_finite() {
                        return Err(ConfigError::new(
                            &at(name),
                            format!("must be finite, got {v}"),
                        ));
                    }
                }
            }
        }
        Ok(r)
    }
}

fn clip(s: &str) -> String {
    if s.chars().count() > 80 {
        s.chars().take(80).collect::<String>() + "…"
    } else {
        s.to_string()
    }
}

fn is_zero(v: &usize) -> bool {
    *v == 0
}

/// Where an experiment stands after a chunk of work. All runs advance together as one batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Progress {
    /// Runs still advancing (not finished, diverged or stopped).
    pub live: usize,
    pub runs: usize,
    /// Step the batch has reached.
    pub step: usize,
    pub steps: usize,
    pub done: bool,
}

impl Progress {
    /// Fraction of the batch's steps done, in [0, 1]: a stopped run (or one whose runs all diverged) shows where it
    /// ended, not 100 %.
    pub fn fraction(&self) -> f64 {
        if self.runs == 0 {
            return 1.0;
        }
        (self.step as f64 / self.steps.max(1) as f64).min(1.0)
    }
}

struct Prepared {
    timing: LoadTiming,
    svd_ms: f64,
    /// W0's top-r SVD (PiSSA only) and its time.
    w0: Option<TopSvd>,
    w0_svd_ms: f64,
    g: TopSvd,
    g_rank: usize,
    u_rs: DMatrix<f64>,
    v_rs: DMatrix<f64>,
}

/// Drives the runs of one configuration on one backend, as one batch.
pub struct Experiment {
    pub problem: Problem,
    plan: Vec<RunPlan>,
    prepared: Option<Prepared>,
    runs: Vec<RunResult>,
    /// Step the batch has reached (None before the batch starts).
    batch_step: Option<usize>,
    /// Runs still advancing.
    live: Vec<bool>,
    finished: bool,
    backend_info: Option<BackendInfo>,
    /// The linearised model (vanilla runs with GD, small problems), each vanilla run's A0, and
    /// its start in the model (formed at the first records).
    linear: LinearState,
    lin_a0: Vec<Option<DMatrix<f64>>>,
    lin_starts: Vec<Option<crate::linearised::Start>>,
    /// Host milliseconds spent turning snapshots into records (benchmarks' breakdown).
    absorb_ms: f64,
}

/// The linearised model: natively on a thread of its own, started with `prepare` and joined at
/// the first records, so its host work (G in f64 from the samples and G's full SVD) overlaps the
/// backend's load and steps; in the browser's one wasm thread, computed in place.
enum LinearState {
    Ready(Option<Arc<crate::linearised::Linearised>>),
    #[cfg(not(target_arch = "wasm32"))]
    Pending(std::thread::JoinHandle<Option<crate::linearised::Linearised>>),
}

impl LinearState {
    fn start(problem: &Problem) -> LinearState {
        if !linearised_eligible(&problem.cfg) {
            return LinearState::Ready(None);
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let p = problem.clone();
            LinearState::Pending(std::thread::spawn(move || linearised_model(&p)))
        }
        #[cfg(target_arch = "wasm32")]
        LinearState::Ready(linearised_model(problem).map(Arc::new))
    }

    fn get(&mut self) -> Option<&Arc<crate::linearised::Linearised>> {
        #[cfg(not(target_arch = "wasm32"))]
        if let LinearState::Pending(_) = self {
            let LinearState::Pending(h) = std::mem::replace(self, LinearState::Ready(None)) else {
                unreachable!()
            };
            *self = LinearState::Ready(h.join().expect("linearised model thread").map(Arc::new));
        }
        match self {
            LinearState::Ready(l) => l.as_ref(),
            #[cfg(not(target_arch = "wasm32"))]
            LinearState::Pending(_) => None,
        }
    }
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
            batch_step: None,
            live: Vec::new(),
            finished: false,
            backend_info: None,
            linear: LinearState::Ready(None),
            lin_a0: Vec::new(),
            lin_starts: Vec::new(),
            absorb_ms: 0.0,
        }
    }

    pub fn cfg(&self) -> &Config {
        &self.problem.cfg
    }

    pub fn runs(&self) -> &[RunResult] {
        &self.runs
    }

    pub fn progress(&self) -> Progress {
        Progress {
            live: self.live.iter().filter(|l| **l).count(),
            runs: self.plan.len(),
            step: self.batch_step.unwrap_or(0),
            steps: self.cfg().steps,
            done: self.finished,
        }
    }

    /// Load the problem on the backend and compute G's canonical truncated SVD.
    pub async fn prepare<B: Backend>(&mut self, be: &mut B) -> Result<(), EngineError> {
        self.backend_info = Some(be.info());
        self.linear = LinearState::start(&self.problem);
        let timing = be.load(&self.problem).await?;
        let m = init::svd_rank_needed(self.cfg());
        let t = Instant::now();
        let raw = be.top_svd(m).await?;
        let svd_ms = ms(t);
        let (g, g_rank) = linalg::canonicalize(raw, self.cfg().seed);
        // PiSSA's W0 SVD (host, f64); its time is part of PiSSA's init time
        let t = Instant::now();
        let w0 = self
            .cfg()
            .inits
            .contains(&InitKind::Pissa)
            .then(|| init::w0_svd(self.cfg(), &self.problem.w0));
        let w0_svd_ms = ms(t);
        let rs = self.cfg().r_star.min(g.s.len());
        let u_rs = g.u.columns(0, rs).into_owned();
        let v_rs = g.v.columns(0, rs).into_owned();
        self.prepared = Some(Prepared {
            timing,
            svd_ms,
            w0,
            w0_svd_ms,
            g,
            g_rank,
            u_rs,
            v_rs,
        });
        Ok(())
    }

    /// Build every run's initial factors and start the batch.
    async fn start_batch<B: Backend>(&mut self, be: &mut B) -> Result<(), EngineError> {
        let settings = StepSettings::from_config(self.cfg());
        let prep = self.prepared.as_ref().expect("prepared");
        let mut specs = Vec::with_capacity(self.plan.len());
        // every run's factors (natively on all cores: an ensemble draws thousands)
        let cfg = &self.problem.cfg;
        let built = par_map(&self.plan, |plan| {
            let t = Instant::now();
            let factors = init::build(cfg, plan, &prep.g, prep.w0.as_ref());
            (factors, ms(t))
        });
        for (plan, (factors, build_ms)) in self.plan.iter().zip(built) {
            let init_ms = match plan.init {
                InitKind::Vanilla => build_ms,
                InitKind::Pissa => prep.w0_svd_ms + build_ms,
                _ => prep.timing.form_g_ms + prep.svd_ms + build_ms,
            };
            self.runs.push(RunResult {
                init: plan.init,
                alpha2: plan.alpha2,
                draw: plan.draw,
                label: init::label(plan.init, plan.alpha2),
                init_ms,
                train_ms: 0.0,
                diverged: None,
                stopped: false,
                records: Vec::new(),
            });
            specs.push(RunSpec {
                init: factors,
                settings,
            });
        }
        let basis = MetricBasis {
            u: prep.u_rs.clone(),
            v: prep.v_rs.clone(),
        };
        let advs = be.start_batch(&specs, &basis).await?;
        // the vanilla runs' A0 for the linearised model (moved out of the specs, not copied)
        let eligible = linearised_eligible(self.cfg());
        self.lin_a0 = specs
            .into_iter()
            .zip(&self.plan)
            .map(|(s, plan)| (eligible && plan.init == InitKind::Vanilla).then_some(s.init.a0))
            .collect();
        self.live = vec![true; self.runs.len()];
        self.absorb_all(
            advs.into_iter()
                .enumerate()
                .map(|(i, a)| (i, a, 0.0))
                .collect(),
        );
        self.batch_step = Some(0);
        self.update_finished();
        Ok(())
    }

    fn update_finished(&mut self) {
        let steps = self.cfg().steps;
        if self.batch_step.unwrap_or(0) >= steps {
            self.live.iter_mut().for_each(|l| *l = false);
        }
        self.finished = self.batch_step.is_some() && !self.live.iter().any(|l| *l);
    }

    /// Do up to `budget` optimiser steps of the batch (every live run takes them; the first
    /// calls load the problem and start the batch). Returns progress; call again until `done`.
    pub async fn step<B: Backend>(
        &mut self,
        be: &mut B,
        budget: usize,
    ) -> Result<Progress, EngineError> {
        if self.prepared.is_none() {
            self.prepare(be).await?;
            return Ok(self.progress());
        }
        let Some(t0) = self.batch_step else {
            self.start_batch(be).await?;
            return Ok(self.progress());
        };
        if self.finished {
            return Ok(self.progress());
        }
        let n = budget.max(1).min(self.cfg().steps - t0);
        let t = Instant::now();
        // the runs live at the call, and their training time before it (records' wall times)
        let live: Vec<bool> = self.live.clone();
        let bases: Vec<f64> = self.runs.iter().map(|r| r.train_ms).collect();
        be.advance_batch_into(n, &mut |advs| {
            let work = advs
                .into_iter()
                .enumerate()
                .filter(|(i, _)| live.get(*i).copied().unwrap_or(false))
                .map(|(i, adv)| (i, adv, bases[i]))
                .collect();
            self.absorb_all(work);
        })
        .await?;
        let dt = ms(t);
        for (run, _) in self.runs.iter_mut().zip(&live).filter(|(_, l)| **l) {
            run.train_ms += dt;
        }
        self.batch_step = Some(t0 + n);
        self.update_finished();
        Ok(self.progress())
    }

    /// Stop the runs in progress (they keep their records).
    pub fn stop(&mut self) {
        for (i, l) in self.live.iter_mut().enumerate() {
            if *l {
                self.runs[i].stopped = true;
                *l = false;
            }
        }
        if self.batch_step.is_none() {
            self.plan.clear();
            self.batch_step = Some(0);
        }
        self.finished = true;
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

    /// Turn every run's snapshots into records (SPEC §4 metrics; natively on all cores when
    /// there are many) and note divergences.
    fn absorb_all(&mut self, work: Vec<(usize, Advance, f64)>) {
        let t_absorb = Instant::now();
        if self.lin_starts.len() < self.lin_a0.len() {
            let starts: Vec<_> = match self.linear.get() {
                Some(l) => par_map(&self.lin_a0, |a| a.as_ref().map(|a| l.start(a))),
                None => self.lin_a0.iter().map(|_| None).collect(),
            };
            self.lin_starts = starts;
        }
        let linear = self.linear.get();
        let prep = self.prepared.as_ref().expect("prepared");
        let problem = &self.problem;
        let mut jobs: Vec<(usize, &Snapshot, f64)> = Vec::new();
        for (i, adv, base) in &work {
            jobs.extend(adv.snapshots.iter().map(|s| (*i, s, *base)));
        }
        let starts = &self.lin_starts;
        // the linearised predictions: each step's shared part once, then each run's r×r work
        let mut scales = std::collections::HashMap::new();
        if let Some(l) = linear {
            for &(i, s, _) in &jobs {
                if matches!(starts.get(i), Some(Some(_))) {
                    scales.entry(s.step).or_insert_with(|| l.scales(s.step));
                }
            }
        }
        let recs = par_map(&jobs, |&(i, s, base)| {
            let mut rec = record_of(prep, problem, s, base);
            if let (Some(l), Some(Some(st))) = (linear, starts.get(i)) {
                rec.lin_sin_a = l.sin_a_scaled(st, &scales[&s.step]);
            }
            rec
        });
        for ((i, _, _), rec) in jobs.iter().zip(recs) {
            self.runs[*i].records.push(rec);
        }
        for (i, adv, _) in work {
            if adv.diverged.is_some() {
                self.runs[i].diverged = adv.diverged;
                self.live[i] = false;
            }
        }
        self.absorb_ms += ms(t_absorb);
    }

    /// Host milliseconds spent so far turning the backend's snapshots into records (the SPEC §4
    /// metrics the backend does not form, the linearised prediction, bookkeeping).
    pub fn absorb_ms(&self) -> f64 {
        self.absorb_ms
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

/// Whether the linearised model is drawn: vanilla runs, plain GD, d + k ≤
/// `linearised::MAX_DIMS` (it needs G's full SVD, formed on the host in f64).
fn linearised_eligible(cfg: &Config) -> bool {
    cfg.inits.contains(&InitKind::Vanilla)
        && cfg.optimiser == crate::config::Optimiser::Gd
        && cfg.d + cfg.k <= crate::linearised::MAX_DIMS
}

/// The linearised model of an eligible problem (`linearised_eligible`).
fn linearised_model(problem: &Problem) -> Option<crate::linearised::Linearised> {
    let cfg = &problem.cfg;
    let g = if cfg.population {
        problem.delta.clone()
    } else {
        problem.stats(false)?.g
    };
    Some(crate::linearised::Linearised::new(&g, cfg.eta, cfg.r_star))
}

/// One record of SPEC §4 from a backend's snapshot.
fn record_of(prep: &Prepared, problem: &Problem, s: &Snapshot, base_ms: f64) -> Record {
    let cfg = &problem.cfg;
    let m = cfg.r.min(cfg.r_star);
    let (sin_a, sin_b, sv_ab, proj) = match &s.factors {
        Factors::Full { a, b } => {
            let sin_a = linalg::top_left_subspace(a, m).map(|q| linalg::sin_theta(&prep.u_rs, &q));
            let sin_b = linalg::top_left_subspace(&b.transpose(), m)
                .map(|q| linalg::sin_theta(&prep.v_rs, &q));
            let proj = if cfg.r == 1 {
                let u = problem.delta_u.column(0);
                let v = problem.delta_v.column(0);
                let pa = u.dot(&a.column(0));
                let pb = b.row(0).transpose().dot(&v);
                let a_perp = (a.column(0) - u * pa).norm();
                let b_perp = (b.row(0).transpose() - v * pb).norm();
                Some([pa, pb, a_perp + b_perp])
            } else {
                None
            };
            (sin_a, sin_b, linalg::product_singular_values(a, b), proj)
        }
        Factors::Aligned {
            sin_a,
            sin_b,
            sv_ab,
        } => (*sin_a, *sin_b, sv_ab.clone(), None),
    };
    Record {
        step: s.step,
        // The factored loss ½tr(..) − tr(..) + c cancels down to ε·c (1e-16 in f64, 1e-7
        // in f32); a true sum of squares is never negative, so round-off below 0 is cut.
        loss: s.loss.max(0.0),
        risk: s.risk,
        sin_a,
        sin_b,
        err_f: s.err_f,
        sv_ab,
        wall_ms: base_ms + s.t_ms,
        proj,
        lin_sin_a: None,
    }
}

/// `items.iter().map(f)`, spread over the machine's cores when there is enough work (natively;
/// in the browser's single wasm thread it is the plain map). The output order is the input's.
pub(crate) fn par_map<T: Sync, U: Send>(items: &[T], f: impl Fn(&T) -> U + Sync) -> Vec<U> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        if threads > 1 && items.len() >= 64 {
            let per = items.len().div_ceil(threads);
            let f = &f;
            return std::thread::scope(|sc| {
                let hs: Vec<_> = items
                    .chunks(per)
                    .map(|c| sc.spawn(move || c.iter().map(f).collect::<Vec<U>>()))
                    .collect();
                hs.into_iter()
                    .flat_map(|h| h.join().expect("metrics thread"))
                    .collect()
            });
        }
    }
    items.iter().map(f).collect()
}

/// Floating-point operations of one factored optimiser step of one run (SPEC §1's products Σ̂A,
/// GBᵀ and AᵀG, and the r×r work).
pub fn step_flops(d: usize, k: usize, r: usize) -> f64 {
    2.0 * (d * d * r) as f64 + 4.0 * (d * k * r) as f64 + 4.0 * ((d + k) * r * r) as f64
}

/// Work of one step of a whole batch below which the CPU engine beats a hardware GPU, at
/// max(d, k) ≤ 100. Measured on the H200 against the native CPU reference (BENCHMARKS.md,
/// "crossover"): a batched GPU step costs a nearly fixed latency (one pack's chain of dependent
/// phases: 0.1–0.3 ms in a short run up to d = 100) up to ~10⁸ flop per step, the CPU's costs
/// its flops; at d ≤ 100 the GPU wins from 2–4·10⁶ flop per batch step. The browser's wasm CPU
/// engine is slower than native, so 2·10⁶ is the conservative side: `spectral` (3 × 5.3·10⁵)
/// stays on the CPU, `alignment` (5 × 5.3·10⁵, 5.4× faster on the GPU end to end) goes to a
/// hardware GPU. Above d = 100 one pack's latency grows with the size of Σ̂ and G, so the
/// threshold grows as (max(d, k)/100)² ([`gpu_min_batch_flops`]).
pub const GPU_MIN_BATCH_FLOPS: f64 = 2e6;

/// The crossover for a problem of this size: [`GPU_MIN_BATCH_FLOPS`], times (max(d, k)/100)²
/// above 100 (d = 200: one run loses 0.16× on the GPU, sixteen win 2×).
pub fn gpu_min_batch_flops(d: usize, k: usize) -> f64 {
    let s = d.max(k) as f64 / 100.0;
    GPU_MIN_BATCH_FLOPS * (s * s).max(1.0)
}

/// Whether a hardware GPU is the faster place for this configuration (`compute=auto`). A
/// software adapter never is (that choice is made from the adapter, not from here).
pub fn gpu_is_faster(cfg: &Config) -> Result<(), String> {
    let runs = cfg.runs().len().max(1);
    let work = step_flops(cfg.d, cfg.k, cfg.r) * runs as f64;
    let min = gpu_min_batch_flops(cfg.d, cfg.k);
    if work < min {
        return Err(format!(
            "a step of this batch is {work:.1e} flop, below the GPU/CPU crossover at this size ({min:.1e}): the CPU engine is faster here"
        ));
    }
    Ok(())
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    /// The records' linearised predictions (each step's shared part computed once for all
    /// runs) equal the closed form evaluated run by run, to the bit.
    #[test]
    fn linearised_records_equal_the_closed_form_run_by_run() {
        let mut cfg = crate::config::Preset::Alignment.config();
        cfg.d = 24;
        cfg.k = 20;
        cfg.steps = 45;
        cfg.record_every = 4; // 45 is recorded too, off the grid
        cfg.seeds = 3;
        let mut e = Experiment::new(&cfg).unwrap();
        let mut cpu = crate::cpu::CpuBackend::new();
        pollster::block_on(e.run_to_end(&mut cpu, 7, |_| {})).unwrap();
        let lin = linearised_model(&e.problem).expect("eligible");
        let mut checked = 0;
        for (i, run) in e.runs.iter().enumerate() {
            let Some(a0) = &e.lin_a0[i] else {
                assert!(run.records.iter().all(|r| r.lin_sin_a.is_none()));
                continue;
            };
            let st = lin.start(a0);
            for rec in &run.records {
                let want = lin.sin_a(&st, rec.step);
                assert_eq!(
                    want.map(f64::to_bits),
                    rec.lin_sin_a.map(f64::to_bits),
                    "run {i} step {}",
                    rec.step
                );
                checked += want.is_some() as usize;
            }
            assert_eq!(run.records.last().map(|r| r.step), Some(45));
        }
        assert!(checked > 3 * 12, "{checked} predictions checked");
    }
}
