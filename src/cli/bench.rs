//! `lora-one-lab bench`: milliseconds per optimiser step of the CPU reference, factored form
//! (SPEC §1 shortcut) against the residual form, side by side in one process.

use super::{io_err, CliError};
use lora_one_lab::config::{InitKind, Optimiser, Preset, StepForm};
use lora_one_lab::engine::{Backend, StepSettings};
use lora_one_lab::{init, linalg, CpuBackend, Problem};
use serde::Serialize;
use std::path::Path;
use web_time::Instant;

#[derive(Serialize)]
struct Row {
    d: usize,
    k: usize,
    r: usize,
    n: usize,
    form: &'static str,
    optimiser: &'static str,
    flops_per_step: f64,
    samples_ms: Vec<f64>,
    median_ms: f64,
    gflops: f64,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

pub fn main(dims: &[usize], r: usize, reps: usize, out: Option<&Path>) -> Result<(), CliError> {
    if reps == 0 || reps > 1000 {
        return Err(CliError::Usage(format!(
            "`--reps`: must be in 1..=1000, got {reps}"
        )));
    }
    let mut rows = Vec::new();
    eprintln!(
        "{:>6} {:>3} {:>7} {:>10} {:>15} {:>12} {:>9}",
        "d=k", "r", "N", "form", "optimiser", "median ms", "GFLOP/s"
    );
    for &d in dims {
        for form in [StepForm::Factored, StepForm::Residual] {
            let mut cfg = Preset::Spectral.config();
            cfg.d = d;
            cfg.k = d;
            cfg.r = r;
            cfg.r_star = 4.min(r);
            cfg.inits = vec![InitKind::LoraOne];
            cfg.step_form = form;
            cfg.steps = 1_000_000;
            cfg.record_every = 1_000_000;
            cfg.validate()?;
            let problem = Problem::generate(&cfg)?;
            let n = problem.n();
            let mut be = CpuBackend::with_svd(lora_one_lab::cpu::SvdMethod::Subspace {
                oversample: 8,
                iters: 4,
            });
            pollster::block_on(be.load(&problem))?;
            let (svd, _) = linalg::canonicalize(pollster::block_on(be.top_svd(r))?, 0);
            let factors = init::lora_one(&cfg, &svd);
            for opt in [Optimiser::Gd, Optimiser::Preconditioned] {
                let mut settings = StepSettings::from_config(&cfg);
                settings.optimiser = opt;
                settings.eta = 1e-3;
                pollster::block_on(be.start(&factors, &settings))?;
                // one warm-up step, then timed single steps
                pollster::block_on(be.advance(1))?;
                let reps_here = if form == StepForm::Residual && d >= 1000 {
                    reps.min(3)
                } else {
                    reps
                };
                let mut samples = Vec::with_capacity(reps_here);
                for _ in 0..reps_here {
                    let t = Instant::now();
                    pollster::block_on(be.advance(1))?;
                    samples.push(t.elapsed().as_secs_f64() * 1e3);
                }
                let (df, kf, rf, nf) = (d as f64, d as f64, r as f64, n as f64);
                let flops = match form {
                    StepForm::Factored => {
                        2.0 * df * df * rf + 4.0 * df * kf * rf + 6.0 * (df + kf) * rf * rf
                    }
                    StepForm::Residual => 4.0 * nf * df * kf + 6.0 * df * kf * rf,
                };
                let mut s = samples.clone();
                let med = median(&mut s);
                let row = Row {
                    d,
                    k: d,
                    r,
                    n,
                    form: match form {
                        StepForm::Factored => "factored",
                        StepForm::Residual => "residual",
                    },
                    optimiser: match opt {
                        Optimiser::Gd => "gd",
                        Optimiser::Preconditioned => "preconditioned",
                    },
                    flops_per_step: flops,
                    samples_ms: samples,
                    median_ms: med,
                    gflops: flops / (med * 1e-3) / 1e9,
                };
                eprintln!(
                    "{:>6} {:>3} {:>7} {:>10} {:>15} {:>12.4} {:>9.2}",
                    d, r, n, row.form, row.optimiser, med, row.gflops
                );
                rows.push(row);
            }
        }
    }
    if let Some(path) = out {
        let text = serde_json::to_string_pretty(&rows).expect("rows serialise");
        std::fs::write(path, text).map_err(|e| io_err(path, e))?;
    }
    Ok(())
}
