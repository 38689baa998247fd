//! Seeded problem generation (SPEC §1, §5, §6).
//!
//! The factored step needs only Σ̂ = XᵀX/N and G = Xᵀ(Y − XW0)/N, so a sampled problem does not
//! keep X: `chunks` regenerates X and the residual at W0 a block of rows at a time from the seed
//! (the same draws, in the same order, as the whole matrix), and the backends accumulate Σ̂ and
//! G from the blocks in O(d² + dk) memory. X and Y are kept only where a step reads them (the
//! residual form and the ReLU model), and `samples` materialises them on request (`--dump`).

use crate::config::{Config, ConfigError, DeltaBasis, Model, StepForm};
use crate::linalg::orthonormalize;
use crate::rng::{stream, Rng};
use nalgebra::{DMatrix, DVector};
use std::sync::Arc;

/// Floats of X and of the residual generated per block when the data is streamed (8 MiB of f64
/// for both together).
pub const CHUNK_FLOATS: usize = 1 << 20;

/// Data of one fine-tuning problem, all in f64 on the host. Backends derive Σ̂, G and the loss
/// constant from it (`load`).
#[derive(Clone, Debug)]
pub struct Problem {
    pub cfg: Config,
    /// Pre-trained weight, d×k.
    pub w0: DMatrix<f64>,
    /// Target update Δ = U* diag(λ) V*ᵀ, d×k.
    pub delta: DMatrix<f64>,
    pub delta_u: DMatrix<f64>,
    pub delta_s: Vec<f64>,
    pub delta_v: DMatrix<f64>,
    /// Inputs N×d, kept only where the step reads them (`keeps_samples`); else None, and
    /// `chunks`/`samples` regenerate them.
    pub x: Option<Arc<DMatrix<f64>>>,
    /// Labels N×k, kept with X.
    pub y: Option<Arc<DMatrix<f64>>>,
}

/// One block of rows of a sampled problem: X's rows and the matching rows of the target `t`,
/// which is the residual at W0, Y − XW0, for the linear model (formed as XΔ + noise, without
/// the N×d×k product) and the labels Y for the ReLU model.
pub struct Chunk {
    pub x: DMatrix<f64>,
    pub t: DMatrix<f64>,
}

/// Σ̂, G and the loss constant of a sampled problem, accumulated over blocks of rows.
#[derive(Clone, Debug)]
pub struct DataStats {
    pub n: usize,
    /// Σ̂ = XᵀX/N (only when asked for).
    pub sigma: Option<DMatrix<f64>>,
    /// G = Xᵀ(Y − XW0)/N (masked by ReLU'(XW0) for the ReLU model).
    pub g: DMatrix<f64>,
    /// ‖Y − XW0‖²/(2N) for the linear model (0 for ReLU, as the step never uses it).
    pub c0: f64,
    /// Time spent on the Σ̂ products alone, ms.
    pub sigma_ms: f64,
}

/// True where a step reads X and Y themselves: the residual form and the ReLU model.
pub fn keeps_samples(cfg: &Config) -> bool {
    !cfg.population && (cfg.model == Model::Relu || cfg.step_form == StepForm::Residual)
}

/// Rows per streamed block for a d×k problem.
pub fn chunk_rows(d: usize, k: usize) -> usize {
    (CHUNK_FLOATS / (d + k)).max(1)
}

/// Regenerates the rows of X (and the matching targets) block by block, in the order
/// `Rng::normal_matrix` draws the whole matrix.
pub struct Chunks<'a> {
    p: &'a Problem,
    x_rng: Rng,
    noise_rng: Option<Rng>,
    /// U* diag(λ) (linear model) or W0 + Δ (ReLU model).
    left: DMatrix<f64>,
    rows: usize,
    done: usize,
}

impl Iterator for Chunks<'_> {
    type Item = Chunk;
    fn next(&mut self) -> Option<Chunk> {
        let n = self.p.n();
        if self.done >= n {
            return None;
        }
        let m = self.rows.min(n - self.done);
        self.done += m;
        let x = self.x_rng.normal_matrix(m, self.p.cfg.d, 1.0);
        let mut t = match self.p.cfg.model {
            Model::Linear => (&x * &self.left) * self.p.delta_v.transpose(),
            Model::Relu => {
                let mut y = &x * &self.left;
                y.apply(|v| *v = v.max(0.0));
                y
            }
        };
        if let Some(r) = &mut self.noise_rng {
            t += r.normal_matrix(m, self.p.cfg.k, self.p.cfg.noise);
        }
        Some(Chunk { x, t })
    }
}

impl Problem {
    /// Build the problem of a validated config. The same seed gives bit-identical data.
    pub fn generate(cfg: &Config) -> Result<Problem, ConfigError> {
        cfg.validate()?;
        let (d, k, rs) = (cfg.d, cfg.k, cfg.r_star);
        let seed = cfg.seed;
        let w0 = if cfg.w0_std > 0.0 {
            Rng::new(seed, stream::W0).normal_matrix(d, k, cfg.w0_std)
        } else {
            DMatrix::zeros(d, k)
        };
        let (delta_u, delta_v) = match cfg.delta_basis {
            DeltaBasis::Random => (
                orthonormalize(&Rng::new(seed, stream::DELTA_LEFT).normal_matrix(d, rs, 1.0)),
                orthonormalize(&Rng::new(seed, stream::DELTA_RIGHT).normal_matrix(k, rs, 1.0)),
            ),
            DeltaBasis::Canonical => (DMatrix::identity(d, rs), DMatrix::identity(k, rs)),
        };
        let delta_s = cfg.delta_spectrum();
        let delta = &delta_u
            * DMatrix::from_diagonal(&DVector::from_vec(delta_s.clone()))
            * delta_v.transpose();
        let mut p = Problem {
            cfg: cfg.clone(),
            w0,
            delta,
            delta_u,
            delta_s,
            delta_v,
            x: None,
            y: None,
        };
        if keeps_samples(cfg) {
            let (x, y) = p.samples();
            p.x = Some(x);
            p.y = Some(y);
        }
        Ok(p)
    }

    /// Number of samples N (0 in population mode).
    pub fn n(&self) -> usize {
        if self.cfg.population {
            0
        } else {
            self.cfg.n_samples()
        }
    }

    /// The rows of X and the targets (see `Chunk`) in blocks of `rows`, regenerated from the seed.
    pub fn chunks(&self, rows: usize) -> Chunks<'_> {
        let seed = self.cfg.seed;
        let left = match self.cfg.model {
            Model::Linear => {
                let mut us = self.delta_u.clone();
                for (j, s) in self.delta_s.iter().enumerate() {
                    us.column_mut(j).scale_mut(*s);
                }
                us
            }
            Model::Relu => &self.w0 + &self.delta,
        };
        Chunks {
            p: self,
            x_rng: Rng::new(seed, stream::X),
            noise_rng: (self.cfg.noise > 0.0).then(|| Rng::new(seed, stream::NOISE)),
            left,
            rows: rows.max(1),
            done: 0,
        }
    }

    /// X (N×d) and Y (N×k) in full: the kept ones, or generated now.
    pub fn samples(&self) -> (Arc<DMatrix<f64>>, Arc<DMatrix<f64>>) {
        if let (Some(x), Some(y)) = (&self.x, &self.y) {
            return (x.clone(), y.clone());
        }
        let Some(Chunk { x, t }) = self.chunks(self.n().max(1)).next() else {
            let (d, k) = (self.cfg.d, self.cfg.k);
            return (
                Arc::new(DMatrix::zeros(0, d)),
                Arc::new(DMatrix::zeros(0, k)),
            );
        };
        let y = match self.cfg.model {
            Model::Linear => &x * &self.w0 + t,
            Model::Relu => t,
        };
        (Arc::new(x), Arc::new(y))
    }

    /// Σ̂ (when `with_sigma`), G and c0 of a sampled problem, from the kept samples or from
    /// streamed blocks of rows (O(d² + dk) memory). None in population mode.
    pub fn stats(&self, with_sigma: bool) -> Option<DataStats> {
        if self.cfg.population {
            return None;
        }
        let (d, k, n) = (self.cfg.d, self.cfg.k, self.n());
        let mut acc = DataStats {
            n,
            sigma: with_sigma.then(|| DMatrix::zeros(d, d)),
            g: DMatrix::zeros(d, k),
            c0: 0.0,
            sigma_ms: 0.0,
        };
        let relu = self.cfg.model == Model::Relu;
        let mut add = |x: &DMatrix<f64>, t: DMatrix<f64>| {
            let e = if relu {
                // masked residual at W0: ReLU'(XW0) ⊙ (Y − XW0)
                let z0 = x * &self.w0;
                t.zip_map(&z0, |y, z| if z > 0.0 { y - z } else { 0.0 })
            } else {
                acc.c0 += t.norm_squared();
                t
            };
            let xt = x.transpose();
            acc.g += &xt * e;
            if let Some(s) = &mut acc.sigma {
                let t = web_time::Instant::now();
                *s += &xt * x;
                acc.sigma_ms += t.elapsed().as_secs_f64() * 1e3;
            }
        };
        match (&self.x, &self.y) {
            (Some(x), Some(y)) => {
                let t = if relu {
                    (**y).clone()
                } else {
                    &**y - &**x * &self.w0
                };
                add(x, t)
            }
            _ => {
                for c in self.chunks(chunk_rows(d, k)) {
                    add(&c.x, c.t);
                }
            }
        }
        let nf = n as f64;
        acc.g /= nf;
        if let Some(s) = &mut acc.sigma {
            *s /= nf;
        }
        acc.c0 = if relu { 0.0 } else { acc.c0 / (2.0 * nf) };
        Some(acc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Preset;
    use crate::rng::bits_hash;

    #[test]
    fn same_seed_same_bits() {
        let c = Preset::Spectral.config();
        let a = Problem::generate(&c).unwrap();
        let b = Problem::generate(&c).unwrap();
        assert_eq!(bits_hash(&a.samples().0), bits_hash(&b.samples().0));
        assert_eq!(bits_hash(&a.delta), bits_hash(&b.delta));
        let mut c2 = c.clone();
        c2.seed = 1;
        let e = Problem::generate(&c2).unwrap();
        assert_ne!(bits_hash(&a.w0), bits_hash(&e.w0));
    }

    #[test]
    fn delta_has_requested_spectrum() {
        let c = Preset::Spectral.config();
        let p = Problem::generate(&c).unwrap();
        let s = crate::linalg::exact_top_svd(&p.delta, 5).s;
        for (got, want) in s.iter().zip([1.0, 0.75, 0.5, 0.25, 0.0]) {
            assert!((got - want).abs() < 1e-12, "{s:?}");
        }
    }

    fn rel(a: &DMatrix<f64>, b: &DMatrix<f64>) -> f64 {
        (a - b).norm() / b.norm()
    }

    /// Streaming blocks of rows gives the same X as drawing the whole matrix (bit for bit), and
    /// the same Σ̂, G, c0 as the textbook formulas on the whole X and Y, for odd block sizes,
    /// noise, W0 ≠ 0 and both models.
    #[test]
    fn streamed_stats_equal_whole_matrix_formulas() {
        for (model, noise) in [
            (Model::Linear, 0.0),
            (Model::Linear, 0.3),
            (Model::Relu, 0.1),
        ] {
            let mut c = Preset::Spectral.config();
            c.d = 23;
            c.k = 17;
            c.n = Some(301);
            c.model = model;
            c.noise = noise;
            c.w0_std = 0.5;
            let p = Problem::generate(&c).unwrap();
            let (x, y) = p.samples();
            let whole = Rng::new(c.seed, stream::X).normal_matrix(301, 23, 1.0);
            assert_eq!(bits_hash(&x), bits_hash(&whole), "X drawn in blocks");
            let blocks: Vec<Chunk> = p.chunks(37).collect();
            assert_eq!(blocks.len(), 301usize.div_ceil(37));
            let stacked_rows: usize = blocks.iter().map(|b| b.x.nrows()).sum();
            assert_eq!(stacked_rows, 301);
            assert_eq!(
                bits_hash(&blocks[1].x),
                bits_hash(&x.rows(37, 37).into_owned()),
                "block 1 of X"
            );
            let n = 301.0;
            let z0 = &*x * &p.w0;
            let e = match model {
                Model::Linear => &*y - &z0,
                Model::Relu => y.zip_map(&z0, |y, z| if z > 0.0 { y - z } else { 0.0 }),
            };
            let g = x.transpose() * &e / n;
            let sigma = x.transpose() * &*x / n;
            // the streamed path (this problem keeps X only for ReLU)
            let streamed = {
                let mut q = p.clone();
                q.x = None;
                q.y = None;
                q.stats(true).unwrap()
            };
            let kept = {
                let (x, y) = p.samples();
                let mut q = p.clone();
                q.x = Some(x);
                q.y = Some(y);
                q.stats(true).unwrap()
            };
            for s in [&streamed, &kept] {
                assert!(rel(&s.g, &g) < 1e-12, "{model:?} G");
                assert!(rel(s.sigma.as_ref().unwrap(), &sigma) < 1e-12, "Σ̂");
                if model == Model::Linear {
                    let c0 = e.norm_squared() / (2.0 * n);
                    assert!((s.c0 - c0).abs() < 1e-12 * c0, "c0 {} vs {c0}", s.c0);
                }
            }
        }
    }

    /// The linear factored problem keeps no N×d data; ReLU and the residual form do.
    #[test]
    fn only_residual_steps_keep_samples() {
        let mut c = Preset::Spectral.config();
        assert!(Problem::generate(&c).unwrap().x.is_none());
        c.step_form = StepForm::Residual;
        assert!(Problem::generate(&c).unwrap().x.is_some());
        c.step_form = StepForm::Factored;
        c.model = Model::Relu;
        assert!(Problem::generate(&c).unwrap().x.is_some());
    }
}
