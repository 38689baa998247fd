//! `lora-one-lab finetune --preset digits`: SPEC §9 on the UCI handwritten digits — the talk's
//! table (pre-trained, one step, the spectral init alone, LoRA per init, full fine-tuning), the
//! curves and the Fig. 1(c) landscape; JSON (the web export's schema), CSV (one row per record),
//! or a figure (.svg/.png).

use super::{extension, io_err, plot, CliError};
use lora_one_lab::digits::{self, Digits, FtConfig, FtMethod, FtReport};
use std::path::PathBuf;

pub struct Args {
    pub preset: String,
    pub sets: Vec<String>,
    pub out: Option<PathBuf>,
    /// The GPU backend (`--backend gpu`) instead of the CPU reference.
    pub gpu: bool,
}

pub fn build_config(args: &Args) -> Result<FtConfig, CliError> {
    if args.preset != "digits" {
        return Err(CliError::Usage(format!(
            "`--preset`: unknown fine-tuning preset `{}`; expected digits",
            args.preset
        )));
    }
    let mut cfg = FtConfig::default();
    for s in &args.sets {
        let (k, v) = s.split_once('=').ok_or_else(|| {
            CliError::Usage(format!(
                "`--set {s}`: expected KEY=VALUE, e.g. --set steps=200"
            ))
        })?;
        cfg.set(k, v)?;
    }
    cfg.validate()?;
    Ok(cfg)
}

pub fn main(args: Args) -> Result<(), CliError> {
    let cfg = build_config(&args)?;
    let ext = match &args.out {
        Some(p) => Some(extension(p, &["json", "csv", "svg", "png"])?),
        None => None,
    };
    let data = Digits::embedded();
    let t = std::time::Instant::now();
    let methods = FtMethod::for_config(&cfg);
    let (r, on) = if args.gpu {
        run_gpu(&data, &cfg, &methods)?
    } else {
        (digits::run(&data, &cfg, &methods), "CPU".to_string())
    };
    eprintln!(
        "{} methods × {} seeds in {:.2} s on {on}",
        methods.len(),
        cfg.seeds,
        t.elapsed().as_secs_f64()
    );
    print_table(&r);
    if let (Some(out), Some(ext)) = (&args.out, ext) {
        match ext.as_str() {
            "json" => {
                let text = serde_json::to_string(&r).expect("report serialises");
                std::fs::write(out, text).map_err(|e| io_err(out, e))?;
            }
            "csv" => std::fs::write(out, digits::to_csv(&r)).map_err(|e| io_err(out, e))?,
            _ => plot::draw_digits(&r, out, &ext)?,
        }
        eprintln!("wrote {}", out.display());
    }
    Ok(())
}

#[cfg(feature = "gpu")]
fn run_gpu(
    data: &Digits,
    cfg: &FtConfig,
    methods: &[FtMethod],
) -> Result<(FtReport, String), CliError> {
    use lora_one_lab::digits::FtCompute;
    digits::gpu_fits(cfg)?;
    let mut be = pollster::block_on(lora_one_lab::gpu::GpuBackend::new())?;
    let r = pollster::block_on(digits::run_on(&mut be, data, cfg, methods))?;
    Ok((r, be.name()))
}

#[cfg(not(feature = "gpu"))]
fn run_gpu(_: &Digits, _: &FtConfig, _: &[FtMethod]) -> Result<(FtReport, String), CliError> {
    Err(CliError::Usage(
        "`--backend gpu`: this binary was built without the `gpu` feature".into(),
    ))
}

fn print_table(r: &FtReport) {
    for p in &r.pretraining {
        println!(
            "seed {}: pre-trained on odd digits, {:.1} % test accuracy there, {:.1} % on even digits ({:.0} ms)",
            p.seed,
            100.0 * p.odd_test_acc,
            100.0 * p.even_test_acc,
            p.ms
        );
    }
    println!(
        "{:<40} {:>22} {:>10} {:>10} {:>9}",
        "method", "test acc % (10–90 %)", "init ms", "train ms", "diverged"
    );
    for row in digits::table(r) {
        println!(
            "{:<40} {:>7.1} ({:>5.1}–{:>5.1}) {:>10.1} {:>10.1} {:>9}",
            row.label,
            100.0 * row.acc_median,
            100.0 * row.acc_q10,
            100.0 * row.acc_q90,
            row.init_ms,
            row.train_ms,
            row.diverged
        );
    }
}
