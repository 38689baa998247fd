//! Engine behaviour against the theory (SPEC §1–§5) on the CPU reference backend.

use lora_one_lab::config::{Config, InitKind, Model, Optimiser, Preset, StepForm};
use lora_one_lab::engine::{Backend, StepSettings};
use lora_one_lab::init;
use lora_one_lab::linalg::{self, op_norm};
use lora_one_lab::{CpuBackend, Experiment, Problem, Report};
use nalgebra::DMatrix;
use pollster::block_on;

mod common;
use common::same_bits;

fn run(cfg: &Config) -> Report {
    let mut exp = Experiment::new(cfg).expect("valid config");
    let mut be = CpuBackend::new();
    block_on(exp.run_to_end(&mut be, 64, |_| {})).expect("run");
    exp.report()
}

fn small(preset: Preset) -> Config {
    let mut c = preset.config();
    c.d = 40;
    c.k = 30;
    c.r = 4;
    c.r_star = 2;
    c.spectrum = None;
    c.steps = 60;
    c
}

#[test]
fn theorem_3_1_vanilla_b_stays_in_row_space_of_g() {
    let mut c = small(Preset::Alignment);
    c.alpha2 = vec![1e-2];
    c.steps = 100;
    let rep = run(&c);
    let recs = &rep.runs[0].records;
    assert_eq!(recs[0].sin_b, None, "B0 = 0 has no subspace");
    for r in &recs[1..] {
        let s = r.sin_b.expect("B_t ≠ 0 for t ≥ 1");
        assert!(s < 1e-8, "sin θ_B({}) = {s}", r.step);
    }
    // ...while A needs many steps to align (it starts random)
    assert!(recs[0].sin_a.unwrap() > 0.5);
}

#[test]
fn lora_one_is_the_truncated_svd_of_g_and_close_to_delta() {
    let mut c = Preset::Spectral.config();
    c.inits = vec![InitKind::LoraOne];
    let p = Problem::generate(&c).unwrap();
    let mut be = CpuBackend::new();
    block_on(be.load(&p)).unwrap();
    let g = be.g().unwrap().clone();
    let raw = block_on(be.top_svd(init::svd_rank_needed(&c))).unwrap();
    let (svd, rank) = linalg::canonicalize(raw, c.seed);
    assert_eq!(rank, 4, "linear, noise-free: rank G = r*");
    let f = init::lora_one(&c, &svd);
    let ab = &f.a0 * &f.b0;
    // γ = 1: A0B0 = P_r(G) (the best rank-r approximation)
    let exact = linalg::exact_top_svd(&g, c.r);
    let pr = &exact.u
        * DMatrix::from_diagonal(&nalgebra::DVector::from_vec(exact.s.clone()))
        * exact.v.transpose();
    assert!(
        (&ab - &pr).norm() < 1e-10 * pr.norm(),
        "{}",
        (&ab - &pr).norm()
    );
    // ‖A0B0 − Δ‖_op ≤ ε‖Δ‖_op with ε = ‖Σ̂ − I‖_op
    let sigma = be.sigma().unwrap();
    let eps = op_norm(&(sigma - DMatrix::identity(c.d, c.d)));
    let lhs = op_norm(&(&ab - &p.delta));
    assert!(lhs <= eps * op_norm(&p.delta) + 1e-12, "{lhs} > {eps}·‖Δ‖");
    // and it tightens with more data
    let mut c2 = c.clone();
    c2.n = Some(200 * c.d);
    let p2 = Problem::generate(&c2).unwrap();
    let mut be2 = CpuBackend::new();
    block_on(be2.load(&p2)).unwrap();
    let (svd2, _) = linalg::canonicalize(block_on(be2.top_svd(c.r)).unwrap(), 0);
    let f2 = init::lora_one(&c2, &svd2);
    let lhs2 = op_norm(&(&f2.a0 * &f2.b0 - &p2.delta));
    assert!(
        lhs2 < 0.5 * lhs,
        "more samples should help: {lhs2} vs {lhs}"
    );
}

#[test]
fn lora_one_normalised_variant_scales_as_specified() {
    let mut c = Preset::Spectral.config();
    c.normalised = true;
    let p = Problem::generate(&c).unwrap();
    let mut be = CpuBackend::new();
    block_on(be.load(&p)).unwrap();
    let (svd, _) = linalg::canonicalize(block_on(be.top_svd(c.r)).unwrap(), 0);
    let f = init::lora_one(&c, &svd);
    // A0B0 = U (S/S1) Vᵀ / γ_stable, so its top singular value is 1/γ_stable
    let s = linalg::product_singular_values(&f.a0, &f.b0);
    assert!((s[0] - 1.0 / 128.0).abs() < 1e-12, "{s:?}");
}

/// PiSSA (SPEC §2): A0B0 = P_r(W0) with the offset, so the t = 0 prediction is W0's; it runs
/// end to end from `inits=…,pissa` with its own label and style.
#[test]
fn pissa_is_w0s_principal_part_with_the_offset() {
    let mut c = Preset::Spectral.config();
    c.set("inits", "lora-one,pissa").unwrap();
    assert_eq!(c.inits, vec![InitKind::LoraOne, InitKind::Pissa]);
    let p = Problem::generate(&c).unwrap();
    let w0 = init::w0_svd(&c, &p.w0);
    let f = init::pissa(&c, &w0);
    assert!(f.offset);
    let exact = linalg::exact_top_svd(&p.w0, c.r);
    let mut pr = exact.u.clone();
    for i in 0..c.r {
        pr.column_mut(i).scale_mut(exact.s[i]);
    }
    let pr = pr * exact.v.transpose();
    assert!((&f.a0 * &f.b0 - &pr).norm() < 1e-9 * pr.norm());
    // balanced factors: AᵀA = BBᵀ = S_r
    assert!((f.a0.transpose() * &f.a0 - &f.b0 * f.b0.transpose()).norm() < 1e-9 * pr.norm());
    let mut be = CpuBackend::new();
    block_on(be.load(&p)).unwrap();
    let st = StepSettings::from_config(&c);
    let pi = block_on(be.start(&f, &st)).unwrap();
    let van = block_on(be.start(&init::vanilla(&c, 1e-3), &st)).unwrap();
    let (l_pi, l_van) = (pi.snapshots[0].loss, van.snapshots[0].loss);
    assert!((l_pi - l_van).abs() < 1e-9 * l_van, "{l_pi} vs {l_van}");
    // end to end, with a smaller step (the adapter is W0's large principal part)
    c.eta = 0.01;
    c.steps = 50;
    let rep = run(&c);
    let r = rep.runs.iter().find(|r| r.init == InitKind::Pissa).unwrap();
    assert_eq!(r.label, "PiSSA");
    assert_eq!(r.records.len(), 51);
    assert!(r.diverged.is_none());
    assert_eq!(
        lora_one_lab::style::Method::from_init(InitKind::Pissa).label(),
        "PiSSA"
    );
    assert!(c
        .set("inits", "pissa,bogus")
        .unwrap_err()
        .message
        .contains("pissa"));
}

#[test]
fn lora_ga_offset_keeps_the_initial_prediction() {
    let c = Preset::Spectral.config();
    let p = Problem::generate(&c).unwrap();
    let mut be = CpuBackend::new();
    block_on(be.load(&p)).unwrap();
    let (svd, rank) = linalg::canonicalize(block_on(be.top_svd(2 * c.r)).unwrap(), c.seed);
    assert_eq!(rank, 4);
    let f = init::lora_ga(&c, &svd);
    assert!(f.offset);
    // c = k^{1/4}/√γ_GA; A0 = −c U[:, 1:r]: columns of norm c, B0 rows of norm c
    let scale = (c.k as f64).powf(0.25) / 2.0;
    for j in 0..c.r {
        assert!((f.a0.column(j).norm() - scale).abs() < 1e-12);
        assert!((f.b0.row(j).norm() - scale).abs() < 1e-12);
    }
    // B0 uses directions r+1..2r, orthogonal to G's top-r right subspace
    let v_r = svd.v.columns(0, c.r).into_owned();
    assert!((&f.b0 * &v_r).norm() < 1e-10);
    // the prediction at t = 0 is X(W0 − A0B0 + A0B0) = X W0: loss equals the W0 loss
    let st = StepSettings::from_config(&c);
    let ga = block_on(be.start(&f, &st)).unwrap();
    let van = block_on(be.start(&init::vanilla(&c, 1e-3), &st)).unwrap();
    let (l_ga, l_van) = (ga.snapshots[0].loss, van.snapshots[0].loss);
    assert!((l_ga - l_van).abs() < 1e-10 * l_van, "{l_ga} vs {l_van}");
    let (x, y) = p.samples();
    let direct = (&*x * &p.w0 - &*y).norm_squared() / (2.0 * x.nrows() as f64);
    assert!((l_ga - direct).abs() < 1e-10 * direct);
}

#[test]
fn gd_with_small_step_decreases_loss_monotonically() {
    for model in [Model::Linear, Model::Relu] {
        let mut c = small(Preset::Spectral);
        c.model = model;
        c.optimiser = Optimiser::Gd;
        c.eta = 0.01;
        c.steps = 80;
        let rep = run(&c);
        for r in &rep.runs {
            assert!(r.diverged.is_none());
            for w in r.records.windows(2) {
                assert!(
                    w[1].loss <= w[0].loss * (1.0 + 1e-12),
                    "{model:?} {}: loss rose at step {}: {} → {}",
                    r.label,
                    w[1].step,
                    w[0].loss,
                    w[1].loss
                );
            }
            assert!(r.records.last().unwrap().loss < r.records[0].loss);
        }
    }
}

fn finite_difference_check(model: Model, offset: bool) {
    let mut c = small(Preset::Spectral);
    c.model = model;
    c.d = 12;
    c.k = 9;
    c.r = 3;
    c.n = Some(200);
    let p = Problem::generate(&c).unwrap();
    let mut be = CpuBackend::new();
    block_on(be.load(&p)).unwrap();
    let (svd, _) = linalg::canonicalize(block_on(be.top_svd(2 * c.r)).unwrap(), 0);
    let f = if offset {
        init::lora_ga(&c, &svd)
    } else {
        init::lora_one(&c, &svd)
    };
    block_on(be.start(&f, &StepSettings::from_config(&c))).unwrap();
    let mut rng = lora_one_lab::rng::Rng::new(3, 0);
    let a = &f.a0 + rng.normal_matrix(c.d, c.r, 0.1);
    let b = &f.b0 + rng.normal_matrix(c.r, c.k, 0.1);
    let (_, ga, gb) = be.loss_and_grads_at(&a, &b).unwrap();
    let h = 1e-6;
    let check = |m: &DMatrix<f64>, g: &DMatrix<f64>, is_a: bool| {
        for i in 0..m.nrows() {
            for j in 0..m.ncols() {
                let mut mp = m.clone();
                let mut mm = m.clone();
                mp[(i, j)] += h;
                mm[(i, j)] -= h;
                let (lp, lm) = if is_a {
                    (
                        be.loss_and_grads_at(&mp, &b).unwrap().0,
                        be.loss_and_grads_at(&mm, &b).unwrap().0,
                    )
                } else {
                    (
                        be.loss_and_grads_at(&a, &mp).unwrap().0,
                        be.loss_and_grads_at(&a, &mm).unwrap().0,
                    )
                };
                let fd = (lp - lm) / (2.0 * h);
                assert!(
                    (fd - g[(i, j)]).abs() < 1e-6 * (1.0 + fd.abs()),
                    "{model:?} offset={offset} {} ({i},{j}): fd {fd} vs grad {}",
                    if is_a { "A" } else { "B" },
                    g[(i, j)]
                );
            }
        }
    };
    check(&a, &ga, true);
    check(&b, &gb, false);
}

/// The preconditioned update (SPEC §3), checked independently of the step code: gradients by
/// central differences of the loss, the preconditioners inverted by nalgebra, one step compared
/// with the backend's, for the linear and the ReLU model.
#[test]
fn preconditioned_step_matches_finite_difference_direction() {
    use lora_one_lab::engine::Factors;
    for model in [Model::Linear, Model::Relu] {
        let mut c = small(Preset::Spectral);
        c.model = model;
        c.d = 10;
        c.k = 7;
        c.r = 3;
        c.n = Some(150);
        c.optimiser = Optimiser::Preconditioned;
        c.damping = 0.3;
        c.eta = 0.2;
        c.record_every = 1;
        let p = Problem::generate(&c).unwrap();
        let mut be = CpuBackend::new();
        block_on(be.load(&p)).unwrap();
        let mut rng = lora_one_lab::rng::Rng::new(5, 0);
        let f = init::InitFactors {
            a0: rng.normal_matrix(c.d, c.r, 0.5),
            b0: rng.normal_matrix(c.r, c.k, 0.5),
            offset: false,
        };
        let st = StepSettings::from_config(&c);
        block_on(be.start(&f, &st)).unwrap();
        let loss = |a: &DMatrix<f64>, b: &DMatrix<f64>| be.loss_and_grads_at(a, b).unwrap().0;
        let h = 1e-6;
        let fd = |m: &DMatrix<f64>, is_a: bool| {
            DMatrix::from_fn(m.nrows(), m.ncols(), |i, j| {
                let (mut mp, mut mm) = (m.clone(), m.clone());
                mp[(i, j)] += h;
                mm[(i, j)] -= h;
                if is_a {
                    (loss(&mp, &f.b0) - loss(&mm, &f.b0)) / (2.0 * h)
                } else {
                    (loss(&f.a0, &mp) - loss(&f.a0, &mm)) / (2.0 * h)
                }
            })
        };
        let (ga, gb) = (fd(&f.a0, true), fd(&f.b0, false));
        let eye = DMatrix::<f64>::identity(c.r, c.r) * c.damping;
        let pb = (&f.b0 * f.b0.transpose() + &eye).try_inverse().unwrap();
        let pa = (f.a0.transpose() * &f.a0 + &eye).try_inverse().unwrap();
        let a1 = &f.a0 - &ga * pb * c.eta;
        let b1 = &f.b0 - pa * &gb * c.eta;
        let (gd_a, gd_b) = (&f.a0 - ga * c.eta, &f.b0 - gb * c.eta);
        let adv = block_on(be.advance(1)).unwrap();
        let Factors::Full { a, b } = &adv.snapshots[0].factors else {
            panic!("the CPU records full factors")
        };
        let rel = |x: &DMatrix<f64>, y: &DMatrix<f64>| (x - y).norm() / y.norm();
        assert!(rel(a, &a1) < 1e-7, "{model:?} A: {}", rel(a, &a1));
        assert!(rel(b, &b1) < 1e-7, "{model:?} B: {}", rel(b, &b1));
        // and it is not plain GD (the check can tell them apart)
        assert!(rel(a, &gd_a) > 1e-3 && rel(b, &gd_b) > 1e-3);
    }
}

#[test]
fn gradients_match_finite_differences_linear() {
    finite_difference_check(Model::Linear, false);
    finite_difference_check(Model::Linear, true);
}

#[test]
fn gradients_match_finite_differences_relu() {
    finite_difference_check(Model::Relu, false);
    finite_difference_check(Model::Relu, true);
}

#[test]
fn factored_and_residual_linear_steps_agree() {
    let mut c = Preset::Spectral.config();
    c.steps = 40;
    let a = run(&c);
    c.step_form = StepForm::Residual;
    let b = run(&c);
    for (ra, rb) in a.runs.iter().zip(&b.runs) {
        assert_eq!(ra.records.len(), rb.records.len());
        for (x, y) in ra.records.iter().zip(&rb.records) {
            let tol = 1e-9 * (1.0 + x.loss.abs());
            assert!(
                (x.loss - y.loss).abs() < tol,
                "{} step {}: {} vs {}",
                ra.label,
                x.step,
                x.loss,
                y.loss
            );
            assert!(
                (x.risk - y.risk).abs() < 1e-9 * (1.0 + x.risk),
                "{} risk",
                ra.label
            );
        }
    }
}

#[test]
fn spectral_preset_lora_one_aligned_at_step_0_and_lora_ga_plateaus() {
    let c = Preset::Spectral.config();
    let rep = run(&c);
    let get = |k: InitKind| rep.runs.iter().find(|r| r.init == k).unwrap();
    let one = get(InitKind::LoraOne);
    let ga = get(InitKind::LoraGa);
    let van = get(InitKind::Vanilla);
    assert_eq!(one.records.len(), c.steps + 1);
    // LoRA-One: aligned with G's top subspaces from step 0
    assert!(one.records[0].sin_a.unwrap() < 1e-8);
    assert!(one.records[0].sin_b.unwrap() < 1e-8);
    // vanilla starts unaligned
    assert!(van.records[0].sin_a.unwrap() > 0.5);
    let (r_one, r_ga, r_van) = (
        one.last().unwrap().risk,
        ga.last().unwrap().risk,
        van.last().unwrap().risk,
    );
    // LoRA-One reaches the lowest risk; LoRA-GA plateaus far above it
    assert!(r_one < 1e-6, "LoRA-One final risk {r_one}");
    assert!(
        r_ga > 1e3 * r_one,
        "LoRA-GA should plateau: {r_ga} vs {r_one}"
    );
    // the plateau: LoRA-GA's risk barely moves over the last half of the run
    let mid = ga.records[c.steps / 2].risk;
    assert!(r_ga > 0.5 * mid, "LoRA-GA still decreasing: {mid} → {r_ga}");
    assert!(r_van.is_finite());
}

#[test]
fn alignment_preset_smaller_alpha_aligns_better_and_ends_lower() {
    let c = Preset::Alignment.config();
    let rep = run(&c);
    assert_eq!(rep.runs.len(), 5);
    let finals: Vec<f64> = rep.runs.iter().map(|r| r.last().unwrap().risk).collect();
    let sin_a: Vec<f64> = rep
        .runs
        .iter()
        .map(|r| r.last().unwrap().sin_a.unwrap())
        .collect();
    // Theorem 3.1 over the whole preset: B_t's row space stays in G's for every t ≥ 1
    for run in &rep.runs {
        for rec in &run.records[1..] {
            let s = rec.sin_b.unwrap();
            assert!(s < 1e-10, "{} step {}: sin θ_B = {s}", run.label, rec.step);
        }
    }
    // runs are ordered α² = 1, 1e-1, …, 1e-4
    assert!(finals[4] < finals[0] * 1e-2, "final risks {finals:?}");
    assert!(sin_a[4] < sin_a[0], "final sin θ_A {sin_a:?}");
    for w in finals.windows(2) {
        assert!(
            w[1] <= w[0] * 1.5,
            "final risk should not grow much as α² shrinks: {finals:?}"
        );
    }
}

#[test]
fn same_seed_bit_identical_metrics() {
    let mut c = small(Preset::Spectral);
    c.steps = 30;
    let a = run(&c);
    let b = run(&c);
    for (ra, rb) in a.runs.iter().zip(&b.runs) {
        for (x, y) in ra.records.iter().zip(&rb.records) {
            assert_eq!(x.loss.to_bits(), y.loss.to_bits());
            assert_eq!(x.risk.to_bits(), y.risk.to_bits());
            assert_eq!(x.sin_a.map(f64::to_bits), y.sin_a.map(f64::to_bits));
            assert_eq!(x.sin_b.map(f64::to_bits), y.sin_b.map(f64::to_bits));
        }
    }
    c.seed = 1;
    let d = run(&c);
    assert_ne!(a.runs[0].records[1].loss, d.runs[0].records[1].loss);
}

#[test]
fn divergence_is_detected_and_reported_with_its_step() {
    let mut c = small(Preset::Spectral);
    c.optimiser = Optimiser::Gd;
    c.eta = 50.0;
    c.inits = vec![InitKind::LoraOne];
    let rep = run(&c);
    let r = &rep.runs[0];
    let d = r.diverged.as_ref().expect("η = 50 must diverge");
    assert!(d.step >= 1 && d.step < c.steps, "{d:?}");
    assert!(d.reason.contains(&format!("step {}", d.step)));
    // nothing non-finite reaches the records, and none is recorded past the divergence
    for rec in &r.records {
        assert!(rec.loss.is_finite() && rec.risk.is_finite() && rec.err_f.is_finite());
        assert!(rec.step < d.step);
    }
    // the report serialises (no NaN in JSON)
    serde_json::to_string(&rep).unwrap();
}

#[test]
fn bad_configs_are_rejected_with_field_names() {
    let c = Config {
        r_star: 0,
        ..Config::default()
    };
    let e = Experiment::new(&c).err().unwrap();
    assert_eq!(e.field, "r_star");
    let c = Config {
        spectrum: Some(vec![1.0, f64::INFINITY, 0.5, 0.2]),
        ..Config::default()
    };
    assert_eq!(Experiment::new(&c).err().unwrap().field, "spectrum");
    let c = Config {
        model: Model::Relu,
        population: true,
        ..Config::default()
    };
    assert_eq!(Experiment::new(&c).err().unwrap().field, "population");
}

#[test]
fn record_interval_and_chunking_do_not_change_results() {
    let mut c = small(Preset::Spectral);
    c.steps = 50;
    let full = run(&c);
    c.record_every = 7;
    let mut exp = Experiment::new(&c).unwrap();
    let mut be = CpuBackend::new();
    block_on(exp.run_to_end(&mut be, 3, |_| {})).unwrap();
    let sparse = exp.report();
    for (rf, rs) in full.runs.iter().zip(&sparse.runs) {
        let steps: Vec<usize> = rs.records.iter().map(|r| r.step).collect();
        assert_eq!(steps, vec![0, 7, 14, 21, 28, 35, 42, 49, 50]);
        for rec in &rs.records {
            let f = &rf.records[rec.step];
            assert_eq!(f.loss.to_bits(), rec.loss.to_bits());
        }
    }
}

#[test]
fn stop_keeps_records_of_every_run_of_the_batch() {
    let c = small(Preset::Spectral);
    let mut exp = Experiment::new(&c).unwrap();
    let mut be = CpuBackend::new();
    block_on(exp.step(&mut be, 10)).unwrap(); // prepare
    block_on(exp.step(&mut be, 10)).unwrap(); // start the batch
    let p = block_on(exp.step(&mut be, 10)).unwrap();
    assert!(!p.done);
    assert_eq!((p.step, p.live, p.runs), (10, 3, 3));
    exp.stop();
    let rep = exp.report();
    assert_eq!(rep.runs.len(), 3);
    for run in &rep.runs {
        assert!(run.stopped);
        assert_eq!(run.records.last().unwrap().step, 10);
    }
    assert!(exp.progress().done);
}

#[test]
fn phase_portrait_trajectories() {
    let c = Preset::Phase.config();
    let mut be = CpuBackend::new();
    let p = block_on(lora_one_lab::phase::compute(&c, &mut be, 64, 12)).unwrap();
    assert_eq!(p.surface.values.len(), 64 * 64);
    assert!(p.surface.values.iter().all(|v| v.is_finite()));
    let get = |k: InitKind| p.report.runs.iter().find(|r| r.init == k).unwrap();
    // LoRA-One starts on the hyperbola at (√δ, √δ) (population: s1 = δ = 1)
    let one = get(InitKind::LoraOne).records[0].proj.unwrap();
    assert!(
        (one[0] - 1.0).abs() < 1e-12 && (one[1] - 1.0).abs() < 1e-12,
        "{one:?}"
    );
    // vanilla starts next to the saddle with b = 0
    let van = get(InitKind::Vanilla).records[0].proj.unwrap();
    assert!(van[0].abs() < 0.5 && van[1] == 0.0);
    // LoRA-GA starts at (−c, 0) with its B entirely off the plane: ‖B_⊥‖ = c
    let ga = get(InitKind::LoraGa);
    let g0 = ga.records[0].proj.unwrap();
    let cga = 2f64.powf(0.25) / 2.0;
    assert!(
        (g0[0] + cga).abs() < 1e-12 && g0[1].abs() < 1e-12 && (g0[2] - cga).abs() < 1e-12,
        "{g0:?}"
    );
    // all three end on the hyperbola ab = δ... vanilla needs its escape time, LoRA-One is already there
    for r in &p.report.runs {
        let last = r.last().unwrap().proj.unwrap();
        assert!(
            (last[0] * last[1] - 1.0).abs() < 1e-2,
            "{}: {last:?}",
            r.label
        );
    }
}

#[test]
fn rank_below_target_rank_is_supported() {
    // r < r*: LoRA cannot reach Δ; the metrics compare A's top-r subspace with G's top-r*.
    let mut c = small(Preset::Spectral);
    c.r = 1;
    c.r_star = 2;
    c.steps = 200;
    let rep = run(&c);
    for r in &rep.runs {
        assert!(r.diverged.is_none(), "{}", r.label);
        let last = r.last().unwrap();
        assert_eq!(last.sv_ab.len(), 1);
        // the best rank-1 approximation leaves the second singular value of Δ: risk ≥ ½λ2²
        let lambda2 = rep.problem.delta_s[1];
        assert!(
            last.risk >= 0.5 * lambda2 * lambda2 * 0.5,
            "{}: {}",
            r.label,
            last.risk
        );
    }
    let one = rep
        .runs
        .iter()
        .find(|r| r.init == InitKind::LoraOne)
        .unwrap();
    assert!(one.records[0].sin_a.unwrap() < 1e-8);
}

#[test]
fn subspace_iteration_backend_matches_exact_backend() {
    // rank-deficient G (rank r* = 4 < 2r = 16): the vectors past the rank are a seeded
    // completion, so both SVD methods build the same LoRA-GA factors up to rounding
    let c = Preset::Spectral.config();
    let exact = run(&c);
    let mut exp = Experiment::new(&c).unwrap();
    let mut be = CpuBackend::with_svd(lora_one_lab::cpu::SvdMethod::Subspace {
        oversample: 8,
        iters: 6,
    });
    block_on(exp.run_to_end(&mut be, 100, |_| {})).unwrap();
    let sub = exp.report();
    assert_eq!(sub.problem.g_rank, 4);
    for (a, b) in exact.runs.iter().zip(&sub.runs) {
        for (x, y) in a.records.iter().zip(&b.records).take(20) {
            assert!(
                (x.loss - y.loss).abs() < 1e-6 * (1.0 + x.loss),
                "{} step {}",
                a.label,
                x.step
            );
        }
    }
}

#[test]
fn a_batch_equals_its_runs_done_one_by_one() {
    // a batch of every init (and two α²) against one experiment per run
    let mut c = small(Preset::Spectral);
    c.alpha2 = vec![1e-2, 1e-3];
    let batch = run(&c);
    assert_eq!(batch.runs.len(), 4);
    for r in &batch.runs {
        let mut solo = c.clone();
        solo.inits = vec![r.init];
        if let Some(a) = r.alpha2 {
            solo.alpha2 = vec![a];
        }
        let one = run(&solo);
        assert_eq!(one.runs.len(), 1);
        same_bits(r, &one.runs[0]);
    }
}

#[test]
fn ensemble_draws_are_independent_and_draw_zero_is_the_seed() {
    let mut c = small(Preset::Alignment);
    c.alpha2 = vec![1e-3];
    c.steps = 30;
    let one = run(&c);
    c.seeds = 4;
    let ens = run(&c);
    assert_eq!(ens.runs.len(), 4);
    let draws: Vec<usize> = ens.runs.iter().map(|r| r.draw).collect();
    assert_eq!(draws, vec![0, 1, 2, 3]);
    assert!(ens.runs.iter().all(|r| r.label == one.runs[0].label));
    same_bits(&ens.runs[0], &one.runs[0]);
    // other draws start elsewhere and end elsewhere
    let l0 = ens.runs[0].records[1].loss;
    for r in &ens.runs[1..] {
        assert_ne!(r.records[1].loss.to_bits(), l0.to_bits());
        assert!(r.last().unwrap().risk < r.records[0].risk);
    }
    // the JSON carries each run's draw
    let json = serde_json::to_string(&ens).unwrap();
    assert!(json.contains("\"draw\":3"));
}

#[test]
fn ensemble_size_is_validated_with_its_field() {
    let mut c = small(Preset::Alignment);
    c.seeds = 0;
    assert_eq!(c.validate().unwrap_err().field, "seeds");
    c.seeds = 5000;
    assert_eq!(c.validate().unwrap_err().field, "seeds");
    c.seeds = 4000;
    c.alpha2 = vec![1.0, 0.1, 0.01, 0.001, 1e-4];
    let e = c.validate().unwrap_err();
    assert_eq!(e.field, "seeds");
    assert!(e.message.contains("20000 runs"), "{e}");
    let mut c = Config::default();
    c.set("seeds", "12").unwrap();
    assert_eq!(c.seeds, 12);
    assert!(c.to_pairs().contains(&("seeds", "12".to_string())));
}

#[test]
fn one_run_diverging_leaves_the_others_untouched() {
    let c = small(Preset::Spectral);
    let p = Problem::generate(&c).unwrap();
    let mut exp = Experiment::from_problem(p.clone());
    let mut be = CpuBackend::new();
    block_on(exp.prepare(&mut be)).unwrap();
    let g = exp.g_svd().unwrap().clone();
    let plans = c.runs();
    let specs: Vec<_> = plans
        .iter()
        .enumerate()
        .map(|(i, plan)| {
            let mut s = StepSettings::from_config(&c);
            if i == 1 {
                s.eta = 50.0; // this one diverges
            }
            lora_one_lab::engine::RunSpec {
                init: init::build(&c, plan, &g, None),
                settings: s,
            }
        })
        .collect();
    let basis = lora_one_lab::engine::MetricBasis {
        u: g.u.columns(0, c.r_star).into_owned(),
        v: g.v.columns(0, c.r_star).into_owned(),
    };
    let mut together = block_on(be.start_batch(&specs, &basis)).unwrap();
    for _ in 0..6 {
        for (acc, adv) in together
            .iter_mut()
            .zip(block_on(be.advance_batch(10)).unwrap())
        {
            acc.snapshots.extend(adv.snapshots);
            if adv.diverged.is_some() {
                acc.diverged = adv.diverged;
            }
        }
    }
    let div = together[1].diverged.as_ref().expect("η = 50 diverges");
    assert!(div.step > 0 && div.step <= 60, "{div:?}");
    assert_eq!(together[1].snapshots.last().unwrap().step, div.step - 1);
    for i in [0, 2] {
        assert!(together[i].diverged.is_none());
        let mut solo = CpuBackend::new();
        block_on(solo.load(&p)).unwrap();
        let mut adv = block_on(solo.start(&specs[i].init, &specs[i].settings)).unwrap();
        adv.snapshots
            .extend(block_on(solo.advance(60)).unwrap().snapshots);
        assert_eq!(adv.snapshots.len(), together[i].snapshots.len());
        for (x, y) in adv.snapshots.iter().zip(&together[i].snapshots) {
            assert_eq!(x.loss.to_bits(), y.loss.to_bits());
        }
    }
}

#[test]
fn gpu_is_chosen_only_above_the_measured_crossover() {
    use lora_one_lab::engine::{gpu_is_faster, step_flops, GPU_MIN_BATCH_FLOPS};
    // the phase portrait's 2×2 problem and the 3-run spectral preset stay on the CPU; the 5-run
    // alignment preset goes to a hardware GPU (BENCHMARKS.md: 1.2–1.7× there, spectral 0.8×)
    assert!(gpu_is_faster(&Preset::Phase.config())
        .unwrap_err()
        .contains("crossover"));
    assert!(gpu_is_faster(&Preset::Spectral.config()).is_err());
    assert!(gpu_is_faster(&Preset::Alignment.config()).is_ok());
    // the rule is the batch's work per step: more runs can cross it
    let mut c = small(Preset::Alignment);
    c.d = 16;
    c.k = 16;
    c.alpha2 = vec![1e-3];
    let one = step_flops(16, 16, c.r);
    assert!(one < GPU_MIN_BATCH_FLOPS);
    assert!(gpu_is_faster(&c).is_err());
    c.seeds = (GPU_MIN_BATCH_FLOPS / one).ceil() as usize;
    assert!(gpu_is_faster(&c).is_ok());
    // above d = 100 the threshold grows with the problem: one run of d = 200 stays on the CPU
    // (0.16× on the H200), sixteen go to the GPU (2×)
    let mut c = small(Preset::Alignment);
    (c.d, c.k, c.r, c.alpha2) = (200, 200, 8, vec![1e-3]);
    c.inits = vec![InitKind::Vanilla];
    assert!(step_flops(200, 200, c.r) >= GPU_MIN_BATCH_FLOPS);
    assert!(gpu_is_faster(&c).is_err());
    c.seeds = 16;
    assert!(gpu_is_faster(&c).is_ok());
}

/// The talk's linearised dynamics: from a tiny vanilla init the measured sin θ_A follows the
/// power-iteration prediction (the quadratic term is negligible), and parts from it once AB has
/// grown (the prediction keeps aligning, the real run plateaus).
#[test]
fn vanilla_follows_the_linearised_prediction_near_the_saddle() {
    let mut c = small(Preset::Alignment);
    c.alpha2 = vec![1e-10];
    c.steps = 1200;
    c.record_every = 10;
    let rep = run(&c);
    let recs = &rep.runs[0].records;
    let mut parted = false;
    for r in recs {
        let (Some(m), Some(p)) = (r.sin_a, r.lin_sin_a) else {
            panic!(
                "step {}: both the measured and the predicted sin θ_A",
                r.step
            )
        };
        if r.step <= 300 {
            assert!(
                (m - p).abs() < 1e-3,
                "step {}: measured {m} predicted {p}",
                r.step
            );
        }
        parted |= (m - p).abs() > 0.05;
    }
    assert!(parted, "the nonlinear term takes over later");
    // only vanilla GD runs carry it
    let mut c2 = small(Preset::Spectral);
    c2.steps = 5;
    assert!(run(&c2)
        .runs
        .iter()
        .all(|r| r.records.iter().all(|x| x.lin_sin_a.is_none())));
}
