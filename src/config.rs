//! The one configuration type of the engine, its presets (SPEC §5, §6), validation, and the
//! `key=value` form used by the CLI's `--set` and by the web app's URL.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Model {
    Linear,
    Relu,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Optimiser {
    Gd,
    Preconditioned,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InitKind {
    Vanilla,
    LoraGa,
    LoraOne,
    /// PiSSA (SPEC §2): the adapter from W0's own top singular pairs, with the offset.
    Pissa,
}

impl InitKind {
    /// The talk's three (the presets' default).
    pub const ALL: [InitKind; 3] = [InitKind::Vanilla, InitKind::LoraGa, InitKind::LoraOne];
    /// Every init the engine has (PiSSA, the peer in the paper's Table 2, on request).
    pub const EVERY: [InitKind; 4] = [
        InitKind::Vanilla,
        InitKind::LoraGa,
        InitKind::LoraOne,
        InitKind::Pissa,
    ];
    /// Whether the frozen weight becomes `W0 − A0B0` (the t = 0 output unchanged).
    pub fn has_offset(self) -> bool {
        matches!(self, InitKind::LoraGa | InitKind::Pissa)
    }
    pub fn name(self) -> &'static str {
        match self {
            InitKind::Vanilla => "vanilla",
            InitKind::LoraGa => "lora-ga",
            InitKind::LoraOne => "lora-one",
            InitKind::Pissa => "pissa",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "vanilla" | "lora" => Some(InitKind::Vanilla),
            "lora-ga" | "ga" => Some(InitKind::LoraGa),
            "lora-one" | "one" => Some(InitKind::LoraOne),
            "pissa" => Some(InitKind::Pissa),
            _ => None,
        }
    }
}

/// How the linear model's gradient is computed (SPEC §1). Both give the same numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepForm {
    /// `∇_W = Σ̂AB − G` in factored form: O(d²r + dkr) a step.
    Factored,
    /// `∇_W = Xᵀ(X(W0+AB) − Y)/N`: O(Ndk) a step (the textbook form; reference and baseline).
    Residual,
}

/// Where Δ's singular vectors come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeltaBasis {
    /// Haar-random orthonormal columns (QR of seeded Gaussians; same law as the singular vectors
    /// of a Gaussian matrix used by the paper's notebook).
    Random,
    /// The first coordinate vectors `e_1..e_{r*}` (the phase-portrait slice, SPEC §6).
    Canonical,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Input dimension of the weight (rows of W0, A).
    pub d: usize,
    /// Output dimension (columns of W0, B).
    pub k: usize,
    /// LoRA rank.
    pub r: usize,
    /// Rank of the target update Δ.
    pub r_star: usize,
    /// Number of samples; `None` means 16·d (the notebook's choice).
    pub n: Option<usize>,
    /// Use the population covariance Σ̂ = I instead of sampled data (linear model only).
    pub population: bool,
    /// Condition number of Δ: singular values spaced linearly from 1 down to 1/κ.
    pub kappa: f64,
    /// Explicit singular values of Δ (overrides κ); length r*.
    pub spectrum: Option<Vec<f64>>,
    pub delta_basis: DeltaBasis,
    /// Standard deviation of W0's entries (W0 ~ N(0, w0_std²)); 0 gives W0 = 0.
    pub w0_std: f64,
    pub model: Model,
    /// Label noise σ.
    pub noise: f64,
    /// Vanilla LoRA's A0 variance α²; one vanilla run per value.
    pub alpha2: Vec<f64>,
    pub eta: f64,
    pub steps: usize,
    pub optimiser: Optimiser,
    /// Damping λ of preconditioned GD.
    pub damping: f64,
    /// LoRA-One's γ (A0B0 = γ·P_r(G)).
    pub gamma: f64,
    /// LoRA-One's practical variant: S / S[1] and both factors / √γ_stable.
    pub normalised: bool,
    pub gamma_stable: f64,
    /// LoRA-GA's γ_GA (scale c = k^{1/4}/√γ_GA).
    pub gamma_ga: f64,
    pub seed: u64,
    /// Ensemble size: every vanilla setting runs with this many independent A0 draws on the same
    /// problem (draw 0 is the seed's own draw; the deterministic inits run once).
    pub seeds: usize,
    pub inits: Vec<InitKind>,
    /// Record metrics every this many steps (and always at the first and last step).
    pub record_every: usize,
    pub step_form: StepForm,
    /// A run stops as diverged when its loss exceeds this factor times max(initial loss, 1).
    pub divergence_factor: f64,
}

/// One run of an experiment: its init, α² (vanilla) and init draw (0 = the seed's own draw).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RunPlan {
    pub init: InitKind,
    pub alpha2: Option<f64>,
    pub draw: usize,
}

impl Default for Config {
    fn default() -> Self {
        Preset::Spectral.config()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    Alignment,
    Spectral,
    Phase,
}

impl Preset {
    pub const ALL: [Preset; 3] = [Preset::Alignment, Preset::Spectral, Preset::Phase];
    pub fn name(self) -> &'static str {
        match self {
            Preset::Alignment => "alignment",
            Preset::Spectral => "spectral",
            Preset::Phase => "phase",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Preset::ALL.into_iter().find(|p| p.name() == s)
    }

    /// The preset's configuration (SPEC §5 for `alignment` and `spectral`, §6 for `phase`).
    pub fn config(self) -> Config {
        let base = Config {
            d: 100,
            k: 100,
            r: 8,
            r_star: 4,
            n: None,
            population: false,
            kappa: 1.0,
            spectrum: None,
            delta_basis: DeltaBasis::Random,
            w0_std: 1.0,
            model: Model::Linear,
            noise: 0.0,
            alpha2: vec![1e-3],
            eta: 1.0 / 64.0,
            steps: 1500,
            optimiser: Optimiser::Gd,
            damping: 1e-3,
            gamma: 1.0,
            normalised: false,
            gamma_stable: 128.0,
            gamma_ga: 4.0,
            seed: 0,
            seeds: 1,
            inits: InitKind::ALL.to_vec(),
            record_every: 1,
            step_form: StepForm::Factored,
            divergence_factor: 1e8,
        };
        match self {
            Preset::Alignment => Config {
                alpha2: vec![1.0, 1e-1, 1e-2, 1e-3, 1e-4],
                inits: vec![InitKind::Vanilla],
                eta: 1.0 / 64.0,
                steps: 1500,
                ..base
            },
            Preset::Spectral => Config {
                kappa: 4.0,
                optimiser: Optimiser::Preconditioned,
                eta: 0.5,
                damping: 1e-3,
                steps: 100,
                alpha2: vec![1e-3],
                ..base
            },
            Preset::Phase => Config {
                d: 2,
                k: 2,
                r: 1,
                r_star: 1,
                population: true,
                spectrum: Some(vec![1.0]),
                delta_basis: DeltaBasis::Canonical,
                w0_std: 0.0,
                alpha2: vec![1e-2],
                eta: 0.1,
                steps: 200,
                ..base
            },
        }
    }
}

/// A configuration problem: which field, and what is allowed.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        ConfigError {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.field, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Size limits that keep a run within memory and time on a laptop or in a browser tab.
pub const MAX_DIM: usize = 8192;
pub const MAX_N: usize = 1 << 20;
pub const MAX_STEPS: usize = 1_000_000;
/// Most init draws per vanilla setting, and most runs in one experiment (one batch).
pub const MAX_SEEDS: usize = 4096;
pub const MAX_RUNS: usize = 16384;
/// Host memory a run may take: the browser's wasm32 heap is at most 4 GiB of address space, of
/// which the app, its allocator's slack and the page's own copies need a share, so an experiment
/// gets 2 GiB there; natively the CLI allows 64 GiB.
pub const WASM_MEMORY_BUDGET: u64 = 2 << 30;
pub const NATIVE_MEMORY_BUDGET: u64 = 64 << 30;

/// The host memory budget of the target this code was built for.
pub fn memory_budget() -> u64 {
    if cfg!(target_arch = "wasm32") {
        WASM_MEMORY_BUDGET
    } else {
        NATIVE_MEMORY_BUDGET
    }
}

/// One part of a configuration's memory: the field that drives it, what it is, and its bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryPart {
    pub field: &'static str,
    pub what: &'static str,
    pub bytes: u64,
}

/// Host memory (f64 engine) a configuration needs, by part; all arithmetic in 64 bits with
/// saturation, so no size wraps on wasm32.
#[derive(Clone, Debug, Default)]
pub struct MemoryEstimate {
    pub parts: Vec<MemoryPart>,
}

impl MemoryEstimate {
    pub fn total(&self) -> u64 {
        self.parts
            .iter()
            .fold(0u64, |a, p| a.saturating_add(p.bytes))
    }

    /// The largest part (the field to change first).
    pub fn largest(&self) -> Option<&MemoryPart> {
        self.parts.iter().max_by_key(|p| p.bytes)
    }
}

/// Deserialize JSON, turning an error into one that names the path of the field it is about
/// (`runs[2].records[0].loss`), or `json` for a document that is not JSON at all.
pub fn json_at_path<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ConfigError> {
    // the documents read here are objects; say so rather than name an array index
    match text.trim_start().chars().next() {
        Some('{') | None => {}
        Some(_) => {
            return Err(ConfigError::new(
                "json",
                "expected a JSON object ({ \"field\": value, … })",
            ))
        }
    }
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path.is_empty() || path == "." || path == "?" {
            "json".to_string()
        } else {
            path
        };
        let msg = e.into_inner().to_string();
        // clip what the message echoes back of the input
        let msg = if msg.chars().count() > 200 {
            msg.chars().take(200).collect::<String>() + "…"
        } else {
            msg
        };
        ConfigError::new(&field, msg)
    })
}

/// Bytes as a short human-readable figure.
pub fn fmt_bytes(b: u64) -> String {
    let b = b as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.1} GiB", b / (1u64 << 30) as f64)
    } else if b >= (1u64 << 20) as f64 {
        format!("{:.1} MiB", b / (1u64 << 20) as f64)
    } else {
        format!("{:.0} KiB", b / 1024.0)
    }
}

fn finite(field: &str, v: f64) -> Result<(), ConfigError> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            format!("must be a finite number, got {v}"),
        ))
    }
}

fn positive(field: &str, v: f64) -> Result<(), ConfigError> {
    finite(field, v)?;
    if v > 0.0 {
        Ok(())
    } else {
        Err(ConfigError::new(field, format!("must be > 0, got {v}")))
    }
}

fn nonneg(field: &str, v: f64) -> Result<(), ConfigError> {
    finite(field, v)?;
    if v >= 0.0 {
        Ok(())
    } else {
        Err(ConfigError::new(field, format!("must be ≥ 0, got {v}")))
    }
}

fn in_range(field: &str, v: usize, lo: usize, hi: usize) -> Result<(), ConfigError> {
    if v < lo || v > hi {
        Err(ConfigError::new(
            field,
            format!("must be in {lo}..={hi}, got {v}"),
        ))
    } else {
        Ok(())
    }
}

impl Config {
    /// N with its default filled in.
    pub fn n_samples(&self) -> usize {
        self.n.unwrap_or(16 * self.d)
    }

    /// Singular values of Δ, descending.
    pub fn delta_spectrum(&self) -> Vec<f64> {
        if let Some(s) = &self.spectrum {
            let mut s = s.clone();
            s.sort_by(|a, b| b.total_cmp(a));
            return s;
        }
        let rs = self.r_star;
        if rs == 1 {
            return vec![1.0];
        }
        (0..rs)
            .map(|i| 1.0 - (i as f64) / ((rs - 1) as f64) * (1.0 - 1.0 / self.kappa))
            .collect()
    }

    /// The list of runs this configuration asks for, in order: each init; for vanilla each α²
    /// with `seeds` init draws.
    pub fn runs(&self) -> Vec<RunPlan> {
        let mut out = Vec::new();
        for &kind in &self.inits {
            if kind == InitKind::Vanilla {
                for &a in &self.alpha2 {
                    for draw in 0..self.seeds.max(1) {
                        out.push(RunPlan {
                            init: kind,
                            alpha2: Some(a),
                            draw,
                        });
                    }
                }
            } else {
                out.push(RunPlan {
                    init: kind,
                    alpha2: None,
                    draw: 0,
                });
            }
        }
        out
    }

    /// Check every field; the error names the field and the allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        in_range("d", self.d, 1, MAX_DIM)?;
        in_range("k", self.k, 1, MAX_DIM)?;
        let m = self.d.min(self.k);
        in_range("r", self.r, 1, m)?;
        in_range("r_star", self.r_star, 1, m)?;
        if let Some(n) = self.n {
            in_range("n", n, 1, MAX_N)?;
        }
        if !self.population {
            in_range("n", self.n_samples(), 1, MAX_N)?;
        }
        if self.population && self.model == Model::Relu {
            return Err(ConfigError::new(
                "population",
                "the population (Σ̂ = I) mode exists for the linear model only; set population=false or model=linear",
            ));
        }
        if self.population && self.noise != 0.0 {
            return Err(ConfigError::new(
                "noise",
                "must be 0 in population mode (Σ̂ = I has no samples to add noise to)",
            ));
        }
        positive("kappa", self.kappa)?;
        if self.kappa < 1.0 {
            return Err(ConfigError::new(
                "kappa",
                format!("must be ≥ 1 (λ1/λr*), got {}", self.kappa),
            ));
        }
        if let Some(s) = &self.spectrum {
            if s.len() != self.r_star {
                return Err(ConfigError::new(
                    "spectrum",
                    format!(
                        "must list exactly r_star = {} singular values, got {}",
                        self.r_star,
                        s.len()
                    ),
                ));
            }
            for &v in s {
                positive("spectrum", v)?;
            }
        }
        nonneg("w0_std", self.w0_std)?;
        nonneg("noise", self.noise)?;
        if self.inits.is_empty() {
            return Err(ConfigError::new(
                "inits",
                "must name at least one of vanilla, lora-ga, lora-one",
            ));
        }
        if self.inits.contains(&InitKind::Vanilla) {
            if self.alpha2.is_empty() {
                return Err(ConfigError::new(
                    "alpha2",
                    "must list at least one value when vanilla is run",
                ));
            }
            for &a in &self.alpha2 {
                positive("alpha2", a)?;
            }
        }
        positive("eta", self.eta)?;
        in_range("steps", self.steps, 1, MAX_STEPS)?;
        nonneg("damping", self.damping)?;
        if self.optimiser == Optimiser::Preconditioned
            && self.damping == 0.0
            && self.inits.contains(&InitKind::Vanilla)
        {
            return Err(ConfigError::new(
                "damping",
                "must be > 0 for preconditioned GD with the vanilla init (B0 = 0 makes BBᵀ singular)",
            ));
        }
        positive("gamma", self.gamma)?;
        positive("gamma_stable", self.gamma_stable)?;
        positive("gamma_ga", self.gamma_ga)?;
        if self.inits.contains(&InitKind::LoraGa) && 2 * self.r > m {
            return Err(ConfigError::new(
                "r",
                format!(
                    "LoRA-GA needs 2r singular vectors: r must be ≤ min(d,k)/2 = {}, got {}",
                    m / 2,
                    self.r
                ),
            ));
        }
        in_range("record_every", self.record_every, 1, MAX_STEPS)?;
        in_range("seeds", self.seeds, 1, MAX_SEEDS)?;
        let runs = self.runs().len();
        if runs > MAX_RUNS {
            return Err(ConfigError::new(
                "seeds",
                format!(
                    "this asks for {runs} runs (α² values × seeds + other inits); at most {MAX_RUNS} are allowed"
                ),
            ));
        }
        positive("divergence_factor", self.divergence_factor)?;
        if self.step_form == StepForm::Residual && self.population {
            return Err(ConfigError::new(
                "step_form",
                "the residual form needs sampled data: set population=false",
            ));
        }
        self.check_memory(memory_budget())
    }

    /// Read a JSON config (`--config FILE`, the web app's exported config): missing fields take
    /// their defaults, unknown ones are refused, and every error names the field it is about
    /// (its path in the document); the result is validated.
    pub fn from_json(text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = json_at_path(text)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// What a run of this configuration holds in host memory (the f64 engine), by part.
    pub fn memory_estimate(&self) -> MemoryEstimate {
        let u = |v: usize| v as u64;
        let (d, k, r) = (u(self.d), u(self.k), u(self.r));
        let f = 8u64; // bytes of an f64
        let mul = |a: u64, b: u64| a.saturating_mul(b);
        let dk_field = if self.d >= self.k { "d" } else { "k" };
        let mut parts = Vec::new();
        let mut add = |field, what, bytes| parts.push(MemoryPart { field, what, bytes });
        // W0 and Δ in the problem; W0, Δ, G in the backend; G's accumulator while loading
        add(dk_field, "d×k matrices (W0, Δ, G)", mul(mul(d, k), 6 * f));
        let sampled = !self.population;
        let kept = sampled && (self.model == Model::Relu || self.step_form == StepForm::Residual);
        if sampled && !kept {
            add("d", "Σ̂ (d×d)", mul(mul(d, d), f));
            // one streamed block of X and of the residual, and a transpose of X's block
            add(
                "d",
                "one block of rows of X",
                3 * crate::problem::CHUNK_FLOATS as u64 * f,
            );
        }
        if kept {
            let n = u(self.n_samples());
            // X, Y, and per step XW (N×k), the residual and its mask
            let field = if self.n.is_some() { "n" } else { "d" };
            add(field, "X and Y (residual form)", mul(mul(n, d + 3 * k), f));
        }
        // the SVD of G: exact (a (d+k)² eigenproblem) for d + k ≤ 1200, else subspace iteration
        let svd = if d + k <= 1200 {
            mul(mul(d + k, d + k), 3 * f)
        } else {
            mul(
                mul(d + k, 4 * u(crate::init::svd_rank_needed(self)) + 32),
                f,
            )
        };
        add(dk_field, "SVD of G", svd);
        let plans = self.runs();
        let runs = u(plans.len());
        let offset_runs = u(plans.iter().filter(|p| p.init.has_offset()).count());
        // A, B, their gradients and the step's temporaries (d×r and r×k each)
        add(
            "seeds",
            "factors of every run",
            mul(mul(runs, d + k), mul(r, 8 * f)),
        );
        add(
            "inits",
            "offset runs' shifted G, Δ, W0",
            mul(offset_runs, mul(mul(d, k), 3 * f)),
        );
        let records = u(self.steps / self.record_every.max(1) + 2);
        // a record: step, loss, risk, sines, ‖AB − Δ‖, wall time, projection, σ(AB) (r values);
        // three copies (the report, its JSON, the page's charts)
        let per = 3 * (160 + 8 * r.min(u(self.d.min(self.k))));
        add(
            "record_every",
            "recorded steps",
            mul(mul(runs, records), per),
        );
        MemoryEstimate { parts }
    }

    /// Refuse a configuration whose memory exceeds `budget` bytes, naming the field of the
    /// largest part.
    pub fn check_memory(&self, budget: u64) -> Result<(), ConfigError> {
        let est = self.memory_estimate();
        let total = est.total();
        if total <= budget {
            return Ok(());
        }
        let big = est.largest().cloned().unwrap_or(MemoryPart {
            field: "d",
            what: "data",
            bytes: total,
        });
        let target = if cfg!(target_arch = "wasm32") {
            "a browser tab (wasm32)"
        } else {
            "this build"
        };
        Err(ConfigError::new(
            big.field,
            format!(
                "this run needs about {} of memory ({}: {}), more than the {} {target} allows; reduce {}",
                fmt_bytes(total),
                big.what,
                fmt_bytes(big.bytes),
                fmt_bytes(budget),
                big.field
            ),
        ))
    }

    /// Set one field from its text form (`--set key=value`, URL query pairs).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let raw_key = key;
        let key = key.trim();
        let v = value.trim();
        fn num<T: std::str::FromStr>(key: &str, v: &str, what: &str) -> Result<T, ConfigError> {
            v.parse::<T>()
                .map_err(|_| ConfigError::new(key, format!("expected {what}, got `{v}`")))
        }
        fn float(key: &str, v: &str) -> Result<f64, ConfigError> {
            let x: f64 = num(key, v, "a number")?;
            finite(key, x)?;
            Ok(x)
        }
        fn boolean(key: &str, v: &str) -> Result<bool, ConfigError> {
            match v {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(ConfigError::new(
                    key,
                    format!("expected true or false, got `{v}`"),
                )),
            }
        }
        fn floats(key: &str, v: &str) -> Result<Vec<f64>, ConfigError> {
            v.split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| float(key, s.trim()))
                .collect()
        }
        let uint = |what: &str| num::<usize>(key, v, what);
        match key {
            "d" => self.d = uint("a whole number")?,
            "k" => self.k = uint("a whole number")?,
            "r" => self.r = uint("a whole number")?,
            "r_star" | "rstar" => self.r_star = uint("a whole number")?,
            "n" => {
                self.n = if v == "auto" || v.is_empty() {
                    None
                } else {
                    Some(uint("a whole number or `auto`")?)
                }
            }
            "population" => self.population = boolean(key, v)?,
            "kappa" => self.kappa = float(key, v)?,
            "spectrum" => {
                self.spectrum = if v == "auto" || v.is_empty() {
                    None
                } else {
                    Some(floats(key, v)?)
                }
            }
            "delta_basis" => {
                self.delta_basis = match v {
                    "random" => DeltaBasis::Random,
                    "canonical" => DeltaBasis::Canonical,
                    _ => return Err(ConfigError::new(key, "expected random or canonical")),
                }
            }
            "w0_std" => self.w0_std = float(key, v)?,
            "model" => {
                self.model = match v {
                    "linear" => Model::Linear,
                    "relu" => Model::Relu,
                    _ => return Err(ConfigError::new(key, "expected linear or relu")),
                }
            }
            "noise" | "sigma" => self.noise = float(key, v)?,
            "alpha2" => self.alpha2 = floats(key, v)?,
            "eta" => self.eta = float(key, v)?,
            "steps" => self.steps = uint("a whole number")?,
            "optimiser" | "optimizer" => {
                self.optimiser = match v {
                    "gd" => Optimiser::Gd,
                    "preconditioned" | "pgd" | "scaled" => Optimiser::Preconditioned,
                    _ => return Err(ConfigError::new(key, "expected gd or preconditioned")),
                }
            }
            "damping" | "lambda" => self.damping = float(key, v)?,
            "gamma" => self.gamma = float(key, v)?,
            "normalised" | "normalized" => self.normalised = boolean(key, v)?,
            "gamma_stable" => self.gamma_stable = float(key, v)?,
            "gamma_ga" => self.gamma_ga = float(key, v)?,
            "seed" => self.seed = num(key, v, "a whole number ≥ 0")?,
            "seeds" => self.seeds = uint("a whole number")?,
            "inits" => {
                let mut out = Vec::new();
                for s in v.split(',').filter(|s| !s.trim().is_empty()) {
                    let kind = InitKind::parse(s).ok_or_else(|| {
                        ConfigError::new(
                            key,
                            format!(
                                "unknown init `{s}`; expected vanilla, lora-ga, lora-one or pissa"
                            ),
                        )
                    })?;
                    if !out.contains(&kind) {
                        out.push(kind);
                    }
                }
                self.inits = out;
            }
            "record_every" => self.record_every = uint("a whole number")?,
            "step_form" => {
                self.step_form = match v {
                    "factored" => StepForm::Factored,
                    "residual" => StepForm::Residual,
                    _ => return Err(ConfigError::new(key, "expected factored or residual")),
                }
            }
            "divergence_factor" => self.divergence_factor = float(key, v)?,
            _ => {
                // named as given (trimmed, a key of only spaces would be named by nothing, and
                // the message could not be traced to what was typed)
                return Err(ConfigError::new(
                    raw_key,
                    format!("unknown parameter; known: {}", Config::KEYS.join(", ")),
                ));
            }
        }
        Ok(())
    }

    pub const KEYS: [&'static str; 28] = [
        "d",
        "k",
        "r",
        "r_star",
        "n",
        "population",
        "kappa",
        "spectrum",
        "delta_basis",
        "w0_std",
        "model",
        "noise",
        "alpha2",
        "eta",
        "steps",
        "optimiser",
        "damping",
        "gamma",
        "normalised",
        "gamma_stable",
        "gamma_ga",
        "seed",
        "seeds",
        "inits",
        "record_every",
        "step_form",
        "divergence_factor",
        "preset",
    ];

    /// Every field as `(key, value)` text pairs; `set` reads them back to an equal config.
    pub fn to_pairs(&self) -> Vec<(&'static str, String)> {
        fn list(v: &[f64]) -> String {
            v.iter()
                .map(|x| format!("{x}"))
                .collect::<Vec<_>>()
                .join(",")
        }
        fn s<T: Serialize>(v: &T) -> String {
            serde_json::to_value(v)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        }
        vec![
            ("d", self.d.to_string()),
            ("k", self.k.to_string()),
            ("r", self.r.to_string()),
            ("r_star", self.r_star.to_string()),
            (
                "n",
                self.n.map_or_else(|| "auto".to_string(), |n| n.to_string()),
            ),
            ("population", self.population.to_string()),
            ("kappa", format!("{}", self.kappa)),
            (
                "spectrum",
                self.spectrum.as_deref().map_or_else(|| "auto".into(), list),
            ),
            ("delta_basis", s(&self.delta_basis)),
            ("w0_std", format!("{}", self.w0_std)),
            ("model", s(&self.model)),
            ("noise", format!("{}", self.noise)),
            ("alpha2", list(&self.alpha2)),
            ("eta", format!("{}", self.eta)),
            ("steps", self.steps.to_string()),
            ("optimiser", s(&self.optimiser)),
            ("damping", format!("{}", self.damping)),
            ("gamma", format!("{}", self.gamma)),
            ("normalised", self.normalised.to_string()),
            ("gamma_stable", format!("{}", self.gamma_stable)),
            ("gamma_ga", format!("{}", self.gamma_ga)),
            ("seed", self.seed.to_string()),
            ("seeds", self.seeds.to_string()),
            (
                "inits",
                self.inits
                    .iter()
                    .map(|i| i.name())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            ("record_every", self.record_every.to_string()),
            ("step_form", s(&self.step_form)),
            ("divergence_factor", format!("{}", self.divergence_factor)),
        ]
    }
}

/// Fixtures for round-trip tests (here, in the browser tests and the URL state's).
#[doc(hidden)]
pub mod testing {
    use super::*;

    /// A config whose every field differs from the default's and from the `spectral` preset's
    /// (where the config form and the URL parser start), so a round trip that drops or mangles
    /// any one field fails.
    pub fn unlike_every_preset() -> Config {
        let c = Config {
            d: 37,
            k: 29,
            r: 3,
            r_star: 2,
            n: Some(777),
            population: true,
            kappa: 3.5,
            spectrum: Some(vec![2.5, 0.75]),
            delta_basis: DeltaBasis::Canonical,
            w0_std: 0.25,
            model: Model::Relu,
            noise: 0.125,
            alpha2: vec![0.5, 1e-5],
            eta: 0.0625,
            steps: 321,
            optimiser: Optimiser::Gd,
            damping: 0.375,
            gamma: 2.5,
            normalised: true,
            gamma_stable: 77.0,
            gamma_ga: 5.5,
            seed: 4242,
            seeds: 3,
            inits: vec![InitKind::LoraOne, InitKind::Vanilla],
            record_every: 7,
            step_form: StepForm::Residual,
            divergence_factor: 1e6,
        };
        let mine = c.to_pairs();
        for other in [Config::default(), Preset::Spectral.config()] {
            for ((k, a), (_, b)) in mine.iter().zip(other.to_pairs()) {
                assert_ne!(*a, b, "field {k} equals a preset's");
            }
        }
        c
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An unknown key is named as typed (fuzz findings: a key of only spaces, or one with
    /// leading spaces, was named trimmed, so the message did not start with what was typed).
    #[test]
    fn unknown_keys_are_named_as_typed() {
        let mut c = Preset::Spectral.config();
        for k in [" \u{2de0}  A", "\u{a0}", " bogus"] {
            let e = c.set(k, "1").unwrap_err();
            assert_eq!(e.field, k);
            assert!(e.message.starts_with("unknown parameter"));
        }
        // a known key with spaces around it still sets the field
        c.set(" d ", "12").unwrap();
        assert_eq!(c.d, 12);
    }

    #[test]
    fn presets_validate() {
        for p in Preset::ALL {
            p.config()
                .validate()
                .unwrap_or_else(|e| panic!("{}: {e}", p.name()));
        }
    }

    #[test]
    fn spectral_spectrum_matches_spec() {
        assert_eq!(
            Preset::Spectral.config().delta_spectrum(),
            vec![1.0, 0.75, 0.5, 0.25]
        );
        assert_eq!(Preset::Alignment.config().delta_spectrum(), vec![1.0; 4]);
    }

    #[test]
    fn pairs_round_trip() {
        let c = testing::unlike_every_preset();
        let mut d = Config::default();
        for (k, v) in c.to_pairs() {
            d.set(k, &v).unwrap();
        }
        assert_eq!(c, d);
    }

    #[test]
    fn validation_names_field_and_range() {
        let mut c = Preset::Spectral.config();
        c.r = 200;
        let e = c.validate().unwrap_err();
        assert_eq!(e.field, "r");
        assert!(e.message.contains("1..=100"), "{e}");

        let mut c = Preset::Spectral.config();
        c.r_star = 101;
        assert_eq!(c.validate().unwrap_err().field, "r_star");

        let mut c = Preset::Spectral.config();
        c.n = Some(0);
        let e = c.validate().unwrap_err();
        assert_eq!(e.field, "n");

        let mut c = Preset::Spectral.config();
        c.eta = f64::NAN;
        let e = c.validate().unwrap_err();
        assert_eq!(e.field, "eta");
        assert!(e.message.contains("finite"));

        let mut c = Preset::Spectral.config();
        assert_eq!(c.set("eta", "inf").unwrap_err().field, "eta");
        assert_eq!(c.set("d", "-3").unwrap_err().field, "d");
        assert_eq!(c.set("bogus", "1").unwrap_err().field, "bogus");
        assert_eq!(c.set("inits", "lora-two").unwrap_err().field, "inits");

        let mut c = Preset::Spectral.config();
        c.r = 60; // LoRA-GA needs 2r ≤ 100
        assert_eq!(c.validate().unwrap_err().field, "r");

        let mut c = Preset::Spectral.config();
        c.damping = 0.0;
        assert_eq!(c.validate().unwrap_err().field, "damping");
    }

    /// The issue's crash: d = k = 4096 materialised X (2 GiB of f64) in the tab. The factored
    /// form now streams X, so it fits the wasm32 budget; the residual form keeps X and is
    /// refused, naming the field and the limit; sizes never wrap (64-bit arithmetic).
    #[test]
    fn memory_is_estimated_before_allocating() {
        let mut c = Preset::Spectral.config();
        c.d = 4096;
        c.k = 4096;
        c.steps = 10;
        assert!(c.check_memory(WASM_MEMORY_BUDGET).is_ok());
        c.step_form = StepForm::Residual;
        let e = c.check_memory(WASM_MEMORY_BUDGET).unwrap_err();
        assert_eq!(e.field, "d", "{e}");
        assert!(e.message.contains("2.0 GiB"), "{e}");
        assert!(e.message.contains("X and Y"), "{e}");
        c.d = 8192;
        c.k = 8192;
        c.n = Some(MAX_N);
        let e = c.check_memory(WASM_MEMORY_BUDGET).unwrap_err();
        assert_eq!(e.field, "n", "{e}");
        assert!(!e.message.contains("4294967295"), "{e}");
        // 8192² matrices alone exceed the tab
        c.step_form = StepForm::Factored;
        c.n = None;
        assert_eq!(c.check_memory(WASM_MEMORY_BUDGET).unwrap_err().field, "d");
        // many runs: the factors of every run dominate
        let mut c = Preset::Spectral.config();
        c.d = 2000;
        c.k = 2000;
        c.r = 8;
        c.alpha2 = vec![1e-4, 1e-3, 1e-2, 1e-1];
        c.seeds = 4096;
        c.steps = 10;
        let e = c.check_memory(WASM_MEMORY_BUDGET).unwrap_err();
        assert_eq!(e.field, "seeds", "{e}");
        // a long run recorded at every step
        let mut c = Preset::Spectral.config();
        c.steps = MAX_STEPS;
        c.record_every = 1;
        c.seeds = 64;
        let e = c.check_memory(WASM_MEMORY_BUDGET).unwrap_err();
        assert_eq!(e.field, "record_every", "{e}");
        // every preset fits the browser with room to spare
        for p in Preset::ALL {
            let est = p.config().memory_estimate().total();
            assert!(est < WASM_MEMORY_BUDGET / 4, "{p:?}: {}", fmt_bytes(est));
        }
    }
}
