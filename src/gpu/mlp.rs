//! The digits model on the GPU (issue 9, SPEC §9): its forward and backward passes as one
//! submission of ten dispatches (the products over the hidden units by the tiled matmul kernel,
//! the weight gradients, sums over the n samples, by the skinny kernel split over row segments,
//! the ReLU and the softmax cross-entropy by `shaders/mlp.wgsl`); the SVD of a layer's gradient by
//! the subspace iteration of `svd.rs`. CPU twins: `digits::Net::eval` and
//! `linalg::exact_top_svd` (`digits::CpuFt`).
//!
//! A data set (x, y) is uploaded once and its plan (buffers and pre-bound dispatches) kept while
//! it is used; each evaluation writes the two weight matrices, runs the plan and reads back the
//! per-sample loss and hit and, with the gradient, both layers' gradients (2n + 64h + hc floats).
//! Loss and accuracy are summed on the host in f64.

use super::kernels::{encode_all, t_big_scratch, Dispatch, View};
use super::{from_f32, to_f32, GpuBackend};
use crate::digits::{Eval, FtCompute, Net};
use crate::engine::EngineError;
use crate::linalg::TopSvd;
use nalgebra::DMatrix;

/// Plans kept at once (the runner cycles through the odd and even splits' train and test sets,
/// the gradient batch and the pre-training set).
const KEEP: usize = 6;

pub(super) struct MlpPlan {
    /// The data set it holds (compared whole: exact, and cheaper than hashing it).
    x: DMatrix<f64>,
    y: Vec<usize>,
    n: usize,
    dims: [usize; 3],
    w1: wgpu::Buffer,
    w2: wgpu::Buffer,
    rows: wgpu::Buffer,
    g1: wgpu::Buffer,
    g2: wgpu::Buffer,
    rb: wgpu::Buffer,
    /// The forward pass up to the logits; then the loss without or with the logits' gradient;
    /// then the backward pass.
    forward: Vec<Dispatch>,
    loss: [Dispatch; 2],
    backward: Vec<Dispatch>,
    _keep: Vec<wgpu::Buffer>,
}

impl GpuBackend {
    fn mlp_plan(
        &self,
        x: &DMatrix<f64>,
        y: &[usize],
        dims: [usize; 3],
    ) -> Result<MlpPlan, EngineError> {
        let [din, h, c] = dims;
        let n = x.nrows();
        let ctx = &self.ctx;
        let xb = ctx.storage_init("digits x", &to_f32(x))?;
        let labels: Vec<f32> = y.iter().map(|&l| l as f32).collect();
        let yb = ctx.storage_init("digits y", &labels)?;
        let w1 = ctx.storage("W1", din * h)?;
        let w2 = ctx.storage("W2", h * c)?;
        let z1 = ctx.storage("Z1", n * h)?;
        let hb = ctx.storage("H", n * h)?;
        let z2 = ctx.storage("Z2", n * c)?;
        let rows = ctx.storage("rows", 2 * n)?;
        let dh = ctx.storage("dH", n * h)?;
        let g1 = ctx.storage("G1", din * h)?;
        let g2 = ctx.storage("G2", h * c)?;
        let rb = ctx.readback_buffer(((2 * n + din * h + h * c) * 4) as u64)?;
        let b = self.b();
        let forward = vec![
            b.matmul(
                n,
                h,
                din,
                (&xb, View::rm(din)),
                (&w1, View::rm(h)),
                (&z1, 0, h),
                1.0,
                0.0,
            ),
            b.relu(n, h, &z1, &hb, false),
            b.matmul(
                n,
                c,
                h,
                (&hb, View::rm(h)),
                (&w2, View::rm(c)),
                (&z2, 0, c),
                1.0,
                0.0,
            ),
        ];
        let loss = [false, true].map(|g| b.softmax_xent(n, c, &yb, &z2, &rows, g));
        // the two products that reduce over the n samples run split over row segments
        // (skinny_t_big, then a segment sum): as plain tiles they would be one workgroup each,
        // walking all n rows
        let part = ctx.storage(
            "digits partials",
            t_big_scratch(n, h, c).max(t_big_scratch(n, h, din)),
        )?;
        let mut backward = Vec::new();
        // ∇W2 = Hᵀ dZ2, as (dZ2ᵀ H)ᵀ
        backward.extend(b.t_big(
            n,
            h,
            c,
            (&z2, View::rm(c)),
            (&hb, View::rm(h)),
            &part,
            (&g2, View::rm_t(c)),
            1.0,
            0.0,
        ));
        // dH = dZ2 W2ᵀ, masked by the ReLU
        backward.push(b.matmul(
            n,
            h,
            c,
            (&z2, View::rm(c)),
            (&w2, View::rm_t(c)),
            (&dh, 0, h),
            1.0,
            0.0,
        ));
        backward.push(b.relu(n, h, &z1, &dh, true));
        // ∇W1 = Xᵀ dZ1
        backward.extend(b.t_big(
            n,
            h,
            din,
            (&xb, View::rm(din)),
            (&dh, View::rm(h)),
            &part,
            (&g1, View::rm(h)),
            1.0,
            0.0,
        ));
        Ok(MlpPlan {
            x: x.clone(),
            y: y.to_vec(),
            n,
            dims,
            w1,
            w2,
            rows,
            g1,
            g2,
            rb,
            forward,
            loss,
            backward,
            _keep: vec![xb, yb, z1, hb, z2, dh, part],
        })
    }

    /// Loss, accuracy and (with `grad`) both layers' gradients of the digits model on (x, y):
    /// the GPU twin of `Net::eval`.
    pub async fn mlp_eval(
        &mut self,
        net: &Net,
        x: &DMatrix<f64>,
        y: &[usize],
        grad: bool,
    ) -> Result<Eval, EngineError> {
        let dims = [net.w[0].nrows(), net.w[0].ncols(), net.w[1].ncols()];
        if x.ncols() != dims[0] || net.w[1].nrows() != dims[1] || y.len() != x.nrows() {
            return Err(EngineError::Unsupported(format!(
                "digits model shapes: x {}×{}, W1 {}×{}, W2 {}×{}, {} labels",
                x.nrows(),
                x.ncols(),
                dims[0],
                dims[1],
                net.w[1].nrows(),
                dims[2],
                y.len()
            )));
        }
        if let Some(&bad) = y.iter().find(|&&l| l >= dims[2]) {
            return Err(EngineError::Unsupported(format!(
                "label {bad} with {} classes",
                dims[2]
            )));
        }
        let at = match self
            .mlp_plans
            .iter()
            .position(|p| p.dims == dims && p.y == y && p.x == *x)
        {
            Some(i) => i,
            None => {
                let plan = self
                    .ctx
                    .scoped("building the digits model's GPU plan", || {
                        self.mlp_plan(x, y, dims)
                    })
                    .await??;
                if self.mlp_plans.len() >= KEEP {
                    self.mlp_plans.remove(0);
                }
                self.mlp_plans.push(plan);
                self.mlp_plans.len() - 1
            }
        };
        let p = &self.mlp_plans[at];
        let [din, h, c] = p.dims;
        let n = p.n;
        let q = &self.ctx.queue;
        q.write_buffer(&p.w1, 0, bytemuck::cast_slice(&to_f32(&net.w[0])));
        q.write_buffer(&p.w2, 0, bytemuck::cast_slice(&to_f32(&net.w[1])));
        let mut ds: Vec<&Dispatch> = p.forward.iter().collect();
        ds.push(&p.loss[grad as usize]);
        if grad {
            ds.extend(p.backward.iter());
        }
        let mut enc = self.encoder();
        encode_all(&mut enc, &ds);
        let f = 4u64;
        enc.copy_buffer_to_buffer(&p.rows, 0, &p.rb, 0, 2 * n as u64 * f);
        let mut floats = 2 * n;
        if grad {
            let (s1, s2) = ((din * h) as u64 * f, (h * c) as u64 * f);
            enc.copy_buffer_to_buffer(&p.g1, 0, &p.rb, floats as u64 * f, s1);
            enc.copy_buffer_to_buffer(&p.g2, 0, &p.rb, floats as u64 * f + s1, s2);
            floats += din * h + h * c;
        }
        self.submit(enc);
        let v = self.ctx.read(&p.rb, floats).await?;
        let (mut loss, mut hits) = (0.0f64, 0.0f64);
        for i in 0..n {
            loss += v[2 * i] as f64;
            hits += v[2 * i + 1] as f64;
        }
        let grad = grad.then(|| {
            let o = 2 * n;
            [
                from_f32(&v[o..o + din * h], din, h),
                from_f32(&v[o + din * h..o + din * h + h * c], h, c),
            ]
        });
        Ok(Eval {
            loss: loss / n as f64,
            acc: hits / n as f64,
            grad,
        })
    }
}

impl FtCompute for GpuBackend {
    async fn eval(
        &mut self,
        net: &Net,
        x: &DMatrix<f64>,
        y: &[usize],
        grad: bool,
    ) -> Result<Eval, EngineError> {
        self.mlp_eval(net, x, y, grad).await
    }

    async fn top_svd(&mut self, g: &DMatrix<f64>, m: usize) -> Result<TopSvd, EngineError> {
        self.top_svd_of(g, m).await
    }

    fn name(&self) -> String {
        format!("GPU ({})", self.adapter())
    }
}
