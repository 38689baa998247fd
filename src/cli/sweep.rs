//! `lora-one-lab sweep`: the sweeps of SPEC §8 (Fig. 2, the Θ(ln d) alignment law, the seeds
//! spread), written as JSON (the web export's schema) or CSV (one row per run).

use super::{extension, io_err, CliError};
use indicatif::{ProgressBar, ProgressStyle};
use lora_one_lab::engine::Backend;
use lora_one_lab::sweep::{self, Axis, Sweep, SweepPreset, SweepReport, SweepSpec};
use lora_one_lab::CpuBackend;
use std::path::PathBuf;

pub struct Args {
    pub preset: String,
    pub sets: Vec<String>,
    pub x: Option<String>,
    pub y: Option<String>,
    pub theta: Option<f64>,
    pub out: Option<PathBuf>,
    pub gpu: bool,
    pub quiet: bool,
}

/// The preset's spec with the overrides: `--set` on the base config, `--x`/`--y` axes.
pub fn build_spec(args: &Args) -> Result<SweepSpec, CliError> {
    let p = SweepPreset::parse(&args.preset).ok_or_else(|| {
        CliError::Usage(format!(
            "`--preset`: unknown sweep preset `{}`; expected one of fig2, ln-d-law, seeds",
            args.preset
        ))
    })?;
    let mut spec = p.spec();
    for s in &args.sets {
        let (k, v) = s.split_once('=').ok_or_else(|| {
            CliError::Usage(format!(
                "`--set {s}`: expected KEY=VALUE, e.g. --set steps=500"
            ))
        })?;
        spec.base.set(k, v)?;
    }
    if let Some(x) = &args.x {
        spec.x = Axis::parse(x)?;
    }
    if let Some(y) = &args.y {
        spec.y = if y.trim() == "none" {
            None
        } else {
            Some(Axis::parse(y)?)
        };
    }
    if let Some(t) = args.theta {
        spec.theta = t;
    }
    spec.validate()?;
    Ok(spec)
}

pub fn main(args: Args) -> Result<(), CliError> {
    let spec = build_spec(&args)?;
    let ext = match &args.out {
        Some(p) => Some(extension(p, &["json", "csv"])?),
        None => None,
    };
    let total = spec.trajectory_steps()?;
    let mut sw = Sweep::new(spec)?;
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
        b.set_message(format!("{total} trajectory-steps"));
        b
    };
    if args.gpu {
        run_gpu(&mut sw, &bar)?;
    } else {
        execute(&mut sw, &mut CpuBackend::new(), &bar)?;
    }
    bar.finish_and_clear();
    let r = sw.report();
    if !args.quiet {
        print_summary(&r);
    }
    if let (Some(path), Some(ext)) = (&args.out, ext) {
        let text = if ext == "json" {
            serde_json::to_string_pretty(&r).expect("sweep serialises")
        } else {
            sweep::to_csv(&r)
        };
        std::fs::write(path, text).map_err(|e| io_err(path, e))?;
        if !args.quiet {
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(())
}

#[cfg(feature = "gpu")]
fn run_gpu(sw: &mut Sweep, bar: &ProgressBar) -> Result<(), CliError> {
    let mut be = pollster::block_on(lora_one_lab::gpu::GpuBackend::new())?;
    execute(sw, &mut be, bar)
}

#[cfg(not(feature = "gpu"))]
fn run_gpu(_: &mut Sweep, _: &ProgressBar) -> Result<(), CliError> {
    Err(CliError::Usage(
        "`--backend gpu`: this binary was built without the `gpu` feature".into(),
    ))
}

fn execute<B: Backend>(sw: &mut Sweep, be: &mut B, bar: &ProgressBar) -> Result<(), CliError> {
    pollster::block_on(sw.run_to_end(be, 500, |p| {
        bar.set_position((p.fraction() * 1000.0) as u64);
    }))?;
    Ok(())
}

fn print_summary(r: &SweepReport) {
    let s = &r.spec;
    eprintln!(
        "sweep {} × {} · {} cells · {} trajectory-steps in {:.0} ms on {}",
        s.x.key,
        s.y.as_ref().map_or("-", |a| a.key.as_str()),
        r.cells.len(),
        r.trajectory_steps,
        r.wall_ms,
        r.backend
    );
    let med = |v: Option<lora_one_lab::sweep::Spread>| {
        v.map_or("-".to_string(), |x| format!("{:.3}", x.median))
    };
    eprintln!(
        "{:>10} {:>10} {:>12} {:>12} {:>10} {:>10}",
        s.x.key,
        s.y.as_ref().map_or("", |a| a.key.as_str()),
        "min sinθ_A",
        "final ln R",
        "t*(θ)",
        "theory"
    );
    for c in &r.cells {
        eprintln!(
            "{:>10} {:>10} {:>12} {:>12} {:>10} {:>10.1}",
            format!("{}", c.x),
            c.y.map_or(String::new(), |y| format!("{y}")),
            med(c.min_sin_a),
            med(c.final_ln_risk),
            med(c.t_star),
            c.t_theory
        );
    }
    if let Some(sl) = r.slope_t_star_ln_d {
        eprintln!("fitted slope of t*(θ) against ln d: {sl:.1} steps per unit ln d");
    }
}
