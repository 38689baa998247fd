//! The talk's linearised dynamics (SPEC §8): near the saddle GD on (A, Bᵀ) is, up to a term
//! quadratic in the factors, the power iteration
//! `[A_{t+1}; B_{t+1}ᵀ] = [[I, ηG], [ηGᵀ, I]] [A_t; B_tᵀ]`.
//! In G's singular basis (G = U S Vᵀ) it decouples into 2×2 blocks with eigenvalues 1 ± ησ_i, so
//! from vanilla's B0 = 0 the closed form is `A_t = U diag(c(t)) UᵀA0 + (I − UUᵀ)A0` with
//! `c_i(t) = ((1 + ησ_i)^t + (1 − ησ_i)^t) / 2`. Its sin θ_A(t) is the prediction the lab draws
//! beside vanilla's measured curve: where they part, the nonlinear term has taken over.

use nalgebra::{DMatrix, SymmetricEigen};

/// Largest d + k for which the engine computes the prediction (it needs G's full SVD).
pub const MAX_DIMS: usize = 400;

/// The linearised model of one problem: G's full SVD and the step size.
pub struct Linearised {
    /// Left singular vectors of G, d×m (m = min(d, k)), and the singular values.
    u: DMatrix<f64>,
    s: Vec<f64>,
    eta: f64,
    /// r* (the alignment is measured against G's top-r* left subspace).
    rs: usize,
}

/// Step t's factors shared by every run (`Linearised::scales`).
pub struct Scales {
    c: Vec<f64>,
    rest: f64,
}

/// One vanilla run's initial A in G's basis: P = UᵀA0 and the Gram of the rest, QᵀQ.
pub struct Start {
    p: DMatrix<f64>,
    qtq: DMatrix<f64>,
}

impl Linearised {
    pub fn new(g: &DMatrix<f64>, eta: f64, rs: usize) -> Linearised {
        let m = g.nrows().min(g.ncols());
        let svd = crate::linalg::exact_top_svd(g, m);
        // Directions with σ = 0 do not move (c = 1) and their singular vectors are arbitrary:
        // keep G's numerical range only; the rest of A0 is carried as the constant part Q.
        let top = svd.s.first().copied().unwrap_or(0.0);
        let rank = svd.s.iter().filter(|&&x| x > 1e-10 * top).count().max(1);
        Linearised {
            u: svd.u.columns(0, rank).into_owned(),
            s: svd.s[..rank].to_vec(),
            eta,
            rs,
        }
    }

    pub fn start(&self, a0: &DMatrix<f64>) -> Start {
        let p = self.u.transpose() * a0;
        let q = a0 - &self.u * &p;
        Start {
            qtq: q.transpose() * &q,
            p,
        }
    }

    /// The part of step t's prediction every run shares: c_i(t) over the largest c (so that no
    /// power overflows) and one over the largest c for the part of A0 outside G's range. An
    /// ensemble computes it once per step, not once per run.
    pub fn scales(&self, t: usize) -> Scales {
        let t = t as f64;
        let ln_c: Vec<f64> = self
            .s
            .iter()
            .map(|&s| {
                let (up, down) = (1.0 + self.eta * s, 1.0 - self.eta * s);
                let ratio = if up > 0.0 { (down / up).powf(t) } else { 0.0 };
                t * up.max(f64::MIN_POSITIVE).ln() + ((1.0 + ratio) / 2.0).abs().max(1e-300).ln()
            })
            .collect();
        let top = ln_c.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        Scales {
            c: ln_c.iter().map(|l| (l - top).exp()).collect(),
            rest: (-top).exp(),
        }
    }

    /// sin θ_A(t) of the linearised A_t: the largest principal angle between its top-min(r, r*)
    /// left singular subspace and G's top-r*. O(m r²) per call. None while A_t = 0.
    pub fn sin_a(&self, st: &Start, t: usize) -> Option<f64> {
        self.sin_a_scaled(st, &self.scales(t))
    }

    /// `sin_a` with step t's `scales` given.
    pub fn sin_a_scaled(&self, st: &Start, sc: &Scales) -> Option<f64> {
        let (m, r) = st.p.shape();
        let k = r.min(self.rs).min(m);
        if k == 0 {
            return None;
        }
        // A_t / c_max in G's basis: [c ⊙ P; Q] with c scaled; its Gram decides the subspace
        let mut cp = st.p.clone();
        for (i, &f) in sc.c.iter().enumerate() {
            cp.row_mut(i).scale_mut(f);
        }
        let q_scale = sc.rest;
        let gram = cp.transpose() * &cp + &st.qtq * (q_scale * q_scale);
        if !gram.iter().all(|x| x.is_finite()) || gram.norm() == 0.0 {
            return None;
        }
        let eig = SymmetricEigen::new(gram);
        let mut order: Vec<usize> = (0..r).collect();
        order.sort_by(|&a, &b| eig.eigenvalues[b].total_cmp(&eig.eigenvalues[a]));
        let top_ev = eig.eigenvalues[order[0]];
        // once the k-th direction is below double precision relative to the first (σ_k/σ_1 <
        // 1e-6), the top-k subspace is not determined in f64: no prediction rather than noise
        if top_ev <= 0.0 || eig.eigenvalues[order[k - 1]] <= 1e-12 * top_ev {
            return None;
        }
        // X = U_{r*}ᵀ W with W = A_t V_k Σ_k^{-1} the top-k left singular vectors of A_t
        let rs = self.rs.min(m);
        let mut x = DMatrix::<f64>::zeros(rs, k);
        for (j, &o) in order.iter().take(k).enumerate() {
            let sigma = eig.eigenvalues[o].max(0.0).sqrt();
            if sigma == 0.0 {
                return None;
            }
            let v = eig.eigenvectors.column(o);
            let col = cp.rows(0, rs) * v / sigma;
            x.set_column(j, &col);
        }
        // largest principal angle: sin² = 1 − σ_min(X)²
        let xtx = x.transpose() * &x;
        let lmin = SymmetricEigen::new(xtx)
            .eigenvalues
            .iter()
            .cloned()
            .fold(f64::INFINITY, f64::min);
        Some((1.0 - lmin.clamp(0.0, 1.0)).sqrt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::{sin_theta, top_left_subspace};
    use crate::rng::Rng;

    /// The closed form equals the block power iteration step by step.
    #[test]
    fn closed_form_equals_the_block_iteration() {
        let (d, k, r, rs, eta) = (9, 7, 3, 2, 0.3);
        let g = Rng::new(1, 9).normal_matrix(d, k, 1.0);
        let a0 = Rng::new(2, 9).normal_matrix(d, r, 0.01);
        let lin = Linearised::new(&g, eta, rs);
        let st = lin.start(&a0);
        let u_rs = crate::linalg::exact_top_svd(&g, rs).u;
        let (mut a, mut bt) = (a0.clone(), DMatrix::<f64>::zeros(k, r));
        for t in 0..=40 {
            let want = top_left_subspace(&a, r.min(rs)).map(|q| sin_theta(&u_rs, &q));
            let got = lin.sin_a(&st, t);
            let (w, g_) = (want.unwrap(), got.unwrap());
            assert!(
                (w - g_).abs() < 1e-7,
                "t={t}: iteration {w} closed form {g_}"
            );
            let a1 = &a + &g * &bt * eta;
            bt = &bt + g.transpose() * &a * eta;
            a = a1;
        }
    }

    /// The prediction aligns (sin → 0) and no power overflows at long horizons; a rank-deficient
    /// G (the usual planted problem: rank r*) gives the same answer as the iteration.
    #[test]
    fn long_horizons_stay_finite_and_align() {
        let g = Rng::new(3, 9).normal_matrix(12, 10, 1.0);
        let a0 = Rng::new(4, 9).normal_matrix(12, 4, 1e-3);
        let lin = Linearised::new(&g, 0.5, 2);
        let st = lin.start(&a0);
        let (s0, s1) = (lin.sin_a(&st, 0).unwrap(), lin.sin_a(&st, 60).unwrap());
        assert!(s0 > 0.9 && s1 < 0.01, "{s0} {s1}");
        // later the second direction falls below f64 precision next to the first: the
        // prediction says so (None) instead of returning noise
        let late = lin.sin_a(&st, 400);
        assert!(late.is_none_or(|s| s <= s1), "{late:?}");
        // far past double range: finite or undetermined, never NaN
        assert!(lin.sin_a(&st, 1_000_000).is_none_or(|s| s.is_finite()));
        // rank-2 G in 12×10
        let g2 =
            Rng::new(5, 9).normal_matrix(12, 2, 1.0) * Rng::new(6, 9).normal_matrix(2, 10, 1.0);
        let lin2 = Linearised::new(&g2, 0.1, 2);
        let st2 = lin2.start(&a0);
        let u_rs = crate::linalg::exact_top_svd(&g2, 2).u;
        let want = sin_theta(&u_rs, &top_left_subspace(&a0, 2).unwrap());
        assert!((lin2.sin_a(&st2, 0).unwrap() - want).abs() < 1e-9);
    }
}
