//! Single kernels on host matrices: the parity tests' entry points (each is compared with its CPU
//! twin) and the benchmarks' (matmul throughput).

use super::kernels::{encode_all, t_big_scratch, Dispatch, View};
use super::{from_f32, to_f32, GpuBackend};
use crate::engine::EngineError;
use crate::phase::{PlaneCoeffs, Surface, Window};
use nalgebra::DMatrix;
use web_time::Instant;

fn view(m: &DMatrix<f64>, transposed: bool) -> View {
    if transposed {
        View::rm_t(m.ncols())
    } else {
        View::rm(m.ncols())
    }
}

impl GpuBackend {
    async fn run_and_read(
        &self,
        ds: &[Dispatch],
        out: &wgpu::Buffer,
        floats: usize,
    ) -> Result<Vec<f32>, EngineError> {
        let mut enc = self.encoder();
        encode_all(&mut enc, &ds.iter().collect::<Vec<_>>());
        self.submit(enc);
        let v = self.read_buffer(out, floats).await?;
        self.ctx.check()?;
        Ok(v)
    }

    /// op(A)·op(B) by the tiled matmul kernel (op = transpose when the flag is set).
    pub async fn matmul(
        &self,
        a: &DMatrix<f64>,
        ta: bool,
        b: &DMatrix<f64>,
        tb: bool,
    ) -> Result<DMatrix<f64>, EngineError> {
        let (m, ka) = if ta {
            (a.ncols(), a.nrows())
        } else {
            a.shape()
        };
        let (kb, n) = if tb {
            (b.ncols(), b.nrows())
        } else {
            b.shape()
        };
        if ka != kb {
            return Err(EngineError::Unsupported(format!(
                "matmul shapes {m}×{ka} · {kb}×{n}"
            )));
        }
        let ab = self.ctx.storage_init("a", &to_f32(a))?;
        let bb = self.ctx.storage_init("b", &to_f32(b))?;
        let cb = self.ctx.storage("c", m * n)?;
        let d = self.b().matmul(
            m,
            n,
            ka,
            (&ab, view(a, ta)),
            (&bb, view(b, tb)),
            (&cb, 0, n),
            1.0,
            0.0,
        );
        Ok(from_f32(&self.run_and_read(&[d], &cb, m * n).await?, m, n))
    }

    /// Big · op(Sk) by the tall-skinny kernel (reduction inside a workgroup).
    pub async fn tall_skinny(
        &self,
        big: &DMatrix<f64>,
        sk: &DMatrix<f64>,
        tsk: bool,
    ) -> Result<DMatrix<f64>, EngineError> {
        let (m, kd) = big.shape();
        let ncols = if tsk { sk.nrows() } else { sk.ncols() };
        let bb = self.ctx.storage_init("big", &to_f32(big))?;
        let sb = self.ctx.storage_init("sk", &to_f32(sk))?;
        let ob = self.ctx.storage("out", m * ncols)?;
        let ds = self.b().tall_skinny(
            m,
            kd,
            ncols,
            (&bb, View::rm(kd)),
            (&sb, view(sk, tsk)),
            (&ob, View::rm(ncols)),
            1.0,
        )?;
        Ok(from_f32(
            &self.run_and_read(&ds, &ob, m * ncols).await?,
            m,
            ncols,
        ))
    }

    /// Skᵀ · Big by the segmented skinny-transpose kernel and its segment reduction.
    pub async fn t_big(
        &self,
        sk: &DMatrix<f64>,
        big: &DMatrix<f64>,
    ) -> Result<DMatrix<f64>, EngineError> {
        let (m, ncols) = sk.shape();
        let nbig = big.ncols();
        let bb = self.ctx.storage_init("big", &to_f32(big))?;
        let sb = self.ctx.storage_init("sk", &to_f32(sk))?;
        let ob = self.ctx.storage("out", ncols * nbig)?;
        let part = self.ctx.storage("part", t_big_scratch(m, nbig, ncols))?;
        let ds = self.b().t_big(
            m,
            nbig,
            ncols,
            (&sb, View::rm(ncols)),
            (&bb, View::rm(nbig)),
            &part,
            (&ob, View::rm(nbig)),
            1.0,
            0.0,
        );
        Ok(from_f32(
            &self.run_and_read(&ds, &ob, ncols * nbig).await?,
            ncols,
            nbig,
        ))
    }

    /// beta·X + alpha·U·V by the rank-update kernel.
    pub async fn rank_update(
        &self,
        x: &DMatrix<f64>,
        u: &DMatrix<f64>,
        v: &DMatrix<f64>,
        alpha: f64,
        beta: f64,
    ) -> Result<DMatrix<f64>, EngineError> {
        let (m, n) = x.shape();
        let r = u.ncols();
        let xb = self.ctx.storage_init("x", &to_f32(x))?;
        let ub = self.ctx.storage_init("u", &to_f32(u))?;
        let vb = self.ctx.storage_init("v", &to_f32(v))?;
        let d = self.b().rank_update(
            m,
            n,
            r,
            (&ub, View::rm(r)),
            (&vb, View::rm(n)),
            &xb,
            alpha as f32,
            beta as f32,
        );
        Ok(from_f32(&self.run_and_read(&[d], &xb, m * n).await?, m, n))
    }

    /// Orthonormal basis of the columns of Y by the GPU's Cholesky-QR2 (dead columns are zero).
    pub async fn orthonormalize(&self, y: &DMatrix<f64>) -> Result<DMatrix<f64>, EngineError> {
        let (rows, w) = y.shape();
        if w > super::kernels::MAX_SMALL {
            return Err(EngineError::Unsupported("too many columns".into()));
        }
        let yb = self.ctx.storage_init("y", &to_f32(y))?;
        let tmp = self.ctx.storage("tmp", rows * w)?;
        let q = self.ctx.storage("q", rows * w)?;
        let sm = self.ctx.storage("small", 3 * w * w)?;
        let part = self.ctx.storage("part", t_big_scratch(rows, w, w))?;
        let b = self.b();
        let mut ds = Vec::new();
        for (from, to) in [(&yb, &tmp), (&tmp, &q)] {
            ds.extend(b.cholesky_qr_pass(rows, w, from, to, &part, &sm));
        }
        Ok(from_f32(
            &self.run_and_read(&ds, &q, rows * w).await?,
            rows,
            w,
        ))
    }

    /// (½‖AB − Δ − A0B0‖², ‖AB − Δ‖_F) by the direct risk reduction (A0B0 only when given).
    pub async fn risk(
        &self,
        a: &DMatrix<f64>,
        b: &DMatrix<f64>,
        offset: Option<(&DMatrix<f64>, &DMatrix<f64>)>,
        delta: &DMatrix<f64>,
    ) -> Result<(f64, f64), EngineError> {
        let (d, r) = a.shape();
        let k = b.ncols();
        let ab = self.ctx.storage_init("a", &to_f32(a))?;
        let bb = self.ctx.storage_init("b", &to_f32(b))?;
        let (a0, b0) = match offset {
            Some((a0, b0)) => (
                self.ctx.storage_init("a0", &to_f32(a0))?,
                self.ctx.storage_init("b0", &to_f32(b0))?,
            ),
            None => (ab.clone(), bb.clone()),
        };
        let db = self.ctx.storage_init("delta", &to_f32(delta))?;
        let parts = self
            .ctx
            .storage("parts", 2 * super::kernels::risk_split(d * k).1)?;
        let rec = self.ctx.storage("rec", 2)?;
        let state = self.ctx.storage_init("state", &[0.0; 4])?;
        let ds = self.b().risk(
            d,
            k,
            r,
            offset.is_some(),
            &ab,
            &bb,
            &a0,
            &b0,
            &db,
            &parts,
            &rec,
            &state,
        );
        let v = self.run_and_read(&ds, &rec, 2).await?;
        Ok((v[0] as f64, v[1] as f64))
    }

    /// The phase-portrait surface on the GPU (twin of `phase::surface`).
    pub async fn surface(
        &self,
        c: &PlaneCoeffs,
        w: &Window,
        nx: usize,
        ny: usize,
        eps: f64,
    ) -> Result<Surface, EngineError> {
        let m = c.g / c.s;
        let cmin = c.c - 0.5 * c.g * m;
        let out = self.ctx.storage("surface", nx * ny)?;
        let p = [w.a_min, w.a_max, w.b_min, w.b_max, c.s, m, cmin, eps].map(|x| x as f32);
        let d = self.b().surface(nx, ny, p, &out);
        let v = self.run_and_read(&[d], &out, nx * ny).await?;
        Ok(Surface {
            nx,
            ny,
            eps,
            values: v.into_iter().map(|x| x as f64).collect(),
        })
    }

    /// Seconds per m×n×k matmul: `reps` dispatches in one submission, after a warm-up.
    pub async fn bench_matmul(
        &self,
        m: usize,
        n: usize,
        k: usize,
        reps: usize,
    ) -> Result<f64, EngineError> {
        let a = self.ctx.storage_init("a", &vec![0.5f32; m * k])?;
        let b = self.ctx.storage_init("b", &vec![0.25f32; k * n])?;
        let c = self.ctx.storage("c", m * n)?;
        let d = self.b().matmul(
            m,
            n,
            k,
            (&a, View::rm(k)),
            (&b, View::rm(n)),
            (&c, 0, n),
            1.0,
            0.0,
        );
        let go = |reps: usize| {
            let mut enc = self.encoder();
            encode_all(&mut enc, &vec![&d; reps]);
            self.submit(enc);
        };
        go(2);
        self.ctx.finish().await?;
        let t = Instant::now();
        go(reps);
        self.ctx.finish().await?;
        let s = t.elapsed().as_secs_f64() / reps as f64;
        self.ctx.check()?;
        Ok(s)
    }
}
