//! GPU benchmarks (issue 3): f32 matmul throughput, the top-8 spectral init of a planted
//! 4096×4096 G (time and accuracy), one GD / preconditioned GD step at d = k = 4096, r = 8, and
//! both presets end to end. Prints one `RESULT {json}` line per measurement; `bench/h200.sh` runs
//! it next to `bench/torch_baselines.py` on the same GPU.
//!
//! Issue 7: `batched` measures the batched small-problem path: an ensemble of B vanilla
//! trajectories (d = k ∈ {100, 400, 1000}, 1500 steps, every 10th recorded) end to end, next to
//! the CPU reference on the same host (a subset of the runs, scaled linearly: the CPU computes a
//! batch run by run), and writes the problem for `bench/torch_batched.py`.
//!
//! Issue 9: `digits` times the digits model (SPEC §9) on the GPU backend next to the CPU
//! reference in the same process: one forward+backward pass over the fine-tuning train split at
//! h ∈ {32, 128, 512}, and the default `digits` preset end to end.
//!
//! Usage: gpu-bench [--quick] [--dump DIR] [--only matmul,svd,step,presets,batched,digits]
//!   --quick  small sizes (a software adapter such as lavapipe)
//!   --dump   write the planted G (f32, row-major) and its true top-8 U, V for the PyTorch script

#[cfg(any(not(feature = "gpu"), not(feature = "cli"), target_arch = "wasm32"))]
fn main() {
    eprintln!("gpu-bench needs the `gpu` and `cli` features on a native target");
}

#[cfg(all(feature = "gpu", feature = "cli", not(target_arch = "wasm32")))]
fn main() {
    if let Err(e) = bench::main() {
        eprintln!("gpu-bench failed: {e}");
        std::process::exit(1);
    }
}

#[cfg(all(feature = "gpu", feature = "cli", not(target_arch = "wasm32")))]
mod bench {
    use lora_one_lab::config::{Optimiser, Preset};
    use lora_one_lab::cpu::CpuBackend;
    use lora_one_lab::engine::{step_flops, Backend, EngineError, StepSettings};
    use lora_one_lab::gpu::{to_f32, GpuBackend, GpuOptions};
    use lora_one_lab::init::InitFactors;
    use lora_one_lab::linalg::{orthonormalize, sin_theta};
    use lora_one_lab::rng::Rng;
    use lora_one_lab::Experiment;
    use nalgebra::{DMatrix, DVector};
    use pollster::block_on;
    use std::time::Instant;

    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    }

    fn result(kind: &str, fields: serde_json::Value) {
        let mut obj = serde_json::json!({ "bench": kind, "impl": "wgpu" });
        if let (Some(o), Some(f)) = (obj.as_object_mut(), fields.as_object()) {
            for (k, v) in f {
                o.insert(k.clone(), v.clone());
            }
        }
        println!("RESULT {obj}");
    }

    struct Planted {
        g: DMatrix<f64>,
        u8: DMatrix<f64>,
        v8: DMatrix<f64>,
        s: Vec<f64>,
    }

    /// G = U diag(s) Vᵀ, rank 32: s = 1.0, 0.9, …, 0.3 (top 8), then 0.2·0.9^i.
    fn planted(d: usize, k: usize) -> Planted {
        let rank = 32.min(d.min(k));
        let u = orthonormalize(&Rng::new(7, 501).normal_matrix(d, rank, 1.0));
        let v = orthonormalize(&Rng::new(7, 502).normal_matrix(k, rank, 1.0));
        let s: Vec<f64> = (0..rank)
            .map(|i| {
                if i < 8 {
                    1.0 - 0.1 * i as f64
                } else {
                    0.2 * 0.9f64.powi(i as i32 - 8)
                }
            })
            .collect();
        let g = &u * DMatrix::from_diagonal(&DVector::from_vec(s.clone())) * v.transpose();
        let m = 8.min(rank);
        Planted {
            g,
            u8: u.columns(0, m).into_owned(),
            v8: v.columns(0, m).into_owned(),
            s,
        }
    }

    fn write_f32(path: &std::path::Path, m: &DMatrix<f64>) -> std::io::Result<()> {
        let v = to_f32(m);
        std::fs::write(path, bytemuck_bytes(&v))
    }

    fn bytemuck_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    /// The digits model: one pass (forward + backward) and the default preset, GPU and CPU.
    fn digits(g: &mut GpuBackend, quick: bool) -> Result<(), EngineError> {
        use lora_one_lab::digits::{self, Digits, FtConfig, FtMethod, Net};
        let data = Digits::embedded();
        let (_, even) = digits::tasks(&data, 0);
        let (x, y) = (&even.train_x, &even.train_y);
        let n = x.nrows();
        let hs: &[usize] = if quick { &[32, 128] } else { &[32, 128, 512] };
        for &h in hs {
            let net = Net::init(h, 5, 0);
            let flops = 3.0 * 2.0 * (n * (64 * h + h * 5)) as f64;
            let reps = 30;
            let mut gpu_us = Vec::new();
            let mut cpu_us = Vec::new();
            block_on(g.mlp_eval(&net, x, y, true))?;
            for _ in 0..reps {
                let t = Instant::now();
                block_on(g.mlp_eval(&net, x, y, true))?;
                gpu_us.push(t.elapsed().as_secs_f64() * 1e6);
                let t = Instant::now();
                std::hint::black_box(net.eval(x, y, true));
                cpu_us.push(t.elapsed().as_secs_f64() * 1e6);
            }
            let (gm, cm) = (median(gpu_us.clone()), median(cpu_us.clone()));
            eprintln!(
                "digits pass n={n} h={h}: GPU {gm:.0} µs, CPU {cm:.0} µs ({:.2} vs {:.2} GFLOP/s)",
                flops / gm / 1e3,
                flops / cm / 1e3
            );
            result(
                "digits_pass",
                serde_json::json!({"n": n, "hidden": h, "flops": flops, "gpu_us": gm, "cpu_us": cm,
                    "gpu_samples_us": gpu_us, "cpu_samples_us": cpu_us}),
            );
        }
        // the floor of one pass: the same submission and readback on one sample, two units
        {
            let net = Net::init(2, 5, 0);
            let (x1, y1) = (x.rows(0, 1).into_owned(), vec![y[0]]);
            block_on(g.mlp_eval(&net, &x1, &y1, true))?;
            let mut us = Vec::new();
            for _ in 0..30 {
                let t = Instant::now();
                block_on(g.mlp_eval(&net, &x1, &y1, true))?;
                us.push(t.elapsed().as_secs_f64() * 1e6);
            }
            let m = median(us.clone());
            eprintln!("digits pass floor (n=1, h=2): GPU {m:.0} µs");
            result(
                "digits_floor",
                serde_json::json!({"gpu_us": m, "gpu_samples_us": us}),
            );
        }
        let mut cfg = FtConfig::default();
        if quick {
            cfg.seeds = 1;
            cfg.pre_steps = 60;
            cfg.steps = 20;
        }
        let methods = FtMethod::for_config(&cfg);
        let (mut gpu_ms, mut cpu_ms) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            let t = Instant::now();
            block_on(digits::run_on(g, &data, &cfg, &methods))?;
            gpu_ms.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            std::hint::black_box(digits::run(&data, &cfg, &methods));
            cpu_ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let (gm, cm) = (median(gpu_ms.clone()), median(cpu_ms.clone()));
        eprintln!("digits preset: GPU {gm:.0} ms, CPU reference {cm:.0} ms");
        result(
            "digits_preset",
            serde_json::json!({"gpu_ms": gm, "cpu_ms": cm, "gpu_samples_ms": gpu_ms,
                "cpu_samples_ms": cpu_ms, "seeds": cfg.seeds, "steps": cfg.steps}),
        );
        Ok(())
    }

    pub fn main() -> Result<(), EngineError> {
        let args: Vec<String> = std::env::args().collect();
        let quick = args.iter().any(|a| a == "--quick");
        let dump = args
            .iter()
            .position(|a| a == "--dump")
            .map(|i| args[i + 1].clone());
        let only: Option<Vec<String>> = args
            .iter()
            .position(|a| a == "--only")
            .map(|i| args[i + 1].split(',').map(String::from).collect());
        let want = |s: &str| only.as_ref().is_none_or(|o| o.iter().any(|x| x == s));

        let mut g = block_on(GpuBackend::new())?;
        eprintln!("adapter: {}", g.adapter());
        result("adapter", serde_json::json!({ "adapter": g.adapter() }));

        if want("matmul") {
            let sizes: &[usize] = if quick {
                &[128, 256, 512]
            } else {
                &[1024, 2048, 4096, 8192]
            };
            for trusted in [false, true] {
                let gb = if trusted {
                    block_on(GpuBackend::with_options(GpuOptions {
                        trusted_shaders: true,
                        ..Default::default()
                    }))?
                } else {
                    block_on(GpuBackend::new())?
                };
                for &n in sizes {
                    let reps = (8192 / n).clamp(3, 40);
                    let mut samples = Vec::new();
                    for _ in 0..3 {
                        samples.push(block_on(gb.bench_matmul(n, n, n, reps))?);
                    }
                    let s = median(samples.clone());
                    let tflops = 2.0 * (n as f64).powi(3) / s / 1e12;
                    eprintln!(
                        "matmul {n}³ bounds_checks={}: {:.3} ms, {tflops:.4} TFLOP/s",
                        !trusted,
                        s * 1e3
                    );
                    result(
                        "matmul",
                        serde_json::json!({"n": n, "bounds_checks": !trusted, "ms": s * 1e3,
                            "tflops": tflops, "samples_ms": samples.iter().map(|x| x * 1e3).collect::<Vec<_>>()}),
                    );
                }
            }
        }

        let (d, k) = if quick { (512, 512) } else { (4096, 4096) };
        let pl = if want("svd") || want("step") {
            Some(planted(d, k))
        } else {
            None
        };
        if let (Some(dir), Some(pl)) = (&dump, &pl) {
            let dir = std::path::Path::new(dir);
            std::fs::create_dir_all(dir).map_err(|e| EngineError::Unsupported(e.to_string()))?;
            write_f32(&dir.join("G.f32"), &pl.g)
                .map_err(|e| EngineError::Unsupported(e.to_string()))?;
            write_f32(&dir.join("U8.f32"), &pl.u8)
                .map_err(|e| EngineError::Unsupported(e.to_string()))?;
            write_f32(&dir.join("V8.f32"), &pl.v8)
                .map_err(|e| EngineError::Unsupported(e.to_string()))?;
            std::fs::write(dir.join("shape.txt"), format!("{d} {k}"))
                .map_err(|e| EngineError::Unsupported(e.to_string()))?;
        }

        if want("svd") {
            let pl = pl.as_ref().expect("planted");
            let gf = to_f32(&pl.g);
            block_on(g.load_factored(d, k, None, &gf, &gf, 0.0))?;
            for iters in [0, 1, 2, 3, 4] {
                g.svd_oversample = 8;
                g.svd_iters = iters;
                // first call: builds and caches the plan (buffers, bind groups)
                let t = Instant::now();
                block_on(g.top_svd(8))?;
                let cold_ms = t.elapsed().as_secs_f64() * 1e3;
                let mut samples = Vec::new();
                let mut acc = 0.0;
                for _ in 0..7 {
                    let t = Instant::now();
                    let s = block_on(g.top_svd(8))?;
                    samples.push(t.elapsed().as_secs_f64() * 1e3);
                    acc = sin_theta(&pl.u8, &s.u).max(sin_theta(&pl.v8, &s.v));
                }
                let ms = median(samples.clone());
                eprintln!("top-8 SVD {d}×{k}, p = 8, q = {iters}: {ms:.3} ms (first call {cold_ms:.2} ms), sin θ = {acc:.2e}");
                result(
                    "svd",
                    serde_json::json!({"d": d, "k": k, "m": 8, "oversample": 8, "iters": iters,
                        "ms": ms, "first_call_ms": cold_ms, "sin_theta": acc, "samples_ms": samples}),
                );
            }
        }

        if want("step") {
            let pl = pl.as_ref().expect("planted");
            let r = 8;
            // Σ̂ = I + small symmetric noise (dense: the step really streams d² values)
            let z = Rng::new(9, 503).normal_matrix(d, d, 0.01 / (d as f64).sqrt());
            let sigma = DMatrix::<f64>::identity(d, d) + (&z + z.transpose()) * 0.5;
            let sf = to_f32(&sigma);
            let gf = to_f32(&pl.g);
            let kchunks: Vec<usize> = std::env::var("TS_KCHUNKS")
                .ok()
                .map(|v| v.split(',').filter_map(|x| x.parse().ok()).collect())
                .unwrap_or_else(|| vec![256]);
            for (trusted, kc) in [false, true]
                .into_iter()
                .flat_map(|t| kchunks.iter().map(move |&k| (t, k)))
            {
                let mut gb = block_on(GpuBackend::with_options(GpuOptions {
                    trusted_shaders: trusted,
                    ts_kchunk: kc,
                    ..Default::default()
                }))?;
                block_on(gb.load_factored(d, k, Some(&sf), &gf, &gf, 0.5))?;
                for opt in [Optimiser::Gd, Optimiser::Preconditioned] {
                    let sq: Vec<f64> = pl.s.iter().take(r).map(|x| x.sqrt() * 0.5).collect();
                    let mut a0 = pl.u8.clone();
                    let mut b0 = pl.v8.transpose();
                    for (i, &w) in sq.iter().enumerate() {
                        a0.column_mut(i).scale_mut(w);
                        b0.row_mut(i).scale_mut(w);
                    }
                    let init = InitFactors {
                        a0,
                        b0,
                        offset: false,
                    };
                    let settings = StepSettings {
                        eta: 0.05,
                        optimiser: opt,
                        damping: 1e-3,
                        record_every: 1 << 30,
                        last_step: 1 << 30,
                        divergence_factor: 1e8,
                    };
                    block_on(gb.start(&init, &settings))?;
                    block_on(gb.advance(5))?;
                    let mut per = Vec::new();
                    for _ in 0..3 {
                        let t = Instant::now();
                        block_on(gb.advance(10))?;
                        let t10 = t.elapsed().as_secs_f64();
                        let t = Instant::now();
                        let adv = block_on(gb.advance(110))?;
                        let t110 = t.elapsed().as_secs_f64();
                        if let Some(dv) = adv.diverged {
                            return Err(EngineError::Unsupported(format!(
                                "bench run diverged: {}",
                                dv.reason
                            )));
                        }
                        per.push((t110 - t10) / 100.0 * 1e6);
                    }
                    let us = median(per.clone());
                    let prof = block_on(gb.profile_step(50))?;
                    let total: f64 = prof
                        .iter()
                        .filter(|(n, _)| n != "step")
                        .map(|(_, u)| u)
                        .sum();
                    eprintln!(
                        "  per kernel (µs): {} | sum {total:.1}",
                        prof.iter()
                            .map(|(n, u)| format!("{n} {u:.1}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    result(
                        "step_profile",
                        serde_json::json!({"optimiser": format!("{opt:?}"), "bounds_checks": !trusted,
                            "kernels_us": prof.iter().map(|(n, u)| serde_json::json!([n, u])).collect::<Vec<_>>()}),
                    );
                    eprintln!(
                        "step d=k={d} r={r} {opt:?} bounds_checks={}: {us:.1} µs/step",
                        !trusted
                    );
                    result(
                        "step",
                        serde_json::json!({"d": d, "k": k, "r": r, "optimiser": format!("{opt:?}"),
                            "bounds_checks": !trusted, "us_per_step": us, "samples_us": per,
                            "bytes_streamed": 4 * (d * d + 2 * d * k)}),
                    );
                }
            }
        }

        if want("batched") {
            batched(quick, dump.as_deref())?;
        }

        if want("digits") {
            digits(&mut g, quick)?;
        }

        if want("presets") {
            for preset in [Preset::Alignment, Preset::Spectral] {
                let (gpu_ms, cpu_ms) = end_to_end(&preset.config(), &mut g)?;
                let (gm, cm) = (median(gpu_ms.clone()), median(cpu_ms.clone()));
                eprintln!("preset {}: GPU {gm:.1} ms, CPU reference {cm:.1} ms (end to end, every step recorded)", preset.name());
                result(
                    "preset",
                    serde_json::json!({"preset": preset.name(), "gpu_ms": gm, "cpu_ms": cm,
                        "gpu_samples_ms": gpu_ms, "cpu_samples_ms": cpu_ms}),
                );
            }
            // where the alignment preset's time goes: the same runs recording every 10th step
            // and only the last (the records' cost is the difference)
            for every in [10usize, 1500] {
                let mut cfg = Preset::Alignment.config();
                cfg.record_every = every;
                let (gpu_ms, cpu_ms) = end_to_end(&cfg, &mut g)?;
                let (gm, cm) = (median(gpu_ms.clone()), median(cpu_ms.clone()));
                eprintln!("alignment, every {every}th step recorded: GPU {gm:.1} ms, CPU reference {cm:.1} ms");
                result(
                    "preset_records",
                    serde_json::json!({"preset": "alignment", "record_every": every, "gpu_ms": gm,
                        "cpu_ms": cm, "gpu_samples_ms": gpu_ms, "cpu_samples_ms": cpu_ms}),
                );
            }
        }
        Ok(())
    }

    /// Wall ms of `cfg` end to end (load, SVD, every run): three GPU runs back to back after one
    /// untimed run (an idle GPU clocks down and takes tens of ms to come back up), then three on
    /// the CPU reference in the same process.
    fn end_to_end(
        cfg: &lora_one_lab::Config,
        g: &mut GpuBackend,
    ) -> Result<(Vec<f64>, Vec<f64>), EngineError> {
        let (mut gpu_ms, mut cpu_ms) = (Vec::new(), Vec::new());
        for rep in 0..4 {
            let mut e = Experiment::new(cfg).map_err(EngineError::Config)?;
            let t = Instant::now();
            block_on(e.run_to_end(g, usize::MAX, |_| {}))?;
            if rep > 0 {
                gpu_ms.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
        for _ in 0..3 {
            let mut e = Experiment::new(cfg).map_err(EngineError::Config)?;
            let t = Instant::now();
            block_on(e.run_to_end(&mut CpuBackend::new(), usize::MAX, |_| {}))?;
            cpu_ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        Ok((gpu_ms, cpu_ms))
    }

    /// Wall ms per batch step of `cfg` on a backend (load and SVD excluded; records every 10).
    fn ms_per_step<B: Backend>(cfg: &lora_one_lab::Config, be: &mut B) -> Result<f64, EngineError> {
        let mut e = Experiment::new(cfg).map_err(EngineError::Config)?;
        block_on(e.prepare(be))?;
        let t = Instant::now();
        block_on(e.run_to_end(be, usize::MAX, |_| {}))?;
        Ok(t.elapsed().as_secs_f64() * 1e3 / cfg.steps as f64)
    }

    /// The GPU/CPU crossover of the batched path: ms per batch step on both backends over d and
    /// the number of runs (vanilla ensembles, r = 8 or less, 200 steps, every 10th recorded).
    fn crossover(g: &mut GpuBackend, quick: bool) -> Result<(), EngineError> {
        let ds: &[usize] = if quick {
            &[8, 32]
        } else {
            &[4, 8, 16, 32, 64, 100, 200]
        };
        let bs: &[usize] = if quick { &[1, 8] } else { &[1, 4, 16, 64, 256] };
        for &d in ds {
            for &b in bs {
                let mut cfg = Preset::Alignment.config();
                cfg.d = d;
                cfg.k = d;
                cfg.r = 8.min(d / 2).max(1);
                cfg.r_star = (cfg.r / 2).max(1);
                cfg.alpha2 = vec![1e-3];
                cfg.seeds = b;
                cfg.steps = 200;
                cfg.record_every = 10;
                let gm = median(
                    (0..3)
                        .map(|_| ms_per_step(&cfg, g))
                        .collect::<Result<Vec<_>, _>>()?,
                );
                let mut c = CpuBackend::new();
                let creps = if b * d >= 6400 { 1 } else { 3 };
                let cm = median(
                    (0..creps)
                        .map(|_| ms_per_step(&cfg, &mut c))
                        .collect::<Result<Vec<_>, _>>()?,
                );
                let flops = step_flops(d, d, cfg.r) * b as f64;
                eprintln!(
                    "crossover d=k={d} r={} B={b}: GPU {:.4} ms/step, CPU {:.4} ms/step (GPU/CPU speed-up {:.2}×; {:.2e} flop per batch step)",
                    cfg.r, gm, cm, cm / gm, flops
                );
                result(
                    "crossover",
                    serde_json::json!({"d": d, "r": cfg.r, "trajectories": b, "gpu_ms_per_step": gm,
                        "cpu_ms_per_step": cm, "flops_per_batch_step": flops}),
                );
            }
        }
        Ok(())
    }

    /// One dispatch of n steps, no records: the kernel's own time per step (slope over n) and
    /// its fixed cost, for d = 100, r = 8 and several batch sizes; and the cost of the CPU twin
    /// of the records' alignment metrics (r×r Grams → sin θ, σ(AB): what the host paid per
    /// record before they moved to the GPU).
    fn kernel_profile(g: &mut GpuBackend, quick: bool) -> Result<(), EngineError> {
        use lora_one_lab::engine::{MetricBasis, RunSpec};
        // PROFILE_B=1,396,399 profiles those batch sizes instead (396 and 399 runs straddle one
        // pack of 3 per SM of the H200)
        let picked: Option<Vec<usize>> = std::env::var("PROFILE_B")
            .ok()
            .map(|v| v.split(',').filter_map(|x| x.parse().ok()).collect());
        let bs: &[usize] = match &picked {
            Some(v) => v,
            None if quick => &[1, 16],
            None => &[1, 16, 128, 1024],
        };
        let mut cfg = Preset::Alignment.config();
        cfg.alpha2 = vec![1e-3];
        let p = lora_one_lab::Problem::generate(&cfg).map_err(EngineError::Config)?;
        block_on(g.load(&p))?;
        let svd = lora_one_lab::linalg::exact_top_svd(
            &{
                let mut c = CpuBackend::new();
                block_on(c.load(&p))?;
                c.g().expect("G").clone()
            },
            8,
        );
        let basis = MetricBasis {
            u: svd.u.columns(0, 4).into_owned(),
            v: svd.v.columns(0, 4).into_owned(),
        };
        // b vanilla draws recording every `every` steps
        let specs = |b: usize, every: usize| -> Vec<RunSpec> {
            (0..b)
                .map(|i| RunSpec {
                    init: lora_one_lab::init::vanilla_draw(&cfg, 1e-3, i),
                    settings: StepSettings {
                        eta: cfg.eta,
                        optimiser: Optimiser::Gd,
                        damping: 1e-3,
                        record_every: every,
                        last_step: 1 << 30,
                        divergence_factor: 1e8,
                    },
                })
                .collect()
        };
        for &b in bs {
            block_on(g.start_batch(&specs(b, 1 << 30), &basis))?;
            let mut pts = Vec::new();
            for n in [1usize, 1, 10, 100, 1000] {
                let ms = median(
                    (0..3)
                        .map(|_| block_on(g.time_batched_dispatch(n, false)))
                        .collect::<Result<Vec<_>, _>>()?,
                );
                pts.push((n, ms));
            }
            let (n1, t1) = pts[1];
            let (n2, t2) = pts[4];
            let per = (t2 - t1) / (n2 - n1) as f64;
            eprintln!(
                "kernel d=k=100 r=8 B={b}: one dispatch {:?}; {:.1} µs a step, {:.3} ms fixed; {:.2} M traj-steps/s in the kernel",
                pts.iter().map(|(n, t)| format!("{n}: {t:.3} ms")).collect::<Vec<_>>(),
                per * 1e3,
                t1 - per,
                b as f64 / per / 1e3
            );
            result(
                "kernel_profile",
                serde_json::json!({"d": 100, "r": 8, "trajectories": b,
                "points_ms": pts, "us_per_step": per * 1e3, "fixed_ms": t1 - per}),
            );
        }
        // the records' GPU cost: one submission of 150 steps recording every 10th step, with the
        // metrics dispatches and the rows' readback and without (the kernel snapshots either way)
        for &b in bs {
            block_on(g.start_batch(&specs(b, 10), &basis))?;
            let (mut with, mut without) = (Vec::new(), Vec::new());
            // one pair to wake the GPU's clocks, then five
            block_on(g.time_batched_dispatch(150, true))?;
            block_on(g.time_batched_dispatch(150, false))?;
            for _ in 0..5 {
                with.push(block_on(g.time_batched_dispatch(150, true))?);
                without.push(block_on(g.time_batched_dispatch(150, false))?);
            }
            let (w, wo) = (median(with.clone()), median(without.clone()));
            eprintln!(
                "records d=k=100 r=8 B={b}: 150 steps with 15 records {with:.2?} ms, without {without:.2?} ms: {:.3} ms a record slot ({:.2} µs a record)",
                (w - wo) / 15.0,
                (w - wo) / 15.0 / b as f64 * 1e3
            );
            result(
                "records_profile",
                serde_json::json!({"d": 100, "r": 8, "trajectories": b,
                "with_ms": with, "without_ms": without}),
            );
        }
        // host: r×r Grams → sin θ_A, sin θ_B, σ(AB)
        let a = Rng::new(1, 99).normal_matrix(100, 8, 1.0);
        let bm = Rng::new(2, 99).normal_matrix(8, 100, 1.0);
        let ra = &a - &basis.u * (basis.u.transpose() * &a);
        let (k, rg, bbt) = (
            a.transpose() * &a,
            ra.transpose() * &ra,
            &bm * bm.transpose(),
        );
        let t = Instant::now();
        let n = 20000;
        for _ in 0..n {
            std::hint::black_box(lora_one_lab::linalg::gram_metrics(&k, &bbt, &rg, &rg, 4));
        }
        let us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
        eprintln!("host metrics of one record (r = 8, one thread): {us:.2} µs");
        result("host_record_metrics", serde_json::json!({"r": 8, "us": us}));
        Ok(())
    }

    fn batched(quick: bool, dump: Option<&str>) -> Result<(), EngineError> {
        // BATCHED_WG_BYTES=n caps the workgroup memory of a pack (0: packs in storage)
        let wg = std::env::var("BATCHED_WG_BYTES")
            .ok()
            .and_then(|v| v.parse().ok());
        // BATCHED_IN_FLIGHT=1 queues one chunk at a time (the host then waits on the GPU and the
        // GPU on the host's parsing)
        let in_flight = std::env::var("BATCHED_IN_FLIGHT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(GpuOptions::default().batched_in_flight);
        let mut g = block_on(GpuBackend::with_options(GpuOptions {
            batched_wg_bytes: wg,
            batched_in_flight: in_flight,
            ..GpuOptions::default()
        }))?;
        kernel_profile(&mut g, quick)?;
        // BATCHED_PROFILE_ONLY=1 stops after the kernel and records profiles (ablations)
        if std::env::var_os("BATCHED_PROFILE_ONLY").is_some() {
            return Ok(());
        }
        if std::env::var_os("SKIP_CROSSOVER").is_none() {
            crossover(&mut g, quick)?;
        }
        let mut sizes: Vec<(usize, usize, usize)> = if quick {
            // (d, trajectories, CPU subset)
            vec![(100, 64, 8)]
        } else {
            vec![(100, 1024, 32), (400, 1024, 4), (1000, 1024, 1)]
        };
        // BATCHED_DIMS=100,400 keeps only those sizes (short runs)
        if let Ok(v) = std::env::var("BATCHED_DIMS") {
            let keep: Vec<usize> = v.split(',').filter_map(|x| x.parse().ok()).collect();
            sizes.retain(|s| keep.contains(&s.0));
        }
        for (d, b, sub) in sizes {
            let mut cfg = Preset::Alignment.config();
            cfg.d = d;
            cfg.k = d;
            cfg.alpha2 = vec![1e-3];
            cfg.seeds = b;
            // BATCHED_REC=n records every n-th step instead (the records' share of the time)
            cfg.record_every = std::env::var("BATCHED_REC")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(10);
            let problem = lora_one_lab::Problem::generate(&cfg).map_err(EngineError::Config)?;
            let steps = cfg.steps;
            let mut gpu_ms = Vec::new();
            let mut last = None;
            let reps = if d >= 1000 { 2 } else { 3 };
            // where the time goes: the batch's start (upload, step 0) and the host's share
            let (mut start_ms, mut host_ms) = (Vec::new(), Vec::new());
            for _ in 0..reps {
                let mut e = Experiment::from_problem(problem.clone());
                block_on(e.prepare(&mut g))?;
                let t = Instant::now();
                block_on(e.step(&mut g, 1))?; // starts the batch
                start_ms.push(t.elapsed().as_secs_f64() * 1e3);
                block_on(e.run_to_end(&mut g, usize::MAX, |_| {}))?;
                gpu_ms.push(t.elapsed().as_secs_f64() * 1e3);
                host_ms.push(e.absorb_ms());
                last = Some(e);
            }
            eprintln!(
                "batched d=k={d} B={b}: end to end {gpu_ms:.1?} ms, of which batch start {start_ms:.1?} ms and records on the host {host_ms:.1?} ms"
            );
            let e = last.expect("ran");
            let path = if g.batched_path() == Some(true) {
                "batched"
            } else {
                "single"
            };
            // CPU reference on `sub` of the runs, same problem and draws, scaled to b
            let mut cs = cfg.clone();
            cs.seeds = sub;
            let mut c = CpuBackend::new();
            let mut ec = Experiment::new(&cs).map_err(EngineError::Config)?;
            block_on(ec.prepare(&mut c))?;
            let t = Instant::now();
            block_on(ec.run_to_end(&mut c, usize::MAX, |_| {}))?;
            let cpu_sub_ms = t.elapsed().as_secs_f64() * 1e3;
            let cpu_ms = cpu_sub_ms * b as f64 / sub as f64;
            // agreement of the GPU ensemble with the CPU runs it shares: final risk and sin θ_A
            // (risk compared above the f32 floor, 1e-7 of the initial risk)
            let mut worst: f64 = 0.0;
            let mut worst_sin: f64 = 0.0;
            for (x, y) in ec.runs().iter().zip(e.runs()) {
                let (xa, ya) = (x.last().unwrap(), y.last().unwrap());
                let floor = 1e-7 * x.records[0].risk;
                worst = worst.max((xa.risk.max(floor).ln() - ya.risk.max(floor).ln()).abs());
                if let (Some(p), Some(q)) = (xa.sin_a, ya.sin_a) {
                    worst_sin = worst_sin.max((p - q).abs());
                }
            }
            let gm = median(gpu_ms.clone());
            let tsteps = (b * steps) as f64;
            let flops = step_flops(d, d, cfg.r) * tsteps;
            eprintln!(
                "batched d=k={d} B={b} ({path} path): GPU {gm:.1} ms = {:.2} M traj-steps/s, {:.2} TFLOP/s; CPU reference {cpu_ms:.0} ms (measured on {sub} runs: {cpu_sub_ms:.1} ms); GPU/CPU speed-up {:.1}×; max |Δ ln risk| {worst:.2e}, max |Δ sin θ_A| {worst_sin:.2e}",
                tsteps / gm / 1e3,
                flops / gm / 1e9,
                cpu_ms / gm
            );
            result(
                "batched",
                serde_json::json!({"d": d, "k": d, "r": cfg.r, "trajectories": b, "steps": steps,
                    "record_every": cfg.record_every, "path": path,
                    "gpu_ms": gm, "gpu_samples_ms": gpu_ms, "cpu_ms_scaled": cpu_ms,
                    "start_samples_ms": start_ms, "host_samples_ms": host_ms,
                    "cpu_subset": sub, "cpu_subset_ms": cpu_sub_ms,
                    "traj_steps_per_s": tsteps / gm * 1e3, "tflops": flops / gm / 1e9,
                    "flops_per_traj_step": step_flops(d, d, cfg.r), "max_abs_dln_risk": worst,
                    "max_abs_dsin_a": worst_sin}),
            );
            if let Some(dir) = dump {
                // Σ̂, G, Δ and the B initial A's for the PyTorch batched step
                let mut cpu = CpuBackend::new();
                block_on(cpu.load(&problem))?;
                let dirp = std::path::Path::new(dir);
                let _ = std::fs::create_dir_all(dirp);
                let io = |e: std::io::Error| EngineError::Unsupported(e.to_string());
                write_f32(
                    &dirp.join(format!("b{d}_sigma.f32")),
                    cpu.sigma().expect("Σ̂"),
                )
                .map_err(io)?;
                write_f32(&dirp.join(format!("b{d}_g.f32")), cpu.g().expect("G")).map_err(io)?;
                write_f32(&dirp.join(format!("b{d}_delta.f32")), &problem.delta).map_err(io)?;
            }
        }
        Ok(())
    }
}
