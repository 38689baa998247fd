//! LoRA-One Lab: the engine behind the web app and the CLI.
//!
//! - [`config`]: the one configuration type, presets, validation, `key=value` form.
//! - [`problem`]: seeded problems (linear and ReLU models).
//! - [`init`]: vanilla LoRA, LoRA-GA and LoRA-One initialisations.
//! - [`engine`]: the `Backend` trait and the chunked `Experiment` driver with SPEC §4 metrics.
//! - [`cpu`]: the f64 nalgebra reference backend.
//! - [`digits`]: SPEC §9 on the UCI handwritten digits (odd → even, the talk's table, Fig. 1(c)).
//! - [`ensemble`]: medians and 10–90 % bands over the init draws of an ensemble (`seeds`).
//! - [`linearised`]: the talk's linearised (power-iteration) dynamics near the saddle.
//! - [`phase`]: the phase-portrait model of SPEC §6.
//! - [`sweep`]: sweeps over one or two parameters × init draws (SPEC §8: Fig. 2, the ln d law).
//! - [`toy3d`]: the Fig. 3 toy (a ∈ R², b ∈ R) from the LoRA and spectral inits, in 3-D.
//! - [`style`]: one colour, line style and marker per method, for the web app and the CLI.
//! - [`urlstate`]: the web app's URL state (native, so it is tested and fuzzed without a browser).

pub mod config;
pub mod cpu;
pub mod digits;
#[cfg(any(feature = "cli", feature = "web"))]
pub mod digits_plot;
pub mod engine;
pub mod ensemble;
pub mod init;
pub mod linalg;
pub mod linearised;
pub mod phase;
pub mod problem;
pub mod rng;
pub mod style;
pub mod sweep;
#[cfg(any(feature = "cli", feature = "web"))]
pub mod sweep_plot;
pub mod toy3d;
#[cfg(any(feature = "cli", feature = "web"))]
pub mod toy_plot;
pub mod urlstate;
pub mod worker;

pub use config::{Config, ConfigError, InitKind, Model, Optimiser, Preset, StepForm};
pub use cpu::CpuBackend;
pub use engine::{Backend, EngineError, Experiment, Progress, Record, Report, RunResult};
pub use problem::Problem;

#[cfg(feature = "gpu")]
pub mod gpu;
#[cfg(all(feature = "web", target_arch = "wasm32"))]
pub mod web;
