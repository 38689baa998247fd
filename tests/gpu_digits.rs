//! The digits model (SPEC §9) on the GPU backend against its CPU twin (f64): the forward and
//! backward passes (`mlp.wgsl` + the tiled matmul) on shapes that are not multiples of the
//! tiles, the SVD of layer gradients, and whole fine-tuning runs. Lavapipe in CI; with `CI` set a
//! missing adapter fails instead of skipping.
#![cfg(feature = "gpu")]

mod common;

use lora_one_lab::digits::{self, CpuFt, Digits, FtCompute, FtConfig, FtMethod, FtOpt, Net};
use lora_one_lab::gpu::{GpuBackend, GpuOptions};
use lora_one_lab::linalg::{exact_top_svd, sin_theta};
use lora_one_lab::rng::Rng;
use nalgebra::DMatrix;
use std::sync::Mutex;

static GPU: Mutex<()> = Mutex::new(());

fn gpu() -> Option<GpuBackend> {
    common::gpu_with(GpuOptions::default())
}

fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    pollster::block_on(f)
}

fn rel(a: &DMatrix<f64>, b: &DMatrix<f64>) -> f64 {
    (a - b).norm() / b.norm().max(1e-30)
}

/// A random data set and net: n samples of din features, h hidden units, c classes.
fn problem(seed: u64, n: usize, din: usize, h: usize, c: usize) -> (Net, DMatrix<f64>, Vec<usize>) {
    let mut rng = Rng::new(seed, 77);
    let x = rng.normal_matrix(n, din, 1.0);
    let y = (0..n).map(|i| (i * 7 + seed as usize) % c).collect();
    let net = Net {
        w: [
            rng.normal_matrix(din, h, (2.0 / din as f64).sqrt()),
            rng.normal_matrix(h, c, 2.0 / (h as f64).sqrt()),
        ],
    };
    (net, x, y)
}

#[test]
fn forward_and_backward_match_the_cpu_twin() {
    let _g = GPU.lock().unwrap_or_else(|p| p.into_inner());
    let Some(mut g) = gpu() else { return };
    // (n, din, h, classes): single sample, odd sizes around the 128-tiles and the 64/256
    // workgroups, the digits model's own shape, 10 classes, a hidden layer wider than a tile
    for (s, &(n, din, h, c)) in [
        (1, 64, 2, 5),
        (37, 7, 33, 5),
        (300, 64, 17, 10),
        (624, 64, 32, 5),
        (129, 65, 130, 3),
    ]
    .iter()
    .enumerate()
    {
        let (net, x, y) = problem(s as u64, n, din, h, c);
        for grad in [false, true] {
            let cpu = net.eval(&x, &y, grad);
            let gpu = block(g.mlp_eval(&net, &x, &y, grad)).unwrap();
            let what = format!("n={n} din={din} h={h} c={c} grad={grad}");
            assert!(
                (gpu.loss - cpu.loss).abs() <= 1e-5 * cpu.loss.max(1.0),
                "{what}: loss {} vs {}",
                gpu.loss,
                cpu.loss
            );
            // a sample whose two best logits tie to f32 precision may flip: at most one
            assert!(
                (gpu.acc - cpu.acc).abs() <= 1.0 / n as f64 + 1e-12,
                "{what}: accuracy {} vs {}",
                gpu.acc,
                cpu.acc
            );
            assert_eq!(gpu.grad.is_some(), grad, "{what}");
            if let (Some(a), Some(b)) = (&gpu.grad, &cpu.grad) {
                for l in 0..2 {
                    assert_eq!(a[l].shape(), b[l].shape());
                    let e = rel(&a[l], &b[l]);
                    assert!(e < 1e-4, "{what}: layer {} gradient rel err {e:.2e}", l + 1);
                }
            }
        }
    }
}

#[test]
fn plans_follow_their_data_and_weights() {
    let _g = GPU.lock().unwrap_or_else(|p| p.into_inner());
    let Some(mut g) = gpu() else { return };
    // same shapes, different data: a plan kept for one must not answer for the other; new
    // weights on kept data must be used
    let (net, x1, y1) = problem(1, 50, 64, 12, 5);
    let (net2, x2, y2) = problem(2, 50, 64, 12, 5);
    for _ in 0..2 {
        for (n, x, y) in [(&net, &x1, &y1), (&net, &x2, &y2), (&net2, &x1, &y1)] {
            let cpu = n.eval(x, y, true);
            let gpu = block(g.mlp_eval(n, x, y, true)).unwrap();
            assert!((gpu.loss - cpu.loss).abs() <= 1e-5 * cpu.loss.max(1.0));
            let gg = gpu.grad.unwrap();
            let cg = cpu.grad.unwrap();
            assert!(rel(&gg[0], &cg[0]) < 1e-4);
        }
    }
    // more data sets than plans kept: still right after eviction
    for s in 10..20 {
        let (n, x, y) = problem(s, 20 + s as usize, 64, 12, 5);
        let cpu = n.eval(&x, &y, false);
        let gpu = block(g.mlp_eval(&n, &x, &y, false)).unwrap();
        assert!((gpu.loss - cpu.loss).abs() <= 1e-5 * cpu.loss.max(1.0));
    }
    // wrong shapes are an error, not a panic
    let (n, x, _) = problem(3, 10, 64, 12, 5);
    assert!(block(g.mlp_eval(&n, &x, &[0; 9], false)).is_err());
    assert!(block(g.mlp_eval(&n, &x, &[5; 10], false)).is_err());
    let (_, x7, y7) = problem(3, 10, 7, 12, 5);
    assert!(block(g.mlp_eval(&n, &x7, &y7, false)).is_err());
}

/// A d×k matrix with singular values s (seeded orthonormal bases).
fn with_spectrum(d: usize, k: usize, s: &[f64], seed: u64) -> DMatrix<f64> {
    let mut rng = Rng::new(seed, 5);
    let u = rng.normal_matrix(d, s.len(), 1.0).qr().q();
    let v = rng.normal_matrix(k, s.len(), 1.0).qr().q();
    &u * DMatrix::from_diagonal(&nalgebra::DVector::from_row_slice(s)) * v.transpose()
}

#[test]
fn layer_gradient_svd_matches_exact() {
    let _g = GPU.lock().unwrap_or_else(|p| p.into_inner());
    let Some(mut g) = gpu() else { return };
    // (d, k, m): the digits layers at h = 32 (64×32 and 32×5, the sketch spans all of G), a
    // thin odd one, and a wide first layer (h = 48 > 32: a randomised 32-column sketch)
    for &(d, k, m) in &[(64, 32, 8), (32, 5, 8), (64, 11, 6), (64, 48, 8)] {
        let q = d.min(k);
        let s: Vec<f64> = (0..q).map(|i| 0.7f64.powi(i as i32) * 3.0).collect();
        let gm = with_spectrum(d, k, &s, (d * k) as u64);
        let gpu = block(FtCompute::top_svd(&mut g, &gm, m)).unwrap();
        let cpu = exact_top_svd(&gm, m);
        let mm = m.min(q);
        assert_eq!(gpu.s.len(), mm);
        for i in 0..mm {
            assert!(
                (gpu.s[i] - cpu.s[i]).abs() <= 2e-4 * cpu.s[0],
                "{d}×{k}: σ{} {} vs {}",
                i + 1,
                gpu.s[i],
                cpu.s[i]
            );
        }
        // the top-r subspaces the adapters are measured against (r = m/2, as LoRA-GA's 2r)
        let r = (mm / 2).max(1);
        let su = sin_theta(
            &cpu.u.columns(0, r).into_owned(),
            &gpu.u.columns(0, r).into_owned(),
        );
        let sv = sin_theta(
            &cpu.v.columns(0, r).into_owned(),
            &gpu.v.columns(0, r).into_owned(),
        );
        assert!(su < 1e-3 && sv < 1e-3, "{d}×{k}: sin θ {su:.2e} {sv:.2e}");
    }
    // the backend's limit is an error naming it
    let big = with_spectrum(64, 64, &[1.0; 40], 1);
    let e = block(FtCompute::top_svd(&mut g, &big, 40))
        .unwrap_err()
        .to_string();
    assert!(e.contains("32"), "{e}");
}

fn small() -> FtConfig {
    let mut c = FtConfig::default();
    for (k, v) in [
        ("seeds", "1"),
        ("pre_steps", "40"),
        ("steps", "15"),
        ("hidden", "24"),
        ("rank", "3"),
        ("record_every", "5"),
    ] {
        c.set(k, v).unwrap();
    }
    c
}

#[test]
fn fine_tuning_on_the_gpu_matches_the_cpu_engine() {
    let _g = GPU.lock().unwrap_or_else(|p| p.into_inner());
    let Some(mut g) = gpu() else { return };
    let data = Digits::embedded();
    let mut methods = FtMethod::defaults();
    for opt in [FtOpt::Precond, FtOpt::Adam] {
        methods.push(FtMethod::Lora {
            init: digits::AdapterInit::LoraOne,
            opt,
        });
    }
    let cfg = small();
    let cpu = digits::run(&data, &cfg, &methods);
    let gpu = block(digits::run_on(&mut g, &data, &cfg, &methods)).unwrap();
    assert_eq!(gpu.runs.len(), cpu.runs.len());
    let (pc, pg) = (&cpu.pretraining[0], &gpu.pretraining[0]);
    let n_test = 1.0 / 200.0;
    assert!((pc.odd_test_acc - pg.odd_test_acc).abs() <= n_test);
    assert!((pc.even_test_acc - pg.even_test_acc).abs() <= n_test);
    for (c, g) in cpu.runs.iter().zip(&gpu.runs) {
        assert_eq!(c.label, g.label);
        assert_eq!(
            c.eta_star, g.eta_star,
            "{}: the η* grid picks the same value",
            c.label
        );
        assert_eq!(c.diverged_at, g.diverged_at);
        assert_eq!(c.records.len(), g.records.len(), "{}", c.label);
        for (a, b) in c.records.iter().zip(&g.records) {
            assert_eq!(a.step, b.step);
            let what = format!("{} step {}", c.label, a.step);
            assert!(
                (a.train_loss - b.train_loss).abs() <= 1e-3 * a.train_loss.max(0.1),
                "{what}: train loss {} vs {}",
                a.train_loss,
                b.train_loss
            );
            assert!(
                (a.test_acc - b.test_acc).abs() <= 2.0 * n_test,
                "{what}: test accuracy {} vs {}",
                a.test_acc,
                b.test_acc
            );
            if let (Some(x), Some(y)) = (a.sin_a, b.sin_a) {
                for l in 0..2 {
                    assert!((x[l] - y[l]).abs() < 2e-3, "{what}: sin θ_A {x:?} vs {y:?}");
                }
            }
        }
    }
    let (lc, lg) = (cpu.landscape.unwrap(), gpu.landscape.unwrap());
    assert_eq!(lc.ln_loss.len(), lg.ln_loss.len());
    for (a, b) in lc.ln_loss.iter().zip(&lg.ln_loss) {
        assert!((a - b).abs() < 1e-3, "landscape ln loss {a} vs {b}");
    }
    // the learning itself, on the GPU: fine-tuning beats the pre-trained model
    let acc = |label: &str| {
        gpu.runs
            .iter()
            .find(|r| r.label.starts_with(label))
            .map(|r| r.test_acc)
            .unwrap()
    };
    assert!(acc("LoRA_r LoRA-One") > acc("pre-trained") + 0.3);
    assert_eq!(CpuFt.name(), "CPU");
    assert!(g.name().starts_with("GPU"));
}

#[test]
fn divergence_on_the_gpu_is_reported_not_a_panic() {
    let _g = GPU.lock().unwrap_or_else(|p| p.into_inner());
    let Some(mut g) = gpu() else { return };
    let data = Digits::embedded();
    let mut cfg = small();
    cfg.set("lr", "100").unwrap();
    cfg.set("record_every", "1").unwrap();
    let lora = FtMethod::Lora {
        init: digits::AdapterInit::LoraOne,
        opt: FtOpt::Gd,
    };
    let m = [
        FtMethod::Full { opt: FtOpt::Gd },
        lora,
        FtMethod::OneStepRank,
    ];
    let cpu = digits::run(&data, &cfg, &m);
    let gpu = block(digits::run_on(&mut g, &data, &cfg, &m)).unwrap();
    for i in 0..2 {
        let (c, gg) = (cpu.runs[i].diverged_at, gpu.runs[i].diverged_at);
        // the threshold (1e8 × the step-0 loss), not f32 overflow, decides: the same step
        assert!(c.is_some(), "{}: lr = 100 diverges", cpu.runs[i].label);
        assert_eq!(gg, c, "{}", cpu.runs[i].label);
        assert_eq!(gpu.runs[i].records.len(), cpu.runs[i].records.len());
        assert!(gpu.runs[i].records.iter().all(|r| r.train_loss.is_finite()));
    }
    // the other method is untouched by them
    assert!(gpu.runs[2].diverged_at.is_none());
    assert!(gpu.runs[2].test_acc > 0.3);
}

#[test]
fn ranks_beyond_the_gpu_svd_are_refused_naming_the_field() {
    let mut cfg = FtConfig::default();
    cfg.set("hidden", "64").unwrap();
    cfg.set("rank", "17").unwrap();
    cfg.validate().unwrap();
    let e = digits::gpu_fits(&cfg).unwrap_err().to_string();
    assert!(e.contains("rank") && e.contains("16"), "{e}");
    cfg.set("rank", "16").unwrap();
    digits::gpu_fits(&cfg).unwrap();
    // with a hidden layer of 32 any rank fits (G's first layer has 32 columns)
    cfg.set("hidden", "32").unwrap();
    cfg.set("rank", "32").unwrap();
    digits::gpu_fits(&cfg).unwrap();
}
