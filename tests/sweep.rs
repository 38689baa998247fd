//! Sweeps (SPEC §8) on the CPU reference: a sweep equals its runs done one by one; on small
//! versions of the presets, the paper's laws hold (t* grows with ln d; smaller α² aligns better).

use lora_one_lab::config::InitKind;
use lora_one_lab::sweep::{Axis, RunSummary, Sweep, SweepPreset, SweepReport, SweepSpec};
use lora_one_lab::{CpuBackend, Experiment};
use pollster::block_on;

fn run(spec: SweepSpec) -> SweepReport {
    let mut sw = Sweep::new(spec).expect("valid sweep");
    block_on(sw.run_to_end(&mut CpuBackend::new(), 1000, |_| {})).expect("sweep runs");
    assert!(sw.done());
    sw.report()
}

/// Every cell's runs are exactly the runs of its configuration done alone (bit for bit on the
/// CPU), although the cells of a row run as one batch.
#[test]
fn a_sweep_equals_its_runs_done_one_by_one() {
    let mut spec = SweepPreset::Fig2.spec();
    spec.base.steps = 60;
    spec.base.seeds = 2;
    spec.x = Axis::parse("alpha2=1e-4,1e-2").unwrap();
    spec.y = Some(Axis::parse("d=24,40").unwrap());
    let r = run(spec.clone());
    assert_eq!(r.cells.len(), 4);
    for c in &r.cells {
        let mut cfg = spec.base.clone();
        cfg.inits = vec![InitKind::Vanilla];
        cfg.d = c.y.unwrap() as usize;
        cfg.n = None;
        cfg.alpha2 = vec![c.x];
        let mut e = Experiment::new(&cfg).unwrap();
        block_on(e.run_to_end(&mut CpuBackend::new(), 1000, |_| {})).unwrap();
        let alone: Vec<RunSummary> = e
            .runs()
            .iter()
            .map(|x| RunSummary::of(x, spec.theta, spec.risk_threshold))
            .collect();
        assert_eq!(c.runs, alone, "cell α²={} d={:?}", c.x, c.y);
        assert_eq!(c.runs.len(), 2);
    }
    // the CSV has a row per run
    assert_eq!(lora_one_lab::sweep::to_csv(&r).lines().count(), 1 + 4 * 2);
}

/// The Θ(ln d) law on a small `ln-d-law`: t*(θ) grows with d, and the fitted slope of t*
/// against ln d is positive and finite.
#[test]
fn alignment_time_grows_with_ln_d() {
    let mut spec = SweepPreset::LnDLaw.spec();
    spec.x = Axis::parse("d=32,64,128,256").unwrap();
    spec.base.seeds = 3;
    spec.base.steps = 500;
    let r = run(spec);
    let t: Vec<f64> = r
        .cells
        .iter()
        .map(|c| {
            c.t_star
                .expect("every d aligns to θ within the steps")
                .median
        })
        .collect();
    for w in t.windows(2) {
        assert!(w[1] > w[0], "t* grows with d: {t:?}");
    }
    let slope = r.slope_t_star_ln_d.expect("slope fitted");
    assert!(slope.is_finite() && slope > 0.0, "slope {slope}");
    // the theorem's prediction grows with d too, and is of the same order
    for c in &r.cells {
        let m = c.t_star.unwrap().median;
        assert!(
            c.t_theory > 0.0 && m < 4.0 * c.t_theory && m > 0.1 * c.t_theory,
            "d={} t*={m} theory={}",
            c.x,
            c.t_theory
        );
    }
}

/// Fig. 2 on a small grid: at fixed d, a smaller α² reaches a smaller min_t sin θ_A.
#[test]
fn smaller_alpha2_aligns_better() {
    let mut spec = SweepPreset::Fig2.spec();
    spec.x = Axis::parse("alpha2=1e-6,1e-3,1").unwrap();
    spec.y = Some(Axis::parse("d=64").unwrap());
    spec.base.seeds = 3;
    spec.base.steps = 600;
    let r = run(spec);
    let m: Vec<f64> = r
        .cells
        .iter()
        .map(|c| c.min_sin_a.unwrap().median)
        .collect();
    assert!(m[0] < m[1] && m[1] < m[2], "min sin θ_A by α²: {m:?}");
}

/// Partial results: after some chunks, the finished cells are reported and progress is
/// between 0 and 1.
#[test]
fn partial_results_are_usable() {
    let mut spec = SweepPreset::LnDLaw.spec();
    spec.x = Axis::parse("d=16,24,32").unwrap();
    spec.base.seeds = 2;
    spec.base.steps = 50;
    let mut sw = Sweep::new(spec).unwrap();
    let mut be = CpuBackend::new();
    while sw.report().cells.is_empty() {
        block_on(sw.step(&mut be, 10)).unwrap();
    }
    let p = sw.progress();
    assert!(p.fraction() > 0.0 && p.fraction() < 1.0);
    assert_eq!(sw.report().cells.len(), 1);
}
