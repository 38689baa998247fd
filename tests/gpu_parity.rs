//! GPU kernels and whole runs against their CPU twins (f64 reference), on whatever adapter wgpu
//! finds (lavapipe in CI). With `CI` set, a missing adapter fails the test instead of skipping.
#![cfg(feature = "gpu")]

mod common;

use lora_one_lab::config::{InitKind, Optimiser, Preset, StepForm};
use lora_one_lab::cpu::SvdMethod;
use lora_one_lab::engine::{Backend, EngineError, StepSettings};
use lora_one_lab::gpu::{GpuBackend, GpuOptions};
use lora_one_lab::linalg::{self, exact_top_svd, sin_theta};
use lora_one_lab::phase::{self, PlaneCoeffs, Window};
use lora_one_lab::rng::Rng;
use lora_one_lab::{Config, CpuBackend, Experiment, Model, Problem};
use nalgebra::DMatrix;
use std::sync::Mutex;

/// One GPU at a time: lavapipe on 2 cores is slow enough without contention.
static GPU: Mutex<()> = Mutex::new(());

fn gpu() -> Option<GpuBackend> {
    common::gpu_with(GpuOptions::default())
}

fn rand(seed: u64, r: usize, c: usize) -> DMatrix<f64> {
    Rng::new(seed, 4242).normal_matrix(r, c, 1.0)
}

fn rel(a: &DMatrix<f64>, b: &DMatrix<f64>) -> f64 {
    (a - b).norm() / b.norm().max(1e-30)
}

fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    pollster::block_on(f)
}

const SHAPES: [(usize, usize, usize); 6] = [
    (1, 1, 1),
    (3, 5, 4),
    (100, 100, 100),
    (257, 129, 65),
    (129, 257, 300),
    (64, 1, 130),
];

#[test]
fn matmul_matches_cpu_all_transposes() {
    let _g = GPU.lock().unwrap_or_else(|p| p.into_inner());
    let Some(g) = gpu() else { return };
    for (s, &(m, n, k)) in SHAPES.iter().enumerate() {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let a = if ta {
                rand(s as u64, k, m)
            } else {
                rand(s as u64, m, k)
            };
            let b = if tb {
                rand(100 + s as u64, n, k)
            } else {
                rand(100 + s as u64, k, n)
            };
            let want = (if ta { a.transpose() } else { a.clone() })
                * (if tb { b.transpose() } else { b.clone() });
            let got = block(g.matmul(&a, ta, &b, tb)).unwrap();
            let e = rel(&got, &want);
            assert!(e < 1e-5, "matmul {m}x{n}x{k} ta={ta} tb={tb}: rel err {e}");
        }
    }
}

#[test]
fn skinny_products_match_cpu() {
    let _g = GPU.lock().unwrap_or_else(|p| p.into_inner());
    let Some(g) = gpu() else { return };
    for &(m, kd) in &[
        (1, 1),
        (3, 5),
        (100, 100),
        (257, 129),
        (129, 257),
        (1030, 520),
    ] {
        for r in [1, 4, 8, 13] {
            let big = rand(1, m, kd);
            let sk = rand(2, kd, r);
            let got = block(g.tall_skinny(&big, &sk, false)).unwrap();
            assert!(
                rel(&got, &(&big * &sk)) < 1e-5,
                "tall_skinny {m}x{kd} r={r}"
            );
            let skt = sk.transpose();
            let got = block(g.tall_skinny(&big, &skt, true)).unwrap();
            assert!(
                rel(&got, &(&big * &sk)) < 1e-5,
                "tall_skinny (transposed) {m}x{kd} r={r}"
            );
            let sk2 = rand(3, m, r);
            let got = block(g.t_big(&sk2, &big)).unwrap();
            assert!(
                rel(&got, &(sk2.transpose() * &big)) < 1e-5,
                "t_big {m}x{kd} r={r}"
            );
            let x = rand(4, m, kd);
            let u = rand(5, m, r);
            let v = rand(6, r, kd);
            let got = block(g.rank_update(&x, &u, &v, -0.5, 2.0)).unwrap();
            let want = &x * 2.0 - (&u * &v) * 0.5;
            assert!(rel(&got, &want) < 1e-5, "rank_update {m}x{kd} r={r}");
        }
    }
}

#[test]
fn risk_reduction_matches_cpu_and_is_direct() {
    let _g = GPU.lock().unwrap_or_else(|p| p.into_inner());
    let Some(g) = gpu() else { return };
    for &(d, k, r) in &[(1, 1, 1), (3, 5, 4), (100, 100, 8), (257, 129, 4)] {
        let a = rand(7, d, r);
        let b = rand(8, r, k);
        let a0 = rand(9, d, r);
        let b0 = rand(10, r, k);
        let delta = rand(11, d, k);
        let (risk, err) = block(g.risk(&a, &b, Some((&a0, &b0)), &delta)).unwrap();
        let ab = &a * &b;
        let want_risk = 0.5 * (&ab - &delta - &a0 * &b0).norm_squared();
        let want_err = (&ab - &delta).norm();
        assert!(
            (risk - want_risk).abs() <= 1e-5 * want_risk,
            "risk {risk} vs {want_risk}"
        );
        assert!(
            (err - want_err).abs() <= 1e-5 * want_err,
            "err {err} vs {want_err}"
        );
        // a tiny risk keeps its relative accuracy (no cancelling trace formula)
        let near = &ab + DMatrix::from_fn(d, k, |i, j| 1e-4 * (((i * 7 + j * 3) % 5) as f64 - 2.0));
        let (risk, _) = block(g.risk(&a, &b, None, &near)).unwrap();
        let want = 0.5 * (&ab - &near).norm_squared();
        assert!(
            (risk - want).abs() <= 1e-2 * want,
            "small risk {risk} vs {want}"
        );
    }
}

#[test]
fn surface_matches_cpu_twin() {
    let _g = GPU.lock().unwrap_or_else(|p| p.into_inner());
    let Some(g) = gpu() else { return };
    for c in [
        PlaneCoeffs::population(1.0),
        PlaneCoeffs {
            s: 1.3,
            g: 0.8,
            c: 0.4,
        },
    ] {
        let w = Window::auto(&c);
        for (nx, ny) in [(1, 1), (3, 5), (100, 100), (257, 129)] {
            let want = phase::surface(&c, &w, nx, ny, 1e-6);
            let got = block(g.surface(&c, &w, nx, ny, 1e-6)).unwrap();
            assert_eq!(got.values.len(), want.values.len());
            for (x, y) in got.values.iter().zip(&want.values) {
                assert!((x - y).abs() < 2e-3, "surface {nx}x{ny}: {x} vs {y}");
            }
        }
    }
}

#[test]
fn cholesky_qr_orthonormalises() {
    let _g = GPU.lock().unwrap_or_else(|p| p.into_inner());
    let Some(g) = gpu() else { return };
    for &(n, w) in &[(1, 1), (5, 3), (100, 8), (257, 16), (129, 24)] {
        let y = rand(12, n, w);
        let q = block(g.orthonormalize(&y)).unwrap();
        let qtq = q.transpose() * &q;
        assert!(
            (qtq - DMatrix::identity(w, w)).norm() < 1e-5,
            "QᵀQ ≠ I for {n}x{w}"
        );
        // same span as Y
        let qr = linalg::orthonormalize(&y);
        assert!(sin_theta(&qr, &q) < 1e-4);
    }
    // rank-deficient: 3 independent columns among 6 → 3 orthonormal + 3 zero columns
    let base = rand(13, 50, 3);
    let y = DMatrix::from_fn(50, 6, |i, j| {
        if j < 3 {
            base[(i, j)]
        } else {
            base[(i, j - 3)] * 2.0 + base[(i, (j + 1) % 3)]
        }
    });
    let q = block(g.orthonormalize(&y)).unwrap();
    let norms: Vec<f64> = (0..6).map(|j| q.column(j).norm()).collect();
    for (j, nrm) in norms.iter().enumerate() {
        if j < 3 {
            assert!((nrm - 1.0).abs() < 1e-5, "column {j}: {norms:?}");
        } else {
            assert!(
                *nrm < 1e-6,
                "dependent column {j} should be zero: {norms:?}"
            );
        }
    }
}

/// G = U diag(s) Vᵀ with a chosen spectrum.
fn with_spectrum(d: usize, k: usize, s: &[f64], seed: u64) -> DMatrix<f64> {
    let u = linalg::orthonormalize(&rand(seed, d, s.len()));
    let v = linalg::orthonormalize(&rand(seed + 1, k, s.len()));
    &u * DMatrix::from_diagonal(&nalgebra::DVector::from_vec(s.to_vec())) * v.transpose()
}

fn load_g(g: &mut GpuBackend, gm: &DMatrix<f64>) {
    let (d, k) = gm.shape();
    let gf = lora_one_lab::gpu::to_f32(gm);
    block(g.load_factored(d, k, None, &gf, &gf, 0.0)).unwrap();
}

#[test]
fn subspace_iteration_accuracy() {
    let _g = GPU.lock().unwrap_or_else(|p| p.into_inner());
    let Some(mut g) = gpu() else { return };
    // well-separated spectrum, full rank: top 4 of 10, 8, 6, 4, then 0.1 …
    let (d, k) = (120, 90);
    let mut s = vec![10.0, 8.0, 6.0, 4.0];
    s.extend((0..60).map(|i| 0.1 * (1.0 - i as f64 / 100.0)));
    let gm = with_spectrum(d, k, &s, 20);
    load_g(&mut g, &gm);
    for m in [1, 4] {
        let t = block(g.top_svd(m)).unwrap();
        let e = exact_top_svd(&gm, m);
        let sa = sin_theta(&e.u, &t.u);
        let sb = sin_theta(&e.v, &t.v);
        assert!(
            sa <= 1e-4 && sb <= 1e-4,
            "m={m}: sin θ_U {sa}, sin θ_V {sb}"
        );
        for i in 0..m {
            assert!(
                (t.s[i] - e.s[i]).abs() <= 1e-5 * e.s[0],
                "σ{i}: {} vs {}",
                t.s[i],
                e.s[i]
            );
        }
    }
    // the CPU twin (same seeded sketch, same iteration count) agrees
    g.svd_oversample = 8;
    g.svd_iters = 4;
    let t = block(g.top_svd(4)).unwrap();
    let c = linalg::subspace_top_svd(&gm, 4, 8, 4, 0);
    assert!(
        sin_theta(&c.u, &t.u) <= 1e-4 && sin_theta(&c.v, &t.v) <= 1e-4,
        "GPU vs CPU twin"
    );
    for i in 0..4 {
        assert!((t.s[i] - c.s[i]).abs() <= 1e-5 * c.s[0]);
    }
    // rank-deficient G (rank 3), asking for 8: the top 3 are accurate, the rest come back with
    // σ ≤ 1e-4 σ1 and canonicalize completes them exactly as on the CPU
    let gm = with_spectrum(100, 80, &[1.0, 0.5, 0.25], 30);
    load_g(&mut g, &gm);
    let t = block(g.top_svd(8)).unwrap();
    let e = exact_top_svd(&gm, 8);
    assert!(
        sin_theta(
            &e.u.columns(0, 3).into_owned(),
            &t.u.columns(0, 3).into_owned()
        ) < 1e-4
    );
    for i in 3..8 {
        assert!(
            t.s[i] <= 1e-4 * t.s[0],
            "σ{i} = {} should be numerically zero",
            t.s[i]
        );
    }
    let (cg, rank_g) = linalg::canonicalize(t, 5);
    let (cc, rank_c) = linalg::canonicalize(e, 5);
    assert_eq!((rank_g, rank_c), (3, 3));
    assert!((&cg.u - &cc.u).norm() < 1e-4, "canonical U differs");
    assert!((&cg.v - &cc.v).norm() < 1e-4, "canonical V differs");
}

/// Whole experiment on both backends; curves agree to f32 tolerance.
fn compare_runs(cfg: &Config, tol_loss: f64, tol_risk: f64) {
    let Some(mut g) = gpu() else { return };
    let mut cpu = CpuBackend::with_svd(SvdMethod::Exact);
    let mut ec = Experiment::new(cfg).unwrap();
    let mut eg = Experiment::new(cfg).unwrap();
    block(ec.run_to_end(&mut cpu, 500, |_| {})).unwrap();
    block(eg.run_to_end(&mut g, 500, |_| {})).unwrap();
    let (rc, rg) = (ec.runs(), eg.runs());
    assert_eq!(rc.len(), rg.len());
    for (a, b) in rc.iter().zip(rg) {
        assert_eq!(
            a.diverged.is_some(),
            b.diverged.is_some(),
            "{}: divergence differs",
            a.label
        );
        assert_eq!(
            a.records.len(),
            b.records.len(),
            "{}: record counts",
            a.label
        );
        // f32 floors: G and Σ̂ are formed in f32, so the GPU converges to the minimiser of a
        // problem perturbed at ~1e-7 relative; its risk bottoms out near 1e-10 and ‖AB − Δ‖_F
        // near 1e-5 ‖Δ‖_F where the f64 run keeps going down to 1e-30.
        let l0 = a.records[0].loss.abs().max(1e-3);
        let risk0 = a.records[0].risk.max(1e-12);
        let err0 = a.records[0].err_f.max(1e-6);
        for (x, y) in a.records.iter().zip(&b.records) {
            assert_eq!(x.step, y.step);
            let scale = l0.max(x.loss.abs());
            assert!(
                (x.loss - y.loss).abs() <= tol_loss * scale,
                "{} step {}: loss cpu {} gpu {}",
                a.label,
                x.step,
                x.loss,
                y.loss
            );
            assert!(
                (x.risk - y.risk).abs() <= tol_risk * x.risk + 1e-8 * risk0,
                "{} step {}: risk cpu {} gpu {}",
                a.label,
                x.step,
                x.risk,
                y.risk
            );
            assert!(
                (x.err_f - y.err_f).abs() <= tol_risk * x.err_f + 1e-4 * err0,
                "{} step {}: err_f cpu {} gpu {}",
                a.label,
                x.step,
                x.err_f,
                y.err_f
            );
        }
        // the alignment metric too, at the end
        let (x, y) = (a.last().unwrap(), b.last().unwrap());
        if let (Some(sa), Some(sb)) = (x.sin_a, y.sin_a) {
            assert!((sa - sb).abs() < 1e-2, "{}: sin θ_A {sa} vs {sb}", a.label);
        }
    }
}

#[test]
fn spectral_preset_parity() {
    let _g = GPU.lock().unwrap_or_else(|p| p.into_inner());
    let cfg = Preset::Spectral.config();
    compare_runs(&cfg, 1e-4, 2e-2);
}

#[test]
fn alignment_preset_parity() {
    let _g = GPU.lock().unwrap_or_else(|p| p.into_inner());
    let mut cfg = Preset::Alignment.config();
    // all five α², all 1500 steps, every 10th step recorded (the device keeps the rest)
    cfg.record_every = 10;
    compare_runs(&cfg, 1e-4, 2e-2);
}

#[test]
fn small_configs_parity_shapes_and_forms() {
    let _g = GPU.lock().unwrap_or_else(|p| p.into_inner());
    for (d, k, r, rs) in [(1, 1, 1, 1), (3, 5, 1, 1), (12, 9, 4, 2), (40, 30, 8, 3)] {
        for model in [Model::Linear, Model::Relu] {
            for form in [StepForm::Factored, StepForm::Residual] {
                if model == Model::Relu && form == StepForm::Factored {
                    continue;
                }
                for opt in [Optimiser::Gd, Optimiser::Preconditioned] {
                    let mut cfg = Preset::Spectral.config();
                    cfg.d = d;
                    cfg.k = k;
                    cfg.r = r;
                    cfg.r_star = rs;
                    cfg.model = model;
                    cfg.step_form = form;
                    cfg.optimiser = opt;
                    cfg.eta = if opt == Optimiser::Gd { 0.05 } else { 0.2 };
                    cfg.steps = 30;
                    cfg.record_every = 3;
                    cfg.inits = InitKind::EVERY.to_vec();
                    if 2 * r > d.min(k) {
                        cfg.inits = vec![InitKind::Vanilla, InitKind::LoraOne];
                    }
                    compare_runs(&cfg, 1e-3, 5e-2);
                }
            }
        }
    }
}

#[test]
fn population_phase_parity() {
    let _g = GPU.lock().unwrap_or_else(|p| p.into_inner());
    let cfg = Preset::Phase.config();
    compare_runs(&cfg, 1e-4, 1e-2);
}

#[test]
fn divergence_reported_at_its_step() {
    let _g = GPU.lock().unwrap_or_else(|p| p.into_inner());
    let Some(mut g) = gpu() else { return };
    let mut cfg = Preset::Spectral.config();
    cfg.optimiser = Optimiser::Gd;
    cfg.eta = 4.0;
    cfg.steps = 200;
    cfg.record_every = 50;
    cfg.inits = vec![InitKind::LoraOne];
    let p = Problem::generate(&cfg).unwrap();
    let mut cpu = CpuBackend::new();
    let run = |be: &mut dyn FnMut() -> Option<usize>| be();
    let mut c_step = || {
        let mut e = Experiment::from_problem(p.clone());
        block(e.run_to_end(&mut cpu, 1000, |_| {})).unwrap();
        e.runs()[0].diverged.as_ref().map(|d| d.step)
    };
    let cs = run(&mut c_step);
    let mut e = Experiment::from_problem(p.clone());
    block(e.run_to_end(&mut g, 1000, |_| {})).unwrap();
    let gs = e.runs()[0].diverged.as_ref().map(|d| d.step);
    assert!(cs.is_some(), "η = 4 should diverge on the CPU");
    let (cs, gs) = (cs.unwrap(), gs.expect("GPU run should report divergence"));
    assert!(cs.abs_diff(gs) <= 2, "divergence step cpu {cs} gpu {gs}");
}

#[test]
fn formation_of_sigma_and_g_matches_cpu() {
    let _g = GPU.lock().unwrap_or_else(|p| p.into_inner());
    let Some(mut g) = gpu() else { return };
    for model in [Model::Linear, Model::Relu] {
        let mut cfg = Preset::Spectral.config();
        cfg.d = 37;
        cfg.k = 23;
        cfg.model = model;
        let p = Problem::generate(&cfg).unwrap();
        let mut cpu = CpuBackend::new();
        block(cpu.load(&p)).unwrap();
        block(g.load(&p)).unwrap();
        let gg = block(g.read_g()).unwrap();
        assert!(rel(&gg, cpu.g().unwrap()) < 1e-4, "{model:?}: G differs");
        if model == Model::Linear {
            let s = block(g.read_sigma()).unwrap().unwrap();
            assert!(rel(&s, cpu.sigma().unwrap()) < 1e-5, "Σ̂ differs");
        }
    }
}

#[test]
fn oversize_work_is_refused_not_panicking() {
    let _g = GPU.lock().unwrap_or_else(|p| p.into_inner());
    let Some(mut g) = gpu() else { return };
    let cfg = Preset::Spectral.config();
    let p = Problem::generate(&cfg).unwrap();
    block(g.load(&p)).unwrap();
    let init = lora_one_lab::init::vanilla(
        &Config {
            r: 65,
            ..cfg.clone()
        },
        1e-3,
    );
    let s = StepSettings::from_config(&cfg);
    match block(g.start(&init, &s)) {
        Err(EngineError::Unsupported(m)) => assert!(m.contains("r ≤ 32"), "{m}"),
        other => panic!("expected Unsupported, got {:?}", other.map(|_| ())),
    }
}

/// A problem whose data this adapter cannot bind is refused before anything is allocated, naming
/// the field that sets the size and the adapter's limit (the page then falls back to the CPU).
/// The problem's X is a stand-in: the refusal reads only the configured sizes.
#[test]
fn sizes_beyond_the_adapter_are_refused_naming_the_field() {
    let _g = GPU.lock().unwrap_or_else(|p| p.into_inner());
    let Some(mut g) = gpu() else { return };
    let mut cfg = Preset::Spectral.config();
    cfg.d = 1024;
    cfg.k = 1024;
    cfg.step_form = StepForm::Residual;
    // N·d·4 bytes = 4 GiB of X: more than any adapter binds in one buffer (wgpu caps it at 2 GiB)
    cfg.n = Some(1 << 20);
    let mut small = cfg.clone();
    small.n = Some(8);
    let mut p = Problem::generate(&small).unwrap();
    p.cfg = cfg;
    let e = block(g.load(&p)).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, EngineError::Unsupported(_)), "{msg}");
    assert!(msg.contains("n: X (N×d) needs 4.0 GiB"), "{msg}");
    assert!(msg.contains("binds at most"), "{msg}");
    // the backend is still usable afterwards
    let ok = Problem::generate(&Preset::Spectral.config()).unwrap();
    block(g.load(&ok)).unwrap();
}
