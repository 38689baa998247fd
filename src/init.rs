//! The initialisations of SPEC §2, built on the host from the canonical truncated SVD of G (the
//! SVD itself runs on the backend); PiSSA from W0's top-r SVD (formed on the host).

use crate::config::{Config, InitKind, RunPlan};
use crate::linalg::TopSvd;
use crate::rng::{stream, Rng};
use nalgebra::DMatrix;

/// Initial factors of one run.
#[derive(Clone, Debug)]
pub struct InitFactors {
    pub a0: DMatrix<f64>,
    pub b0: DMatrix<f64>,
    /// LoRA-GA and PiSSA: the frozen weight becomes `W0 − A0B0` so the t = 0 prediction is
    /// unchanged.
    pub offset: bool,
}

/// Vanilla LoRA: `A0 ~ N(0, α²)`, `B0 = 0`. Every α² scales the same seeded Gaussian draw, so a
/// sweep over α² compares like with like.
pub fn vanilla(cfg: &Config, alpha2: f64) -> InitFactors {
    vanilla_draw(cfg, alpha2, 0)
}

/// Vanilla LoRA with the `draw`-th independent A0 of the seed (ensembles; draw 0 = `vanilla`).
pub fn vanilla_draw(cfg: &Config, alpha2: f64, draw: usize) -> InitFactors {
    let s = if draw == 0 {
        stream::VANILLA_A
    } else {
        stream::VANILLA_DRAWS + draw as u64
    };
    let z = Rng::new(cfg.seed, s).normal_matrix(cfg.d, cfg.r, 1.0);
    InitFactors {
        a0: z * alpha2.sqrt(),
        b0: DMatrix::zeros(cfg.r, cfg.k),
        offset: false,
    }
}

/// LoRA-One, ICML form: `A0 = √γ U_r S_r^{1/2}`, `B0 = √γ S_r^{1/2} V_rᵀ` (so A0B0 = γ P_r(G)).
/// Normalised (practical) form: S / S[1], and both factors divided by √γ_stable.
pub fn lora_one(cfg: &Config, g: &TopSvd) -> InitFactors {
    let r = cfg.r;
    let s1 = g.s[0];
    let (scale, norm) = if cfg.normalised {
        (
            1.0 / cfg.gamma_stable.sqrt(),
            if s1 > 0.0 { s1 } else { 1.0 },
        )
    } else {
        (cfg.gamma.sqrt(), 1.0)
    };
    let mut a0 = g.u.columns(0, r).into_owned();
    let mut b0 = g.v.columns(0, r).transpose();
    for i in 0..r {
        let w = scale * (g.s[i] / norm).sqrt();
        a0.column_mut(i).scale_mut(w);
        b0.row_mut(i).scale_mut(w);
    }
    InitFactors {
        a0,
        b0,
        offset: false,
    }
}

/// LoRA-GA: with `∇_W L(W0) = −G = (−U) S Vᵀ`, `A0 = c·(−U)[:, 1:r]`, `B0 = c·V[:, r+1:2r]ᵀ`,
/// `c = k^{1/4}/√γ_GA`, and the offset `W0 ← W0 − A0B0`.
pub fn lora_ga(cfg: &Config, g: &TopSvd) -> InitFactors {
    let r = cfg.r;
    let c = (cfg.k as f64).powf(0.25) / cfg.gamma_ga.sqrt();
    let a0 = g.u.columns(0, r) * (-c);
    let b0 = g.v.columns(r, r).transpose() * c;
    InitFactors {
        a0,
        b0,
        offset: true,
    }
}

/// PiSSA (SPEC §2): `A0 = U_W[:, 1:r] S_W^{1/2}`, `B0 = S_W^{1/2} V_W[:, 1:r]ᵀ` from W0's top-r
/// SVD, with the offset `W0 ← W0 − A0B0`: the adapter holds W0's principal part, not the task's
/// gradient (the contrast with LoRA-One is the point).
pub fn pissa(cfg: &Config, w0: &TopSvd) -> InitFactors {
    let r = cfg.r.min(w0.s.len());
    let mut a0 = w0.u.columns(0, r).into_owned();
    let mut b0 = w0.v.columns(0, r).transpose();
    for i in 0..r {
        let f = w0.s[i].max(0.0).sqrt();
        a0.column_mut(i).scale_mut(f);
        b0.row_mut(i).scale_mut(f);
    }
    InitFactors {
        a0,
        b0,
        offset: true,
    }
}

/// W0's top-r SVD for PiSSA, on the host: exact for small problems, else the randomised subspace
/// iteration (the CPU twin of the GPU's), seeded.
pub fn w0_svd(cfg: &Config, w0: &DMatrix<f64>) -> TopSvd {
    let t = if cfg.d + cfg.k <= 600 {
        crate::linalg::exact_top_svd(w0, cfg.r)
    } else {
        crate::linalg::subspace_top_svd(w0, cfg.r, 8, 6, cfg.seed)
    };
    crate::linalg::canonicalize(t, cfg.seed).0
}

/// How many singular triplets of G the configured inits need (at least r* for the metrics).
pub fn svd_rank_needed(cfg: &Config) -> usize {
    let mut m = cfg.r_star.max(cfg.r);
    if cfg.inits.contains(&InitKind::LoraGa) {
        m = m.max(2 * cfg.r);
    }
    m.min(cfg.d.min(cfg.k))
}

/// A run's factors; `w0` is W0's top-r SVD (`w0_svd`), needed by PiSSA only.
pub fn build(cfg: &Config, plan: &RunPlan, g: &TopSvd, w0: Option<&TopSvd>) -> InitFactors {
    match plan.init {
        InitKind::Vanilla => vanilla_draw(cfg, plan.alpha2.unwrap_or(cfg.alpha2[0]), plan.draw),
        InitKind::LoraOne => lora_one(cfg, g),
        InitKind::LoraGa => lora_ga(cfg, g),
        InitKind::Pissa => pissa(cfg, w0.expect("PiSSA needs W0's SVD")),
    }
}

/// Human label of a run, e.g. "vanilla α²=1e-3".
pub fn label(kind: InitKind, alpha2: Option<f64>) -> String {
    match (kind, alpha2) {
        (InitKind::Vanilla, Some(a)) => format!("vanilla α²={a:e}"),
        (InitKind::Vanilla, None) => "vanilla".into(),
        (InitKind::LoraGa, _) => "LoRA-GA".into(),
        (InitKind::LoraOne, _) => "LoRA-One".into(),
        (InitKind::Pissa, _) => "PiSSA".into(),
    }
}
