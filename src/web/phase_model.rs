//! The phase-portrait view's parameters (URL form) and data: the engine's portrait (SPEC §6),
//! the trajectories of the three inits projected on the plane, a custom start run by in-plane GD,
//! and the contour lines of the log-loss surface.

use super::palette::Method;
use crate::engine::Backend;
use crate::phase::{self, PlaneCoeffs, Portrait, Window};

pub use crate::urlstate::{round4, PhaseParams, KEYS};

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
