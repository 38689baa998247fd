//! Small dense linear-algebra helpers shared by every backend: truncated SVDs (exact and by
//! randomised subspace iteration, the CPU twin of the GPU kernel), canonical signs, orthonormal
//! completions, principal-angle sines and operator norms.

use crate::rng::{stream, Rng};
use nalgebra::{DMatrix, SymmetricEigen};

/// Singular values below this fraction of σ1 count as zero when deciding the numerical rank of G.
/// It sits well above f32 round-off (~1e-6 relative), so both backends agree on the rank.
pub const RANK_TOL: f64 = 1e-4;

/// Truncated SVD `M ≈ U diag(s) Vᵀ`, columns in descending order of s.
#[derive(Clone, Debug)]
pub struct TopSvd {
    pub u: DMatrix<f64>,
    pub s: Vec<f64>,
    pub v: DMatrix<f64>,
}

/// Exact top-m SVD through nalgebra's full thin SVD (the reference).
pub fn exact_top_svd(m_: &DMatrix<f64>, m: usize) -> TopSvd {
    let svd = m_.clone().svd(true, true);
    let u = svd.u.expect("u requested");
    let vt = svd.v_t.expect("v requested");
    let mut idx: Vec<usize> = (0..svd.singular_values.len()).collect();
    idx.sort_by(|&a, &b| svd.singular_values[b].total_cmp(&svd.singular_values[a]));
    let m = m.min(idx.len());
    let mut out_u = DMatrix::zeros(m_.nrows(), m);
    let mut out_v = DMatrix::zeros(m_.ncols(), m);
    let mut s = Vec::with_capacity(m);
    for (j, &i) in idx.iter().take(m).enumerate() {
        out_u.set_column(j, &u.column(i));
        out_v.set_column(j, &vt.row(i).transpose());
        s.push(svd.singular_values[i]);
    }
    TopSvd {
        u: out_u,
        s,
        v: out_v,
    }
}

/// Orthonormal basis of the columns of `m` (thin Householder QR).
pub fn orthonormalize(m: &DMatrix<f64>) -> DMatrix<f64> {
    m.clone().qr().q()
}

/// Randomised subspace iteration for the top-m singular triplets of `g`: sketch with a seeded
/// Gaussian k×(m+p), `iters` power iterations with re-orthonormalisation, then an SVD of the small
/// projected matrix. This is the algorithm the GPU backend runs; this function is its CPU twin.
pub fn subspace_top_svd(
    g: &DMatrix<f64>,
    m: usize,
    oversample: usize,
    iters: usize,
    seed: u64,
) -> TopSvd {
    let (d, k) = g.shape();
    let l = (m + oversample).min(d.min(k));
    let omega = Rng::new(seed, stream::SUBSPACE).normal_matrix(k, l, 1.0);
    let mut q = orthonormalize(&(g * omega));
    for _ in 0..iters {
        let z = orthonormalize(&(g.transpose() * &q));
        q = orthonormalize(&(g * z));
    }
    let small = q.transpose() * g; // l×k
    let svd = exact_top_svd(&small, m);
    TopSvd {
        u: &q * svd.u,
        s: svd.s,
        v: svd.v,
    }
}

/// Make a truncated SVD canonical so every backend builds the same initial factors:
/// singular values below `RANK_TOL·σ1` are set to 0 and their vectors replaced by a seeded
/// orthonormal completion (any completion is valid, SPEC §2; a seeded one is reproducible), and
/// each pair (u_i, v_i) is signed so that u_i's largest-magnitude entry is positive.
pub fn canonicalize(mut t: TopSvd, seed: u64) -> (TopSvd, usize) {
    let s1 = t.s.first().copied().unwrap_or(0.0);
    let rank =
        t.s.iter()
            .take_while(|&&s| s1 > 0.0 && s > RANK_TOL * s1)
            .count();
    let m = t.s.len();
    for i in 0..rank {
        let col = t.u.column(i);
        let mut best = 0;
        for j in 0..col.len() {
            if col[j].abs() > col[best].abs() {
                best = j;
            }
        }
        if col[best] < 0.0 {
            t.u.column_mut(i).neg_mut();
            t.v.column_mut(i).neg_mut();
        }
    }
    if rank < m {
        let u_known = t.u.columns(0, rank).into_owned();
        let v_known = t.v.columns(0, rank).into_owned();
        let u_new = complete_basis(&u_known, m, seed, stream::COMPLETION);
        let v_new = complete_basis(&v_known, m, seed, stream::COMPLETION + 100);
        t.u = u_new;
        t.v = v_new;
        for s in t.s.iter_mut().skip(rank) {
            *s = 0.0;
        }
    }
    (t, rank)
}

/// Extend orthonormal columns `known` (n×p) to n×m orthonormal columns, the new ones from a
/// seeded Gaussian by two passes of modified Gram–Schmidt.
pub fn complete_basis(known: &DMatrix<f64>, m: usize, seed: u64, stream_id: u64) -> DMatrix<f64> {
    let n = known.nrows();
    let p = known.ncols();
    let mut out = DMatrix::zeros(n, m);
    out.columns_mut(0, p).copy_from(known);
    let mut rng = Rng::new(seed, stream_id);
    let mut j = p;
    let mut attempts = 0;
    while j < m {
        attempts += 1;
        assert!(attempts < 100 * m + 100, "cannot complete basis: m > n?");
        let mut v = nalgebra::DVector::from_fn(n, |_, _| rng.normal());
        for _ in 0..2 {
            for i in 0..j {
                let c = out.column(i).dot(&v);
                v.axpy(-c, &out.column(i), 1.0);
            }
        }
        let norm = v.norm();
        if norm > 1e-8 {
            out.set_column(j, &(v / norm));
            j += 1;
        }
    }
    out
}

/// Largest eigenvalue of a small symmetric PSD matrix (clamped at 0).
fn max_eig_sym(m: DMatrix<f64>) -> f64 {
    if m.is_empty() {
        return 0.0;
    }
    SymmetricEigen::new(m).eigenvalues.max().max(0.0)
}

/// Operator (spectral) norm of a tall or wide matrix through its small Gram matrix.
pub fn op_norm(m: &DMatrix<f64>) -> f64 {
    if m.nrows() >= m.ncols() {
        max_eig_sym(m.transpose() * m).sqrt()
    } else {
        max_eig_sym(m * m.transpose()).sqrt()
    }
}

/// `‖U_⊥ᵀ Q‖_op` for orthonormal U (n×p) and Q (n×q): the sine of the largest principal angle
/// between span(Q) and span(U) when q ≤ p. Computed as ‖Q − U(UᵀQ)‖_op, accurate for tiny angles.
pub fn sin_theta(u: &DMatrix<f64>, q: &DMatrix<f64>) -> f64 {
    let resid = q - u * (u.transpose() * q);
    op_norm(&resid).min(1.0)
}

/// Top-m left singular subspace of a tall factor (n×r, r small): thin QR, then the SVD of R.
/// Returns None when the factor is zero.
pub fn top_left_subspace(a: &DMatrix<f64>, m: usize) -> Option<DMatrix<f64>> {
    if a.norm() == 0.0 || !a.iter().all(|x| x.is_finite()) {
        return None;
    }
    let qr = a.clone().qr();
    let q = qr.q();
    let r = qr.r();
    let small = exact_top_svd(&r, m);
    Some(q * small.u)
}

/// Singular values of A·B (A n×r, B r×p) without forming the product: QR of A and of Bᵀ, then the
/// SVD of R_A·R_Bᵀ (r×r).
pub fn product_singular_values(a: &DMatrix<f64>, b: &DMatrix<f64>) -> Vec<f64> {
    let ra = a.clone().qr().r();
    let rb = b.transpose().qr().r();
    let mut s: Vec<f64> = (ra * rb.transpose())
        .singular_values()
        .iter()
        .copied()
        .collect();
    s.sort_by(|x, y| y.total_cmp(x));
    s
}

/// Solve `M X = R` for a small symmetric positive-definite M by Cholesky; None if not SPD.
pub fn spd_solve(m: &DMatrix<f64>, rhs: &DMatrix<f64>) -> Option<DMatrix<f64>> {
    let ch = m.clone().cholesky()?;
    Some(ch.solve(rhs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rand(seed: u64, r: usize, c: usize) -> DMatrix<f64> {
        Rng::new(seed, 99).normal_matrix(r, c, 1.0)
    }

    #[test]
    fn exact_svd_reconstructs_and_is_sorted() {
        let m = rand(1, 7, 5);
        let t = exact_top_svd(&m, 5);
        assert!(t.s.windows(2).all(|w| w[0] >= w[1]));
        let rec = &t.u
            * DMatrix::from_diagonal(&nalgebra::DVector::from_vec(t.s.clone()))
            * t.v.transpose();
        assert!((rec - m).norm() < 1e-10);
    }

    #[test]
    fn subspace_iteration_matches_exact_on_separated_spectrum() {
        // G = U diag(10, 8, 6, 4, 0.1 ...) Vᵀ
        let (d, k) = (60, 40);
        let u = orthonormalize(&rand(2, d, k));
        let v = orthonormalize(&rand(3, k, k));
        let s: Vec<f64> = (0..k)
            .map(|i| if i < 4 { 10.0 - 2.0 * i as f64 } else { 0.1 })
            .collect();
        let g = &u * DMatrix::from_diagonal(&nalgebra::DVector::from_vec(s)) * v.transpose();
        let t = subspace_top_svd(&g, 4, 4, 6, 0);
        let e = exact_top_svd(&g, 4);
        assert!(sin_theta(&e.u, &t.u) < 1e-8);
        assert!(sin_theta(&e.v, &t.v) < 1e-8);
        for i in 0..4 {
            assert!((t.s[i] - e.s[i]).abs() < 1e-8);
        }
    }

    #[test]
    fn canonicalize_completes_rank_deficient() {
        let a = rand(4, 20, 2);
        let b = rand(5, 2, 15);
        let g = a * b; // rank 2
        let (t, rank) = canonicalize(exact_top_svd(&g, 6), 9);
        assert_eq!(rank, 2);
        let utu = t.u.transpose() * &t.u;
        let vtv = t.v.transpose() * &t.v;
        assert!((utu - DMatrix::identity(6, 6)).norm() < 1e-10);
        assert!((vtv - DMatrix::identity(6, 6)).norm() < 1e-10);
        assert_eq!(&t.s[2..], &[0.0; 4]);
        // signs: largest entry of each kept u_i is positive
        for i in 0..2 {
            let c = t.u.column(i);
            let m = c
                .iter()
                .fold(0.0f64, |acc, x| if x.abs() > acc.abs() { *x } else { acc });
            assert!(m > 0.0);
        }
    }

    #[test]
    fn sin_theta_basics() {
        let q = orthonormalize(&rand(6, 10, 3));
        assert!(sin_theta(&q, &q) < 1e-12);
        let e1 = DMatrix::from_fn(10, 1, |i, _| if i == 0 { 1.0 } else { 0.0 });
        let e2 = DMatrix::from_fn(10, 1, |i, _| if i == 1 { 1.0 } else { 0.0 });
        assert!((sin_theta(&e1, &e2) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn product_singular_values_match_dense() {
        let a = rand(7, 12, 3);
        let b = rand(8, 3, 9);
        let s = product_singular_values(&a, &b);
        let e = exact_top_svd(&(&a * &b), 3).s;
        for i in 0..3 {
            assert!((s[i] - e[i]).abs() < 1e-10);
        }
    }
}
