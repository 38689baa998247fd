//! Compute pipelines for every kernel in `shaders/*.wgsl`, and builders of pre-bound dispatches
//! (pipeline + bind groups + grid) that can be encoded many times without new allocations.

use super::context::Context;
use crate::engine::EngineError;

pub const MATMUL_WGSL: &str = include_str!(concat!(env!("OUT_DIR"), "/shaders/matmul.wgsl"));
pub const SKINNY_WGSL: &str = include_str!(concat!(env!("OUT_DIR"), "/shaders/skinny.wgsl"));
pub const ELEMENTWISE_WGSL: &str =
    include_str!(concat!(env!("OUT_DIR"), "/shaders/elementwise.wgsl"));
pub const REDUCE_WGSL: &str = include_str!(concat!(env!("OUT_DIR"), "/shaders/reduce.wgsl"));
pub const STEP_WGSL: &str = include_str!(concat!(env!("OUT_DIR"), "/shaders/step.wgsl"));
pub const QR_WGSL: &str = include_str!(concat!(env!("OUT_DIR"), "/shaders/qr.wgsl"));
pub const SURFACE_WGSL: &str = include_str!(concat!(env!("OUT_DIR"), "/shaders/surface.wgsl"));
pub const REDUCE_MULTI_WGSL: &str =
    include_str!(concat!(env!("OUT_DIR"), "/shaders/reduce_multi.wgsl"));
pub const BATCHED_WGSL: &str = include_str!(concat!(env!("OUT_DIR"), "/shaders/batched.wgsl"));
pub const MLP_WGSL: &str = include_str!(concat!(env!("OUT_DIR"), "/shaders/mlp.wgsl"));

/// Largest skinny dimension (LoRA rank r, subspace width l) the small one-workgroup kernels take.
pub const MAX_SMALL: usize = 32;

pub struct Kernels {
    pub matmul: wgpu::ComputePipeline,
    pub tall_skinny: wgpu::ComputePipeline,
    pub skinny_t_big: wgpu::ComputePipeline,
    pub reduce_segments: wgpu::ComputePipeline,
    pub reduce_multi: wgpu::ComputePipeline,
    pub apply_small: wgpu::ComputePipeline,
    pub rank_update: wgpu::ComputePipeline,
    pub form_e: wgpu::ComputePipeline,
    pub residual: wgpu::ComputePipeline,
    pub risk_partial: wgpu::ComputePipeline,
    pub finish_risk: wgpu::ComputePipeline,
    pub sum_partials: wgpu::ComputePipeline,
    pub small_step: wgpu::ComputePipeline,
    pub update_ab: wgpu::ComputePipeline,
    pub chol_inv: wgpu::ComputePipeline,
    pub surface: wgpu::ComputePipeline,
    pub batched: wgpu::ComputePipeline,
    pub batched_metrics: wgpu::ComputePipeline,
    pub batched_align: wgpu::ComputePipeline,
    pub relu: wgpu::ComputePipeline,
    pub relu_back: wgpu::ComputePipeline,
    pub softmax_xent: wgpu::ComputePipeline,
    /// Bound to the unused output slots of `reduce_multi`: WebGPU forbids binding one buffer to
    /// two writable slots of a dispatch, so each slot needs a buffer of its own.
    pub spare_out: [wgpu::Buffer; 3],
}

pub(super) fn pipeline(
    ctx: &Context,
    module: &wgpu::ShaderModule,
    entry: &str,
) -> wgpu::ComputePipeline {
    ctx.device
        .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: None,
            module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &[],
                // every kernel writes its workgroup memory before reading it
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        })
}

impl Kernels {
    pub async fn new(ctx: &Context) -> Result<Self, EngineError> {
        ctx.scoped("compiling the WGSL kernels", || {
            let mm = ctx.module("matmul", MATMUL_WGSL);
            let sk = ctx.module("skinny", SKINNY_WGSL);
            let ew = ctx.module("elementwise", ELEMENTWISE_WGSL);
            let rd = ctx.module("reduce", REDUCE_WGSL);
            let st = ctx.module("step", STEP_WGSL);
            let qr = ctx.module("qr", QR_WGSL);
            let sf = ctx.module("surface", SURFACE_WGSL);
            let rm = ctx.module("reduce_multi", REDUCE_MULTI_WGSL);
            let bt = ctx.module("batched", BATCHED_WGSL);
            let ml = ctx.module("mlp", MLP_WGSL);
            Kernels {
                matmul: pipeline(ctx, &mm, "matmul"),
                tall_skinny: pipeline(ctx, &sk, "tall_skinny"),
                skinny_t_big: pipeline(ctx, &sk, "skinny_t_big"),
                reduce_segments: pipeline(ctx, &sk, "reduce_segments"),
                reduce_multi: pipeline(ctx, &rm, "reduce_multi"),
                apply_small: pipeline(ctx, &sk, "apply_small"),
                rank_update: pipeline(ctx, &ew, "rank_update"),
                form_e: pipeline(ctx, &ew, "form_e"),
                residual: pipeline(ctx, &ew, "residual"),
                risk_partial: pipeline(ctx, &rd, "risk_partial"),
                finish_risk: pipeline(ctx, &rd, "finish_risk"),
                sum_partials: pipeline(ctx, &rd, "sum_partials"),
                small_step: pipeline(ctx, &st, "small_step"),
                update_ab: pipeline(ctx, &st, "update_ab"),
                chol_inv: pipeline(ctx, &qr, "chol_inv"),
                surface: pipeline(ctx, &sf, "surface"),
                batched: pipeline(ctx, &bt, "batched"),
                batched_metrics: pipeline(ctx, &bt, "batched_metrics"),
                batched_align: pipeline(ctx, &bt, "batched_align"),
                relu: pipeline(ctx, &ml, "relu"),
                relu_back: pipeline(ctx, &ml, "relu_back"),
                softmax_xent: pipeline(ctx, &ml, "softmax_xent"),
                spare_out: std::array::from_fn(|_| {
                    ctx.device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("reduce_multi spare output"),
                        size: 16,
                        usage: wgpu::BufferUsages::STORAGE,
                        mapped_at_creation: false,
                    })
                }),
            }
        })
        .await
    }
}

/// A strided view of a row-major matrix in a buffer: X(i, j) = x[off + i*s0 + j*s1].
#[derive(Clone, Copy, Debug)]
pub struct View {
    pub off: u32,
    pub s0: u32,
    pub s1: u32,
}

impl View {
    /// Contiguous row-major with `cols` columns.
    pub fn rm(cols: usize) -> Self {
        View {
            off: 0,
            s0: cols as u32,
            s1: 1,
        }
    }
    /// The transpose of a contiguous row-major matrix with `cols` columns.
    pub fn rm_t(cols: usize) -> Self {
        View {
            off: 0,
            s0: 1,
            s1: cols as u32,
        }
    }
    pub fn at(mut self, off: usize) -> Self {
        self.off = off as u32;
        self
    }
}

/// A pending segment sum: partials written by a tall_skinny or skinny_t_big dispatch.
pub struct ReduceJob {
    pub part: wgpu::Buffer,
    pub out: wgpu::Buffer,
    pub ncols: usize,
    pub nbig: usize,
    pub nseg: usize,
    /// out(c, j) = out[off + c*s0 + j*s1]
    pub view: View,
    pub alpha: f32,
    pub beta: f32,
}

/// One pre-bound dispatch.
pub struct Dispatch {
    pub name: &'static str,
    pub pipeline: wgpu::ComputePipeline,
    pub groups: Vec<wgpu::BindGroup>,
    pub grid: (u32, u32, u32),
    /// Keeps the parameter buffer alive.
    pub _params: Option<wgpu::Buffer>,
}

impl Dispatch {
    pub fn encode(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        for (i, g) in self.groups.iter().enumerate() {
            pass.set_bind_group(i as u32, g, &[]);
        }
        pass.dispatch_workgroups(self.grid.0, self.grid.1, self.grid.2);
    }
}

pub fn encode_all(enc: &mut wgpu::CommandEncoder, ds: &[&Dispatch]) {
    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: None,
        timestamp_writes: None,
    });
    for d in ds {
        d.encode(&mut pass);
    }
}

fn f(x: f32) -> u32 {
    x.to_bits()
}

/// Fold a 1-D workgroup count into a 2-D grid within the 65535-per-dimension limit.
pub fn fold(n: usize) -> (u32, u32) {
    let n = n.max(1);
    let x = n.min(32768);
    (x as u32, n.div_ceil(x) as u32)
}

pub struct Builder<'a> {
    pub ctx: &'a Context,
    pub k: &'a Kernels,
}

impl<'a> Builder<'a> {
    fn group(
        &self,
        pipeline: &wgpu::ComputePipeline,
        index: u32,
        entries: &[(u32, &wgpu::Buffer)],
    ) -> wgpu::BindGroup {
        let layout = pipeline.get_bind_group_layout(index);
        let e: Vec<wgpu::BindGroupEntry> = entries
            .iter()
            .map(|(b, buf)| wgpu::BindGroupEntry {
                binding: *b,
                resource: buf.as_entire_binding(),
            })
            .collect();
        self.ctx
            .device
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &layout,
                entries: &e,
            })
    }

    fn make(
        &self,
        name: &'static str,
        pipeline: &wgpu::ComputePipeline,
        params: &[u32],
        groups: &[&[(u32, &wgpu::Buffer)]],
        grid: (u32, u32, u32),
    ) -> Dispatch {
        let pbuf = self.ctx.uniform(params);
        let mut bgs = Vec::new();
        for (gi, entries) in groups.iter().enumerate() {
            let mut e: Vec<(u32, &wgpu::Buffer)> = Vec::new();
            if gi == 0 {
                e.push((0, &pbuf));
            }
            e.extend_from_slice(entries);
            bgs.push(self.group(pipeline, gi as u32, &e));
        }
        Dispatch {
            name,
            pipeline: pipeline.clone(),
            groups: bgs,
            grid,
            _params: Some(pbuf),
        }
    }

    /// C = alpha A B + beta C (A: m×k view, B: k×n view, C row-major with row stride c_s0).
    #[allow(clippy::too_many_arguments)]
    pub fn matmul(
        &self,
        m: usize,
        n: usize,
        k: usize,
        a: (&wgpu::Buffer, View),
        b: (&wgpu::Buffer, View),
        c: (&wgpu::Buffer, usize, usize),
        alpha: f32,
        beta: f32,
    ) -> Dispatch {
        let p = [
            m as u32,
            n as u32,
            k as u32,
            0,
            a.1.off,
            a.1.s0,
            a.1.s1,
            b.1.off,
            b.1.s0,
            b.1.s1,
            c.1 as u32,
            c.2 as u32,
            f(alpha),
            f(beta),
            0,
            0,
        ];
        self.make(
            "matmul",
            &self.k.matmul,
            &p,
            &[&[(1, a.0), (2, b.0), (3, c.0)]],
            (n.div_ceil(128) as u32, m.div_ceil(128) as u32, 1),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn sk_params(
        m: usize,
        kdim: usize,
        ncols: usize,
        nbig: usize,
        big: View,
        sk: View,
        out: View,
        seg_rows: usize,
        nseg: usize,
        gridx: u32,
        alpha: f32,
        beta: f32,
        kdim_sk: usize,
    ) -> [u32; 20] {
        [
            m as u32,
            kdim as u32,
            ncols as u32,
            nbig as u32,
            big.off,
            big.s0,
            big.s1,
            sk.off,
            sk.s0,
            sk.s1,
            out.off,
            out.s0,
            out.s1,
            seg_rows as u32,
            nseg as u32,
            gridx,
            f(alpha),
            f(beta),
            kdim_sk as u32,
            0,
        ]
    }

    /// out (m × ncols) = alpha · Big (m × kdim) · Sk (kdim × ncols).
    #[allow(clippy::too_many_arguments)]
    pub fn tall_skinny_job(
        &self,
        m: usize,
        kdim: usize,
        ncols: usize,
        big: (&wgpu::Buffer, View),
        sk: (&wgpu::Buffer, View),
        out: (&wgpu::Buffer, View),
        alpha: f32,
    ) -> Result<(Dispatch, ReduceJob), EngineError> {
        // split-K partials [kchunk][ncols][m] (the buffer lives as long as the bind groups)
        let kc_len = self.ctx.options.ts_kchunk.clamp(32, 256) / 32 * 32;
        let kchunks = kdim.div_ceil(kc_len).max(1);
        let ncb = ncols.div_ceil(8);
        if kchunks * ncb > 65535 {
            return Err(EngineError::Unsupported(format!(
                "a {m}×{kdim} by {kdim}×{ncols} product exceeds the dispatch limits"
            )));
        }
        let part = self
            .ctx
            .storage("tall_skinny partials", kchunks * ncols * m)?;
        let (gx, gy) = fold(m.div_ceil(256));
        let p = Self::sk_params(
            m, kdim, ncols, 0, big.1, sk.1, out.1, kc_len, kchunks, gx, alpha, 0.0, kdim,
        );
        let d1 = self.make(
            "tall_skinny",
            &self.k.tall_skinny,
            &p,
            &[&[(1, big.0), (2, sk.0), (3, &part), (4, big.0)]],
            (gx, gy, (kchunks * ncb) as u32),
        );
        let outv = View {
            off: out.1.off,
            s0: out.1.s1,
            s1: out.1.s0,
        };
        Ok((
            d1,
            ReduceJob {
                part,
                out: out.0.clone(),
                ncols,
                nbig: m,
                nseg: kchunks,
                view: outv,
                alpha: 1.0,
                beta: 0.0,
            },
        ))
    }

    /// out (m × ncols) = alpha · Big (m × kdim) · Sk (kdim × ncols): split-K partials, then
    /// their sum (two dispatches).
    #[allow(clippy::too_many_arguments)]
    pub fn tall_skinny(
        &self,
        m: usize,
        kdim: usize,
        ncols: usize,
        big: (&wgpu::Buffer, View),
        sk: (&wgpu::Buffer, View),
        out: (&wgpu::Buffer, View),
        alpha: f32,
    ) -> Result<[Dispatch; 2], EngineError> {
        let (d1, job) = self.tall_skinny_job(m, kdim, ncols, big, sk, out, alpha)?;
        Ok([d1, self.reduce_one(&job)])
    }

    /// out (ncols × nbig) = alpha · Skᵀ · Big + beta · out, Sk: m × ncols, Big: m × nbig.
    /// Two dispatches (segment partials, then their sum) through the scratch buffer `part`,
    /// which must hold `t_big_scratch(m, nbig, ncols)` floats.
    #[allow(clippy::too_many_arguments)]
    pub fn t_big_job(
        &self,
        m: usize,
        nbig: usize,
        ncols: usize,
        sk: (&wgpu::Buffer, View),
        big: (&wgpu::Buffer, View),
        part: &wgpu::Buffer,
        out: (&wgpu::Buffer, View),
        alpha: f32,
        beta: f32,
    ) -> (Dispatch, ReduceJob) {
        let (seg_rows, nseg) = t_big_segments(m, nbig);
        let p = Self::sk_params(
            m, 0, ncols, nbig, big.1, sk.1, out.1, seg_rows, nseg, 0, 1.0, 0.0, m,
        );
        let d1 = self.make(
            "skinny_t_big",
            &self.k.skinny_t_big,
            &p,
            &[&[(1, big.0), (2, sk.0), (3, part), (4, big.0)]],
            (
                nbig.div_ceil(256) as u32,
                nseg as u32,
                ncols.div_ceil(8) as u32,
            ),
        );
        (
            d1,
            ReduceJob {
                part: part.clone(),
                out: out.0.clone(),
                ncols,
                nbig,
                nseg,
                view: out.1,
                alpha,
                beta,
            },
        )
    }

    /// out (ncols × nbig) = alpha · Skᵀ · Big + beta · out (two dispatches, see `t_big_job`).
    #[allow(clippy::too_many_arguments)]
    pub fn t_big(
        &self,
        m: usize,
        nbig: usize,
        ncols: usize,
        sk: (&wgpu::Buffer, View),
        big: (&wgpu::Buffer, View),
        part: &wgpu::Buffer,
        out: (&wgpu::Buffer, View),
        alpha: f32,
        beta: f32,
    ) -> [Dispatch; 2] {
        let (d1, job) = self.t_big_job(m, nbig, ncols, sk, big, part, out, alpha, beta);
        [d1, self.reduce_one(&job)]
    }

    /// The segment sum of one job (reduce_segments).
    pub fn reduce_one(&self, job: &ReduceJob) -> Dispatch {
        let (gx, gy) = fold((job.ncols * job.nbig).div_ceil(256));
        let p2 = Self::sk_params(
            0,
            0,
            job.ncols,
            job.nbig,
            View::rm(0),
            View::rm(0),
            job.view,
            0,
            job.nseg,
            0,
            job.alpha,
            job.beta,
            0,
        );
        self.make(
            "reduce_segments",
            &self.k.reduce_segments,
            &p2,
            &[&[(1, &job.part), (3, &job.out)]],
            (gx, gy, 1),
        )
    }

    /// Up to four independent segment sums in one dispatch. Jobs that write into the same buffer
    /// (at different offsets) share one writable binding: WebGPU rejects a buffer bound to two
    /// writable slots of one dispatch, even where the ranges written do not overlap.
    pub fn reduce_multi(&self, jobs: &[&ReduceJob]) -> Dispatch {
        assert!(!jobs.is_empty() && jobs.len() <= 4, "1..=4 reduce jobs");
        let mut outs: Vec<&wgpu::Buffer> = Vec::with_capacity(4);
        let slots: Vec<u32> = jobs
            .iter()
            .map(|jb| match outs.iter().position(|b| *b == &jb.out) {
                Some(i) => i as u32,
                None => {
                    outs.push(&jb.out);
                    (outs.len() - 1) as u32
                }
            })
            .collect();
        let mut w = vec![jobs.len() as u32, 0, 0, 0];
        let mut wg0 = 0usize;
        for q in 0..4 {
            let last = q.min(jobs.len() - 1);
            let jb = jobs[last];
            let n = (jb.ncols * jb.nbig).div_ceil(256);
            w.extend_from_slice(&[
                jb.ncols as u32,
                jb.nbig as u32,
                jb.nseg as u32,
                jb.view.off,
                jb.view.s0,
                jb.view.s1,
                wg0 as u32,
                slots[last],
                f(jb.alpha),
                f(jb.beta),
                0,
                0,
            ]);
            if q < jobs.len() {
                wg0 += n;
            }
        }
        let get = |q: usize| jobs[q.min(jobs.len() - 1)];
        let out_slot = |i: usize| {
            outs.get(i)
                .copied()
                .unwrap_or_else(|| &self.k.spare_out[i - 1])
        };
        let (gx, gy) = fold(wg0);
        self.make(
            "reduce_multi",
            &self.k.reduce_multi,
            &w,
            &[&[
                (1, &get(0).part),
                (2, &get(1).part),
                (3, &get(2).part),
                (4, &get(3).part),
                (5, out_slot(0)),
                (6, out_slot(1)),
                (7, out_slot(2)),
                (8, out_slot(3)),
            ]],
            (gx, gy, 1),
        )
    }

    /// out (m × l) = In (m × l view) · M (l × l row-major at m_off of `mbuf`).
    pub fn apply_small(
        &self,
        m: usize,
        l: usize,
        input: (&wgpu::Buffer, View),
        mbuf: (&wgpu::Buffer, usize),
        out: (&wgpu::Buffer, View),
    ) -> Dispatch {
        let (gx, gy) = fold((m * l).div_ceil(256));
        let p = Self::sk_params(
            m,
            0,
            l,
            0,
            input.1,
            View::rm(l).at(mbuf.1),
            out.1,
            0,
            0,
            gx,
            1.0,
            0.0,
            0,
        );
        self.make(
            "apply_small",
            &self.k.apply_small,
            &p,
            &[&[(1, input.0), (2, mbuf.0), (3, out.0)]],
            (gx, gy, 1),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn ew_params(
        m: usize,
        n: usize,
        r: usize,
        relu: bool,
        u: View,
        v: View,
        alpha: f32,
        beta: f32,
    ) -> [u32; 16] {
        [
            m as u32,
            n as u32,
            r as u32,
            relu as u32,
            u.off,
            u.s0,
            u.s1,
            v.off,
            v.s0,
            v.s1,
            0,
            0,
            f(alpha),
            f(beta),
            0,
            0,
        ]
    }

    /// X (m × n, contiguous) ← beta X + alpha U V (U: m × r view, V: r × n view).
    #[allow(clippy::too_many_arguments)]
    pub fn rank_update(
        &self,
        m: usize,
        n: usize,
        r: usize,
        u: (&wgpu::Buffer, View),
        v: (&wgpu::Buffer, View),
        x: &wgpu::Buffer,
        alpha: f32,
        beta: f32,
    ) -> Dispatch {
        let (gx, gy) = fold((m * n).div_ceil(256));
        let p = Self::ew_params(m, n, r, false, u.1, v.1, alpha, beta);
        self.make(
            "rank_update",
            &self.k.rank_update,
            &p,
            &[&[(1, u.0), (2, v.0), (3, x)]],
            (gx, gy, 1),
        )
    }

    /// E = Y − Z0 (masked for ReLU) and per-workgroup sums of E² into `partial`
    /// (`ew_parts(m*n)` floats).
    #[allow(clippy::too_many_arguments)]
    pub fn form_e(
        &self,
        m: usize,
        n: usize,
        relu: bool,
        y: &wgpu::Buffer,
        z0: &wgpu::Buffer,
        e: &wgpu::Buffer,
        partial: &wgpu::Buffer,
    ) -> Dispatch {
        let (gx, gy) = fold((m * n).div_ceil(256));
        let p = Self::ew_params(m, n, 0, relu, View::rm(n), View::rm(n), 1.0, 0.0);
        self.make(
            "form_e",
            &self.k.form_e,
            &p,
            &[&[(1, y), (2, z0), (3, e), (4, partial)]],
            (gx, gy, 1),
        )
    }

    /// R = f(Z0 + XA·B) − Y (masked for ReLU), per-workgroup sums of (f(Z) − Y)² into `partial`.
    #[allow(clippy::too_many_arguments)]
    pub fn residual(
        &self,
        nrows: usize,
        k: usize,
        r: usize,
        relu: bool,
        xa: &wgpu::Buffer,
        b: &wgpu::Buffer,
        r_out: &wgpu::Buffer,
        partial: &wgpu::Buffer,
        z0: &wgpu::Buffer,
        y: &wgpu::Buffer,
    ) -> Dispatch {
        let (gx, gy) = fold((nrows * k).div_ceil(256));
        let p = Self::ew_params(nrows, k, r, relu, View::rm(r), View::rm(k), 1.0, 0.0);
        self.make(
            "residual",
            &self.k.residual,
            &p,
            &[&[(1, xa), (2, b), (3, r_out), (4, partial), (5, z0), (6, y)]],
            (gx, gy, 1),
        )
    }

    /// The digits model's ReLU: H = max(Z, 0) (m × n, contiguous); with `back`, D ← D·1{Z > 0}
    /// in place (`h` is then D).
    pub fn relu(
        &self,
        m: usize,
        n: usize,
        z: &wgpu::Buffer,
        h: &wgpu::Buffer,
        back: bool,
    ) -> Dispatch {
        let (gx, gy) = fold((m * n).div_ceil(256));
        let (name, pl) = if back {
            ("relu_back", &self.k.relu_back)
        } else {
            ("relu", &self.k.relu)
        };
        self.make(
            name,
            pl,
            &[m as u32, n as u32, 0, 0],
            &[&[(1, z), (2, h)]],
            (gx, gy, 1),
        )
    }

    /// Per sample of the logits (m × classes, in place): cross-entropy and hit into `rows`
    /// (2m floats); with `grad`, the logits become (softmax − one-hot)/m.
    pub fn softmax_xent(
        &self,
        m: usize,
        classes: usize,
        labels: &wgpu::Buffer,
        logits: &wgpu::Buffer,
        rows: &wgpu::Buffer,
        grad: bool,
    ) -> Dispatch {
        let (gx, gy) = fold(m.div_ceil(64));
        self.make(
            "softmax_xent",
            &self.k.softmax_xent,
            &[m as u32, classes as u32, grad as u32, 0],
            &[&[(1, labels), (2, logits), (3, rows)]],
            (gx, gy, 1),
        )
    }

    /// Sum of `nparts` floats of `parts` times `scale` into out[0].
    pub fn sum_partials(
        &self,
        nparts: usize,
        scale: f32,
        parts: &wgpu::Buffer,
        out: &wgpu::Buffer,
    ) -> Dispatch {
        let p = [0, 0, 0, 0, 0, 0, nparts as u32, 0, f(scale), 0, 0, 0];
        self.make(
            "sum_partials",
            &self.k.sum_partials,
            &p,
            &[&[], &[(0, parts), (1, out)]],
            (1, 1, 1),
        )
    }

    /// Direct risk and error reductions of AB against Δ (and Δ + A0B0 for an offset run).
    #[allow(clippy::too_many_arguments)]
    pub fn risk(
        &self,
        d: usize,
        k: usize,
        r: usize,
        offset: bool,
        a: &wgpu::Buffer,
        b: &wgpu::Buffer,
        a0: &wgpu::Buffer,
        b0: &wgpu::Buffer,
        delta: &wgpu::Buffer,
        parts: &wgpu::Buffer,
        rec: &wgpu::Buffer,
        state: &wgpu::Buffer,
    ) -> [Dispatch; 2] {
        let (per_wg, nwg) = risk_split(d * k);
        let (gx, gy) = fold(nwg);
        let p = [
            d as u32,
            k as u32,
            r as u32,
            offset as u32,
            0,
            r as u32,
            nwg as u32,
            per_wg as u32,
            f(1.0),
            0,
            0,
            0,
        ];
        let d1 = self.make(
            "risk_partial",
            &self.k.risk_partial,
            &p,
            &[&[(1, a), (2, b), (3, a0), (4, b0), (5, delta), (6, parts)]],
            (gx, gy, 1),
        );
        let d2 = self.make(
            "finish_risk",
            &self.k.finish_risk,
            &p,
            &[&[], &[(0, parts), (1, rec), (2, state)]],
            (1, 1, 1),
        );
        [d1, d2]
    }

    /// One Cholesky-QR pass, `to = from · R⁻¹` with `RᵀR = fromᵀfrom` (rows × w, w ≤ MAX_SMALL):
    /// the Gram by `t_big` (scratch `part`), its factor and inverse in one workgroup (`small`
    /// holds 3w² floats), then the product. Run it twice for CholeskyQR2.
    pub fn cholesky_qr_pass(
        &self,
        rows: usize,
        w: usize,
        from: &wgpu::Buffer,
        to: &wgpu::Buffer,
        part: &wgpu::Buffer,
        small: &wgpu::Buffer,
    ) -> [Dispatch; 4] {
        let [g1, g2] = self.t_big(
            rows,
            w,
            w,
            (from, View::rm(w)),
            (from, View::rm(w)),
            part,
            (small, View::rm(w)),
            1.0,
            0.0,
        );
        [
            g1,
            g2,
            self.chol_inv(w, small, 0, w * w, 2 * w * w, super::QR_TOL),
            self.apply_small(
                rows,
                w,
                (from, View::rm(w)),
                (small, w * w),
                (to, View::rm(w)),
            ),
        ]
    }

    pub fn chol_inv(
        &self,
        l: usize,
        buf: &wgpu::Buffer,
        src: usize,
        dst: usize,
        scratch: usize,
        tol: f32,
    ) -> Dispatch {
        let p = [
            l as u32,
            src as u32,
            dst as u32,
            scratch as u32,
            f(tol),
            0,
            0,
            0,
        ];
        self.make("chol_inv", &self.k.chol_inv, &p, &[&[(1, buf)]], (1, 1, 1))
    }

    pub fn surface(&self, nx: usize, ny: usize, p: [f32; 8], out: &wgpu::Buffer) -> Dispatch {
        let mut w = vec![nx as u32, ny as u32, 0, 0];
        w.extend(p.iter().map(|x| x.to_bits()));
        self.make(
            "surface",
            &self.k.surface,
            &w,
            &[&[(1, out)]],
            (nx.div_ceil(16) as u32, ny.div_ceil(16) as u32, 1),
        )
    }

    /// The step kernels (evaluation tail and update). `st` holds the StParams words.
    #[allow(clippy::too_many_arguments)]
    pub fn step_kernels(
        &self,
        st: &[u32; 16],
        d: usize,
        k: usize,
        r: usize,
        small: &wgpu::Buffer,
        state: &wgpu::Buffer,
        tws: &wgpu::Buffer,
        bmat: &wgpu::Buffer,
        rk: &wgpu::Buffer,
        abuf: &wgpu::Buffer,
        hist: &wgpu::Buffer,
        lossparts: &wgpu::Buffer,
        gramparts: &wgpu::Buffer,
    ) -> (Dispatch, Dispatch, wgpu::Buffer) {
        let pbuf = self.ctx.uniform(st);
        let g0 =
            |pl: &wgpu::ComputePipeline| self.group(pl, 0, &[(0, &pbuf), (1, small), (2, state)]);
        let small_d = Dispatch {
            name: "small_step",
            pipeline: self.k.small_step.clone(),
            groups: vec![
                g0(&self.k.small_step),
                self.group(&self.k.small_step, 1, &[]),
                self.group(
                    &self.k.small_step,
                    2,
                    &[(0, hist), (1, lossparts), (2, gramparts)],
                ),
            ],
            grid: (1, 1, 1),
            _params: None,
        };
        let (ax, ay) = fold((d * r).div_ceil(256) + k.div_ceil(256));
        let uab = Dispatch {
            name: "update_ab",
            pipeline: self.k.update_ab.clone(),
            groups: vec![
                g0(&self.k.update_ab),
                self.group(
                    &self.k.update_ab,
                    1,
                    &[(0, tws), (1, bmat), (2, rk), (3, abuf)],
                ),
            ],
            grid: (ax, ay, 1),
            _params: None,
        };
        (small_d, uab, pbuf)
    }
}

/// Row segments of skinny_t_big: enough workgroups to fill a large GPU, at least 64 rows each.
pub fn t_big_segments(m: usize, nbig: usize) -> (usize, usize) {
    let col_blocks = nbig.div_ceil(256).max(1);
    // about 512 workgroups for wide outputs; few segments for narrow ones (Gram matrices),
    // whose segment sums are then cheap to reduce
    let want = (512 / col_blocks).clamp(1, 32);
    // ≤ 256 rows: the segment's rows of the skinny operand are staged in workgroup memory
    let seg_rows = m.div_ceil(want).clamp(32, 256);
    let nseg = m.div_ceil(seg_rows).max(1);
    (seg_rows, nseg)
}

/// Floats of scratch the t_big partials need.
pub fn t_big_scratch(m: usize, nbig: usize, ncols: usize) -> usize {
    let (_, nseg) = t_big_segments(m, nbig);
    nseg * ncols * nbig
}

/// Elements per workgroup and workgroup count of the risk reduction.
pub fn risk_split(total: usize) -> (usize, usize) {
    let per = total.div_ceil(1024).max(256);
    (per, total.div_ceil(per).max(1))
}

/// Number of per-workgroup partial sums form_e / residual write for `elems` elements.
pub fn ew_parts(elems: usize) -> usize {
    let (gx, gy) = fold(elems.div_ceil(256));
    (gx * gy) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped (comment-stripped, see build.rs) sources still parse and validate, and are
    /// smaller than the files they come from.
    #[test]
    fn shipped_shaders_validate() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
        for (name, src) in [
            ("matmul", MATMUL_WGSL),
            ("skinny", SKINNY_WGSL),
            ("elementwise", ELEMENTWISE_WGSL),
            ("reduce", REDUCE_WGSL),
            ("step", STEP_WGSL),
            ("qr", QR_WGSL),
            ("surface", SURFACE_WGSL),
            ("reduce_multi", REDUCE_MULTI_WGSL),
            ("batched", BATCHED_WGSL),
            ("mlp", MLP_WGSL),
        ] {
            let module = naga::front::wgsl::parse_str(src)
                .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
            naga::valid::Validator::new(
                naga::valid::ValidationFlags::all(),
                naga::valid::Capabilities::empty(),
            )
            .validate(&module)
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
            let original = std::fs::read_to_string(dir.join(format!("{name}.wgsl"))).unwrap();
            assert!(src.len() < original.len(), "{name} was not stripped");
            assert!(
                !src.contains("//") || src.contains("// BEGIN"),
                "{name} keeps comments"
            );
        }
    }
}
