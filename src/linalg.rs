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

/// Above this many rows + columns the SVD uses the Gram matrix of the smaller side instead of the
/// Jordan–Wielandt matrix (which is twice as large but keeps full accuracy in small σ).
const JW_MAX: usize = 600;

/// Top-m SVD, computed through nalgebra's symmetric eigensolver.
///
/// nalgebra's own `svd(true, true)` returns wrong singular values for some inputs, rank-deficient
/// ones included (dimforge/nalgebra#1172, open against 0.35 — our tests hit it on an 8×8
/// triangular factor), so it is not used. For moderate sizes the eigenpairs of the symmetric
/// Jordan–Wielandt matrix `[[0, M], [Mᵀ, 0]]` are `±σ_i` with eigenvectors `[u_i; ±v_i]/√2`:
/// singular values to absolute accuracy ε·σ1, no squaring. For large matrices the eigenpairs of
/// the Gram matrix of the smaller side give V (or U) and the other side is `MV/σ`, accurate for
/// σ_i ≫ √ε·σ1, which covers every use here (the numerical rank cut is 1e-4·σ1).
pub fn exact_top_svd(m_: &DMatrix<f64>, m: usize) -> TopSvd {
    let (rows, cols) = m_.shape();
    let m = m.min(rows.min(cols));
    if rows + cols <= JW_MAX {
        jordan_wielandt_svd(m_, m)
    } else {
        gram_svd(m_, m)
    }
}

/// Eigenpairs sorted by descending eigenvalue.
fn sorted_eigen(sym: DMatrix<f64>) -> (Vec<f64>, DMatrix<f64>) {
    let e = SymmetricEigen::new(sym);
    let mut idx: Vec<usize> = (0..e.eigenvalues.len()).collect();
    idx.sort_by(|&a, &b| e.eigenvalues[b].total_cmp(&e.eigenvalues[a]));
    let vals = idx.iter().map(|&i| e.eigenvalues[i]).collect();
    let vecs = DMatrix::from_fn(e.eigenvectors.nrows(), idx.len(), |r, c| {
        e.eigenvectors[(r, idx[c])]
    });
    (vals, vecs)
}

fn jordan_wielandt_svd(a: &DMatrix<f64>, m: usize) -> TopSvd {
    let (rows, cols) = a.shape();
    let n = rows + cols;
    let mut jw = DMatrix::zeros(n, n);
    jw.view_mut((0, rows), (rows, cols)).copy_from(a);
    jw.view_mut((rows, 0), (cols, rows))
        .copy_from(&a.transpose());
    let (vals, vecs) = sorted_eigen(jw);
    let mut u = DMatrix::zeros(rows, m);
    let mut v = DMatrix::zeros(cols, m);
    let mut s = Vec::with_capacity(m);
    for (j, &val) in vals.iter().enumerate().take(m) {
        let x = vecs.column(j);
        let (xu, xv) = (x.rows(0, rows), x.rows(rows, cols));
        let (nu, nv) = (xu.norm(), xv.norm());
        s.push(val.max(0.0));
        // for σ > 0 both halves have norm 1/√2; for σ = 0 they are an arbitrary null vector
        if nu > 1e-8 {
            u.set_column(j, &(xu / nu));
        }
        if nv > 1e-8 {
            v.set_column(j, &(xv / nv));
        }
    }
    TopSvd { u, s, v }
}

fn gram_svd(a: &DMatrix<f64>, m: usize) -> TopSvd {
    let (rows, cols) = a.shape();
    if rows < cols {
        let t = gram_svd(&a.transpose(), m);
        return TopSvd {
            u: t.v,
            s: t.s,
            v: t.u,
        };
    }
    let (_, vecs) = sorted_eigen(a.transpose() * a);
    let v = vecs.columns(0, m).into_owned();
    let mut u = a * &v;
    let mut s = Vec::with_capacity(m);
    for j in 0..m {
        let n = u.column(j).norm();
        s.push(n);
        if n > 0.0 {
            u.column_mut(j).unscale_mut(n);
        }
    }
    TopSvd { u, s, v }
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
    let small = ra * rb.transpose();
    let n = small.nrows().min(small.ncols());
    exact_top_svd(&small, n).s
}

/// Eigenpairs of a small symmetric matrix, eigenvalues descending.
fn sym_eigen_desc(m: &DMatrix<f64>) -> (Vec<f64>, DMatrix<f64>) {
    let sym = (m + m.transpose()) * 0.5;
    let e = nalgebra::SymmetricEigen::new(sym);
    let mut idx: Vec<usize> = (0..e.eigenvalues.len()).collect();
    idx.sort_by(|&i, &j| e.eigenvalues[j].total_cmp(&e.eigenvalues[i]));
    let vals = idx.iter().map(|&i| e.eigenvalues[i]).collect();
    let vecs = DMatrix::from_fn(m.nrows(), idx.len(), |r, c| e.eigenvectors[(r, idx[c])]);
    (vals, vecs)
}

/// Eigenvalues of an f32-formed Gram below this fraction of the largest are rounding noise.
const GRAM_REL_TOL: f64 = 1e-6;

/// `sin_theta(U, top_left_subspace(A, m))` from r×r summaries of a factor A (n×r):
/// `k = AᵀA` and `rg = RᵀR` with `R = (I − UUᵀ)A`. With `AᵀA = W Λ Wᵀ`, the top-m left singular
/// vectors are `A W_m Λ_m^{-1/2}`, whose residual against U has Gram
/// `Λ_m^{-1/2} W_mᵀ rg W_m Λ_m^{-1/2}`; sin θ is the square root of its largest eigenvalue.
/// None when A = 0. Directions with eigenvalue below 1e-6 of the largest (rounding noise of an
/// f32 Gram) are left out of the subspace.
pub fn sin_theta_from_grams(k: &DMatrix<f64>, rg: &DMatrix<f64>, m: usize) -> Option<f64> {
    sin_theta_from_eigen(&sym_eigen_desc(k), k, rg, m)
}

fn sin_theta_from_eigen(
    (vals, vecs): &(Vec<f64>, DMatrix<f64>),
    k: &DMatrix<f64>,
    rg: &DMatrix<f64>,
    m: usize,
) -> Option<f64> {
    if k.trace() <= 0.0 || !k.iter().chain(rg.iter()).all(|x| x.is_finite()) {
        return None;
    }
    let top = vals[0];
    let keep = vals
        .iter()
        .take(m)
        .take_while(|&&v| v > GRAM_REL_TOL * top)
        .count()
        .max(1);
    let w = DMatrix::from_fn(k.nrows(), keep, |i, j| vecs[(i, j)] / vals[j].sqrt());
    let inner = w.transpose() * rg * &w;
    let (ev, _) = sym_eigen_desc(&inner);
    Some(ev[0].max(0.0).sqrt().min(1.0))
}

/// sin θ_A, sin θ_B and the singular values of AB from a factor pair's r×r Grams `AᵀA`, `BBᵀ`,
/// `RᵀR`, `SᵀS` (see `engine::Factors::Aligned`), sharing the eigendecomposition of AᵀA: the f64
/// CPU twin of the batched GPU path's `align_metrics` / `batched_align` (shaders/batched.wgsl).
pub fn gram_metrics(
    ata: &DMatrix<f64>,
    bbt: &DMatrix<f64>,
    ra: &DMatrix<f64>,
    rb: &DMatrix<f64>,
    m: usize,
) -> (Option<f64>, Option<f64>, Vec<f64>) {
    let ea = sym_eigen_desc(ata);
    let sin_a = sin_theta_from_eigen(&ea, ata, ra, m);
    let sin_b = sin_theta_from_grams(bbt, rb, m);
    (sin_a, sin_b, product_sv_from_eigen(&ea, bbt))
}

fn product_sv_from_eigen((vals, vecs): &(Vec<f64>, DMatrix<f64>), bbt: &DMatrix<f64>) -> Vec<f64> {
    let half =
        vecs * DMatrix::from_diagonal(&nalgebra::DVector::from_iterator(
            vals.len(),
            vals.iter().map(|v| v.max(0.0).sqrt()),
        )) * vecs.transpose();
    let (ev, _) = sym_eigen_desc(&(&half * bbt * &half));
    ev.into_iter().map(|v| v.max(0.0).sqrt()).collect()
}

/// `product_singular_values(A, B)` from `AᵀA` and `BBᵀ`: the singular values of AB are the
/// square roots of the eigenvalues of `(AᵀA)^{1/2} BBᵀ (AᵀA)^{1/2}`.
pub fn product_singular_values_from_grams(ata: &DMatrix<f64>, bbt: &DMatrix<f64>) -> Vec<f64> {
    product_sv_from_eigen(&sym_eigen_desc(ata), bbt)
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

    fn check_svd(m: &DMatrix<f64>, t: &TopSvd, tol: f64) {
        let k = t.s.len();
        assert!(t.s.windows(2).all(|w| w[0] >= w[1] - tol), "{:?}", t.s);
        // Σσ² = ‖M‖_F² when all singular values are kept (the identity nalgebra#1172 breaks)
        if k == m.nrows().min(m.ncols()) {
            let ss: f64 = t.s.iter().map(|x| x * x).sum();
            assert!(
                (ss - m.norm_squared()).abs() < tol * (1.0 + m.norm_squared()),
                "{ss} vs {}",
                m.norm_squared()
            );
        }
        let sd = DMatrix::from_diagonal(&nalgebra::DVector::from_vec(t.s.clone()));
        let rec = &t.u * sd * t.v.transpose();
        let best = m - &rec; // residual of the rank-k truncation
        let tail: f64 = {
            let full = exact_top_svd(m, m.nrows().min(m.ncols()));
            full.s.iter().skip(k).map(|x| x * x).sum::<f64>()
        };
        assert!((best.norm_squared() - tail).abs() < tol * (1.0 + m.norm_squared()));
    }

    #[test]
    fn svd_is_right_where_nalgebra_svd_is_wrong() {
        // dimforge/nalgebra#1172: the all-ones 3×5 matrix has σ1 = √15, and an integer 3×3 has Σσ² = 21
        let ones = DMatrix::from_element(3, 5, 1.0);
        let t = exact_top_svd(&ones, 3);
        assert!((t.s[0] - 15f64.sqrt()).abs() < 1e-12, "{:?}", t.s);
        check_svd(&ones, &t, 1e-12);
        let m = DMatrix::from_row_slice(3, 3, &[1.0, 2.0, 2.0, 2.0, -1.0, -1.0, 2.0, 1.0, -1.0]);
        check_svd(&m, &exact_top_svd(&m, 3), 1e-12);
        // every path on random, rank-deficient and wide/tall shapes
        for (seed, r, c, rank) in [
            (1, 7, 5, 5),
            (2, 5, 9, 2),
            (3, 8, 8, 4),
            (4, 400, 300, 6),
            (5, 1, 1, 1),
        ] {
            let m = rand(seed, r, rank) * rand(seed + 50, rank, c);
            let n = r.min(c);
            check_svd(&m, &exact_top_svd(&m, n), 1e-9);
            check_svd(&m, &jordan_wielandt_svd(&m, n), 1e-9);
            let g = gram_svd(&m, rank.min(n));
            let e = exact_top_svd(&m, rank.min(n));
            for (a, b) in g.s.iter().zip(&e.s) {
                assert!((a - b).abs() < 1e-9 * e.s[0]);
            }
            assert!(sin_theta(&e.u, &g.u) < 1e-6);
        }
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
    fn gram_metrics_match_factor_metrics() {
        for (d, r, m, seed) in [(12, 3, 2, 1), (20, 6, 4, 2), (9, 1, 1, 3), (16, 8, 8, 4)] {
            let a = rand(seed, d, r);
            let b = rand(seed + 50, r, d + 3);
            let u = orthonormalize(&rand(seed + 100, d, m));
            let resid = &a - &u * (u.transpose() * &a);
            let want = sin_theta(&u, &top_left_subspace(&a, m).unwrap());
            let got = sin_theta_from_grams(&(a.transpose() * &a), &(resid.transpose() * &resid), m)
                .unwrap();
            assert!((want - got).abs() < 1e-9, "d={d} r={r}: {want} vs {got}");
            let s1 = product_singular_values(&a, &b);
            let s2 =
                product_singular_values_from_grams(&(a.transpose() * &a), &(&b * b.transpose()));
            for (x, y) in s1.iter().zip(&s2) {
                assert!((x - y).abs() < 1e-9 * (1.0 + x), "{x} vs {y}");
            }
        }
        // an aligned factor has sin θ = 0; a zero factor has none
        let u = orthonormalize(&rand(7, 10, 2));
        let a = &u * rand(8, 2, 2);
        let z = DMatrix::zeros(2, 2);
        assert!(sin_theta_from_grams(&(a.transpose() * &a), &z, 2).unwrap() < 1e-12);
        assert!(sin_theta_from_grams(&z, &z, 2).is_none());
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
