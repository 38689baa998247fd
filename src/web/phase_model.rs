//! The phase-portrait view's parameters (URL form) and data: the engine's portrait (SPEC §6),
//! the trajectories of the three inits projected on the plane, a custom start run by in-plane GD,
//! and the contour lines of the log-loss surface.

use super::palette::Method;
use crate::config::{Config, Preset};
use crate::engine::Backend;
use crate::phase::{self, PlaneCoeffs, Portrait, Window};

#[derive(Clone, Debug, PartialEq)]
pub struct PhaseParams {
    pub delta: f64,
    /// Vanilla init scale α (entries of A0 ~ N(0, α²)).
    pub alpha: f64,
    pub eta: f64,
    pub gamma: f64,
    pub gamma_ga: f64,
    pub steps: usize,
    pub population: bool,
    /// Samples for the finite-N Σ̂ (when not population).
    pub n: usize,
    pub seed: u64,
    /// A custom start (a, b) on the plane, run by in-plane GD.
    pub start: Option<(f64, f64)>,
    /// Animation speed, steps per second.
    pub speed: f64,
    /// Which methods are drawn: vanilla, LoRA-GA, LoRA-One, custom.
    pub show: [bool; 4],
}

impl Default for PhaseParams {
    fn default() -> Self {
        let c = Preset::Phase.config();
        PhaseParams {
            delta: c.delta_spectrum().first().copied().unwrap_or(1.0),
            alpha: c.alpha2.first().copied().unwrap_or(1e-2).sqrt(),
            eta: c.eta,
            gamma: c.gamma,
            gamma_ga: c.gamma_ga,
            steps: c.steps,
            population: true,
            n: 8,
            seed: c.seed,
            start: None,
            speed: 40.0,
            show: [true; 4],
        }
    }
}

pub const KEYS: [&str; 12] = [
    "delta",
    "alpha",
    "eta",
    "gamma",
    "gamma_ga",
    "steps",
    "population",
    "n",
    "seed",
    "start",
    "speed",
    "show",
];

impl PhaseParams {
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        let f = |x: f64| format!("{x}");
        let mut v = vec![
            ("delta".into(), f(self.delta)),
            ("alpha".into(), f(self.alpha)),
            ("eta".into(), f(self.eta)),
            ("gamma".into(), f(self.gamma)),
            ("gamma_ga".into(), f(self.gamma_ga)),
            ("steps".into(), self.steps.to_string()),
            ("population".into(), self.population.to_string()),
            ("n".into(), self.n.to_string()),
            ("seed".into(), self.seed.to_string()),
        ];
        if let Some((a, b)) = self.start {
            v.push(("start".into(), format!("{},{}", round4(a), round4(b))));
        }
        v.push(("speed".into(), f(self.speed)));
        v.push((
            "show".into(),
            self.show
                .iter()
                .map(|&s| if s { "1" } else { "0" })
                .collect::<String>(),
        ));
        v
    }

    /// Apply one URL pair; unknown keys and bad values are reported, not fatal.
    pub fn set(&mut self, k: &str, v: &str) -> Result<(), String> {
        let num = |v: &str| -> Result<f64, String> {
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| format!("{k}: expected a number, got `{v}`"))
        };
        match k {
            "delta" => self.delta = num(v)?,
            "alpha" => self.alpha = num(v)?,
            "eta" => self.eta = num(v)?,
            "gamma" => self.gamma = num(v)?,
            "gamma_ga" => self.gamma_ga = num(v)?,
            "steps" => self.steps = num(v)?.clamp(1.0, 100_000.0) as usize,
            "population" => self.population = matches!(v, "1" | "true" | "yes" | "on"),
            "n" => self.n = num(v)?.max(1.0) as usize,
            "seed" => self.seed = num(v)?.max(0.0) as u64,
            "start" => {
                self.start = if v.is_empty() || v == "none" {
                    None
                } else {
                    let (a, b) = v.split_once(',').ok_or("start: expected a,b")?;
                    Some((num(a)?, num(b)?))
                }
            }
            "speed" => self.speed = num(v)?.clamp(0.5, 2000.0),
            "show" => {
                for (i, c) in v.chars().take(4).enumerate() {
                    self.show[i] = c == '1';
                }
            }
            _ => return Err(format!("unknown parameter `{k}`")),
        }
        Ok(())
    }

    /// The engine configuration of the slice (SPEC §6 preset with this view's parameters).
    pub fn config(&self) -> Config {
        let mut c = Preset::Phase.config();
        c.spectrum = Some(vec![self.delta]);
        // α² rounded to 10 significant digits so labels read 1e-2, not 1.0000000000000002e-2
        let a2 = self.alpha * self.alpha;
        c.alpha2 = vec![format!("{a2:.9e}").parse().unwrap_or(a2)];
        c.eta = self.eta;
        c.gamma = self.gamma;
        c.gamma_ga = self.gamma_ga;
        c.steps = self.steps;
        c.population = self.population;
        c.n = if self.population { None } else { Some(self.n) };
        c.seed = self.seed;
        c
    }
}

fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

/// One trajectory on the plane: per step (a, b, off-plane size, loss).
#[derive(Clone, Debug, PartialEq)]
pub struct Traj {
    pub method: Method,
    pub label: String,
    pub pts: Vec<[f64; 4]>,
    pub diverged: Option<usize>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PhaseData {
    pub portrait: Portrait,
    /// Contour segments of log10(L + ε) in (a, b), with their level.
    pub contours: Vec<(f64, [(f64, f64); 2])>,
    pub lo: f64,
    pub hi: f64,
    pub trajs: Vec<Traj>,
    pub steps: usize,
}

impl PhaseData {
    pub fn window(&self) -> Window {
        self.portrait.window
    }
}

pub const GRID: usize = 121;
pub const ARROWS: usize = 15;

/// Run the three inits on the backend and assemble everything the view draws.
pub async fn compute<B: Backend>(p: &PhaseParams, be: &mut B) -> Result<PhaseData, String> {
    let cfg = p.config();
    cfg.validate().map_err(|e| e.to_string())?;
    let portrait = phase::compute(&cfg, be, GRID, ARROWS)
        .await
        .map_err(|e| e.to_string())?;
    let s = &portrait.surface;
    let lo = s.values.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = s.values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let contours = contours(&portrait, lo, hi);
    let mut trajs = Vec::new();
    for run in &portrait.report.runs {
        let pts = run
            .records
            .iter()
            .filter_map(|r| r.proj.map(|q| [q[0], q[1], q[2], r.loss]))
            .collect();
        trajs.push(Traj {
            method: Method::from_init(run.init),
            label: run.label.clone(),
            pts,
            diverged: run.diverged.as_ref().map(|d| d.step),
        });
    }
    if let Some(st) = p.start {
        trajs.push(custom(&portrait.coeffs, st, p.eta, p.steps));
    }
    Ok(PhaseData {
        portrait,
        contours,
        lo,
        hi,
        trajs,
        steps: p.steps,
    })
}

/// GD on the plane from a chosen start: a ← a − η b(s ab − g), b ← b − η a(s ab − g).
pub fn custom(c: &PlaneCoeffs, start: (f64, f64), eta: f64, steps: usize) -> Traj {
    let (mut a, mut b) = start;
    let mut pts = vec![[a, b, 0.0, c.loss(a, b)]];
    let mut diverged = None;
    for t in 1..=steps {
        let (da, db) = c.flow(a, b);
        a += eta * da;
        b += eta * db;
        if !(a.is_finite() && b.is_finite()) || a.abs() > 1e6 || b.abs() > 1e6 {
            diverged = Some(t);
            break;
        }
        pts.push([a, b, 0.0, c.loss(a, b)]);
    }
    Traj {
        method: Method::Custom,
        label: format!("custom start ({}, {})", round4(start.0), round4(start.1)),
        pts,
        diverged,
    }
}

/// Marching squares over the surface grid at half-decade levels.
fn contours(p: &Portrait, lo: f64, hi: f64) -> Vec<(f64, [(f64, f64); 2])> {
    let s = &p.surface;
    let w = &p.window;
    let (nx, ny) = (s.nx, s.ny);
    let mut out = Vec::new();
    if nx < 2 || ny < 2 || !lo.is_finite() || !hi.is_finite() {
        return out;
    }
    let v = |i: usize, j: usize| s.values[j * nx + i];
    let mut level = (lo * 2.0).ceil() / 2.0;
    while level < hi {
        for j in 0..ny - 1 {
            for i in 0..nx - 1 {
                // corners: 0 (i,j) 1 (i+1,j) 2 (i+1,j+1) 3 (i,j+1)
                let c = [v(i, j), v(i + 1, j), v(i + 1, j + 1), v(i, j + 1)];
                let pos = [
                    (w.a_at(i, nx), w.b_at(j, ny)),
                    (w.a_at(i + 1, nx), w.b_at(j, ny)),
                    (w.a_at(i + 1, nx), w.b_at(j + 1, ny)),
                    (w.a_at(i, nx), w.b_at(j + 1, ny)),
                ];
                let mut cross = Vec::with_capacity(4);
                for e in 0..4 {
                    let (p0, p1) = (e, (e + 1) % 4);
                    let (v0, v1) = (c[p0], c[p1]);
                    if (v0 < level) != (v1 < level) {
                        let t = (level - v0) / (v1 - v0);
                        cross.push((
                            pos[p0].0 + t * (pos[p1].0 - pos[p0].0),
                            pos[p0].1 + t * (pos[p1].1 - pos[p0].1),
                        ));
                    }
                }
                if cross.len() >= 2 {
                    out.push((level, [cross[0], cross[1]]));
                }
                if cross.len() == 4 {
                    out.push((level, [cross[2], cross[3]]));
                }
            }
        }
        level += 0.5;
    }
    out
}
