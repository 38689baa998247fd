//! Seeded problem generation (SPEC §1, §5, §6).

use crate::config::{Config, ConfigError, DeltaBasis, Model};
use crate::linalg::orthonormalize;
use crate::rng::{stream, Rng};
use nalgebra::{DMatrix, DVector};

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
    /// Inputs N×d (None in population mode, where Σ̂ = I exactly).
    pub x: Option<DMatrix<f64>>,
    /// Labels N×k.
    pub y: Option<DMatrix<f64>>,
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
        let (x, y) = if cfg.population {
            (None, None)
        } else {
            let n = cfg.n_samples();
            let x = Rng::new(seed, stream::X).normal_matrix(n, d, 1.0);
            let mut y = &x * (&w0 + &delta);
            if cfg.model == Model::Relu {
                y.apply(|v| *v = v.max(0.0));
            }
            if cfg.noise > 0.0 {
                y += Rng::new(seed, stream::NOISE).normal_matrix(n, k, cfg.noise);
            }
            (Some(x), Some(y))
        };
        Ok(Problem {
            cfg: cfg.clone(),
            w0,
            delta,
            delta_u,
            delta_s,
            delta_v,
            x,
            y,
        })
    }

    pub fn n(&self) -> usize {
        self.x.as_ref().map_or(0, |x| x.nrows())
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
        assert_eq!(
            bits_hash(a.x.as_ref().unwrap()),
            bits_hash(b.x.as_ref().unwrap())
        );
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
}
