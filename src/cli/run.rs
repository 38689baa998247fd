//! `lora-one-lab run`: a reproducible experiment, written as JSON or CSV.

use super::{build_config, dump, extension, io_err, CliError};
use indicatif::{ProgressBar, ProgressStyle};
use lora_one_lab::engine::{Backend, Report};
use lora_one_lab::{CpuBackend, Experiment};
use std::path::{Path, PathBuf};

pub struct Args {
    pub preset: String,
    pub config: Option<PathBuf>,
    pub sets: Vec<String>,
    pub out: Option<PathBuf>,
    pub dump: Option<PathBuf>,
    pub gpu: bool,
    pub quiet: bool,
}

pub fn main(args: Args) -> Result<(), CliError> {
    let cfg = build_config(&args.preset, args.config.as_deref(), &args.sets)?;
    let out_ext = match &args.out {
        Some(p) => Some(extension(p, &["json", "csv"])?),
        None => None,
    };
    let mut exp = Experiment::new(&cfg)?;
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::new(1000);
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {percent:>3}% {msg}",
            )
            .expect("valid template"),
        );
        b
    };
    if args.gpu {
        run_gpu(&mut exp, &bar)?;
    } else {
        let mut be = CpuBackend::new();
        execute(&mut exp, &mut be, &bar)?;
        if let Some(dir) = &args.dump {
            let files = dump::dump(dir, &exp, &be)?;
            if !args.quiet {
                eprintln!("dumped {} arrays to {}", files.len(), dir.display());
            }
        }
    }
    if args.gpu {
        if let Some(dir) = &args.dump {
            // the dump always holds the f64 reference data
            let mut cpu = CpuBackend::new();
            pollster::block_on(cpu.load(&exp.problem))?;
            dump::dump(dir, &exp, &cpu)?;
        }
    }
    bar.finish_and_clear();
    let report = exp.report();
    if !args.quiet {
        print_summary(&report);
    }
    if let (Some(path), Some(ext)) = (&args.out, out_ext) {
        write_report(&report, path, &ext)?;
        if !args.quiet {
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(())
}

#[cfg(feature = "gpu")]
fn run_gpu(exp: &mut Experiment, bar: &ProgressBar) -> Result<(), CliError> {
    let mut be = pollster::block_on(lora_one_lab::gpu::GpuBackend::new())?;
    execute(exp, &mut be, bar)
}

#[cfg(not(feature = "gpu"))]
fn run_gpu(_: &mut Experiment, _: &ProgressBar) -> Result<(), CliError> {
    Err(CliError::Usage(
        "`--backend gpu`: this binary was built without the `gpu` feature".into(),
    ))
}

fn execute<B: Backend>(
    exp: &mut Experiment,
    be: &mut B,
    bar: &ProgressBar,
) -> Result<(), CliError> {
    let info = be.info();
    bar.set_message(format!("{} · preparing G", info.name));
    pollster::block_on(exp.run_to_end(be, 50, |p| {
        bar.set_position((p.fraction() * 1000.0) as u64);
        bar.set_message(format!(
            "{} runs ({} running) · step {}/{}",
            p.runs, p.live, p.step, p.steps
        ));
    }))?;
    Ok(())
}

fn print_summary(r: &Report) {
    eprintln!(
        "backend: {} ({}) · d={} k={} r={} r*={} N={} · form G {:.2} ms, SVD {:.2} ms, Σ̂ {:.2} ms",
        r.backend.name,
        r.backend.precision,
        r.config.d,
        r.config.k,
        r.config.r,
        r.config.r_star,
        r.problem.n,
        r.cost.form_g_ms,
        r.cost.svd_ms,
        r.cost.sigma_ms
    );
    eprintln!(
        "{:<18} {:>6} {:>12} {:>12} {:>9} {:>9} {:>10} {:>10}",
        "init", "steps", "loss", "risk", "sinθ_A", "sinθ_B", "init ms", "train ms"
    );
    for run in &r.runs {
        let Some(last) = run.last() else { continue };
        let opt = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.2e}"));
        eprintln!(
            "{:<18} {:>6} {:>12.4e} {:>12.4e} {:>9} {:>9} {:>10.2} {:>10.2}{}",
            run.label,
            last.step,
            last.loss,
            last.risk,
            opt(last.sin_a),
            opt(last.sin_b),
            run.init_ms,
            run.train_ms,
            match (&run.diverged, run.stopped) {
                (Some(d), _) => format!("  DIVERGED: {}", d.reason),
                (None, true) => "  (stopped)".into(),
                _ => String::new(),
            }
        );
    }
}

/// CSV columns, one row per recorded step of every run.
pub const CSV_HEADER: [&str; 12] = [
    "run", "init", "alpha2", "step", "loss", "risk", "ln_risk", "sin_a", "sin_b", "err_f",
    "wall_ms", "sv_ab",
];

pub fn write_report(r: &Report, path: &Path, ext: &str) -> Result<(), CliError> {
    match ext {
        "json" => {
            let text = serde_json::to_string_pretty(r).expect("report serialises");
            std::fs::write(path, text).map_err(|e| io_err(path, e))
        }
        _ => {
            let mut w = csv::Writer::from_path(path).map_err(|e| io_err(path, e))?;
            w.write_record(CSV_HEADER).map_err(|e| io_err(path, e))?;
            let opt = |v: Option<f64>| v.map_or(String::new(), |x| format!("{x:e}"));
            for run in &r.runs {
                for rec in &run.records {
                    let sv = rec
                        .sv_ab
                        .iter()
                        .map(|s| format!("{s:e}"))
                        .collect::<Vec<_>>()
                        .join(";");
                    w.write_record([
                        run.label.clone(),
                        run.init.name().to_string(),
                        opt(run.alpha2),
                        rec.step.to_string(),
                        format!("{:e}", rec.loss),
                        format!("{:e}", rec.risk),
                        if rec.risk > 0.0 {
                            format!("{:e}", rec.risk.ln())
                        } else {
                            String::new()
                        },
                        opt(rec.sin_a),
                        opt(rec.sin_b),
                        format!("{:e}", rec.err_f),
                        format!("{:.4}", rec.wall_ms),
                        sv,
                    ])
                    .map_err(|e| io_err(path, e))?;
                }
            }
            w.flush().map_err(|e| io_err(path, e))
        }
    }
}
