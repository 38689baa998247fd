//! The large-problem path: one run at a time, each optimiser step a short sequence of dispatches
//! (tall-skinny products streaming Σ̂ and G once each, r×r work in one workgroup); a chunk of
//! steps is encoded into one submission and only the per-step (loss, flags) history and the
//! recorded snapshots (risk, ‖AB − Δ‖_F, A, B) are read back. Used for problems above the
//! batched path's size limit, the residual form and the ReLU model.

use super::kernels::{self, encode_all, ew_parts, t_big_scratch, Dispatch, View, MAX_SMALL};
use super::{from_f32, loss_reason, nonfinite_reason, singular_reason, to_f32, GpuBackend};
use crate::config::{Optimiser, StepForm};
use crate::engine::{Advance, EngineError, Factors, Snapshot, StepSettings};
use crate::init::InitFactors;
use web_time::Instant;

/// Most steps encoded in one submission, and most bytes of snapshots read back per submission.
const MAX_STEPS_PER_SUBMIT: usize = 2048;
const MAX_READBACK_BYTES: usize = 48 << 20;

pub(super) struct Run {
    settings: StepSettings,
    d: usize,
    k: usize,
    r: usize,
    step: usize,
    limit: f64,
    c_eff: f64,
    factored: bool,
    pending_singular: bool,
    abuf: wgpu::Buffer,
    bmat: wgpu::Buffer,
    state: wgpu::Buffer,
    hist: wgpu::Buffer,
    rec: wgpu::Buffer,
    hist_cap: usize,
    rec_cap: usize,
    st_words: [u32; 16],
    st_params: wgpu::Buffer,
    eval: Vec<Dispatch>,
    update: Vec<Dispatch>,
    risk: Vec<Dispatch>,
    /// Buffers the dispatches reference (kept alive).
    _keep: Vec<wgpu::Buffer>,
    /// Stopped at a divergence: takes no more steps.
    stopped: bool,
}

struct ChunkOut {
    hist: Vec<f32>,
    rec: Vec<f32>,
    a: Vec<f32>,
    b: Vec<f32>,
}

impl GpuBackend {
    fn build_run(&self, init: &InitFactors, settings: &StepSettings) -> Result<Run, EngineError> {
        let l = self
            .loaded
            .as_ref()
            .ok_or_else(|| EngineError::Unsupported("start before load".into()))?;
        let (d, k) = (l.d, l.k);
        let r = init.a0.ncols();
        if r > MAX_SMALL {
            return Err(EngineError::Unsupported(format!(
                "the GPU backend takes LoRA rank r ≤ {MAX_SMALL} (its r×r kernels run in one workgroup), got {r}"
            )));
        }
        let ctx = &self.ctx;
        let b = self.b();
        let factored = l.form == StepForm::Factored;
        let mut keep: Vec<wgpu::Buffer> = Vec::new();

        let a0 = to_f32(&init.a0);
        let b0 = to_f32(&init.b0);
        let abuf = ctx.storage_init("A", &a0)?;
        let bmat = ctx.storage_init("B", &b0)?;
        let mut tw = vec![0f32; d * 3 * r];
        for i in 0..d {
            for c in 0..r {
                tw[i * 3 * r + r + c] = a0[i * r + c];
            }
        }
        let tws = ctx.storage_init("T", &tw)?;
        let rk = ctx.storage("rk", r * k)?;
        let small = ctx.storage("small", 9 * r * r)?;
        let state = ctx.storage_init("state", &[0.0; 4])?;
        let (a0b, b0b) = if init.offset {
            (ctx.storage_init("A0", &a0)?, ctx.storage_init("B0", &b0)?)
        } else {
            (abuf.clone(), bmat.clone())
        };
        let hist_cap = MAX_STEPS_PER_SUBMIT + 1;
        let hist = ctx.storage("hist", 2 * hist_cap)?;
        let rec_cap = MAX_STEPS_PER_SUBMIT + 1;
        let rec = ctx.storage("rec", 2 * rec_cap)?;

        let mut eval: Vec<Dispatch> = Vec::new();
        let part_small = ctx.storage("part_small", t_big_scratch(k, r, r))?;
        let part_gram = ctx.storage("part_gram", t_big_scratch(d, 3 * r, r))?;
        let nparts;
        let loss_scale;
        if factored {
            let sigma = l.sigma.as_ref().expect("factored form has Σ̂");
            let mut scratch = t_big_scratch(d, k, r)
                .max(t_big_scratch(d, 3 * r, r))
                .max(t_big_scratch(k, r, r));
            if init.offset {
                scratch = scratch.max(d * r);
            }
            let part = ctx.storage("part", scratch)?;
            let geff = if init.offset {
                // G_eff = G + Σ̂ A0 B0
                let geff = ctx.storage("G_eff", d * k)?;
                let sa0 = ctx.storage("SA0", d * r)?;
                let mut enc = self.encoder();
                enc.copy_buffer_to_buffer(&l.g, 0, &geff, 0, (d * k * 4) as u64);
                let [d1, d2] = b.tall_skinny(
                    d,
                    d,
                    r,
                    (sigma, View::rm(d)),
                    (&a0b, View::rm(r)),
                    (&sa0, View::rm(r)),
                    1.0,
                )?;
                let ds = [
                    d1,
                    d2,
                    b.rank_update(
                        d,
                        k,
                        r,
                        (&sa0, View::rm(r)),
                        (&b0b, View::rm(k)),
                        &geff,
                        1.0,
                        1.0,
                    ),
                ];
                encode_all(&mut enc, &ds.iter().collect::<Vec<_>>());
                self.submit(enc);
                keep.push(sa0);
                geff
            } else {
                l.g.clone()
            };
            // the four products that need only A, B and the data, then one dispatch for all
            // four segment sums
            let (ts1, j1) = b.tall_skinny_job(
                d,
                d,
                r,
                (sigma, View::rm(d)),
                (&abuf, View::rm(r)),
                (&tws, View::rm(3 * r)),
                1.0,
            )?;
            let (ts2, j2) = b.tall_skinny_job(
                d,
                k,
                r,
                (&geff, View::rm(k)),
                (&bmat, View::rm_t(k)),
                (&tws, View::rm(3 * r).at(2 * r)),
                1.0,
            )?;
            let (tb1, j3) = b.t_big_job(
                d,
                k,
                r,
                (&abuf, View::rm(r)),
                (&geff, View::rm(k)),
                &part,
                (&rk, View::rm(k)),
                1.0,
                0.0,
            );
            let (tb2, j4) = b.t_big_job(
                k,
                r,
                r,
                (&bmat, View::rm_t(k)),
                (&bmat, View::rm_t(k)),
                &part_small,
                (&small, View::rm(r).at(3 * r * r)),
                1.0,
                0.0,
            );
            let red = b.reduce_multi(&[&j1, &j2, &j3, &j4]);
            eval.extend([ts1, ts2, tb1, tb2, red]);
            nparts = 0;
            loss_scale = 0.0;
            keep.push(geff);
            keep.push(part);
        } else {
            let n = l.n;
            let x = l.x.as_ref().expect("residual form keeps X");
            let y = l.y.as_ref().expect("residual form keeps Y");
            let z0 = l.z0.as_ref().expect("residual form keeps Z0");
            let scratch = t_big_scratch(n, d, r)
                .max(t_big_scratch(n, k, r))
                .max(t_big_scratch(d, 3 * r, r))
                .max(t_big_scratch(k, r, r));
            let part = ctx.storage("part", scratch)?;
            let xa = ctx.storage("XA", n * r)?;
            let rbuf = ctx.storage("R", n * k)?;
            let rbt = ctx.storage("RBt", n * r)?;
            nparts = ew_parts(n * k);
            let lossparts = ctx.storage("lossparts", nparts)?;
            let z0eff = if init.offset {
                // X W_frozen = X W0 − (X A0) B0
                let z = ctx.storage("Z0_eff", n * k)?;
                let mut enc = self.encoder();
                enc.copy_buffer_to_buffer(z0, 0, &z, 0, (n * k * 4) as u64);
                let [d1, d2] = b.tall_skinny(
                    n,
                    d,
                    r,
                    (x, View::rm(d)),
                    (&a0b, View::rm(r)),
                    (&xa, View::rm(r)),
                    1.0,
                )?;
                let ds = [
                    d1,
                    d2,
                    b.rank_update(
                        n,
                        k,
                        r,
                        (&xa, View::rm(r)),
                        (&b0b, View::rm(k)),
                        &z,
                        -1.0,
                        1.0,
                    ),
                ];
                encode_all(&mut enc, &ds.iter().collect::<Vec<_>>());
                self.submit(enc);
                z
            } else {
                z0.clone()
            };
            let inv_n = 1.0 / n as f32;
            eval.extend(b.tall_skinny(
                n,
                d,
                r,
                (x, View::rm(d)),
                (&abuf, View::rm(r)),
                (&xa, View::rm(r)),
                1.0,
            )?);
            eval.push(b.residual(n, k, r, l.relu, &xa, &bmat, &rbuf, &lossparts, &z0eff, y));
            eval.extend(b.tall_skinny(
                n,
                k,
                r,
                (&rbuf, View::rm(k)),
                (&bmat, View::rm_t(k)),
                (&rbt, View::rm(r)),
                1.0,
            )?);
            eval.extend(b.t_big(
                n,
                d,
                r,
                (&rbt, View::rm(r)),
                (x, View::rm(d)),
                &part,
                (
                    &tws,
                    View {
                        off: (2 * r) as u32,
                        s0: 1,
                        s1: (3 * r) as u32,
                    },
                ),
                -inv_n,
                0.0,
            ));
            eval.extend(b.t_big(
                n,
                k,
                r,
                (&xa, View::rm(r)),
                (&rbuf, View::rm(k)),
                &part,
                (&rk, View::rm(k)),
                -inv_n,
                0.0,
            ));
            loss_scale = 0.5 * inv_n;
            keep.extend([part, xa, rbuf, rbt, z0eff]);
            keep.push(lossparts);
        }
        // Aᵀ[SA | A | GBᵀ]: partials only; small_step sums its segments
        let (gram_d, gram_job) = b.t_big_job(
            d,
            3 * r,
            r,
            (&abuf, View::rm(r)),
            (&tws, View::rm(3 * r)),
            &part_gram,
            (&small, View::rm(3 * r)),
            1.0,
            0.0,
        );
        eval.push(gram_d);
        if !factored {
            eval.extend(b.t_big(
                k,
                r,
                r,
                (&bmat, View::rm_t(k)),
                (&bmat, View::rm_t(k)),
                &part_small,
                (&small, View::rm(r).at(3 * r * r)),
                1.0,
                0.0,
            ));
        }
        let lossparts = if factored {
            ctx.storage("lossparts", 1)?
        } else {
            keep.last().expect("lossparts").clone()
        };
        let precond = settings.optimiser == Optimiser::Preconditioned;
        let st_words: [u32; 16] = [
            d as u32,
            k as u32,
            r as u32,
            (!factored) as u32,
            precond as u32,
            nparts as u32,
            gram_job.nseg as u32,
            0,
            (settings.eta as f32).to_bits(),
            (settings.damping as f32).to_bits(),
            0f32.to_bits(),
            f32::MAX.to_bits(),
            loss_scale.to_bits(),
            0,
            0,
            0,
        ];
        let (small_d, uab, st_params) = b.step_kernels(
            &st_words, d, k, r, &small, &state, &tws, &bmat, &rk, &abuf, &hist, &lossparts,
            &part_gram,
        );
        eval.push(small_d);
        let riskparts = ctx.storage("riskparts", 2 * kernels::risk_split(d * k).1)?;
        let risk = b.risk(
            d,
            k,
            r,
            init.offset,
            &abuf,
            &bmat,
            &a0b,
            &b0b,
            &l.delta,
            &riskparts,
            &rec,
            &state,
        );
        keep.extend([
            tws, rk, small, a0b, b0b, riskparts, part_small, part_gram, lossparts,
        ]);
        Ok(Run {
            settings: *settings,
            d,
            k,
            r,
            step: 0,
            limit: f64::INFINITY,
            c_eff: 0.0,
            factored,
            pending_singular: false,
            abuf,
            bmat,
            state,
            hist,
            rec,
            hist_cap,
            rec_cap,
            st_words,
            st_params,
            eval,
            update: vec![uab],
            risk: risk.into_iter().collect(),
            _keep: keep,
            stopped: false,
        })
    }

    /// Encode `n` steps (n = 0: only the evaluation of the current state, for `start`) in one
    /// submission, recording at the steps for which `rec_at(i)` holds (i = 1..=n; i = 0 for the
    /// start). Returns (hist, rec, A snaps, B snaps) as read back.
    async fn run_chunk(
        &self,
        run: &Run,
        start: bool,
        n: usize,
        recs: &[bool],
    ) -> Result<ChunkOut, EngineError> {
        let (d, k, r) = (run.d, run.k, run.r);
        let evals = if start { 1 } else { n };
        let nrec = recs.iter().filter(|&&x| x).count();
        let a_bytes = (d * r * 4) as u64;
        let b_bytes = (r * k * 4) as u64;
        let off_rec = (2 * evals * 4) as u64;
        let off_a = off_rec + (2 * nrec * 4) as u64;
        let off_b = off_a + nrec as u64 * a_bytes;
        let total = off_b + nrec as u64 * b_bytes;
        let rb = self.ctx.readback_buffer(total)?;
        self.ctx
            .queue
            .write_buffer(&run.state, 0, bytemuck::cast_slice(&[0u32; 4]));
        let mut enc = self.encoder();
        let mut ri = 0u64;
        let mut pending: Vec<&Dispatch> = Vec::new();
        for &rec_here in recs.iter().take(evals) {
            if !start {
                pending.extend(run.update.iter());
            }
            pending.extend(run.eval.iter());
            if rec_here {
                pending.extend(run.risk.iter());
                encode_all(&mut enc, &pending);
                pending.clear();
                enc.copy_buffer_to_buffer(&run.abuf, 0, &rb, off_a + ri * a_bytes, a_bytes);
                enc.copy_buffer_to_buffer(&run.bmat, 0, &rb, off_b + ri * b_bytes, b_bytes);
                ri += 1;
            }
        }
        if !pending.is_empty() {
            encode_all(&mut enc, &pending);
        }
        enc.copy_buffer_to_buffer(&run.hist, 0, &rb, 0, off_rec);
        if nrec > 0 {
            enc.copy_buffer_to_buffer(&run.rec, 0, &rb, off_rec, (2 * nrec * 4) as u64);
        }
        self.submit(enc);
        let all = self.ctx.read(&rb, (total / 4) as usize).await?;
        let off = |x: u64| (x / 4) as usize;
        Ok(ChunkOut {
            hist: all[..off(off_rec)].to_vec(),
            rec: all[off(off_rec)..off(off_a)].to_vec(),
            a: all[off(off_a)..off(off_b)].to_vec(),
            b: all[off(off_b)..].to_vec(),
        })
    }

    /// Per-kernel GPU time of one step of the run in progress: each dispatch of the step is
    /// encoded `reps` times in one submission and timed by wall clock (µs per dispatch, in step
    /// order), then the whole step (`"step"`). For benchmarks; it moves the run's state.
    /// Only for a run on the large path (`GpuOptions::batched_max_dim` below its size).
    pub async fn profile_step(&self, reps: usize) -> Result<Vec<(String, f64)>, EngineError> {
        let run = match &self.batch {
            Some(super::BatchState::Single(runs)) if !runs.is_empty() => &runs[0],
            _ => {
                return Err(EngineError::Unsupported(
                    "profile_step needs a run on the large (single-run) path".into(),
                ))
            }
        };
        let reps = reps.clamp(1, MAX_STEPS_PER_SUBMIT);
        let mut out = Vec::new();
        let all: Vec<&Dispatch> = run.update.iter().chain(run.eval.iter()).collect();
        for d in &all {
            let us = self
                .time_dispatches(&run.state, &vec![*d; reps], reps)
                .await?;
            out.push((d.name.to_string(), us));
        }
        let mut step = Vec::new();
        for _ in 0..reps {
            step.extend(all.iter().copied());
        }
        out.push((
            "step".into(),
            self.time_dispatches(&run.state, &step, reps).await?,
        ));
        self.ctx.check()?;
        Ok(out)
    }

    async fn time_dispatches(
        &self,
        state: &wgpu::Buffer,
        ds: &[&Dispatch],
        reps: usize,
    ) -> Result<f64, EngineError> {
        self.ctx
            .queue
            .write_buffer(state, 0, bytemuck::cast_slice(&[0u32; 4]));
        self.ctx.finish().await?;
        let t = Instant::now();
        let mut enc = self.encoder();
        encode_all(&mut enc, ds);
        self.submit(enc);
        self.ctx.finish().await?;
        Ok(t.elapsed().as_secs_f64() * 1e6 / reps as f64)
    }

    fn write_params(&self, run: &mut Run) {
        run.st_words[10] = (run.c_eff as f32).to_bits();
        run.st_words[11] = (run.limit.min(f32::MAX as f64) as f32).to_bits();
        self.ctx
            .queue
            .write_buffer(&run.st_params, 0, bytemuck::cast_slice(&run.st_words));
    }

    /// Allocate a run and evaluate its step 0.
    pub(super) async fn start_single(
        &mut self,
        init: &InitFactors,
        settings: &StepSettings,
    ) -> Result<(Run, Advance), EngineError> {
        let mut run = self
            .ctx
            .scoped("allocating a run", || self.build_run(init, settings))
            .await??;
        let t0 = Instant::now();
        let out = self.run_chunk(&run, true, 0, &[true]).await?;
        let c0 = self.loaded.as_ref().map_or(0.0, |l| l.c0);
        let h0 = out.hist[0] as f64;
        let flags = out.hist[1];
        // The small kernel ran with c = 0: for the factored form the loss is h0 + c_eff, where an
        // offset run's c_eff makes the t = 0 loss equal the unmodified model's loss c0.
        let loss = if run.factored {
            run.c_eff = if init.offset { c0 - h0 } else { c0 };
            h0 + run.c_eff
        } else {
            h0
        };
        run.limit = settings.divergence_factor * loss.abs().max(1.0);
        self.write_params(&mut run);
        let mut adv = Advance::default();
        if !loss.is_finite() || flags as u32 & 1 != 0 {
            adv.diverged = Some(nonfinite_reason(0));
        } else if loss > run.limit {
            adv.diverged = Some(loss_reason(loss, settings.divergence_factor, 0));
        } else {
            adv.snapshots.push(Snapshot {
                step: 0,
                loss,
                risk: out.rec[0] as f64,
                err_f: out.rec[1] as f64,
                factors: Factors::Full {
                    a: from_f32(&out.a, run.d, run.r),
                    b: from_f32(&out.b, run.r, run.k),
                },
                t_ms: t0.elapsed().as_secs_f64() * 1e3,
            });
        }
        run.pending_singular = flags as u32 & 2 != 0;
        run.stopped = adv.diverged.is_some();
        Ok((run, adv))
    }

    /// Advance one run of the large path.
    pub(super) async fn advance_single(
        &self,
        run: &mut Run,
        steps: usize,
    ) -> Result<Advance, EngineError> {
        if run.stopped {
            return Ok(Advance::default());
        }
        let t0 = Instant::now();
        let mut adv = Advance::default();
        let mut left = steps;
        let per_rec = (run.d * run.r + run.r * run.k + 2) * 4;
        'outer: while left > 0 {
            if run.pending_singular {
                adv.diverged = Some(singular_reason(run.step + 1));
                break;
            }
            // this submission: up to MAX_STEPS_PER_SUBMIT steps and MAX_READBACK_BYTES of records
            let mut n = 0;
            let mut bytes = 0;
            let mut recs = Vec::new();
            while n < left && n < MAX_STEPS_PER_SUBMIT.min(run.hist_cap).min(run.rec_cap) {
                let rec = run.settings.records(run.step + n + 1);
                if rec && bytes + per_rec > MAX_READBACK_BYTES && n > 0 {
                    break;
                }
                if rec {
                    bytes += per_rec;
                }
                recs.push(rec);
                n += 1;
            }
            let out = self.run_chunk(run, false, n, &recs).await?;
            let elapsed = t0.elapsed().as_secs_f64() * 1e3;
            let mut ri = 0;
            let (d, k, r) = (run.d, run.k, run.r);
            #[allow(clippy::needless_range_loop)]
            for i in 0..n {
                if run.pending_singular {
                    adv.diverged = Some(singular_reason(run.step + 1));
                    break 'outer;
                }
                run.step += 1;
                let loss = out.hist[2 * i] as f64;
                let flags = out.hist[2 * i + 1] as u32;
                if !loss.is_finite() || flags & 1 != 0 {
                    adv.diverged = Some(nonfinite_reason(run.step));
                    break 'outer;
                }
                if loss > run.limit {
                    adv.diverged =
                        Some(loss_reason(loss, run.settings.divergence_factor, run.step));
                    break 'outer;
                }
                if recs[i] {
                    adv.snapshots.push(Snapshot {
                        step: run.step,
                        loss,
                        risk: out.rec[2 * ri] as f64,
                        err_f: out.rec[2 * ri + 1] as f64,
                        factors: Factors::Full {
                            a: from_f32(&out.a[ri * d * r..(ri + 1) * d * r], d, r),
                            b: from_f32(&out.b[ri * r * k..(ri + 1) * r * k], r, k),
                        },
                        // per-step GPU times are not measured: spread the submission evenly
                        t_ms: elapsed * (i + 1) as f64 / n as f64,
                    });
                    ri += 1;
                }
                run.pending_singular = flags & 2 != 0;
            }
            left -= n;
        }
        run.stopped = adv.diverged.is_some();
        self.ctx.check()?;
        Ok(adv)
    }
}
