//! Sweeps (SPEC §8): one or two swept parameters × S init draws per cell, the quantities of the
//! paper's Fig. 2 and of the Θ(ln d) alignment law per run, and their median and 10–90 % band per
//! cell. A sweep is a list of experiments: the cells that share a problem (they differ only in
//! α²) run as one batch, so the batched GPU engine advances all their draws together.

use crate::config::{Config, ConfigError, InitKind};
use crate::engine::{Backend, EngineError, Experiment, Report, RunResult};
use crate::ensemble::quantile;
use serde::{Deserialize, Serialize};

pub const SCHEMA: &str = "lora-one-lab/sweep@1";

/// Most cells of a sweep (each holds `seeds` runs).
pub const MAX_CELLS: usize = 4096;

/// One swept parameter: a config key and its values in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Axis {
    pub key: String,
    pub values: Vec<f64>,
    /// Draw this axis on a log scale.
    pub log: bool,
}

impl Axis {
    /// Parse `key=SPEC`, SPEC a comma list (`1e-4,1e-3`), `log:LO:HI:N` (N values geometric) or
    /// `lin:LO:HI:N`. The key must be a numeric config field.
    pub fn parse(s: &str) -> Result<Axis, ConfigError> {
        let (key, spec) = s
            .split_once('=')
            .ok_or_else(|| ConfigError::new("sweep", format!("expected KEY=VALUES, got `{s}`")))?;
        let key = key.trim();
        let field = |m: String| ConfigError::new(key, m);
        // the key must take a number: try setting one on a default config
        Config::default()
            .set(key, "1")
            .map_err(|e| field(format!("cannot be swept: {}", e.message)))?;
        let num = |v: &str| -> Result<f64, ConfigError> {
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| field(format!("expected a number, got `{}`", v.trim())))
        };
        let spec = spec.trim();
        let (values, log) = if let Some(r) = spec
            .strip_prefix("log:")
            .map(|r| (r, true))
            .or_else(|| spec.strip_prefix("lin:").map(|r| (r, false)))
        {
            let (r, log) = r;
            let p: Vec<&str> = r.split(':').collect();
            if p.len() != 3 {
                return Err(field(format!(
                    "a range is {}:LO:HI:N, got `{spec}`",
                    if log { "log" } else { "lin" }
                )));
            }
            let (lo, hi) = (num(p[0])?, num(p[1])?);
            let n: usize = p[2]
                .trim()
                .parse()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| field(format!("N must be in 1..=1000, got `{}`", p[2])))?;
            if log && (lo <= 0.0 || hi <= 0.0) {
                return Err(field("a log range needs LO, HI > 0".to_string()));
            }
            let at = |i: usize| {
                let f = if n == 1 {
                    0.0
                } else {
                    i as f64 / (n - 1) as f64
                };
                if log {
                    (lo.ln() + f * (hi.ln() - lo.ln())).exp()
                } else {
                    lo + f * (hi - lo)
                }
            };
            ((0..n).map(at).map(round_sig).collect(), log)
        } else {
            let v = spec
                .split(',')
                .filter(|x| !x.trim().is_empty())
                .map(num)
                .collect::<Result<Vec<_>, _>>()?;
            let log = v.len() > 2 && v.iter().all(|x| *x > 0.0) && {
                let r: Vec<f64> = v.windows(2).map(|w| w[1] / w[0]).collect();
                r.iter().all(|x| (x / r[0] - 1.0).abs() < 1e-6) && (r[0] - 1.0).abs() > 0.5
            };
            (v, log)
        };
        if values.is_empty() {
            return Err(field("lists no value".to_string()));
        }
        Ok(Axis {
            key: key.to_string(),
            values,
            log,
        })
    }

    /// The value as the config form writes it (integers without a decimal point).
    fn text(v: f64) -> String {
        if v.fract() == 0.0 && v.abs() < 1e15 {
            format!("{}", v as i64)
        } else {
            format!("{v}")
        }
    }
}

/// Nine significant digits, so that generated grids read 1e-3, not 0.0010000000000000002.
fn round_sig(x: f64) -> f64 {
    format!("{x:.8e}").parse().unwrap_or(x)
}

/// What to sweep: a base config, one or two axes, the alignment threshold θ and the risk
/// threshold (relative to the run's initial risk).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepSpec {
    pub base: Config,
    pub x: Axis,
    pub y: Option<Axis>,
    /// t*(θ): the first step with sin θ_A ≤ θ.
    pub theta: f64,
    /// Steps to risk: the first step with risk ≤ `risk_threshold` × the initial risk.
    pub risk_threshold: f64,
}

/// The sweep presets of SPEC §8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SweepPreset {
    /// Fig. 2: α² over 10^-6..10^0 (log) × d, N = 16d, other settings as `alignment`.
    Fig2,
    /// The alignment time t*(θ) against d from 32 upward, small α².
    LnDLaw,
    /// One setting, 64 init draws: the spread of the curves (Fig. 3's seeds).
    Seeds,
}

impl SweepPreset {
    pub const ALL: [SweepPreset; 3] = [SweepPreset::Fig2, SweepPreset::LnDLaw, SweepPreset::Seeds];

    pub fn name(self) -> &'static str {
        match self {
            SweepPreset::Fig2 => "fig2",
            SweepPreset::LnDLaw => "ln-d-law",
            SweepPreset::Seeds => "seeds",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == s)
    }

    /// The full-size sweep (the CLI's default; the browser's defaults are smaller).
    pub fn spec(self) -> SweepSpec {
        let mut base = crate::config::Preset::Alignment.config();
        base.inits = vec![InitKind::Vanilla];
        base.record_every = 5;
        match self {
            SweepPreset::Fig2 => {
                base.seeds = 4;
                SweepSpec {
                    base,
                    x: Axis {
                        key: "alpha2".into(),
                        values: (0..=6).map(|i| 10f64.powi(-i)).rev().collect(),
                        log: true,
                    },
                    y: Some(Axis {
                        key: "d".into(),
                        values: vec![50.0, 100.0, 200.0],
                        log: true,
                    }),
                    theta: 0.5,
                    risk_threshold: 1e-3,
                }
            }
            SweepPreset::LnDLaw => {
                base.alpha2 = vec![1e-6];
                base.seeds = 8;
                base.steps = 800;
                base.record_every = 1;
                SweepSpec {
                    base,
                    x: Axis {
                        key: "d".into(),
                        values: vec![32.0, 64.0, 128.0, 256.0, 512.0],
                        log: true,
                    },
                    y: None,
                    theta: 0.5,
                    risk_threshold: 1e-3,
                }
            }
            SweepPreset::Seeds => {
                base.alpha2 = vec![1e-3];
                base.seeds = 64;
                SweepSpec {
                    base,
                    x: Axis {
                        key: "alpha2".into(),
                        values: vec![1e-3],
                        log: true,
                    },
                    y: None,
                    theta: 0.5,
                    risk_threshold: 1e-3,
                }
            }
        }
    }
}

/// Per run, the quantities of SPEC §8.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub draw: usize,
    /// min over recorded t of sin θ_A, and the step where it is reached.
    pub min_sin_a: Option<f64>,
    pub min_sin_a_step: Option<usize>,
    /// ln risk at the last recorded step.
    pub final_ln_risk: f64,
    /// First recorded step with risk ≤ threshold × initial risk.
    pub steps_to_risk: Option<usize>,
    /// First recorded step with sin θ_A ≤ θ.
    pub t_star: Option<usize>,
    /// Step of divergence.
    pub diverged: Option<usize>,
    /// The run's curve, thinned to at most `CURVE_POINTS` points: (step, sin θ_A, ln risk)
    /// (sin θ_A NaN where not recorded). Drawn when a sweep has one cell (the seeds spread).
    #[serde(default)]
    pub curve: Vec<[f64; 3]>,
}

/// Most points kept of a run's curve in a sweep report.
pub const CURVE_POINTS: usize = 160;

impl RunSummary {
    pub fn of(run: &RunResult, theta: f64, risk_threshold: f64) -> RunSummary {
        let recs = &run.records;
        let mut min_sin_a: Option<(f64, usize)> = None;
        for r in recs {
            if let Some(s) = r.sin_a.filter(|s| s.is_finite()) {
                if min_sin_a.is_none_or(|(m, _)| s < m) {
                    min_sin_a = Some((s, r.step));
                }
            }
        }
        let r0 = recs.first().map_or(f64::NAN, |r| r.risk);
        RunSummary {
            draw: run.draw,
            min_sin_a: min_sin_a.map(|m| m.0),
            min_sin_a_step: min_sin_a.map(|m| m.1),
            final_ln_risk: recs.last().map_or(f64::NAN, |r| r.risk.ln()),
            steps_to_risk: recs
                .iter()
                .find(|r| r.risk <= risk_threshold * r0)
                .map(|r| r.step),
            t_star: recs
                .iter()
                .find(|r| r.sin_a.is_some_and(|s| s <= theta))
                .map(|r| r.step),
            diverged: run.diverged.as_ref().map(|d| d.step),
            curve: {
                let stride = recs.len().div_ceil(CURVE_POINTS - 1).max(1);
                let mut c: Vec<[f64; 3]> = recs
                    .iter()
                    .step_by(stride)
                    .chain(recs.last().filter(|_| (recs.len() - 1) % stride != 0))
                    .map(|r| [r.step as f64, r.sin_a.unwrap_or(f64::NAN), r.risk.ln()])
                    .collect();
                c.dedup_by(|a, b| a[0] == b[0]);
                c
            },
        }
    }
}

/// 10 / 50 / 90 % quantiles of one quantity over a cell's draws (None where no draw has it).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub q10: f64,
    pub median: f64,
    pub q90: f64,
    /// Draws that have the quantity (e.g. reached θ).
    pub n: usize,
}

impl Spread {
    pub fn of(v: impl Iterator<Item = f64>) -> Option<Spread> {
        let mut v: Vec<f64> = v.filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(Spread {
            q10: quantile(&v, 0.1),
            median: quantile(&v, 0.5),
            q90: quantile(&v, 0.9),
            n: v.len(),
        })
    }
}

/// One cell of the sweep: its axis values, its runs and their spreads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    pub x: f64,
    pub y: Option<f64>,
    pub runs: Vec<RunSummary>,
    pub min_sin_a: Option<Spread>,
    pub final_ln_risk: Option<Spread>,
    pub steps_to_risk: Option<Spread>,
    pub t_star: Option<Spread>,
    pub diverged: usize,
    /// λ_{r*}(G) of the cell's problem (for the theorem's prediction).
    pub lambda_rs: f64,
    /// The theorem's alignment time ln(√d/θ) / ln(1 + η λ_{r*}(G)).
    pub t_theory: f64,
}

/// A whole sweep: the spec, its cells in row-major order (y outer, x inner) and wall time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepReport {
    pub schema: String,
    pub spec: SweepSpec,
    pub backend: String,
    pub cells: Vec<Cell>,
    /// Trajectory-steps computed (runs × steps taken).
    pub trajectory_steps: u64,
    pub wall_ms: f64,
    /// Least-squares slope of the median t*(θ) against ln d (when d is swept): Θ(ln d) says it
    /// is positive and finite.
    pub slope_t_star_ln_d: Option<f64>,
}

/// One experiment of the sweep: the cells it computes (indices) and its config.
struct Job {
    cfg: Config,
    cells: Vec<usize>,
}

impl SweepSpec {
    /// Check the spec and list its experiments: every cell a config, and the cells that differ
    /// only in α² merged into one batch.
    fn jobs(&self) -> Result<Vec<Job>, ConfigError> {
        if !(self.theta > 0.0 && self.theta < 1.0) {
            return Err(ConfigError::new(
                "theta",
                format!("must be in (0, 1), got {}", self.theta),
            ));
        }
        if !(self.risk_threshold > 0.0 && self.risk_threshold < 1.0) {
            return Err(ConfigError::new(
                "risk_threshold",
                format!("must be in (0, 1), got {}", self.risk_threshold),
            ));
        }
        let ys: Vec<Option<f64>> = match &self.y {
            Some(a) => a.values.iter().map(|v| Some(*v)).collect(),
            None => vec![None],
        };
        let n_cells = self.x.values.len() * ys.len();
        if n_cells > MAX_CELLS {
            return Err(ConfigError::new(
                "sweep",
                format!("{n_cells} cells; at most {MAX_CELLS}"),
            ));
        }
        let mut base = self.base.clone();
        base.inits = vec![InitKind::Vanilla];
        let mut jobs: Vec<Job> = Vec::new();
        for (yi, y) in ys.iter().enumerate() {
            let mut cfg = base.clone();
            if let (Some(a), Some(v)) = (&self.y, y) {
                cfg.set(&a.key, &Axis::text(*v))?;
            }
            if self.x.key == "alpha2" {
                // one batch per row: every α² of the row, S draws each
                let mut c = cfg.clone();
                c.alpha2 = self.x.values.clone();
                c.validate()?;
                jobs.push(Job {
                    cfg: c,
                    cells: (0..self.x.values.len())
                        .map(|xi| yi * self.x.values.len() + xi)
                        .collect(),
                });
            } else {
                for (xi, v) in self.x.values.iter().enumerate() {
                    let mut c = cfg.clone();
                    c.set(&self.x.key, &Axis::text(*v))?;
                    c.validate()?;
                    jobs.push(Job {
                        cfg: c,
                        cells: vec![yi * self.x.values.len() + xi],
                    });
                }
            }
        }
        Ok(jobs)
    }

    /// Total trajectory-steps the sweep asks for.
    pub fn trajectory_steps(&self) -> Result<u64, ConfigError> {
        Ok(self
            .jobs()?
            .iter()
            .map(|j| j.cfg.runs().len() as u64 * j.cfg.steps as u64)
            .sum())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.jobs().map(|_| ())
    }
}

/// Progress of a sweep: experiments done, of how many.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SweepProgress {
    pub jobs_done: usize,
    pub jobs: usize,
    /// Fraction of the current experiment done.
    pub inner: f64,
}

impl SweepProgress {
    pub fn fraction(&self) -> f64 {
        ((self.jobs_done as f64 + self.inner) / self.jobs.max(1) as f64).min(1.0)
    }
}

/// Runs a sweep experiment by experiment, in chunks: call `step` until it returns `done`.
/// Partial results (`report`) hold every finished cell.
pub struct Sweep {
    spec: SweepSpec,
    jobs: Vec<Job>,
    next: usize,
    current: Option<Experiment>,
    cells: Vec<Option<Cell>>,
    backend: String,
    steps_done: u64,
    wall_ms: f64,
}

impl Sweep {
    pub fn new(spec: SweepSpec) -> Result<Sweep, ConfigError> {
        let jobs = spec.jobs()?;
        let n = spec.x.values.len() * spec.y.as_ref().map_or(1, |a| a.values.len());
        Ok(Sweep {
            spec,
            jobs,
            next: 0,
            current: None,
            cells: vec![None; n],
            backend: String::new(),
            steps_done: 0,
            wall_ms: 0.0,
        })
    }

    pub fn progress(&self) -> SweepProgress {
        SweepProgress {
            jobs_done: self.next,
            jobs: self.jobs.len(),
            inner: self
                .current
                .as_ref()
                .map_or(0.0, |e| e.progress().fraction()),
        }
    }

    pub fn done(&self) -> bool {
        self.next >= self.jobs.len()
    }

    /// Advance by up to `budget` optimiser steps of the current experiment.
    pub async fn step<B: Backend>(
        &mut self,
        be: &mut B,
        budget: usize,
    ) -> Result<SweepProgress, EngineError> {
        if self.done() {
            return Ok(self.progress());
        }
        let t = web_time::Instant::now();
        if self.current.is_none() {
            self.current = Some(Experiment::new(&self.jobs[self.next].cfg)?);
        }
        let exp = self.current.as_mut().expect("current experiment");
        let p = exp.step(be, budget).await?;
        if p.done {
            let rep = exp.report();
            self.backend = rep.backend.name.clone();
            self.steps_done += rep
                .runs
                .iter()
                .map(|r| r.records.last().map_or(0, |x| x.step) as u64)
                .sum::<u64>();
            self.absorb(self.next, &rep);
            self.current = None;
            self.next += 1;
        }
        self.wall_ms += t.elapsed().as_secs_f64() * 1e3;
        Ok(self.progress())
    }

    pub async fn run_to_end<B: Backend>(
        &mut self,
        be: &mut B,
        chunk: usize,
        mut on_progress: impl FnMut(&SweepProgress),
    ) -> Result<(), EngineError> {
        while !self.done() {
            let p = self.step(be, chunk).await?;
            on_progress(&p);
        }
        Ok(())
    }

    fn absorb(&mut self, job: usize, rep: &Report) {
        let spec = &self.spec;
        let cells = self.jobs[job].cells.clone();
        let nx = spec.x.values.len();
        let rs = rep.config.r_star.max(1);
        let lambda_rs = rep.problem.g_s.get(rs - 1).copied().unwrap_or(f64::NAN);
        let d = rep.config.d as f64;
        let t_theory = ((d.sqrt() / spec.theta).ln()) / (1.0 + rep.config.eta * lambda_rs).ln();
        for ci in cells {
            let (xi, yi) = (ci % nx, ci / nx);
            let x = spec.x.values[xi];
            let y = spec.y.as_ref().map(|a| a.values[yi]);
            // the runs of this cell: all of the experiment, or (α² swept) those of its α²
            let runs: Vec<RunSummary> = rep
                .runs
                .iter()
                .filter(|r| spec.x.key != "alpha2" || r.alpha2 == Some(x))
                .map(|r| RunSummary::of(r, spec.theta, spec.risk_threshold))
                .collect();
            let step = |f: fn(&RunSummary) -> Option<usize>| {
                Spread::of(runs.iter().filter_map(f).map(|s| s as f64))
            };
            self.cells[ci] = Some(Cell {
                x,
                y,
                min_sin_a: Spread::of(runs.iter().filter_map(|r| r.min_sin_a)),
                final_ln_risk: Spread::of(runs.iter().map(|r| r.final_ln_risk)),
                steps_to_risk: step(|r| r.steps_to_risk),
                t_star: step(|r| r.t_star),
                diverged: runs.iter().filter(|r| r.diverged.is_some()).count(),
                runs,
                lambda_rs,
                t_theory,
            });
        }
    }

    /// The finished cells (all of them once `done`).
    pub fn report(&self) -> SweepReport {
        let cells: Vec<Cell> = self.cells.iter().flatten().cloned().collect();
        SweepReport {
            schema: SCHEMA.into(),
            spec: self.spec.clone(),
            backend: self.backend.clone(),
            slope_t_star_ln_d: slope_against_ln_d(&self.spec, &cells),
            cells,
            trajectory_steps: self.steps_done,
            wall_ms: self.wall_ms,
        }
    }
}

/// Least-squares slope of the median t* against ln d over the cells that reached θ (d must be
/// the x axis, or the y axis with a single x).
pub fn slope_against_ln_d(spec: &SweepSpec, cells: &[Cell]) -> Option<f64> {
    let d_of = |c: &Cell| -> Option<f64> {
        if spec.x.key == "d" {
            Some(c.x)
        } else if spec.y.as_ref().is_some_and(|a| a.key == "d") && spec.x.values.len() == 1 {
            c.y
        } else {
            None
        }
    };
    let pts: Vec<(f64, f64)> = cells
        .iter()
        .filter_map(|c| Some((d_of(c)?.ln(), c.t_star?.median)))
        .collect();
    if pts.len() < 2 {
        return None;
    }
    let n = pts.len() as f64;
    let (mx, my) = (
        pts.iter().map(|p| p.0).sum::<f64>() / n,
        pts.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// The sweep as CSV: one row per run (cell values, draw and the run's quantities).
pub fn to_csv(r: &SweepReport) -> String {
    let o = |v: Option<f64>| v.map_or(String::new(), |x| format!("{x}"));
    let u = |v: Option<usize>| v.map_or(String::new(), |x| x.to_string());
    let mut s = format!(
        "{},{},draw,min_sin_a,min_sin_a_step,final_ln_risk,steps_to_risk,t_star,diverged,t_theory\n",
        r.spec.x.key,
        r.spec.y.as_ref().map_or("y", |a| a.key.as_str())
    );
    for c in &r.cells {
        for run in &c.runs {
            s.push_str(&format!(
                "{},{},{},{},{},{},{},{},{},{}\n",
                c.x,
                o(c.y),
                run.draw,
                o(run.min_sin_a),
                u(run.min_sin_a_step),
                run.final_ln_risk,
                u(run.steps_to_risk),
                u(run.t_star),
                u(run.diverged),
                c.t_theory
            ));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_parse_lists_and_ranges_and_name_the_field() {
        let a = Axis::parse("alpha2=log:1e-6:1:7").unwrap();
        assert_eq!(a.values, vec![1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]);
        assert!(a.log);
        let d = Axis::parse("d=32,64,128").unwrap();
        assert_eq!(d.values, vec![32.0, 64.0, 128.0]);
        assert!(d.log, "a geometric list is drawn on a log axis");
        let e = Axis::parse("eta=lin:0.1:0.3:3").unwrap();
        assert_eq!(e.values, vec![0.1, 0.2, 0.3]);
        assert!(!e.log);
        assert_eq!(Axis::parse("model=1,2").unwrap_err().field, "model");
        assert_eq!(Axis::parse("eta=log:0:1:3").unwrap_err().field, "eta");
        assert_eq!(Axis::parse("eta=1,x").unwrap_err().field, "eta");
        assert_eq!(Axis::parse("eta").unwrap_err().field, "sweep");
        assert_eq!(Axis::parse("bogus=1").unwrap_err().field, "bogus");
    }

    #[test]
    fn presets_are_valid_and_sized() {
        for p in SweepPreset::ALL {
            let s = p.spec();
            s.validate().unwrap();
            assert!(s.trajectory_steps().unwrap() > 0);
        }
    }
}
