//! The CLI's subcommands.

pub mod bench;
pub mod dump;
pub mod finetune;
pub mod plot;
pub mod run;
pub mod sweep;

use lora_one_lab::config::{Config, ConfigError, Preset};
use lora_one_lab::engine::{EngineError, Report};
use lora_one_lab::CpuBackend;
use std::fmt;
use std::path::Path;

/// A CLI failure: bad input (exit code 2) or a runtime failure (exit code 1).
pub enum CliError {
    Usage(String),
    Runtime(String),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Runtime(_) => 1,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(m) | CliError::Runtime(m) => f.write_str(m),
        }
    }
}

impl From<ConfigError> for CliError {
    fn from(e: ConfigError) -> Self {
        CliError::Usage(format!("invalid configuration: {e}"))
    }
}

impl From<EngineError> for CliError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Config(c) => c.into(),
            other => CliError::Runtime(other.to_string()),
        }
    }
}

pub fn io_err(path: &Path, e: impl fmt::Display) -> CliError {
    CliError::Runtime(format!("{}: {e}", path.display()))
}

/// Output format chosen by a file's extension.
pub fn extension(path: &Path, allowed: &[&str]) -> Result<String, CliError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .unwrap_or_default();
    if allowed.contains(&ext.as_str()) {
        Ok(ext)
    } else {
        Err(CliError::Usage(format!(
            "`{}`: the file must end in {}",
            path.display(),
            allowed
                .iter()
                .map(|e| format!(".{e}"))
                .collect::<Vec<_>>()
                .join(" or ")
        )))
    }
}

/// A preset (or JSON file) with `key=value` overrides applied, validated.
pub fn build_config(
    preset: &str,
    file: Option<&Path>,
    sets: &[String],
) -> Result<Config, CliError> {
    let mut cfg = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| io_err(path, e))?;
            lora_one_lab::config::json_at_path::<Config>(&text).map_err(|e| {
                CliError::Usage(format!("{}: not a valid config: {e}", path.display()))
            })?
        }
        None => Preset::parse(preset)
            .ok_or_else(|| {
                CliError::Usage(format!(
                    "`--preset`: unknown preset `{preset}`; expected one of alignment, spectral, phase"
                ))
            })?
            .config(),
    };
    for s in sets {
        let (k, v) = s.split_once('=').ok_or_else(|| {
            CliError::Usage(format!(
                "`--set {s}`: expected KEY=VALUE, e.g. --set steps=500"
            ))
        })?;
        if k.trim() == "preset" {
            let p = Preset::parse(v.trim())
                .ok_or_else(|| CliError::Usage(format!("`preset`: unknown preset `{v}`")))?;
            cfg = p.config();
            continue;
        }
        cfg.set(k.trim(), v)?;
    }
    cfg.validate()?;
    Ok(cfg)
}

pub fn preset_cmd(name: &str) -> Result<(), CliError> {
    let cfg = build_config(name, None, &[])?;
    println!(
        "{}",
        serde_json::to_string_pretty(&cfg).expect("config serialises")
    );
    Ok(())
}

pub fn phase_cmd(
    sets: &[String],
    out: &Path,
    json: Option<&Path>,
    grid: usize,
) -> Result<(), CliError> {
    let ext = extension(out, &["svg", "png"])?;
    if !(8..=2048).contains(&grid) {
        return Err(CliError::Usage(format!(
            "`--grid`: must be in 8..=2048, got {grid}"
        )));
    }
    let cfg = build_config("phase", None, sets)?;
    let mut be = CpuBackend::new();
    let portrait = pollster::block_on(lora_one_lab::phase::compute(&cfg, &mut be, grid, 18))?;
    plot::draw_phase(&portrait, out, &ext)?;
    if let Some(j) = json {
        let text = serde_json::to_string_pretty(&portrait).expect("portrait serialises");
        std::fs::write(j, text).map_err(|e| io_err(j, e))?;
    }
    eprintln!("wrote {}", out.display());
    Ok(())
}

/// `toy`: run the Fig. 3 toy and write its figure (.svg/.png) or its trajectories (.json).
pub fn toy_cmd(
    spec: &lora_one_lab::toy3d::ToySpec,
    cam: lora_one_lab::toy3d::Camera,
    out: &Path,
) -> Result<(), CliError> {
    let ext = extension(out, &["svg", "png", "json"])?;
    if !(cam.yaw.is_finite() && cam.pitch.abs() <= 89f64.to_radians()) {
        return Err(CliError::Usage(
            "`--pitch`: must be in [-89, 89] degrees (and `--yaw` finite)".into(),
        ));
    }
    let r = lora_one_lab::toy3d::run(spec)
        .map_err(|e| CliError::Usage(format!("`--{}`: {}", e.field, e.message)))?;
    if ext == "json" {
        let text = serde_json::to_string(&r).expect("toy report serialises");
        std::fs::write(out, text).map_err(|e| io_err(out, e))?;
    } else {
        plot::draw_toy(&r, cam, out, &ext)?;
    }
    for run in r.runs.iter().filter(|x| x.diverged_at.is_some()) {
        eprintln!(
            "draw {} ({}): diverged at step {}",
            run.draw,
            run.init.label(),
            run.diverged_at.unwrap_or(0)
        );
    }
    eprintln!("wrote {}", out.display());
    Ok(())
}

pub fn plot_cmd(run: &Path, out: &Path) -> Result<(), CliError> {
    let ext = extension(out, &["svg", "png"])?;
    let text = std::fs::read_to_string(run).map_err(|e| io_err(run, e))?;
    // a sweep file (`lora-one-lab sweep --out FILE.json`, the web app's sweep export)
    if text.contains(&format!("\"schema\": \"{}\"", lora_one_lab::sweep::SCHEMA))
        || text.contains(&format!("\"schema\":\"{}\"", lora_one_lab::sweep::SCHEMA))
    {
        let r: lora_one_lab::sweep::SweepReport = lora_one_lab::config::json_at_path(&text)
            .map_err(|e| CliError::Usage(format!("{}: not a sweep file: {e}", run.display())))?;
        plot::draw_sweep(&r, out, &ext)?;
        eprintln!("wrote {}", out.display());
        return Ok(());
    }
    // a fine-tuning file (`lora-one-lab finetune --out FILE.json`, the Digits view's export)
    if text.contains(lora_one_lab::digits::SCHEMA) {
        let r: lora_one_lab::digits::FtReport = lora_one_lab::config::json_at_path(&text)
            .map_err(|e| CliError::Usage(format!("{}: not a digits file: {e}", run.display())))?;
        plot::draw_digits(&r, out, &ext)?;
        eprintln!("wrote {}", out.display());
        return Ok(());
    }
    let report = Report::from_json(&text).map_err(|e| {
        CliError::Usage(format!(
            "{}: not a run file written by `lora-one-lab run --out FILE.json`: {e}",
            run.display()
        ))
    })?;
    plot::draw_curves(&report, out, &ext)?;
    eprintln!("wrote {}", out.display());
    Ok(())
}
