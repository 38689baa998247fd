//! `lora-one-lab`: the command-line front end of the engine (reproducible runs, data export,
//! headless figures, benchmarks).

mod cli;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "lora-one-lab",
    version,
    about = "LoRA-One Lab: vanilla LoRA vs LoRA-GA vs LoRA-One (spectral init from one full gradient)",
    after_help = "Examples:\n  lora-one-lab run --preset spectral --out spectral.json\n  lora-one-lab run --preset alignment --set steps=500 --out alignment.csv --dump problem/\n  lora-one-lab plot spectral.json --out spectral.svg\n  lora-one-lab phase --out phase.png\n  lora-one-lab sweep --preset ln-d-law --out law.json\n  lora-one-lab bench --dims 100,400,1000"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum BackendArg {
    Cpu,
    Gpu,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the configured initialisations and record the SPEC §4 metrics.
    Run {
        /// Start from a preset (alignment, spectral, phase).
        #[arg(long, default_value = "spectral")]
        preset: String,
        /// Start from a JSON config file instead (fields as in the output's "config").
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override a parameter: --set key=value (repeatable). Lists are comma-separated.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Output file: .json (full config, costs and per-step metrics) or .csv (one row per record).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also write the problem (X, W0, Δ, Y, G, Σ̂) and each run's initial factors as .npy files.
        #[arg(long)]
        dump: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "cpu")]
        backend: BackendArg,
        /// No progress bar or summary.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Draw the phase portrait (log-loss surface, flow, hyperbola, trajectories) as SVG or PNG.
    Phase {
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Output image: .svg or .png.
        #[arg(long)]
        out: PathBuf,
        /// Also write the portrait's data as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Grid resolution of the surface.
        #[arg(long, default_value_t = 160)]
        grid: usize,
    },
    /// Plot a run's curves (log-risk, loss, sin θ_A, sin θ_B) as SVG or PNG.
    Plot {
        /// A JSON file written by `run --out FILE.json`.
        run: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Time optimiser steps of both linear step forms (CPU reference, release build).
    Bench {
        /// Sizes d = k to time.
        #[arg(long, value_delimiter = ',', default_value = "100,400,1000")]
        dims: Vec<usize>,
        #[arg(long, default_value_t = 8)]
        r: usize,
        /// Timed repetitions per measurement (the median is reported).
        #[arg(long, default_value_t = 7)]
        reps: usize,
        /// Write the raw numbers as JSON.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Sweep one or two parameters × init draws (SPEC §8): Fig. 2, the ln d law, the seeds spread.
    Sweep {
        /// fig2 (α² × d), ln-d-law (t*(θ) against d), seeds (one setting, 64 draws).
        #[arg(long, default_value = "fig2")]
        preset: String,
        /// Override a parameter of the base config: --set key=value (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// The x axis: KEY=LIST or KEY=log:LO:HI:N or KEY=lin:LO:HI:N (e.g. alpha2=log:1e-6:1:7).
        #[arg(long)]
        x: Option<String>,
        /// The y axis, likewise (or `none`).
        #[arg(long)]
        y: Option<String>,
        /// The alignment threshold θ of t*(θ) (first step with sin θ_A ≤ θ).
        #[arg(long)]
        theta: Option<f64>,
        /// Output file: .json (the web export's schema) or .csv (one row per run).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "cpu")]
        backend: BackendArg,
        #[arg(long, short)]
        quiet: bool,
    },
    /// The Fig. 3 toy (SPEC §8): f(x) = b·xᵀa from the LoRA and spectral inits, in 3-D.
    Toy {
        /// Draws of the samples and the LoRA init (each trained from both starts).
        #[arg(long, default_value_t = 3)]
        seeds: usize,
        #[arg(long, default_value_t = 1000)]
        steps: usize,
        #[arg(long, default_value_t = 0.1)]
        eta: f64,
        /// Samples per draw.
        #[arg(long, default_value_t = 4)]
        n: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// View rotation about the vertical (b) axis, degrees.
        #[arg(long, default_value_t = 35.0, allow_hyphen_values = true)]
        yaw: f64,
        /// View elevation, degrees.
        #[arg(long, default_value_t = 20.0, allow_hyphen_values = true)]
        pitch: f64,
        /// Output file: .svg or .png (the figure), or .json (every trajectory).
        #[arg(long)]
        out: PathBuf,
    },
    /// SPEC §9 on real data: the UCI handwritten digits, pre-trained on the odd digits and
    /// fine-tuned on the even ones (the talk's table, the curves, Fig. 1(c)).
    Finetune {
        /// digits (the only preset).
        #[arg(long, default_value = "digits")]
        preset: String,
        /// Override a setting: --set key=value (repeatable), e.g. --set steps=200 --set rank=8.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Output: .json (the web export's schema), .csv (one row per record), .svg or .png.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Where the model's forward/backward passes and the SVD of G run.
        #[arg(long, value_enum, default_value = "cpu")]
        backend: BackendArg,
    },
    /// Print a preset's configuration as JSON.
    Preset { name: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Run {
            preset,
            config,
            sets,
            out,
            dump,
            backend,
            quiet,
        } => cli::run::main(cli::run::Args {
            preset,
            config,
            sets,
            out,
            dump,
            gpu: matches!(backend, BackendArg::Gpu),
            quiet,
        }),
        Cmd::Phase {
            sets,
            out,
            json,
            grid,
        } => cli::phase_cmd(&sets, &out, json.as_deref(), grid),
        Cmd::Plot { run, out } => cli::plot_cmd(&run, &out),
        Cmd::Bench { dims, r, reps, out } => cli::bench::main(&dims, r, reps, out.as_deref()),
        Cmd::Sweep {
            preset,
            sets,
            x,
            y,
            theta,
            out,
            backend,
            quiet,
        } => cli::sweep::main(cli::sweep::Args {
            preset,
            sets,
            x,
            y,
            theta,
            out,
            gpu: matches!(backend, BackendArg::Gpu),
            quiet,
        }),
        Cmd::Toy {
            seeds,
            steps,
            eta,
            n,
            seed,
            yaw,
            pitch,
            out,
        } => cli::toy_cmd(
            &lora_one_lab::toy3d::ToySpec {
                seeds,
                steps,
                eta,
                n,
                seed,
            },
            lora_one_lab::toy3d::Camera {
                yaw: yaw.to_radians(),
                pitch: pitch.to_radians(),
            },
            &out,
        ),
        Cmd::Finetune {
            preset,
            sets,
            out,
            backend,
        } => cli::finetune::main(cli::finetune::Args {
            preset,
            sets,
            out,
            gpu: matches!(backend, BackendArg::Gpu),
        }),
        Cmd::Preset { name } => cli::preset_cmd(&name),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
