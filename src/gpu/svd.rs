//! Truncated SVD of G on the GPU: randomised subspace iteration with Cholesky-QR2.

use super::kernels::{encode_all, t_big_scratch, Dispatch, View, MAX_SMALL};
use super::{from_f32, to_f32, GpuBackend};
use crate::engine::EngineError;
use crate::linalg::TopSvd;
use crate::rng::{stream, Rng};
use nalgebra::DMatrix;

/// Pivot tolerance of the Cholesky-QR (relative to the column's squared norm).
pub const QR_TOL: f32 = 1e-6;

pub(super) struct SvdPlan {
    w: usize,
    iters: usize,
    ds: Vec<Dispatch>,
    q: wgpu::Buffer,
    proj: wgpu::Buffer,
    rb: wgpu::Buffer,
    _keep: Vec<wgpu::Buffer>,
}

impl GpuBackend {
    /// The subspace-iteration dispatches for width w and `iters` power iterations on the d×k
    /// row-major G in `g`; built once and reused while the problem stays loaded.
    fn build_svd_plan(
        &self,
        g: &wgpu::Buffer,
        (d, k): (usize, usize),
        w: usize,
        iters: usize,
    ) -> Result<SvdPlan, EngineError> {
        let omega = Rng::new(0, stream::SUBSPACE).normal_matrix(k, w, 1.0);
        let ctx = &self.ctx;
        let om = ctx.storage_init("omega", &to_f32(&omega))?;
        let y = ctx.storage("Y", d * w)?;
        let ytmp = ctx.storage("Ytmp", d * w)?;
        let q = ctx.storage("Q", d * w)?;
        let z = ctx.storage("Z", k * w)?;
        let ztmp = ctx.storage("Ztmp", k * w)?;
        let smallm = ctx.storage("small", 3 * w * w)?;
        let proj = ctx.storage("QtG", w * k)?;
        let part = ctx.storage(
            "part",
            t_big_scratch(d, w, w)
                .max(t_big_scratch(k, w, w))
                .max(t_big_scratch(d, k, w)),
        )?;
        let b = self.b();
        let mut ds: Vec<Dispatch> = Vec::new();
        // Cholesky-QR: twice (CholeskyQR2) where orthonormality matters (the final Q), once
        // inside the power iterations, which only need the span (dead columns are dropped either
        // way)
        let cholqr = |ds: &mut Vec<Dispatch>,
                      rows: usize,
                      src: &wgpu::Buffer,
                      tmp: &wgpu::Buffer,
                      dst: &wgpu::Buffer,
                      twice: bool| {
            let passes: Vec<(&wgpu::Buffer, &wgpu::Buffer)> = if twice {
                vec![(src, tmp), (tmp, dst)]
            } else {
                vec![(src, dst)]
            };
            for (from, to) in passes {
                ds.extend(b.cholesky_qr_pass(rows, w, from, to, &part, &smallm));
            }
        };
        ds.extend(b.tall_skinny(
            d,
            k,
            w,
            (g, View::rm(k)),
            (&om, View::rm(w)),
            (&y, View::rm(w)),
            1.0,
        )?);
        cholqr(&mut ds, d, &y, &ytmp, &q, iters == 0);
        for it in 0..iters {
            ds.extend(b.t_big(
                d,
                k,
                w,
                (&q, View::rm(w)),
                (g, View::rm(k)),
                &part,
                (&z, View::rm_t(w)),
                1.0,
                0.0,
            ));
            cholqr(&mut ds, k, &z, &ztmp, &ztmp, false);
            ds.extend(b.tall_skinny(
                d,
                k,
                w,
                (g, View::rm(k)),
                (&ztmp, View::rm(w)),
                (&y, View::rm(w)),
                1.0,
            )?);
            cholqr(&mut ds, d, &y, &ytmp, &q, it + 1 == iters);
        }
        ds.extend(b.t_big(
            d,
            k,
            w,
            (&q, View::rm(w)),
            (g, View::rm(k)),
            &part,
            (&proj, View::rm(k)),
            1.0,
            0.0,
        ));
        let rb = ctx.readback_buffer(((d * w + w * k) * 4) as u64)?;
        Ok(SvdPlan {
            w,
            iters,
            ds,
            q,
            proj,
            rb,
            _keep: vec![om, y, ytmp, z, ztmp, smallm, part],
        })
    }

    /// Randomised subspace iteration on the GPU: Y = GΩ with the seeded Gaussian Ω of the CPU
    /// twin (`linalg::subspace_top_svd`, seed 0), `svd_iters` rounds of Z = orth(GᵀQ),
    /// Q = orth(GZ), each orth a Cholesky-QR2; then the (m+p)×k matrix QᵀG is read back and its
    /// SVD finishes on the host.
    ///
    /// Rank-deficient G: a sketch column whose component outside the span of the earlier ones
    /// is below √QR_TOL ≈ 1e-3 of its norm is dropped (a zero column of Q), so singular values
    /// below about 1e-3·σ1 come back as (near) zero, and their vectors are arbitrary; callers
    /// canonicalise (`linalg::canonicalize`), which replaces every vector beyond the numerical
    /// rank (σ ≤ 1e-4 σ1) by the same seeded completion on every backend.
    pub(super) async fn svd_top(&mut self, m: usize) -> Result<TopSvd, EngineError> {
        let l = self
            .loaded
            .as_ref()
            .ok_or_else(|| EngineError::Unsupported("top_svd before load".into()))?;
        let (d, k) = (l.d, l.k);
        let m = m.min(d.min(k));
        check_triplets(m)?;
        let w = (m + self.svd_oversample).min(d.min(k)).min(MAX_SMALL);
        let iters = self.svd_iters;
        let cached = matches!(&self.svd_plan, Some(p) if p.w == w && p.iters == iters);
        if !cached {
            self.svd_plan = None;
            let plan = self.build_svd_plan(&l.g, (d, k), w, iters)?;
            self.svd_plan = Some(plan);
        }
        let plan = self.svd_plan.as_ref().expect("svd plan");
        self.run_svd_plan(plan, (d, k), m).await
    }

    /// The same subspace iteration on a host matrix (the digits model's layer gradients): the
    /// sketch is as wide as G allows (up to 32 columns), so for min(d, k) ≤ 32 it spans G's whole
    /// range and the result is G's SVD to f32 accuracy. CPU twin: `linalg::subspace_top_svd`.
    pub async fn top_svd_of(&self, g: &DMatrix<f64>, m: usize) -> Result<TopSvd, EngineError> {
        let (d, k) = g.shape();
        let m = m.min(d.min(k));
        check_triplets(m)?;
        let w = d.min(k).min(MAX_SMALL).max(m);
        let gb = self.ctx.storage_init("G", &to_f32(g))?;
        let plan = self.build_svd_plan(&gb, (d, k), w, self.svd_iters)?;
        self.run_svd_plan(&plan, (d, k), m).await
    }

    async fn run_svd_plan(
        &self,
        plan: &SvdPlan,
        (d, k): (usize, usize),
        m: usize,
    ) -> Result<TopSvd, EngineError> {
        let w = plan.w;
        let ctx = &self.ctx;
        let mut enc = self.encoder();
        encode_all(&mut enc, &plan.ds.iter().collect::<Vec<_>>());
        enc.copy_buffer_to_buffer(&plan.q, 0, &plan.rb, 0, (d * w * 4) as u64);
        enc.copy_buffer_to_buffer(
            &plan.proj,
            0,
            &plan.rb,
            (d * w * 4) as u64,
            (w * k * 4) as u64,
        );
        self.submit(enc);
        let rb = &plan.rb;
        let all = ctx.read(rb, d * w + w * k).await?;
        let qm = from_f32(&all[..d * w], d, w);
        let pm = from_f32(&all[d * w..], w, k);
        // The small w×k matrix P = QᵀG finishes on the host through its w×w Gram in f64
        // (as accurate as an SVD of the f32 P, and ~5× cheaper than nalgebra's SVD of P).
        let eig = nalgebra::SymmetricEigen::new(&pm * pm.transpose());
        let mut idx: Vec<usize> = (0..w).collect();
        idx.sort_by(|&a, &b| eig.eigenvalues[b].total_cmp(&eig.eigenvalues[a]));
        let us = DMatrix::from_fn(w, m, |i, j| eig.eigenvectors[(i, idx[j])]);
        let s: Vec<f64> = idx[..m]
            .iter()
            .map(|&i| eig.eigenvalues[i].max(0.0).sqrt())
            .collect();
        let mut v = pm.transpose() * &us;
        for (j, mut col) in v.column_iter_mut().enumerate() {
            let nrm = col.norm();
            if s[j] > 0.0 && nrm > 0.0 {
                col /= nrm;
            } else {
                col.fill(0.0);
            }
        }
        Ok(TopSvd { u: qm * us, s, v })
    }
}

/// The r×r work of the SVD runs in one workgroup: at most `MAX_SMALL` triplets.
fn check_triplets(m: usize) -> Result<(), EngineError> {
    if m > MAX_SMALL {
        return Err(EngineError::Unsupported(format!(
            "the GPU SVD takes at most {MAX_SMALL} singular triplets, asked for {m}"
        )));
    }
    Ok(())
}
