//! The app's URL state, with no web dependency so that it builds and is tested (and fuzzed)
//! natively: the query string holds the active view and every parameter of it, a copied link
//! reproduces what the sender saw, and hostile input yields errors that name the field.

use crate::config::{Config, ConfigError, InitKind, Preset};
use crate::sweep::{Axis, SweepPreset, SweepSpec};
use crate::toy3d::{Camera, ToySpec};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// What `encodeURIComponent` leaves as is: A–Z a–z 0–9 - _ . ! ~ * ' ( ).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// The query string's pairs, decoded (`+` is a space, bad escapes stay as written), in order.
pub fn parse_query(search: &str) -> Vec<(String, String)> {
    search
        .trim_start_matches('?')
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    percent_decode_str(&s).decode_utf8_lossy().into_owned()
}

fn encode(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

pub fn to_query(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    Phase,
    Lab,
    Sweep,
    Toy,
    Digits,
}

impl View {
    pub fn key(self) -> &'static str {
        match self {
            View::Phase => "phase",
            View::Lab => "lab",
            View::Sweep => "sweep",
            View::Toy => "toy",
            View::Digits => "digits",
        }
    }
}

/// The Sweep view's parameters (URL form): a sweep preset and the axes, draws, steps and θ that
/// change it. Defaults are sized for a browser tab (the CLI's presets are larger).
#[derive(Clone, Debug, PartialEq)]
pub struct SweepParams {
    pub preset: SweepPreset,
    /// `KEY=VALUES` (a list, `log:LO:HI:N` or `lin:LO:HI:N`).
    pub x: String,
    /// Likewise, or empty for a 1-D sweep.
    pub y: String,
    pub seeds: usize,
    pub steps: usize,
    pub theta: f64,
}

pub const SWEEP_KEYS: [&str; 6] = ["sweep", "x", "y", "seeds", "steps", "theta"];

impl SweepParams {
    /// The browser-sized version of a preset (finishes in seconds on a laptop's CPU engine).
    pub fn browser(preset: SweepPreset) -> SweepParams {
        let (x, y, seeds, steps) = match preset {
            SweepPreset::Fig2 => ("alpha2=log:1e-6:1:7", "d=32,64", 2, 800),
            SweepPreset::LnDLaw => ("d=16,32,64,128", "", 3, 500),
            SweepPreset::Seeds => ("alpha2=1e-3", "", 24, 600),
        };
        SweepParams {
            preset,
            x: x.into(),
            y: y.into(),
            seeds,
            steps,
            theta: 0.5,
        }
    }

    /// The sweep these parameters describe, or the first error (naming its field).
    pub fn spec(&self) -> Result<SweepSpec, ConfigError> {
        let mut spec = self.preset.spec();
        spec.x = Axis::parse(&self.x).map_err(|e| ConfigError::new("x", e.to_string()))?;
        spec.y = if self.y.trim().is_empty() {
            None
        } else {
            Some(Axis::parse(&self.y).map_err(|e| ConfigError::new("y", e.to_string()))?)
        };
        spec.base.seeds = self.seeds;
        spec.base.steps = self.steps;
        spec.theta = self.theta;
        spec.validate()?;
        Ok(spec)
    }

    pub fn to_pairs(&self) -> Vec<(String, String)> {
        vec![
            ("sweep".into(), self.preset.name().into()),
            ("x".into(), self.x.clone()),
            ("y".into(), self.y.clone()),
            ("seeds".into(), self.seeds.to_string()),
            ("steps".into(), self.steps.to_string()),
            ("theta".into(), format!("{}", self.theta)),
        ]
    }

    /// Apply one URL pair; the value is checked when the sweep is built (`spec`).
    pub fn set(&mut self, k: &str, v: &str) -> Result<(), String> {
        let whole = |v: &str| whole_of(k, v).map(|x| x.min(usize::MAX as u64) as usize);
        match k {
            "sweep" => {
                self.preset = SweepPreset::parse(v.trim())
                    .ok_or_else(|| format!("sweep: expected fig2, ln-d-law or seeds, got `{v}`"))?
            }
            "x" => self.x = v.trim().to_string(),
            "y" => self.y = v.trim().to_string(),
            "seeds" => self.seeds = whole(v)?,
            "steps" => self.steps = whole(v)?,
            "theta" => self.theta = number_of(k, v)?,
            _ => {
                return Err(format!(
                    "{k}: unknown parameter of the sweep view; known: {}",
                    SWEEP_KEYS.join(", ")
                ))
            }
        }
        Ok(())
    }
}

/// A view's parameters in URL form: every key with its text, and setting one key from text (the
/// error names the key). The web app's parameter fields are built on it.
pub trait ViewParams {
    fn pairs(&self) -> Vec<(String, String)>;
    fn set_pair(&mut self, key: &str, value: &str) -> Result<(), String>;
    /// The text of one key ("" when unknown).
    fn value_of(&self, key: &str) -> String {
        self.pairs()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
            .unwrap_or_default()
    }
}

impl ViewParams for SweepParams {
    fn pairs(&self) -> Vec<(String, String)> {
        self.to_pairs()
    }
    fn set_pair(&mut self, key: &str, value: &str) -> Result<(), String> {
        self.set(key, value)
    }
}

impl ViewParams for ToyParams {
    fn pairs(&self) -> Vec<(String, String)> {
        self.to_pairs()
    }
    fn set_pair(&mut self, key: &str, value: &str) -> Result<(), String> {
        self.set(key, value)
    }
}

impl ViewParams for crate::digits::FtConfig {
    fn pairs(&self) -> Vec<(String, String)> {
        self.to_pairs()
    }
    fn set_pair(&mut self, key: &str, value: &str) -> Result<(), String> {
        self.set(key, value).map_err(|e| e.to_string())
    }
}

/// A whole number from URL text, or an error naming the key.
fn whole_of(k: &str, v: &str) -> Result<u64, String> {
    v.trim()
        .parse::<u64>()
        .map_err(|_| format!("{k}: expected a whole number, got `{v}`"))
}

/// A finite number from URL text, or an error naming the key.
fn number_of(k: &str, v: &str) -> Result<f64, String> {
    v.trim()
        .parse::<f64>()
        .ok()
        .filter(|x| x.is_finite())
        .ok_or_else(|| format!("{k}: expected a number, got `{v}`"))
}

/// The Fig. 3 toy view's parameters (URL form): the run and the camera, in degrees.
#[derive(Clone, Debug, PartialEq)]
pub struct ToyParams {
    pub spec: ToySpec,
    pub yaw_deg: f64,
    pub pitch_deg: f64,
}

pub const TOY_KEYS: [&str; 7] = ["seeds", "steps", "eta", "n", "seed", "yaw", "pitch"];

impl Default for ToyParams {
    fn default() -> Self {
        let c = Camera::default();
        ToyParams {
            spec: ToySpec {
                seeds: 8,
                ..ToySpec::default()
            },
            yaw_deg: (c.yaw.to_degrees() * 10.0).round() / 10.0,
            pitch_deg: (c.pitch.to_degrees() * 10.0).round() / 10.0,
        }
    }
}

impl ToyParams {
    pub fn camera(&self) -> Camera {
        Camera {
            yaw: self.yaw_deg.to_radians(),
            pitch: self.pitch_deg.to_radians(),
        }
    }
    /// Set the camera (angles kept to 0.1°, yaw in (−180, 180]).
    pub fn set_camera(&mut self, c: Camera) {
        let r = |x: f64| (x.to_degrees() * 10.0).round() / 10.0;
        self.yaw_deg = r(crate::toy3d::wrap(c.yaw));
        self.pitch_deg = r(c.pitch);
    }
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        let s = &self.spec;
        vec![
            ("seeds".into(), s.seeds.to_string()),
            ("steps".into(), s.steps.to_string()),
            ("eta".into(), format!("{}", s.eta)),
            ("n".into(), s.n.to_string()),
            ("seed".into(), s.seed.to_string()),
            ("yaw".into(), format!("{}", self.yaw_deg)),
            ("pitch".into(), format!("{}", self.pitch_deg)),
        ]
    }
    /// Apply one URL pair; ranges are checked by `ToySpec::validate` when the toy runs, except
    /// the camera's, checked here.
    pub fn set(&mut self, k: &str, v: &str) -> Result<(), String> {
        let whole = |v: &str| whole_of(k, v);
        let num = |v: &str| number_of(k, v);
        let size = |v: &str| whole(v).map(|x| x.min(usize::MAX as u64) as usize);
        match k {
            "seeds" => self.spec.seeds = size(v)?,
            "steps" => self.spec.steps = size(v)?,
            "n" => self.spec.n = size(v)?,
            "seed" => self.spec.seed = whole(v)?,
            "eta" => self.spec.eta = num(v)?,
            "yaw" => {
                let y = num(v)?;
                if y.abs() > 360.0 {
                    return Err(format!("yaw: must be in [-360, 360] degrees, got {y}"));
                }
                self.yaw_deg = y;
            }
            "pitch" => {
                let p = num(v)?;
                if p.abs() > 89.0 {
                    return Err(format!("pitch: must be in [-89, 89] degrees, got {p}"));
                }
                self.pitch_deg = p;
            }
            _ => {
                return Err(format!(
                    "{k}: unknown parameter of the toy view; known: {}",
                    TOY_KEYS.join(", ")
                ))
            }
        }
        Ok(())
    }
}

impl Default for SweepParams {
    fn default() -> Self {
        SweepParams::browser(SweepPreset::Fig2)
    }
}

/// Everything the URL says.
#[derive(Clone, Debug, PartialEq)]
pub struct UrlState {
    pub view: View,
    pub opts: PageOpts,
    pub phase: PhaseParams,
    pub lab: Config,
    pub sweep: SweepParams,
    pub toy: ToyParams,
    /// The Digits view's settings (SPEC §9).
    pub digits: crate::digits::FtConfig,
    pub preset: Option<Preset>,
    /// Dynamics lab: where to compute (`compute=auto|cpu|gpu`; auto when absent).
    pub compute: Compute,
    pub errors: Vec<String>,
}

/// Longest echo of a value in an error message (a 100 kB value is not printed back whole).
const ECHO: usize = 120;

fn clip(s: String) -> String {
    if s.chars().count() <= ECHO {
        return s;
    }
    let mut t: String = s.chars().take(ECHO).collect();
    t.push('…');
    t
}

/// The state of the URL's pairs. Never fails: every bad pair becomes an error line that names
/// its field (and is otherwise ignored); a key given twice takes its last value, and says so.
pub fn parse_state(pairs: &[(String, String)]) -> UrlState {
    let get = |k: &str| {
        pairs
            .iter()
            .rev()
            .find(|(a, _)| a == k)
            .map(|(_, v)| v.as_str())
    };
    let flag = |k: &str| matches!(get(k), Some("1" | "true" | "yes" | "on" | ""));
    let mut errors = Vec::new();
    let view = match get("view") {
        Some("lab") => View::Lab,
        Some("sweep") => View::Sweep,
        Some("toy") => View::Toy,
        Some("digits") => View::Digits,
        None | Some("phase") => View::Phase,
        Some(v) => {
            errors.push(clip(format!(
                "view: expected phase, lab, sweep, toy or digits, got `{v}`"
            )));
            View::Phase
        }
    };
    let opts = PageOpts {
        embed: get("embed").is_some() && flag("embed"),
        large: get("large").is_some() && flag("large"),
        autoplay: get("autoplay").is_some() && flag("autoplay"),
    };
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for (k, _) in pairs {
        match seen.iter_mut().find(|(a, _)| *a == k.as_str()) {
            Some((_, n)) => *n += 1,
            None => seen.push((k.as_str(), 1)),
        }
    }
    for (k, n) in seen.iter().filter(|(_, n)| *n > 1) {
        errors.push(clip(format!(
            "{k}: given {n} times; the last value is used"
        )));
    }
    let mut phase = PhaseParams::default();
    let mut toy = ToyParams::default();
    let mut digits = crate::digits::FtConfig::default();
    // the sweep view starts from its preset's browser size, then the other pairs apply
    let mut sweep = get("sweep")
        .and_then(SweepPreset::parse)
        .map_or_else(SweepParams::default, SweepParams::browser);
    let preset = get("preset").and_then(|v| {
        let p = Preset::parse(v);
        if p.is_none() {
            errors.push(clip(format!(
                "preset: expected alignment, spectral or phase, got `{v}`"
            )));
        }
        p
    });
    let mut lab = preset.map_or_else(|| Preset::Spectral.config(), |p| p.config());
    for (k, v) in pairs {
        if matches!(
            k.as_str(),
            "view" | "embed" | "large" | "autoplay" | "preset" | "compute" | "simulate"
        ) {
            continue;
        }
        match view {
            View::Phase => {
                if let Err(e) = phase.set(k, v) {
                    errors.push(clip(e));
                }
            }
            View::Lab => {
                if let Err(e) = lab.set(k, v) {
                    errors.push(clip(format!("{}: {}", e.field, e.message)));
                }
            }
            View::Sweep => {
                if let Err(e) = sweep.set(k, v) {
                    errors.push(clip(e));
                }
            }
            View::Toy => {
                if let Err(e) = toy.set(k, v) {
                    errors.push(clip(e));
                }
            }
            View::Digits => {
                if let Err(e) = digits.set(k, v) {
                    errors.push(clip(format!("{}: {}", e.field, e.message)));
                }
            }
        }
    }
    let compute = match get("compute") {
        None => Compute::Auto,
        Some(v) => Compute::parse(v).unwrap_or_else(|| {
            errors.push(clip(format!(
                "compute: expected auto, cpu or gpu, got `{v}`"
            )));
            Compute::Auto
        }),
    };
    UrlState {
        view,
        opts,
        phase,
        lab,
        sweep,
        toy,
        digits,
        preset,
        compute,
        errors,
    }
}

impl Default for UrlState {
    /// The page with no query string.
    fn default() -> Self {
        parse_state(&[])
    }
}

/// The URL pairs of a state (its `errors` are not part of it).
pub fn state_pairs(st: &UrlState) -> Vec<(String, String)> {
    let UrlState {
        view,
        opts,
        phase,
        lab,
        sweep,
        toy,
        digits,
        preset,
        compute,
        ..
    } = st;
    let (view, opts, preset, compute) = (*view, *opts, *preset, *compute);
    let mut v = vec![("view".to_string(), view.key().to_string())];
    if opts.embed {
        v.push(("embed".into(), "1".into()));
    }
    if opts.large {
        v.push(("large".into(), "1".into()));
    }
    if opts.autoplay {
        v.push(("autoplay".into(), "1".into()));
    }
    match view {
        View::Phase => v.extend(phase.to_pairs()),
        View::Lab => {
            if compute != Compute::Auto {
                v.push(("compute".into(), compute.key().into()));
            }
            if let Some(p) = preset {
                v.push(("preset".into(), p.name().into()));
            }
            v.extend(lab.to_pairs().into_iter().map(|(k, x)| (k.to_string(), x)));
        }
        View::Sweep => {
            if compute != Compute::Auto {
                v.push(("compute".into(), compute.key().into()));
            }
            v.extend(sweep.to_pairs());
        }
        View::Toy => v.extend(toy.to_pairs()),
        View::Digits => v.extend(digits.to_pairs()),
    }
    v
}

/// The view's options that come from the page (embed mode etc.).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PageOpts {
    pub embed: bool,
    pub large: bool,
    pub autoplay: bool,
}

/// Where the lab computes (`compute=` in the URL): the faster backend for the configuration
/// (default), or one forced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Compute {
    #[default]
    Auto,
    Cpu,
    Gpu,
}

impl Compute {
    pub fn key(self) -> &'static str {
        match self {
            Compute::Auto => "auto",
            Compute::Cpu => "cpu",
            Compute::Gpu => "gpu",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "auto" | "" => Some(Compute::Auto),
            "cpu" => Some(Compute::Cpu),
            "gpu" => Some(Compute::Gpu),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct PhaseParams {
    pub delta: f64,
    /// Vanilla init scale α (entries of A0 ~ N(0, α²)).
    pub alpha: f64,
    pub eta: f64,
    pub gamma: f64,
    pub gamma_ga: f64,
    pub steps: usize,
    pub population: bool,
    /// Samples for the finite-N Σ̂ (when not population).
    pub n: usize,
    pub seed: u64,
    /// A custom start (a, b) on the plane, run by in-plane GD.
    pub start: Option<(f64, f64)>,
    /// Animation speed, steps per second.
    pub speed: f64,
    /// Which methods are drawn: vanilla, LoRA-GA, LoRA-One, custom, PiSSA (`style::Method`
    /// order; PiSSA is off by default, the talk's portrait has three inits).
    pub show: [bool; 5],
    /// W0's entry scale (W0 ~ N(0, w0²)): PiSSA's adapter is W0's top singular pair, so with the
    /// preset's W0 = 0 it starts at the saddle; the other inits do not depend on W0.
    pub w0: f64,
}

impl Default for PhaseParams {
    fn default() -> Self {
        let c = Preset::Phase.config();
        PhaseParams {
            delta: c.delta_spectrum().first().copied().unwrap_or(1.0),
            alpha: c.alpha2.first().copied().unwrap_or(1e-2).sqrt(),
            eta: c.eta,
            gamma: c.gamma,
            gamma_ga: c.gamma_ga,
            steps: c.steps,
            population: true,
            n: 8,
            seed: c.seed,
            start: None,
            speed: 40.0,
            show: [true, true, true, true, false],
            w0: 0.0,
        }
    }
}

pub const KEYS: [&str; 13] = [
    "delta",
    "alpha",
    "eta",
    "gamma",
    "gamma_ga",
    "steps",
    "population",
    "n",
    "seed",
    "start",
    "speed",
    "show",
    "w0",
];

impl PhaseParams {
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        let f = |x: f64| format!("{x}");
        let mut v = vec![
            ("delta".into(), f(self.delta)),
            ("alpha".into(), f(self.alpha)),
            ("eta".into(), f(self.eta)),
            ("gamma".into(), f(self.gamma)),
            ("gamma_ga".into(), f(self.gamma_ga)),
            ("steps".into(), self.steps.to_string()),
            ("population".into(), self.population.to_string()),
            ("n".into(), self.n.to_string()),
            ("seed".into(), self.seed.to_string()),
        ];
        if let Some((a, b)) = self.start {
            v.push(("start".into(), format!("{},{}", round4(a), round4(b))));
        }
        v.push(("speed".into(), f(self.speed)));
        v.push((
            "show".into(),
            self.show
                .iter()
                .map(|&s| if s { "1" } else { "0" })
                .collect::<String>(),
        ));
        v.push(("w0".into(), f(self.w0)));
        v
    }

    /// Apply one URL pair; unknown keys and bad values are reported, not fatal.
    pub fn set(&mut self, k: &str, v: &str) -> Result<(), String> {
        let num = |v: &str| -> Result<f64, String> {
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| format!("{k}: expected a number, got `{v}`"))
        };
        match k {
            "delta" => self.delta = num(v)?,
            "alpha" => self.alpha = num(v)?,
            "eta" => self.eta = num(v)?,
            "gamma" => self.gamma = num(v)?,
            "gamma_ga" => self.gamma_ga = num(v)?,
            "steps" => self.steps = num(v)?.clamp(1.0, 100_000.0) as usize,
            "population" => self.population = matches!(v, "1" | "true" | "yes" | "on"),
            "n" => self.n = num(v)?.max(1.0) as usize,
            "seed" => self.seed = num(v)?.max(0.0) as u64,
            "start" => {
                self.start = if v.is_empty() || v == "none" {
                    None
                } else {
                    let (a, b) = v.split_once(',').ok_or("start: expected a,b")?;
                    Some((num(a)?, num(b)?))
                }
            }
            "speed" => self.speed = num(v)?.clamp(0.5, 2000.0),
            "show" => {
                // four digits (links from before PiSSA joined) leave PiSSA as it was
                for (i, c) in v.chars().take(5).enumerate() {
                    self.show[i] = c == '1';
                }
            }
            "w0" => {
                let x = num(v)?;
                if !(0.0..=10.0).contains(&x) {
                    return Err(format!("w0: must be in [0, 10], got `{v}`"));
                }
                self.w0 = x
            }
            _ => {
                return Err(format!(
                    "{k}: unknown parameter of the phase view; known: {}",
                    KEYS.join(", ")
                ))
            }
        }
        Ok(())
    }

    /// The engine configuration of the slice (SPEC §6 preset with this view's parameters).
    pub fn config(&self) -> Config {
        let mut c = Preset::Phase.config();
        c.spectrum = Some(vec![self.delta]);
        // α² rounded to 10 significant digits so labels read 1e-2, not 1.0000000000000002e-2
        let a2 = self.alpha * self.alpha;
        c.alpha2 = vec![format!("{a2:.9e}").parse().unwrap_or(a2)];
        c.eta = self.eta;
        c.gamma = self.gamma;
        c.gamma_ga = self.gamma_ga;
        c.steps = self.steps;
        c.population = self.population;
        c.n = if self.population { None } else { Some(self.n) };
        c.seed = self.seed;
        c.w0_std = self.w0;
        c.inits.push(InitKind::Pissa);
        c
    }
}

pub fn round4(x: f64) -> f64 {
    let y = (x * 1e4).round() / 1e4;
    // beyond ±1.8e304 the scaled value overflows: keep the number as it is
    if y.is_finite() {
        y
    } else {
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Through the address bar and back: every field of the lab (each unlike every preset's, so
    /// dropping one fails), the compute choice, the page options; and every phase parameter.
    #[test]
    fn every_field_round_trips_through_the_query() {
        let lab = crate::config::testing::unlike_every_preset();
        let opts = PageOpts {
            embed: true,
            large: true,
            autoplay: true,
        };
        let phase = PhaseParams {
            delta: 1.75,
            alpha: 0.0316,
            eta: 0.05,
            gamma: 2.0,
            gamma_ga: 16.0,
            steps: 321,
            population: false,
            n: 12,
            seed: 9,
            start: Some((-0.5, 1.25)),
            speed: 75.0,
            show: [true, false, true, false, true],
            w0: 0.3,
        };
        let d = PhaseParams::default();
        assert!(phase
            .to_pairs()
            .iter()
            .zip(d.to_pairs())
            .all(|(a, b)| a.1 != b.1));
        let sweep = SweepParams {
            preset: SweepPreset::LnDLaw,
            x: "d=16,24".into(),
            y: "eta=0.01,0.02".into(),
            seeds: 5,
            steps: 77,
            theta: 0.25,
        };
        let toy = ToyParams {
            spec: ToySpec {
                seeds: 5,
                steps: 300,
                eta: 0.05,
                n: 6,
                seed: 3,
            },
            yaw_deg: -120.5,
            pitch_deg: 61.2,
        };
        let dt = ToyParams::default();
        assert!(toy
            .to_pairs()
            .iter()
            .zip(dt.to_pairs())
            .all(|(a, b)| a.1 != b.1));
        let digits = crate::digits::FtConfig {
            seed: 4,
            seeds: 2,
            hidden: 24,
            rank: 3,
            pre_steps: 120,
            pre_lr: 0.02,
            steps: 60,
            lr: 0.25,
            adam_lr: 0.005,
            batch: 64,
            alpha2: 0.03,
            gamma_ga: 8.0,
            damping: 0.01,
            record_every: 3,
            lora_opt: crate::digits::FtOpt::Adam,
            task: crate::digits::Task::Mirror,
            ft_frac: 0.25,
        };
        let dd = crate::digits::FtConfig::default();
        assert!(digits
            .to_pairs()
            .iter()
            .zip(dd.to_pairs())
            .all(|(a, b)| a.1 != b.1));
        for view in [View::Lab, View::Phase, View::Sweep, View::Toy, View::Digits] {
            let q = to_query(&state_pairs(&UrlState {
                view,
                opts,
                phase: phase.clone(),
                lab: lab.clone(),
                sweep: sweep.clone(),
                toy: toy.clone(),
                digits: digits.clone(),
                preset: None,
                compute: Compute::Cpu,
                errors: vec![],
            }));
            let s = parse_state(&parse_query(&format!("?{q}")));
            assert!(s.errors.is_empty(), "{:?}", s.errors);
            assert_eq!(s.view, view);
            assert_eq!(s.opts, opts);
            match view {
                View::Lab => {
                    assert_eq!(s.lab, lab);
                    assert_eq!(s.compute, Compute::Cpu);
                }
                View::Phase => assert_eq!(s.phase, phase),
                View::Sweep => {
                    assert_eq!(s.sweep, sweep);
                    assert!(s.sweep.spec().is_ok());
                }
                View::Toy => {
                    assert_eq!(s.toy, toy);
                    assert!(s.toy.spec.validate().is_ok());
                }
                View::Digits => {
                    assert_eq!(s.digits, digits);
                    assert!(s.digits.validate().is_ok());
                }
            }
        }
    }

    /// What `encodeURIComponent` writes, and what it decodes.
    #[test]
    fn query_encoding_matches_the_browser() {
        let q = to_query(&[("a b".into(), "1e-3,1e-2 <x>&=+é".into())]);
        assert_eq!(q, "a%20b=1e-3%2C1e-2%20%3Cx%3E%26%3D%2B%C3%A9");
        assert_eq!(
            parse_query(&format!("?{q}&c=d+e&bad=%E0%A4%A&&=")),
            vec![
                ("a b".to_string(), "1e-3,1e-2 <x>&=+é".to_string()),
                ("c".into(), "d e".into()),
                // a cut escape decodes lossily (the browser's decoder throws; this one never does)
                ("bad".into(), "\u{FFFD}%A".into()),
                ("".into(), "".into()),
            ]
        );
    }
}
