//! The batched small-problem path (`shaders/batched.wgsl`): all runs of a batch advance in one
//! persistent dispatch that loops over many optimiser steps with workgroup barriers only. One
//! workgroup owns a *pack* of T trajectories (T·r ≤ 32 columns side by side), so each element of
//! Σ̂ and G it reads feeds 8 columns; the pack's factors and scratch stay in its own storage
//! region and its r×r matrices in workgroup memory. Recording a step reads back O(r²) numbers per
//! run (loss, risk, ‖AB − Δ‖_F, sin θ_A, sin θ_B and σ(AB), see [`Factors::Aligned`], all formed
//! on the device from snapshots of A and B by a parallel metrics dispatch), never A and B, except
//! for r = 1 (the phase portrait's projection needs the factors; they are d + k numbers).
//!
//! Eligible: the linear model in factored form with r ≤ 32 and max(d, k) ≤
//! `GpuOptions::batched_max_dim`, one optimiser and one record schedule for the whole batch.
//! Everything else runs on the single-run path (`single.rs`). The CPU twin is `CpuBackend`,
//! which advances the same batch run by run; `tests/gpu_parity.rs` compares them.
//!
//! Submissions are sized by time (about [`TARGET_MS`] each, so a page stays responsive and no
//! watchdog fires) and, on a software adapter, by lavapipe's silent per-invocation loop limit
//! (65,535 iterations; see `../shared/TOOLCHAIN.md`): [`Layout::iters_per_step`] counts a step's
//! loop iterations per invocation and a dispatch stays under [`SOFTWARE_LOOP_BUDGET`].

use super::context::BATCHED_MIN_PACKS;
use super::{from_f32, loss_reason, nonfinite_reason, singular_reason, GpuBackend};
use crate::config::Optimiser;
use crate::engine::{
    Advance, Divergence, EngineError, Factors, MetricBasis, RunSpec, Snapshot, StepSettings,
};
use nalgebra::DMatrix;
use web_time::Instant;

/// Threads per workgroup (the shader's `WG`).
const WG: usize = 256;
/// Most columns (T·r) in one pack, and most trajectories.
const MAX_TR: usize = 32;
const MAX_T: usize = 16;
/// Floats per trajectory in the `rp` buffer.
const RP: usize = 8;
/// Wall time one submission aims at.
pub const TARGET_MS: f64 = 40.0;
const MAX_STEPS_PER_DISPATCH: usize = 4096;
/// Loop iterations per invocation a dispatch may use on a software adapter (lavapipe stops an
/// invocation silently after 65,535).
pub const SOFTWARE_LOOP_BUDGET: usize = 48_000;
const MAX_READBACK_BYTES: u64 = 48 << 20;

/// Bytes of the step kernel's fixed workgroup arrays (wtr, wpq, wrun, wl, alive, sing).
const FIXED_WG_BYTES: usize = 4 * (256 + 32 + 64 + 16 + 16 + 16);
/// Most bytes of snapshot slots (A and Bᵀ of every recorded trajectory of one submission,
/// waiting for `batched_metrics`); a segment's packs are capped so that one slot fits.
const MAX_SNAP_BYTES: u64 = 128 << 20;
/// Largest r whose alignment metrics `batched_align` forms one thread a record (larger ranks: the
/// metrics workgroup, in parallel; the shader's `SMAX`).
const ALIGN_SERIAL_MAX_R: usize = 8;
/// Batches of at least this many runs keep their packs in storage, with as many trajectories a
/// pack as the kernel takes. A pack in workgroup memory has the fastest step, but the H200 runs
/// one such pack (~40 KB) per SM at a time (396 runs in 132 packs take 52 µs a step, 399 runs
/// 114), so a batch of several waves of packs waits on its last wave; packs in storage are slower
/// alone but several share an SM. On the H200 at d = 100, r = 8: 1024 runs take 116 µs a step in
/// storage (T = 4) against 155 µs in workgroup memory (T = 3, three waves), 528 runs 89 against
/// 103, while 396 runs (one wave) take 52 in workgroup memory against ~89 (BENCHMARKS.md). The
/// number of SMs is not known to WebGPU, so the switch is by the batch's size.
const STORAGE_MIN_RUNS: usize = 512;
/// Workgroups along one dimension of a dispatch (WebGPU's default limit).
const MAX_GROUPS: u64 = 65_535;

/// Sizes and offsets of one batch (mirrors the shader's `Params`).
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    pub d: usize,
    pub k: usize,
    pub r: usize,
    pub rs: usize,
    /// Trajectories per pack, and their columns T·r, padded to CP (multiple of 8).
    pub t: usize,
    pub tr: usize,
    pub cp: usize,
    pub full: bool,
    /// Storage offsets (floats) in a pack's region, and the region's size.
    oa: usize,
    ob: usize,
    oa0: usize,
    ob0: usize,
    osa0: usize,
    oe: usize,
    of: usize,
    pub ws: usize,
    /// Pack-memory offsets: in workgroup memory when `wfloats` > 0, else in the storage region.
    wa: usize,
    wb: usize,
    wx: usize,
    wy: usize,
    wp: usize,
    wq: usize,
    wk: usize,
    /// Floats of the workgroup array (0: the pack lives in storage).
    pub wfloats: usize,
    /// Floats per record row of one trajectory.
    pub rstride: usize,
    /// Floats of one trajectory's snapshot slot (A and Bᵀ, rows padded to a vec4; seven r×r
    /// blocks of scratch for the metrics).
    pub sf: usize,
}

fn ceil4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

impl Layout {
    #[allow(clippy::too_many_arguments)]
    fn with_t(
        d: usize,
        k: usize,
        r: usize,
        rs: usize,
        t: usize,
        full: bool,
        offset: bool,
        in_wg: bool,
    ) -> Self {
        let tr = t * r;
        let cp = tr.div_ceil(8) * 8;
        let rr = ceil4(t * r * r);
        let mx = d.max(k);
        let oa = 0;
        let ob = oa + d * cp;
        // A0, B0, SA0 and the Grams E, F exist only in a batch with offset runs
        let on = offset as usize;
        let oa0 = ob + k * cp;
        let ob0 = oa0 + on * d * cp;
        let osa0 = ob0 + on * k * cp;
        let oe = osa0 + on * d * cp;
        let of = oe + on * rr;
        let send = of + on * rr;
        // pack memory: A, B, X, Y, P, Q, K
        let (pa, pb, pbase) = if in_wg {
            (0, d * cp, 0)
        } else {
            (oa, ob, send)
        };
        let wx = if in_wg { pb + k * cp } else { pbase };
        let wy = wx + mx * cp;
        let wp = wy + mx * cp;
        let wq = wp + rr;
        let wk = wq + rr;
        let pend = wk + rr;
        let (ws, wfloats) = if in_wg { (send, pend) } else { (pend, 0) };
        let rstride = 5 + r + if full { (d + k) * r } else { 0 };
        Layout {
            d,
            k,
            r,
            rs,
            t,
            tr,
            cp,
            full,
            oa,
            ob,
            oa0,
            ob0,
            osa0,
            oe,
            of,
            ws,
            wa: pa,
            wb: pb,
            wx,
            wy,
            wp,
            wq,
            wk,
            wfloats,
            rstride,
            sf: (d + k) * ceil4(r) + ceil4(7 * r * r),
        }
    }

    /// The layout of a batch of `nb` runs (`offset`: some of them are offset runs): the pack in
    /// workgroup memory with as many trajectories as fit `wg_bytes` (up to T·r = 32), else in
    /// storage with T·r ≈ 16; either way no more than spread the batch over `min_packs` packs.
    /// A batch of `STORAGE_MIN_RUNS` or more keeps its packs in storage with T·r = 32.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        d: usize,
        k: usize,
        r: usize,
        rs: usize,
        nb: usize,
        full: bool,
        offset: bool,
        wg_bytes: usize,
        min_packs: usize,
    ) -> Self {
        let cap = wg_bytes.saturating_sub(FIXED_WG_BYTES) / 4;
        let spread = nb.max(1).div_ceil(min_packs.max(1));
        let tmax = (MAX_TR / r).clamp(1, MAX_T).min(spread);
        if nb >= STORAGE_MIN_RUNS {
            return Self::with_t(d, k, r, rs, tmax, full, offset, false);
        }
        for t in (1..=tmax).rev() {
            let l = Self::with_t(d, k, r, rs, t, full, offset, true);
            if l.wfloats <= cap {
                return l;
            }
        }
        let t = (MAX_TR / 2 / r).clamp(1, MAX_T).min(spread);
        Self::with_t(d, k, r, rs, t, full, offset, false)
    }

    /// Loop iterations one invocation runs for one step (worst case over the threads), the
    /// recording of that step included when `record`; the shader's loops counted one by one.
    pub fn iters_per_step(&self, precond: bool, offset: bool, record: bool) -> usize {
        let cd = |n: usize| n.div_ceil(WG);
        let (d, k, r, t, tr, cp) = (self.d, self.k, self.r, self.t, self.tr, self.cp);
        let mx = d.max(k);
        let tiles = (cp / 4) * (cp / 4);
        let per_tile = mx + 1 + 4 + 1;
        let prod = mx / 2 + 2;
        let mut it = cd(d * cp / 8 + 2 * tiles) * prod.max(per_tile)
            + cd(tiles + d * cp / 8) * prod.max(per_tile)
            + d.div_ceil(8)
            + 1
            + r
            + r * 9
            + 4
            + cd(d * tr) * (r + 1)
            + cd(k * cp / 8) * prod
            + cd(k * tr) * (r + 1)
            + cd((d + k) * tr) * (r + 1);
        if offset {
            it += cd(2 * tiles) * per_tile + cd(d * tr) * (r + 1) + cd(k * tr) * (r + 1);
        }
        if precond {
            it += r * (r + 1) + r + 2;
        }
        if record {
            it += 1 + cd(t * (d + k) * r.div_ceil(4)) * 5;
        }
        it + it / 4
    }

    /// Loop iterations one invocation of the record metrics runs (`batched_metrics`, and
    /// `batched_align` for r ≤ 8; the larger of the two, worst case, counted one by one as in
    /// [`Self::iters_per_step`]).
    pub fn metrics_iters(&self) -> usize {
        let cd = |n: usize| n.div_ceil(WG);
        let (d, k, r, rs) = (self.d, self.k, self.r, self.rs);
        let ch = 1024 / r;
        let grams =
            |n: usize| cd(rs * r) * n + n.div_ceil(ch) * (cd(ch * r) * (rs + 1) + 4 * (ch + 1)) + 8;
        let m = r.min(rs).max(1);
        let mut it = grams(d)
            + grams(k)
            + cd(d * k) * (2 * r.div_ceil(4) + 2)
            + 9
            + if self.full { cd((d + k) * r) } else { 0 };
        let serial = if r <= ALIGN_SERIAL_MAX_R {
            // one thread: Jacobi of at most 10 sweeps of n(n − 1)/2 rotations
            let jacobi = |n: usize| 10 * (n * n.saturating_sub(1) / 2 * (3 * n + 1) + 1) + n * n;
            let sin_theta = r * r + r + jacobi(r) + m * r + m * m * r * (r + 1) + jacobi(m) + m;
            2 * sin_theta + 3 * r * r * r + jacobi(r) + r * r + r
        } else {
            // the workgroup's parallel Jacobi: 16 sweeps of n − 1 rounds
            let jacobi = |n: usize| {
                let nn = n + n % 2;
                16 * (nn.saturating_sub(1) * (3 + cd(n * nn) + cd(n * nn / 2)) + 1) + cd(n * n)
            };
            let sin_theta = r * r
                + r
                + m * r
                + cd(r * r)
                + jacobi(r)
                + cd(r * m) * r
                + cd(m * m) * r
                + jacobi(m)
                + m;
            it += 2 * sin_theta + 3 * cd(r * r) * r + jacobi(r) + r * r + r;
            0
        };
        it = it.max(serial);
        it + it / 4
    }

    #[allow(clippy::too_many_arguments)]
    fn params(
        &self,
        nb: usize,
        nsteps: usize,
        step0: usize,
        rec_every: usize,
        last_step: usize,
        first_new: bool,
        precond: bool,
        any_offset: bool,
        pack0: usize,
        snt: usize,
    ) -> [u32; 44] {
        let (d, k, rs) = (self.d, self.k, self.rs);
        let o_sig = 0;
        let o_g = o_sig + d * d;
        let o_gt = o_g + d * k;
        let o_del = o_gt + d * k;
        let o_u = o_del + d * k;
        let o_v = o_u + d * rs;
        let v = [
            d,
            k,
            self.r,
            rs,
            self.t,
            self.tr,
            self.cp,
            nb,
            nsteps,
            step0,
            rec_every,
            last_step,
            first_new as usize,
            precond as usize,
            self.full as usize,
            self.ws,
            o_sig,
            o_g,
            o_gt,
            o_del,
            o_u,
            o_v,
            self.oa,
            self.ob,
            self.oa0,
            self.ob0,
            self.osa0,
            self.sf,
            snt,
            self.oe,
            self.of,
            self.rstride,
            self.wa,
            self.wb,
            self.wx,
            self.wy,
            self.wp,
            self.wq,
            self.wk,
            any_offset as usize,
            pack0,
            self.wfloats,
            self.rows_per_task(),
            0,
        ];
        v.map(|x| x as u32)
    }

    /// Rows of a big product per task (the shader's `p.rb`): two when one row a task would
    /// need a second round of the workgroup's threads.
    fn rows_per_task(&self) -> usize {
        if self.d.max(self.k) * (self.cp / 8) > WG {
            2
        } else {
            1
        }
    }

    fn big_floats(&self) -> usize {
        self.d * self.d + 3 * self.d * self.k + (self.d + self.k) * self.rs
    }
}

const PACK_BEGIN: &str = "// BEGIN PACK MEMORY";
const PACK_END: &str = "// END PACK MEMORY";

/// The batched shader with its pack memory in storage (`None`, the file as written) or in a
/// workgroup array of `Some(floats)` floats (copied in and out at the ends of a dispatch).
pub fn shader_source(workgroup_floats: Option<usize>) -> String {
    let src = super::kernels::BATCHED_WGSL;
    let Some(n) = workgroup_floats else {
        return src.to_string();
    };
    let (a, b) = (
        src.find(PACK_BEGIN).expect("pack memory block"),
        src.find(PACK_END).expect("pack memory block"),
    );
    let block = format!(
        "{PACK_BEGIN} (workgroup variant)
var<workgroup> wst: array<vec4<f32>, {}>;
fn ldw(i: u32) -> f32 {{ return wst[i >> 2u][i & 3u]; }}
fn stw(i: u32, v: f32) {{ wst[i >> 2u][i & 3u] = v; }}
fn ldw4(i: u32) -> vec4<f32> {{ return wst[i]; }}
fn stw4(i: u32, v: vec4<f32>) {{ wst[i] = v; }}
fn pack_in(tid: u32) {{
    let sa = (base + p.oa) / 4u;
    let sb = (base + p.ob) / 4u;
    for (var e = tid; e < p.d * p.cp / 4u; e += WG) {{ wst[p.wa / 4u + e] = st[sa + e]; }}
    for (var e = tid; e < p.k * p.cp / 4u; e += WG) {{ wst[p.wb / 4u + e] = st[sb + e]; }}
}}
fn pack_out(tid: u32) {{
    let sa = (base + p.oa) / 4u;
    let sb = (base + p.ob) / 4u;
    for (var e = tid; e < p.d * p.cp / 4u; e += WG) {{ st[sa + e] = wst[p.wa / 4u + e]; }}
    for (var e = tid; e < p.k * p.cp / 4u; e += WG) {{ st[sb + e] = wst[p.wb / 4u + e]; }}
}}
// a phase boundary: pack memory is workgroup memory here (storage written and read by other
// threads in one dispatch is fenced where it happens)
fn sync() {{
    workgroupBarrier();
}}
",
        n.div_ceil(4)
    );
    format!("{}{}{}", &src[..a], block, &src[b..])
}

/// A run of packs with its own state buffer (one bind group and one dispatch of the steps, one
/// of the record metrics).
pub(super) struct Segment {
    pack0: usize,
    npacks: usize,
    params: wgpu::Buffer,
    bind: wgpu::BindGroup,
    metrics_bind: wgpu::BindGroup,
    align_bind: wgpu::BindGroup,
    _st: wgpu::Buffer,
}

pub(super) struct Batch {
    lay: Layout,
    pipeline: wgpu::ComputePipeline,
    metrics: wgpu::ComputePipeline,
    align: wgpu::ComputePipeline,
    nb: usize,
    precond: bool,
    any_offset: bool,
    /// The batch's record schedule (every run shares it): `record_every`, `last_step`.
    schedule: StepSettings,
    /// Step the batch has reached.
    step: usize,
    settings: Vec<StepSettings>,
    stopped: Vec<bool>,
    rp: wgpu::Buffer,
    rec: wgpu::Buffer,
    /// Most records one submission may hold.
    rec_cap: usize,
    segments: Vec<Segment>,
    _big: wgpu::Buffer,
    snap: wgpu::Buffer,
    _base0: wgpu::Buffer,
    /// Wall time of submissions, for sizing the next one.
    pace: Pace,
    last_n: usize,
}

/// A submission's wall time as `overhead + n · per_step`, fitted from the last two submissions of
/// different sizes (a software adapter pays tens of ms per dispatch, a GPU tens of µs).
#[derive(Clone, Copy, Debug, Default)]
struct Pace {
    last: Option<(usize, f64)>,
    model: Option<(f64, f64)>,
}

impl Pace {
    fn add(&mut self, n: usize, ms: f64) {
        let per = ms / n as f64;
        self.model = match self.last {
            Some((n0, ms0)) if n0 != n => {
                let c = ((ms - ms0) / (n as f64 - n0 as f64)).max(1e-3 * per);
                Some(((ms - c * n as f64).max(0.0), c))
            }
            _ => Some((0.0, per)),
        };
        if self.last.is_none_or(|(n0, _)| n0 != n) {
            self.last = Some((n, ms));
        }
    }

    /// Steps for the next submission: about `TARGET_MS` of work, or, where the fixed cost alone
    /// exceeds that, as many steps as the fixed cost buys.
    fn next(&self, prev: usize) -> usize {
        match self.model {
            None => 8,
            // the first two sizes differ, so that the fit has two points
            Some(_) if self.last.is_some_and(|(n0, _)| n0 == prev) && prev == 8 => 16,
            Some((o, c)) => {
                let budget = if o >= 0.5 * TARGET_MS {
                    2.0 * o
                } else {
                    TARGET_MS - o
                };
                ((budget / c) as usize).max(1)
            }
        }
    }
}

impl GpuBackend {
    /// Workgroup memory the batched kernel may use.
    fn batched_wg_bytes(&self) -> usize {
        self.ctx
            .options
            .batched_wg_bytes
            .unwrap_or(self.ctx.limits.max_compute_workgroup_storage_size as usize)
    }

    /// The batched pipeline for a pack memory of `wfloats` workgroup floats (0: in storage),
    /// compiled once per size.
    async fn batched_pipeline(
        &mut self,
        wfloats: usize,
    ) -> Result<wgpu::ComputePipeline, EngineError> {
        if wfloats == 0 {
            return Ok(self.kern.batched.clone());
        }
        if let Some((_, p)) = self.batched_variants.iter().find(|(n, _)| *n == wfloats) {
            return Ok(p.clone());
        }
        let src = shader_source(Some(wfloats));
        let ctx = &self.ctx;
        let pipe = ctx
            .scoped("compiling the batched kernel", || {
                let m = ctx.module("batched (workgroup pack)", &src);
                super::kernels::pipeline(ctx, &m, "batched")
            })
            .await?;
        self.batched_variants.push((wfloats, pipe.clone()));
        Ok(pipe)
    }

    /// The layout of this batch: A and B read back whole at r = 1 (the phase portrait's
    /// projection) or without a metric basis.
    fn batch_layout(&self, d: usize, k: usize, runs: &[RunSpec], basis: &MetricBasis) -> Layout {
        let r = runs.first().map_or(1, |s| s.init.a0.ncols());
        let rs = basis.u.ncols();
        Layout::new(
            d,
            k,
            r,
            rs,
            runs.len(),
            r == 1 || rs == 0,
            runs.iter().any(|s| s.init.offset),
            self.batched_wg_bytes(),
            self.ctx
                .options
                .batched_min_packs
                .unwrap_or(if self.ctx.is_software() {
                    1
                } else {
                    BATCHED_MIN_PACKS
                }),
        )
    }

    /// Why this batch cannot take the batched path (None: it can).
    pub(super) fn batched_refusal(&self, runs: &[RunSpec], basis: &MetricBasis) -> Option<String> {
        let max_dim = self.ctx.options.batched_max_dim;
        let l = self.loaded.as_ref()?;
        let first = runs.first()?;
        let r = first.init.a0.ncols();
        let s0 = &first.settings;
        if max_dim == 0 {
            return Some("the batched path is disabled".into());
        }
        if l.form != crate::config::StepForm::Factored || l.relu {
            return Some("only the linear model in factored form is batched".into());
        }
        if l.d.max(l.k) > max_dim {
            return Some(format!("max(d, k) = {} > {max_dim}", l.d.max(l.k)));
        }
        if r == 0 || r > MAX_TR || basis.u.ncols() > MAX_TR {
            return Some(format!("r = {r} is outside 1..={MAX_TR}"));
        }
        if runs.iter().any(|s| {
            s.init.a0.ncols() != r
                || s.settings.optimiser != s0.optimiser
                || s.settings.record_every != s0.record_every
                || s.settings.last_step != s0.last_step
        }) {
            return Some("runs differ in rank, optimiser or record schedule".into());
        }
        let lay = self.batch_layout(l.d, l.k, runs, basis);
        let max = self.ctx.max_binding();
        if (lay.ws * 4) as u64 > max || (lay.big_floats() * 4) as u64 > max {
            return Some("a pack does not fit one storage binding".into());
        }
        if (runs.len() * lay.rstride * 4) as u64 > max.min(MAX_READBACK_BYTES) {
            return Some("one record of the batch exceeds the readback limit".into());
        }
        let precond = s0.optimiser == Optimiser::Preconditioned;
        let offset = runs.iter().any(|s| s.init.offset);
        if offset && (runs.len() * lay.sf * 4) as u64 > max {
            return Some("the offset runs' A0 and B0 exceed one storage binding".into());
        }
        if self.ctx.is_software() && lay.metrics_iters() > SOFTWARE_LOOP_BUDGET {
            return Some("the record metrics exceed the software adapter's loop budget".into());
        }
        if self.ctx.is_software()
            && 2 * lay.iters_per_step(precond, offset, true) > SOFTWARE_LOOP_BUDGET
        {
            return Some("one step exceeds the software adapter's loop budget".into());
        }
        None
    }

    /// Upload the batch (Σ̂, G, Gᵀ, Δ and the metric bases; every pack's factors) and evaluate
    /// step 0 of every run.
    pub(super) async fn start_batched(
        &mut self,
        runs: &[RunSpec],
        basis: &MetricBasis,
    ) -> Result<(Batch, Vec<Advance>), EngineError> {
        let (d, k) = match &self.loaded {
            Some(l) => (l.d, l.k),
            None => return Err(EngineError::Unsupported("start before load".into())),
        };
        let nb = runs.len();
        let r = runs[0].init.a0.ncols();
        let lay = self.batch_layout(d, k, runs, basis);
        let rs = lay.rs;
        let pipeline = self.batched_pipeline(lay.wfloats).await?;
        let metrics = self.kern.batched_metrics.clone();
        let align = self.kern.batched_align.clone();
        let l = self.loaded.as_ref().expect("loaded");
        let s0 = runs[0].settings;
        let precond = s0.optimiser == Optimiser::Preconditioned;
        let any_offset = runs.iter().any(|s| s.init.offset);
        let c0 = l.c0;
        let sigma_buf = l.sigma.as_ref().expect("factored form has Σ̂");
        let sigma = self.read_buffer(sigma_buf, d * d).await?;
        let g = self.read_buffer(&l.g, d * k).await?;
        let delta = self.read_buffer(&l.delta, d * k).await?;
        let ctx = &self.ctx;

        // big: Σ̂, G, Gᵀ, Δ, U, V
        let mut big = Vec::with_capacity(lay.big_floats());
        big.extend_from_slice(&sigma);
        big.extend_from_slice(&g);
        for j in 0..k {
            for i in 0..d {
                big.push(g[i * k + j]);
            }
        }
        big.extend_from_slice(&delta);
        for i in 0..d {
            for q in 0..rs {
                big.push(basis.u[(i, q)] as f32);
            }
        }
        for j in 0..k {
            for q in 0..rs {
                big.push(basis.v[(j, q)] as f32);
            }
        }
        let sig64 = DMatrix::from_fn(d, d, |i, j| sigma[i * d + j] as f64);

        // packs, in segments that fit one storage binding each and one snapshot slot
        let npacks = nb.div_ceil(lay.t);
        let snap_max = ctx.max_binding().min(MAX_SNAP_BYTES);
        let max_packs = (ctx.max_binding() / (lay.ws as u64 * 4))
            .min(snap_max / (lay.t * lay.sf * 4) as u64)
            .min(MAX_GROUPS / lay.t as u64)
            .max(1) as usize;
        let seg_traj = max_packs.min(npacks) * lay.t;
        let total_recs = (0..=s0.last_step).filter(|&s| s0.records(s)).count();
        let row_bytes = (nb * lay.rstride * 4) as u64;
        let rec_cap = ((ctx.max_binding().min(MAX_READBACK_BYTES) / row_bytes) as usize)
            .min((snap_max / (seg_traj * lay.sf * 4) as u64) as usize)
            .min(MAX_GROUPS as usize)
            .clamp(1, total_recs.max(1));
        let (rec_floats, snap_floats) = (rec_cap * nb * lay.rstride, rec_cap * seg_traj * lay.sf);
        // the last batch's record and snapshot buffers where their sizes match (every row and
        // slot a submission reads is written by it first: nothing of the last batch is read);
        // the others are let go before anything is allocated, so that the two batches' buffers
        // are never held at once
        let spare = &mut self.spare;
        let mut take = |label: &str, floats: usize| -> Result<Option<wgpu::Buffer>, EngineError> {
            let bytes = ctx.check_size(label, floats)?.div_ceil(16) * 16;
            Ok(spare
                .iter()
                .position(|b| b.size() == bytes)
                .map(|i| spare.swap_remove(i)))
        };
        let rec_old = take("batched records", rec_floats)?;
        let snap_old = take("batched snapshots", snap_floats)?;
        self.spare.clear();
        self.reused = rec_old.is_some() as usize + snap_old.is_some() as usize;
        let mut segments = Vec::new();
        let big_buf = ctx.storage_init("batched big", &big)?;
        let mut rpv = vec![0f32; nb * RP];
        for (gi, s) in runs.iter().enumerate() {
            let o = gi * RP;
            rpv[o] = s.settings.eta as f32;
            rpv[o + 1] = s.settings.damping as f32;
            rpv[o + 3] = f32::MAX;
            rpv[o + 6] = s.init.offset as u8 as f32;
        }
        let rp = ctx.storage_init("batched rp", &rpv)?;
        let rec = match rec_old {
            Some(b) => b,
            None => ctx.storage("batched records", rec_floats)?,
        };
        let snap = match snap_old {
            Some(b) => b,
            None => ctx.storage("batched snapshots", snap_floats)?,
        };
        // the offset runs' A0 and B0ᵀ, laid out as a snapshot, for the records' risk
        let base0 = if any_offset {
            let r4 = ceil4(r);
            let mut v = vec![0f32; nb * lay.sf];
            for (gi, s) in runs.iter().enumerate().filter(|(_, s)| s.init.offset) {
                let o = gi * lay.sf;
                for q in 0..r {
                    for i in 0..d {
                        v[o + i * r4 + q] = s.init.a0[(i, q)] as f32;
                    }
                    for j in 0..k {
                        v[o + (d + j) * r4 + q] = s.init.b0[(q, j)] as f32;
                    }
                }
            }
            ctx.storage_init("batched A0, B0", &v)?
        } else {
            ctx.storage("batched A0, B0 (none)", 4)?
        };
        let mut pack0 = 0;
        while pack0 < npacks {
            let np = max_packs.min(npacks - pack0);
            // what each pack uploads: A, B and the offset runs' A0, B0, SA0 (the rest of its
            // region starts at zero), filled on all cores natively
            let idx: Vec<usize> = (0..np).collect();
            let data = crate::engine::par_map(&idx, |&p| {
                let mut st = vec![0f32; lay.oe];
                for t in 0..lay.t {
                    let gi = (pack0 + p) * lay.t + t;
                    if gi >= nb {
                        break;
                    }
                    let init = &runs[gi].init;
                    let sa0 = init.offset.then(|| &sig64 * &init.a0);
                    for q in 0..r {
                        let c = t * r + q;
                        for i in 0..d {
                            let a = init.a0[(i, q)] as f32;
                            st[lay.oa + i * lay.cp + c] = a;
                            if let Some(sa0) = &sa0 {
                                st[lay.oa0 + i * lay.cp + c] = a;
                                st[lay.osa0 + i * lay.cp + c] = sa0[(i, q)] as f32;
                            }
                        }
                        for j in 0..k {
                            let b = init.b0[(q, j)] as f32;
                            st[lay.ob + j * lay.cp + c] = b;
                            if init.offset {
                                st[lay.ob0 + j * lay.cp + c] = b;
                            }
                        }
                    }
                }
                st
            });
            let st_buf = ctx.storage("batched state", np * lay.ws)?;
            for (p, v) in data.iter().enumerate() {
                ctx.queue
                    .write_buffer(&st_buf, (p * lay.ws * 4) as u64, bytemuck::cast_slice(v));
            }
            let params = ctx.uniform(&[0u32; 44]);
            fn entry(binding: u32, buf: &wgpu::Buffer) -> wgpu::BindGroupEntry<'_> {
                wgpu::BindGroupEntry {
                    binding,
                    resource: buf.as_entire_binding(),
                }
            }
            let bind = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("batched"),
                layout: &pipeline.get_bind_group_layout(0),
                entries: &[
                    entry(0, &params),
                    entry(1, &big_buf),
                    entry(2, &st_buf),
                    entry(3, &rp),
                    entry(4, &rec),
                    entry(5, &snap),
                ],
            });
            let metrics_bind = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("batched metrics"),
                layout: &metrics.get_bind_group_layout(0),
                entries: &[
                    entry(0, &params),
                    entry(1, &big_buf),
                    entry(3, &rp),
                    entry(4, &rec),
                    entry(5, &snap),
                    entry(6, &base0),
                ],
            });
            let align_bind = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("batched align"),
                layout: &align.get_bind_group_layout(0),
                entries: &[entry(0, &params), entry(4, &rec), entry(5, &snap)],
            });
            segments.push(Segment {
                pack0,
                npacks: np,
                params,
                bind,
                metrics_bind,
                align_bind,
                _st: st_buf,
            });
            pack0 += np;
        }
        ctx.check()?;
        let mut batch = Batch {
            lay,
            pipeline,
            metrics,
            align,
            nb,
            precond,
            any_offset,
            schedule: s0,
            step: 0,
            settings: runs.iter().map(|s| s.settings).collect(),
            stopped: vec![false; nb],
            rp,
            rec,
            rec_cap,
            segments,
            _big: big_buf,
            snap,
            _base0: base0,
            pace: Pace::default(),
            last_n: 0,
        };

        // step 0, evaluated with c = 0; then each run's constant and divergence limit
        let t0 = Instant::now();
        let (recv, rpv0) = self.dispatch(&batch, 0, true, 1).await?;
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        let mut advs = Vec::with_capacity(nb);
        let mut rpv = rpv0;
        for (gi, spec) in runs.iter().enumerate() {
            let row = &recv[gi * lay.rstride..(gi + 1) * lay.rstride];
            let h0 = row[0] as f64;
            let c_eff = if spec.init.offset { c0 - h0 } else { c0 };
            let loss = h0 + c_eff;
            let limit = spec.settings.divergence_factor * loss.abs().max(1.0);
            let o = gi * RP;
            rpv[o + 2] = c_eff as f32;
            rpv[o + 3] = limit.min(f32::MAX as f64) as f32;
            let mut adv = Advance::default();
            if !loss.is_finite() || rpv[o + 4] != 0.0 {
                adv.diverged = Some(nonfinite_reason(0));
            } else if loss > limit {
                adv.diverged = Some(loss_reason(loss, spec.settings.divergence_factor, 0));
            }
            if adv.diverged.is_some() {
                rpv[o + 4] = 2.0;
                batch.stopped[gi] = true;
            } else {
                let mut snap = snapshot(&lay, row, 0, ms);
                snap.loss = loss;
                adv.snapshots.push(snap);
            }
            advs.push(adv);
        }
        ctx.queue
            .write_buffer(&batch.rp, 0, bytemuck::cast_slice(&rpv));
        Ok((batch, advs))
    }

    /// Encode one dispatch per segment (`n` steps from the batch's step; `first_new`: evaluate and
    /// record the current state too), then read back `nrec` record rows and the run table.
    async fn dispatch(
        &self,
        b: &Batch,
        n: usize,
        first_new: bool,
        nrec: usize,
    ) -> Result<(Vec<f32>, Vec<f32>), EngineError> {
        let sub = self.submit_chunk(b, n, first_new, nrec)?;
        self.collect(sub).await
    }

    /// A submitted chunk's record rows and run table (waiting for that submission only).
    async fn collect(&self, s: Submitted) -> Result<(Vec<f32>, Vec<f32>), EngineError> {
        let mut all = self
            .ctx
            .read_after(&s.rb, s.rec_floats + s.rp_floats, Some(s.index))
            .await?;
        let rpv = all.split_off(s.rec_floats);
        Ok((all, rpv))
    }

    /// `dispatch` up to the submission: the rows are collected later, so that the next chunk can
    /// be queued first.
    fn submit_chunk(
        &self,
        b: &Batch,
        n: usize,
        first_new: bool,
        nrec: usize,
    ) -> Result<Submitted, EngineError> {
        let lay = &b.lay;
        let rec_floats = nrec * b.nb * lay.rstride;
        let rp_floats = b.nb * RP;
        let rb = self
            .ctx
            .readback_buffer(((rec_floats + rp_floats) * 4) as u64)?;
        for s in &b.segments {
            let params = lay.params(
                b.nb,
                n,
                b.step,
                b.schedule.record_every,
                b.schedule.last_step,
                first_new,
                b.precond,
                b.any_offset,
                s.pack0,
                s.npacks * lay.t,
            );
            self.ctx
                .queue
                .write_buffer(&s.params, 0, bytemuck::cast_slice(&params));
        }
        let mut enc = self.encoder();
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("batched steps"),
                timestamp_writes: None,
            });
            // each segment's steps, then the metrics of its records (its snapshot slots are
            // reused by the next segment)
            for s in &b.segments {
                pass.set_pipeline(&b.pipeline);
                pass.set_bind_group(0, &s.bind, &[]);
                pass.dispatch_workgroups(s.npacks as u32, 1, 1);
                if nrec > 0 {
                    let traj = (s.npacks * lay.t) as u32;
                    pass.set_pipeline(&b.metrics);
                    pass.set_bind_group(0, &s.metrics_bind, &[]);
                    pass.dispatch_workgroups(traj, nrec as u32, 1);
                    if lay.r <= ALIGN_SERIAL_MAX_R {
                        pass.set_pipeline(&b.align);
                        pass.set_bind_group(0, &s.align_bind, &[]);
                        pass.dispatch_workgroups(traj.div_ceil(64), nrec as u32, 3);
                    }
                }
            }
        }
        if rec_floats > 0 {
            enc.copy_buffer_to_buffer(&b.rec, 0, &rb, 0, (rec_floats * 4) as u64);
        }
        enc.copy_buffer_to_buffer(
            &b.rp,
            0,
            &rb,
            (rec_floats * 4) as u64,
            (rp_floats * 4) as u64,
        );
        let index = self.ctx.queue.submit([enc.finish()]);
        Ok(Submitted {
            rb,
            rec_floats,
            rp_floats,
            index,
        })
    }

    /// Steps the next submission may take, `left` of the call's `steps` to go.
    fn batched_chunk(&self, b: &Batch, left: usize, steps: usize) -> usize {
        let mut full = MAX_STEPS_PER_DISPATCH.min(b.pace.next(b.last_n));
        if let Some(f) = self.ctx.options.batched_steps_per_dispatch {
            full = full.min(f.max(1));
        }
        let mut n = left.min(full);
        // the host parses a call's last chunk with the GPU idle: a long call (four full chunks
        // or more) ends on shorter chunks, each about half of what is left, down to an eighth of
        // a full one (a short call keeps its few submissions)
        if steps >= 4 * full {
            n = n.min(left.div_ceil(2).max(full / 8));
        }
        if self.ctx.is_software() {
            let lay = &b.lay;
            let rec_every_step = b.schedule.record_every == 1;
            let per = lay.iters_per_step(b.precond, b.any_offset, rec_every_step);
            let rec = lay.iters_per_step(b.precond, b.any_offset, true) - per;
            // n steps, their records, and the extra evaluation at the end of the chunk
            let fit = (SOFTWARE_LOOP_BUDGET.saturating_sub(per + rec))
                / (per + rec / b.schedule.record_every);
            n = n.min(fit.max(1));
        }
        // records of this chunk within the record buffer
        let mut recs = 0;
        for i in 1..=n {
            if b.schedule.records(b.step + i) {
                recs += 1;
                if recs > b.rec_cap {
                    return i - 1;
                }
            }
        }
        n.max(1)
    }

    /// Wall time (ms) of exactly one submission of `n` steps of the batch in progress
    /// (benchmarks: the kernel's time per step is the slope over n). With `records`, the
    /// records' metrics of the steps the schedule records run too and their rows are read back;
    /// without, the kernel still snapshots those steps but nothing more is done with them. It
    /// advances the batch.
    pub async fn time_batched_dispatch(
        &mut self,
        n: usize,
        records: bool,
    ) -> Result<f64, EngineError> {
        let Some(super::BatchState::Batched(mut b)) = self.batch.take() else {
            return Err(EngineError::Unsupported(
                "time_batched_dispatch needs a batch on the batched path".into(),
            ));
        };
        let nrec = if records {
            b.recorded_steps(n).len()
        } else {
            0
        };
        if nrec > b.rec_cap {
            let cap = b.rec_cap;
            self.batch = Some(super::BatchState::Batched(b));
            return Err(EngineError::Unsupported(format!(
                "{nrec} records in one submission; the record buffer holds {cap}"
            )));
        }
        let t = Instant::now();
        let r = self.dispatch(&b, n, false, nrec).await;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        b.step += n;
        self.batch = Some(super::BatchState::Batched(b));
        r.map(|_| ms)
    }

    /// `advance_batched_into` with its parts joined per run.
    pub(super) async fn advance_batched(
        &self,
        b: &mut Batch,
        steps: usize,
    ) -> Result<Vec<Advance>, EngineError> {
        let mut advs = vec![Advance::default(); b.nb];
        self.advance_batched_into(b, steps, &mut |part| {
            for (a, p) in advs.iter_mut().zip(part) {
                a.snapshots.extend(p.snapshots);
                if p.diverged.is_some() {
                    a.diverged = p.diverged;
                }
            }
        })
        .await?;
        Ok(advs)
    }

    /// Advance every live run by `steps`, in chunks sized by time; up to
    /// `GpuOptions::batched_in_flight` chunks are queued at once, so that the GPU works on the
    /// next chunk while the host reads and parses the last one's records. Each chunk's part of
    /// the advance goes to `sink` as soon as it is parsed, the next chunk already queued (the
    /// caller's work on it overlaps the GPU's too).
    pub(super) async fn advance_batched_into(
        &self,
        b: &mut Batch,
        steps: usize,
        sink: &mut dyn FnMut(Vec<Advance>),
    ) -> Result<(), EngineError> {
        let t0 = Instant::now();
        let mut left = steps;
        let lay = b.lay;
        let depth = self.ctx.options.batched_in_flight.max(1);
        // chunks in flight: (submission, steps, first step, recorded steps, submitted at)
        let mut queue = std::collections::VecDeque::new();
        let mut done_at = t0;
        let top_up = |b: &mut Batch,
                      left: &mut usize,
                      queue: &mut std::collections::VecDeque<_>|
         -> Result<(), EngineError> {
            while queue.len() < depth && *left > 0 && b.stopped.iter().any(|s| !s) {
                let n = self.batched_chunk(b, *left, steps);
                let recsteps = b.recorded_steps(n);
                let sub = self.submit_chunk(b, n, false, recsteps.len())?;
                queue.push_back((sub, n, b.step, recsteps, Instant::now()));
                b.step += n;
                *left -= n;
            }
            Ok(())
        };
        top_up(b, &mut left, &mut queue)?;
        while let Some((sub, n, step0, recsteps, at)) = queue.pop_front() {
            let (recv, rpv) = self.collect(sub).await?;
            // the chunk's own time: from its submission or the previous chunk's end, whichever
            // is later (queued chunks wait for the ones before them)
            let now = Instant::now();
            let dt = (now - at.max(done_at)).as_secs_f64() * 1e3;
            done_at = now;
            b.pace.add(n, dt);
            b.last_n = n;
            let elapsed = t0.elapsed().as_secs_f64() * 1e3;
            // the next chunk goes on the queue before this one's rows are parsed (runs stopped
            // in this chunk stay stopped on the GPU: their status is in the run table)
            top_up(b, &mut left, &mut queue)?;
            // parse every recorded row of every live run (in parallel natively: 1500 rows of a
            // few runs are as many as one row of 1500 runs)
            let runs: Vec<usize> = (0..b.nb).filter(|&gi| !b.stopped[gi]).collect();
            let stride = lay.rstride;
            let rows: Vec<(usize, usize, usize)> = runs
                .iter()
                .flat_map(|&gi| {
                    let o = gi * RP;
                    let (status, at) = (rpv[o + 4] as u32, rpv[o + 5] as usize);
                    recsteps
                        .iter()
                        .enumerate()
                        .take_while(move |&(_, &s)| status == 0 || s < at)
                        .map(move |(ri, &s)| (gi, ri, s))
                })
                .collect();
            let snaps = crate::engine::par_map(&rows, |&(gi, ri, s)| {
                let row = &recv[(ri * b.nb + gi) * stride..][..stride];
                let t_ms = elapsed - dt + dt * (s - step0) as f64 / n as f64;
                snapshot(&lay, row, s, t_ms)
            });
            let mut advs = vec![Advance::default(); b.nb];
            for (&(gi, _, _), snap) in rows.iter().zip(snaps) {
                advs[gi].snapshots.push(snap);
            }
            for &gi in &runs {
                let o = gi * RP;
                let (status, at) = (rpv[o + 4] as u32, rpv[o + 5] as usize);
                if status != 0 {
                    b.stopped[gi] = true;
                    advs[gi].diverged =
                        Some(reason(status, at, rpv[o + 7] as f64, &b.settings[gi]));
                }
            }
            sink(advs);
        }
        self.ctx.check()
    }
}

impl Batch {
    /// The buffers the next batch may reuse: records and snapshots.
    pub(super) fn into_spare(self) -> Vec<wgpu::Buffer> {
        vec![self.rec, self.snap]
    }

    /// The steps the schedule records among the next `n` (after the batch's step).
    fn recorded_steps(&self, n: usize) -> Vec<usize> {
        (self.step + 1..=self.step + n)
            .filter(|&s| self.schedule.records(s))
            .collect()
    }
}

/// A chunk on the queue: where its rows will be read from.
struct Submitted {
    rb: wgpu::Buffer,
    rec_floats: usize,
    rp_floats: usize,
    index: wgpu::SubmissionIndex,
}

fn reason(status: u32, at: usize, loss: f64, s: &StepSettings) -> Divergence {
    match status {
        1 => loss_reason(loss, s.divergence_factor, at),
        3 => singular_reason(at),
        _ => nonfinite_reason(at),
    }
}

/// A snapshot from one record row.
fn snapshot(lay: &Layout, row: &[f32], step: usize, t_ms: f64) -> Snapshot {
    let r = lay.r;
    let factors = if lay.full {
        let fo = 5 + r;
        Factors::Full {
            a: from_f32(&row[fo..fo + lay.d * r], lay.d, r),
            b: from_f32(&row[fo + lay.d * r..fo + (lay.d + lay.k) * r], r, lay.k),
        }
    } else {
        let sin = |x: f32| (x >= 0.0).then_some(x as f64);
        Factors::Aligned {
            sin_a: sin(row[3]),
            sin_b: sin(row[4]),
            sv_ab: row[5..5 + r].iter().map(|&x| x as f64).collect(),
        }
    };
    Snapshot {
        step,
        loss: row[0] as f64,
        risk: row[1] as f64,
        err_f: row[2] as f64,
        factors,
        t_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The workgroup-memory variant validates with naga for the sizes the layouts produce.
    #[test]
    fn workgroup_variant_validates() {
        for (d, r, nb, wg) in [
            (100, 8, 300, 49152),
            (100, 8, 5, 16384),
            (37, 4, 64, 32768),
            (9, 1, 3, 16384),
        ] {
            let lay = Layout::new(d, d, r, 2, nb, r == 1, true, wg, 1);
            assert!(lay.wfloats > 0, "d={d} r={r} fits {wg} B");
            assert!(lay.wfloats * 4 + FIXED_WG_BYTES <= wg);
            let src = shader_source(Some(lay.wfloats));
            let module = naga::front::wgsl::parse_str(&src)
                .map_err(|e| e.emit_to_string(&src))
                .unwrap();
            let mut v = naga::valid::Validator::new(
                naga::valid::ValidationFlags::all(),
                naga::valid::Capabilities::empty(),
            );
            v.validate(&module)
                .map_err(|e| e.emit_to_string(&src))
                .unwrap();
        }
        // too large for 16 KiB: the pack goes to storage
        let lay = Layout::new(400, 400, 8, 4, 64, false, true, 16384, 1);
        assert_eq!(lay.wfloats, 0);
        assert_eq!(
            Layout::new(100, 100, 8, 4, 396, false, false, 49152, 16).t,
            3
        );
        // a large batch: packs in storage, four trajectories each
        let big = Layout::new(100, 100, 8, 4, 1024, false, false, 49152, 16);
        assert_eq!((big.t, big.wfloats), (4, 0));
        // a small batch is spread first: five runs, five packs
        assert_eq!(Layout::new(100, 100, 8, 4, 5, false, false, 49152, 16).t, 1);
        assert_eq!(Layout::new(100, 100, 8, 4, 5, false, false, 49152, 1).t, 3);
        assert_eq!(
            Layout::new(100, 100, 8, 4, 64, false, false, 49152, 16).t,
            3
        );
        // two rows a task where one would take the workgroup two rounds
        assert_eq!(
            Layout::new(100, 100, 8, 4, 64, false, false, 49152, 16).rows_per_task(),
            2
        );
        assert_eq!(
            Layout::new(100, 100, 8, 4, 5, false, false, 49152, 16).rows_per_task(),
            1
        );
        let storage = Layout::new(131, 129, 4, 2, 4, false, false, 0, 1);
        assert_eq!((storage.t, storage.rows_per_task()), (4, 2));
    }

    #[test]
    fn pace_fits_overhead_and_per_step_cost() {
        let mut p = Pace::default();
        assert_eq!(p.next(0), 8);
        // a GPU: 0.02 ms fixed, 0.01 ms a step
        p.add(8, 0.02 + 0.08);
        assert_eq!(p.next(8), 16);
        p.add(16, 0.02 + 0.16);
        let n = p.next(16);
        assert!((3900..=4000).contains(&n), "{n}");
        // a software adapter: 75 ms fixed, 0.1 ms a step: chunks grow instead of shrinking to 1
        let mut p = Pace::default();
        p.add(8, 75.8);
        p.add(16, 76.6);
        assert_eq!(p.next(16), 1500);
    }
}
