//! SPEC §8, Fig. 3 ("phase transition of GD trajectories"): the smallest model where LoRA's two
//! regimes show. `f(x) = b·(xᵀa)` with a ∈ R², b ∈ R, N samples x ~ N(0, I₂), y = xᵀβ with
//! β = (2, 1), loss `L = (1/2N) Σ (y − b xᵀa)²`, plain GD. The minimisers are the curve
//! `a·b = β`, i.e. `(2/t, 1/t, t)` for t ≠ 0. LoRA init: a ~ N(0, I₂), b = 0 (a saddle
//! direction: only b moves at first). Spectral init: `g = (1/N) Σ y x` (the one-step gradient
//! at ab = 0), `a = g/√‖g‖`, `b = √‖g‖`, so that ab = g from step 0.
//!
//! With Σ̂ = (1/N) Σ x xᵀ and g = Σ̂β the gradient is `∇_a L = −b (g − b Σ̂ a)`,
//! `∂_b L = −(aᵀg − b aᵀΣ̂a)`; both factors move together (simultaneous update).
//! Every draw `s` uses its own samples and its own LoRA init, from `Rng::new(seed, s)`.

use crate::config::ConfigError;
use crate::rng::Rng;
use serde::{Deserialize, Serialize};

/// The planted target β of SPEC §8.
pub const BETA: [f64; 2] = [2.0, 1.0];

/// What to run: `seeds` draws of the data and the LoRA init, each trained from both inits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToySpec {
    pub seeds: usize,
    pub steps: usize,
    pub eta: f64,
    /// Samples per draw (SPEC: 4).
    pub n: usize,
    pub seed: u64,
}

impl Default for ToySpec {
    fn default() -> Self {
        ToySpec {
            seeds: 3,
            steps: 1000,
            eta: 0.1,
            n: 4,
            seed: 0,
        }
    }
}

pub const MAX_SEEDS: usize = 256;
pub const MAX_STEPS: usize = 100_000;
pub const MAX_N: usize = 10_000;
/// Draws × steps: every point of both trajectories is kept (≤ 64 MB).
pub const MAX_POINTS: usize = 1_000_000;

impl ToySpec {
    /// The first bad field, named with its allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_SEEDS).contains(&self.seeds) {
            return Err(ConfigError::new(
                "seeds",
                format!("must be in 1..={MAX_SEEDS}, got {}", self.seeds),
            ));
        }
        if !(1..=MAX_STEPS).contains(&self.steps) {
            return Err(ConfigError::new(
                "steps",
                format!("must be in 1..={MAX_STEPS}, got {}", self.steps),
            ));
        }
        if !(self.eta.is_finite() && self.eta > 0.0 && self.eta <= 10.0) {
            return Err(ConfigError::new(
                "eta",
                format!("must be in (0, 10], got {}", self.eta),
            ));
        }
        if self.seeds.saturating_mul(self.steps) > MAX_POINTS {
            return Err(ConfigError::new(
                "steps",
                format!(
                    "seeds × steps must be ≤ {MAX_POINTS} (every point is kept), got {} × {}",
                    self.seeds, self.steps
                ),
            ));
        }
        if !(2..=MAX_N).contains(&self.n) {
            return Err(ConfigError::new(
                "n",
                format!("must be in 2..={MAX_N}, got {}", self.n),
            ));
        }
        Ok(())
    }
}

/// The two starts of Fig. 3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ToyInit {
    /// a ~ N(0, I₂), b = 0.
    Lora,
    /// ab = g from the one-step gradient.
    Spectral,
}

impl ToyInit {
    pub const BOTH: [ToyInit; 2] = [ToyInit::Lora, ToyInit::Spectral];
    pub fn label(self) -> &'static str {
        match self {
            ToyInit::Lora => "LoRA init (b = 0)",
            ToyInit::Spectral => "spectral init (ab = g)",
        }
    }
    /// The engine's method whose colour, dash and marker this start borrows.
    pub fn method(self) -> crate::style::Method {
        match self {
            ToyInit::Lora => crate::style::Method::Vanilla,
            ToyInit::Spectral => crate::style::Method::LoraOne,
        }
    }
}

/// One trajectory: the point (a1, a2, b) at every step 0..=steps (fewer if it diverged).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToyRun {
    pub draw: usize,
    pub init: ToyInit,
    pub path: Vec<[f64; 3]>,
    pub loss: Vec<f64>,
    /// First step whose iterate or loss is not finite (or exceeds 1e150).
    pub diverged_at: Option<usize>,
}

impl ToyRun {
    /// Distance of the last point from the minimiser set {ab = β}: ‖ab − β‖.
    pub fn final_gap(&self) -> f64 {
        let [a1, a2, b] = *self.path.last().expect("a path has its start");
        ((a1 * b - BETA[0]).powi(2) + (a2 * b - BETA[1]).powi(2)).sqrt()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToyReport {
    pub schema: String,
    pub spec: ToySpec,
    /// Per draw: LoRA then spectral.
    pub runs: Vec<ToyRun>,
}

pub const SCHEMA: &str = "lora-one-lab/toy3d/1";

/// One draw's data statistics: Σ̂ (2×2, row-major) and g = Σ̂β.
struct Stats {
    s: [f64; 4],
    g: [f64; 2],
}

fn draw_stats(rng: &mut Rng, n: usize) -> Stats {
    let mut s = [0.0; 4];
    for _ in 0..n {
        let x = [rng.normal(), rng.normal()];
        s[0] += x[0] * x[0];
        s[1] += x[0] * x[1];
        s[3] += x[1] * x[1];
    }
    let inv = 1.0 / n as f64;
    s = [s[0] * inv, s[1] * inv, s[1] * inv, s[3] * inv];
    let g = [
        s[0] * BETA[0] + s[1] * BETA[1],
        s[2] * BETA[0] + s[3] * BETA[1],
    ];
    Stats { s, g }
}

/// The loss through the draw's statistics: L = ½(βᵀΣ̂β − 2b aᵀg + b² aᵀΣ̂a).
fn loss(st: &Stats, p: [f64; 3]) -> f64 {
    let [a1, a2, b] = p;
    let bsb = st.s[0] * BETA[0] * BETA[0]
        + 2.0 * st.s[1] * BETA[0] * BETA[1]
        + st.s[3] * BETA[1] * BETA[1];
    let ag = a1 * st.g[0] + a2 * st.g[1];
    let asa = st.s[0] * a1 * a1 + 2.0 * st.s[1] * a1 * a2 + st.s[3] * a2 * a2;
    0.5 * (bsb - 2.0 * b * ag + b * b * asa).max(0.0)
}

/// One GD step from p (a and b move together).
pub fn step_point(s: &[f64; 4], g: &[f64; 2], eta: f64, p: [f64; 3]) -> [f64; 3] {
    let [a1, a2, b] = p;
    let sa = [s[0] * a1 + s[1] * a2, s[2] * a1 + s[3] * a2];
    // −∇_a L = b (g − b Σ̂a), −∂_b L = aᵀg − b aᵀΣ̂a
    let ga = [b * (g[0] - b * sa[0]), b * (g[1] - b * sa[1])];
    let gb = a1 * g[0] + a2 * g[1] - b * (a1 * sa[0] + a2 * sa[1]);
    [a1 + eta * ga[0], a2 + eta * ga[1], b + eta * gb]
}

fn trajectory(st: &Stats, spec: &ToySpec, draw: usize, init: ToyInit, start: [f64; 3]) -> ToyRun {
    let mut path = Vec::with_capacity(spec.steps + 1);
    let mut losses = Vec::with_capacity(spec.steps + 1);
    let mut p = start;
    let mut diverged_at = None;
    for t in 0..=spec.steps {
        let l = loss(st, p);
        if !(l.is_finite() && p.iter().all(|v| v.is_finite() && v.abs() < 1e150)) {
            diverged_at = Some(t);
            break;
        }
        path.push(p);
        losses.push(l);
        if t < spec.steps {
            p = step_point(&st.s, &st.g, spec.eta, p);
        }
    }
    ToyRun {
        draw,
        init,
        path,
        loss: losses,
        diverged_at,
    }
}

/// Run every draw from both starts.
pub fn run(spec: &ToySpec) -> Result<ToyReport, ConfigError> {
    spec.validate()?;
    let mut runs = Vec::with_capacity(2 * spec.seeds);
    for draw in 0..spec.seeds {
        let mut rng = Rng::new(spec.seed, draw as u64);
        let st = draw_stats(&mut rng, spec.n);
        let a0 = [rng.normal(), rng.normal()];
        for init in ToyInit::BOTH {
            let start = match init {
                ToyInit::Lora => [a0[0], a0[1], 0.0],
                ToyInit::Spectral => {
                    let gn = st.g[0].hypot(st.g[1]);
                    let r = gn.sqrt();
                    [st.g[0] / r, st.g[1] / r, r]
                }
            };
            runs.push(trajectory(&st, spec, draw, init, start));
        }
    }
    Ok(ToyReport {
        schema: SCHEMA.into(),
        spec: spec.clone(),
        runs,
    })
}

/// Points of the minimiser curve `(2/t, 1/t, t)` for |t| in [t_min, t_max], both branches, as
/// two polylines (t > 0 and t < 0).
pub fn minimiser_curve(t_min: f64, t_max: f64, n: usize) -> [Vec<[f64; 3]>; 2] {
    let branch = |sign: f64| {
        (0..n)
            .map(|i| {
                // geometric spacing: the curve bends near small t
                let t = sign * t_min * (t_max / t_min).powf(i as f64 / (n - 1).max(1) as f64);
                [BETA[0] / t, BETA[1] / t, t]
            })
            .collect()
    };
    [branch(1.0), branch(-1.0)]
}

/// A rotation of the 3-D view: yaw about the vertical (b) axis, then pitch, in radians.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Camera {
    pub yaw: f64,
    pub pitch: f64,
}

impl Default for Camera {
    fn default() -> Self {
        Camera {
            yaw: 35f64.to_radians(),
            pitch: 20f64.to_radians(),
        }
    }
}

impl Camera {
    /// The camera after a drag of (dx, dy) pixels: 1° per 2 px; pitch stays within ±89°.
    pub fn dragged(self, dx: f64, dy: f64) -> Camera {
        let k = std::f64::consts::PI / 360.0;
        let lim = 89f64.to_radians();
        Camera {
            yaw: wrap(self.yaw + dx * k),
            pitch: (self.pitch + dy * k).clamp(-lim, lim),
        }
    }
}

/// An angle in (−π, π].
pub fn wrap(a: f64) -> f64 {
    use std::f64::consts::PI;
    let mut x = a.rem_euclid(2.0 * PI);
    if x > PI {
        x -= 2.0 * PI;
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finite_diff(st: &Stats, p: [f64; 3]) -> [f64; 3] {
        let h = 1e-6;
        let mut out = [0.0; 3];
        for i in 0..3 {
            let (mut u, mut v) = (p, p);
            u[i] += h;
            v[i] -= h;
            out[i] = (loss(st, u) - loss(st, v)) / (2.0 * h);
        }
        out
    }

    #[test]
    fn step_is_gradient_descent() {
        let mut rng = Rng::new(7, 1);
        let st = draw_stats(&mut rng, 4);
        for p in [[0.3, -1.2, 0.7], [1.5, 0.2, -0.4], [0.0, 0.0, 1.0]] {
            let q = step_point(&st.s, &st.g, 1.0, p);
            let fd = finite_diff(&st, p);
            for i in 0..3 {
                assert!(
                    (q[i] - p[i] + fd[i]).abs() < 1e-6,
                    "{i}: {q:?} {p:?} {fd:?}"
                );
            }
        }
    }

    #[test]
    fn both_starts_reach_the_minimiser_curve() {
        let r = run(&ToySpec {
            seeds: 8,
            ..ToySpec::default()
        })
        .unwrap();
        assert_eq!(r.runs.len(), 16);
        for run in &r.runs {
            assert_eq!(run.path.len(), 1001);
            assert!(run.diverged_at.is_none());
            assert!(
                run.final_gap() < 1e-3,
                "{:?} draw {}: {}",
                run.init,
                run.draw,
                run.final_gap()
            );
            // the loss never rises under this small step
            assert!(run.loss.windows(2).all(|w| w[1] <= w[0] + 1e-12));
        }
    }

    #[test]
    fn spectral_start_is_aligned_and_lora_start_is_a_saddle() {
        let r = run(&ToySpec {
            seeds: 32,
            ..ToySpec::default()
        })
        .unwrap();
        for pair in r.runs.chunks(2) {
            let lora = &pair[0];
            assert_eq!(lora.path[0][2], 0.0);
            // from b = 0, a does not move in the first step
            assert_eq!(&lora.path[1][..2], &lora.path[0][..2]);
        }
        // Over the draws, the spectral start reaches the curve (within 1e-2) sooner: in most
        // draws and at the median. Not in every draw: with 4 samples Σ̂ can be ill-conditioned,
        // and then the slow direction, not the start, sets the time.
        let first = |r: &ToyRun| {
            r.path
                .iter()
                .position(|&[a1, a2, b]| (a1 * b - 2.0).hypot(a2 * b - 1.0) < 1e-2)
                .unwrap_or(usize::MAX)
        };
        let mut faster = 0;
        let (mut ts, mut tl) = (Vec::new(), Vec::new());
        for pair in r.runs.chunks(2) {
            let (l, s) = (first(&pair[0]), first(&pair[1]));
            faster += usize::from(s < l);
            tl.push(l);
            ts.push(s);
        }
        ts.sort();
        tl.sort();
        assert!(
            faster * 3 > 2 * ts.len(),
            "spectral faster in {faster} of {}",
            ts.len()
        );
        assert!(ts[ts.len() / 2] < tl[tl.len() / 2], "{ts:?} vs {tl:?}");
    }

    #[test]
    fn seeded_and_reported_divergence() {
        let s = ToySpec::default();
        assert_eq!(run(&s).unwrap(), run(&s).unwrap());
        let other = run(&ToySpec {
            seed: 1,
            ..s.clone()
        })
        .unwrap();
        assert_ne!(other.runs[0].path[0], run(&s).unwrap().runs[0].path[0]);
        let big = run(&ToySpec { eta: 10.0, ..s }).unwrap();
        let d = big
            .runs
            .iter()
            .find_map(|r| r.diverged_at)
            .expect("η = 10 diverges");
        assert!(d > 0);
        let e = ToySpec {
            seeds: 0,
            ..ToySpec::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(e.field, "seeds");
        assert!(e.message.contains("1..=256"));
    }

    #[test]
    fn minimiser_curve_lies_on_ab_equals_beta() {
        for br in minimiser_curve(0.3, 4.0, 20) {
            for [a1, a2, b] in br {
                assert!((a1 * b - 2.0).abs() < 1e-12 && (a2 * b - 1.0).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn camera_drag_wraps_and_clamps() {
        let c = Camera::default().dragged(720.0, 0.0);
        assert!((c.yaw - Camera::default().yaw).abs() < 1e-9);
        let c = Camera::default().dragged(0.0, 1e6);
        assert!(c.pitch <= 89f64.to_radians() + 1e-12);
    }
}
