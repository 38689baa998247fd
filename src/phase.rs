//! The phase portrait of SPEC §6 as data: the log-loss surface of the rank-one slice, its −∇L
//! field, the minimiser hyperbola, the saddle, and the trajectories of the three inits (run in the
//! full problem by the engine, then projected onto the plane).
//!
//! On the plane `A = a u`, `B = b vᵀ` (u, v: Δ's top singular vectors) the loss of the linear
//! model is `L(a, b) = ½ s (ab)² − g ab + c` with `s = uᵀΣ̂u`, `g = uᵀGv`, `c` the loss constant;
//! in population mode s = 1, g = δ, c = ½δ², i.e. `½(ab − δ)²`.

use crate::config::Config;
use crate::engine::{Backend, EngineError, Report};
use crate::{CpuBackend, Experiment};
use serde::{Deserialize, Serialize};

/// Coefficients of the in-plane loss `½ s (ab)² − g ab + c`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct PlaneCoeffs {
    pub s: f64,
    pub g: f64,
    pub c: f64,
}

impl PlaneCoeffs {
    /// The population slice `½(ab − δ)²`.
    pub fn population(delta: f64) -> Self {
        PlaneCoeffs {
            s: 1.0,
            g: delta,
            c: 0.5 * delta * delta,
        }
    }

    pub fn loss(&self, a: f64, b: f64) -> f64 {
        let p = a * b;
        // ½ s p² − g p + c, written as ½ s (p − g/s)² + (c − g²/2s) to keep it ≥ 0 without
        // cancellation near the minimiser.
        let m = self.g / self.s;
        (0.5 * self.s * (p - m) * (p - m) + (self.c - 0.5 * self.g * m)).max(0.0)
    }

    /// −∇L at (a, b).
    pub fn flow(&self, a: f64, b: f64) -> (f64, f64) {
        let h = self.s * a * b - self.g;
        (-b * h, -a * h)
    }

    /// The minimisers `ab = g/s`.
    pub fn minimiser_product(&self) -> f64 {
        self.g / self.s
    }
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct Window {
    pub a_min: f64,
    pub a_max: f64,
    pub b_min: f64,
    pub b_max: f64,
}

impl Window {
    /// A square window around the origin wide enough to show the hyperbola branch through
    /// (√δ, √δ) and the starts of the three inits.
    pub fn auto(coeffs: &PlaneCoeffs) -> Self {
        let h = 2.0 * coeffs.minimiser_product().abs().sqrt().max(0.5);
        Window {
            a_min: -h,
            a_max: h,
            b_min: -h,
            b_max: h,
        }
    }
    pub fn a_at(&self, i: usize, n: usize) -> f64 {
        self.a_min + (self.a_max - self.a_min) * (i as f64) / ((n.max(2) - 1) as f64)
    }
    pub fn b_at(&self, j: usize, n: usize) -> f64 {
        self.b_min + (self.b_max - self.b_min) * (j as f64) / ((n.max(2) - 1) as f64)
    }
}

/// `log10(L + ε)` on an nx × ny grid, row-major with rows over b (j) and columns over a (i).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Surface {
    pub nx: usize,
    pub ny: usize,
    pub eps: f64,
    pub values: Vec<f64>,
}

/// The CPU twin of the GPU surface kernel.
pub fn surface(coeffs: &PlaneCoeffs, w: &Window, nx: usize, ny: usize, eps: f64) -> Surface {
    let mut values = Vec::with_capacity(nx * ny);
    for j in 0..ny {
        let b = w.b_at(j, ny);
        for i in 0..nx {
            let a = w.a_at(i, nx);
            values.push((coeffs.loss(a, b) + eps).log10());
        }
    }
    Surface {
        nx,
        ny,
        eps,
        values,
    }
}

/// One arrow of the −∇L field: position and direction (unnormalised).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct Arrow {
    pub a: f64,
    pub b: f64,
    pub da: f64,
    pub db: f64,
}

pub fn field(coeffs: &PlaneCoeffs, w: &Window, n: usize) -> Vec<Arrow> {
    let mut out = Vec::with_capacity(n * n);
    for j in 0..n {
        for i in 0..n {
            // cell centres, so no arrow sits exactly on the saddle
            let a = w.a_min + (w.a_max - w.a_min) * (i as f64 + 0.5) / n as f64;
            let b = w.b_min + (w.b_max - w.b_min) * (j as f64 + 0.5) / n as f64;
            let (da, db) = coeffs.flow(a, b);
            out.push(Arrow { a, b, da, db });
        }
    }
    out
}

/// The two branches of the minimiser hyperbola `ab = m`, clipped to the window.
pub fn hyperbola(coeffs: &PlaneCoeffs, w: &Window, samples: usize) -> Vec<Vec<(f64, f64)>> {
    let m = coeffs.minimiser_product();
    if m == 0.0 {
        return vec![
            vec![(w.a_min, 0.0), (w.a_max, 0.0)],
            vec![(0.0, w.b_min), (0.0, w.b_max)],
        ];
    }
    let mut branches = Vec::new();
    for sign in [1.0, -1.0] {
        let mut pts = Vec::new();
        for i in 0..samples {
            // a runs over the branch's half of the window on a log scale to resolve both ends
            let lo = 1e-3_f64.max(m.abs() / w.b_max.abs().max(w.b_min.abs()));
            let hi = w.a_max.abs().max(w.a_min.abs());
            let t = i as f64 / (samples - 1) as f64;
            let a = sign * lo * (hi / lo).powf(t);
            let b = m / a;
            if a >= w.a_min && a <= w.a_max && b >= w.b_min && b <= w.b_max {
                pts.push((a, b));
            }
        }
        if pts.len() > 1 {
            branches.push(pts);
        }
    }
    branches
}

/// Everything the phase-portrait view draws.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Portrait {
    pub coeffs: PlaneCoeffs,
    pub window: Window,
    pub surface: Surface,
    pub field: Vec<Arrow>,
    pub hyperbola: Vec<Vec<(f64, f64)>>,
    pub saddle: (f64, f64),
    /// The runs (records carry `proj = [uᵀA, Bv, off-plane size]`).
    pub report: Report,
}

/// Plane coefficients of a loaded problem (u, v = Δ's top singular vectors).
pub fn plane_coeffs(cpu: &CpuBackend, exp: &Experiment) -> PlaneCoeffs {
    let p = &exp.problem;
    let u = p.delta_u.column(0).into_owned();
    let v = p.delta_v.column(0).into_owned();
    let g = cpu.g().map_or(0.0, |g| u.dot(&(g * &v)));
    let s = cpu.sigma().map_or(1.0, |s| u.dot(&(s * &u)));
    // c is the loss at the origin of the plane (A = B = 0): the constant of the problem.
    let c = cpu.c0().unwrap_or_else(|| 0.5 * p.delta.norm_squared());
    PlaneCoeffs { s, g, c }
}

/// Run the three inits of a phase configuration (r = 1) on the given backend and assemble the
/// portrait. The plane and surface come from the CPU reference's Σ̂ and G of the same problem.
pub async fn compute<B: Backend>(
    cfg: &Config,
    be: &mut B,
    grid: usize,
    arrows: usize,
) -> Result<Portrait, EngineError> {
    if cfg.r != 1 {
        return Err(EngineError::Config(crate::ConfigError::new(
            "r",
            format!(
                "the phase portrait is the rank-one slice: r must be 1, got {}",
                cfg.r
            ),
        )));
    }
    let mut exp = Experiment::new(cfg)?;
    let mut cpu = CpuBackend::new();
    cpu.load(&exp.problem).await?;
    let coeffs = plane_coeffs(&cpu, &exp);
    let window = Window::auto(&coeffs);
    exp.run_to_end(be, usize::MAX, |_| {}).await?;
    Ok(Portrait {
        coeffs,
        window,
        surface: surface(&coeffs, &window, grid, grid, 1e-6),
        field: field(&coeffs, &window, arrows),
        hyperbola: hyperbola(&coeffs, &window, 200),
        saddle: (0.0, 0.0),
        report: exp.report(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PiSSA on the portrait: with the preset's W0 = 0 its adapter is 0 and never leaves the
    /// saddle; with W0 ≠ 0 it starts off it with the model unchanged, and at rank 1 its adapter
    /// must fit Δ + P_1(W0), so it stops above zero loss where LoRA-One reaches it.
    #[test]
    fn pissa_on_the_portrait() {
        use crate::config::InitKind;
        use crate::urlstate::PhaseParams;
        let run = |p: &PhaseParams| {
            pollster::block_on(compute(&p.config(), &mut CpuBackend::new(), 11, 3)).unwrap()
        };
        let find = |r: &Portrait, k: InitKind| {
            r.report
                .runs
                .iter()
                .find(|x| x.init == k)
                .cloned()
                .expect("run")
        };
        let mut p = PhaseParams {
            steps: 600,
            ..PhaseParams::default()
        };
        let r = run(&p);
        let pi = find(&r, InitKind::Pissa);
        let l0 = pi.records[0].loss;
        assert!(l0 > 0.1);
        for rec in &pi.records {
            let q = rec.proj.expect("projection");
            assert!(q.iter().all(|v| v.abs() < 1e-12), "{q:?}");
            assert!((rec.loss - l0).abs() < 1e-12);
        }
        p.w0 = 0.5;
        let r = run(&p);
        let (pi, one, va) = (
            find(&r, InitKind::Pissa),
            find(&r, InitKind::LoraOne),
            find(&r, InitKind::Vanilla),
        );
        let q = pi.records[0].proj.expect("projection");
        assert!(q.iter().map(|v| v * v).sum::<f64>().sqrt() > 1e-3, "{q:?}");
        assert!((pi.records[0].loss - va.records[0].loss).abs() < 1e-9);
        let last = |x: &crate::RunResult| x.records.last().unwrap().loss;
        assert!(last(&one) < 1e-8, "LoRA-One {}", last(&one));
        assert!(last(&pi) > 1e-4 && last(&pi) < l0, "PiSSA {}", last(&pi));
    }

    #[test]
    fn population_slice_is_half_squared_gap() {
        let c = PlaneCoeffs::population(1.5);
        assert!((c.loss(1.0, 1.5) - 0.0).abs() < 1e-15);
        assert!((c.loss(0.0, 0.0) - 0.5 * 1.5 * 1.5).abs() < 1e-15);
        assert!((c.loss(2.0, 1.0) - 0.5 * 0.25).abs() < 1e-15);
        // the flow vanishes at the saddle and on the hyperbola
        assert_eq!(c.flow(0.0, 0.0), (0.0, 0.0));
        let (da, db) = c.flow(1.0, 1.5);
        assert!(da.abs() < 1e-15 && db.abs() < 1e-15);
    }

    #[test]
    fn surface_layout_rows_over_b() {
        let c = PlaneCoeffs::population(1.0);
        let w = Window {
            a_min: -1.0,
            a_max: 1.0,
            b_min: 0.0,
            b_max: 2.0,
        };
        let s = surface(&c, &w, 3, 5, 1e-6);
        assert_eq!(s.values.len(), 15);
        // value at i = 2 (a = 1), j = 2 (b = 1): on the hyperbola
        assert!((s.values[2 * 3 + 2] - (1e-6f64).log10()).abs() < 1e-9);
    }

    #[test]
    fn hyperbola_points_satisfy_ab_eq_m() {
        let c = PlaneCoeffs::population(1.0);
        let w = Window::auto(&c);
        let h = hyperbola(&c, &w, 100);
        assert_eq!(h.len(), 2);
        for br in &h {
            for &(a, b) in br {
                assert!((a * b - 1.0).abs() < 1e-12);
            }
        }
    }
}
