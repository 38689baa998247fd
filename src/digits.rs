//! SPEC §9, real data: "one-step gradient can suffice" and Fig. 1(c), on the UCI optical
//! handwritten digits (8×8 images, 1797 samples, pixel values 0–16; E. Alpaydin and C. Kaynak,
//! UCI Machine Learning Repository, CC BY 4.0).
//!
//! **Model.** A bias-free two-layer ReLU network `logits = relu(X W1) W2` (paper layout: W1 is
//! 64 × h, W2 is h × 5), softmax cross-entropy. **Task** (as the public odd→even demos): a
//! *shared 5-way head*, class = digit / 2; pre-trained (seeded, Adam) on the odd digits,
//! fine-tuned on the even ones, each split 70/30 into train and held-out test. Inputs are the
//! pixels / 16, centred by the mean image of the whole set.
//!
//! **Methods**, all from the same pre-trained weights, both layers adapted:
//! the pre-trained model; one full step `W − η*∇`; one rank-r step `W + η* P_r(G)` per layer (the
//! spectral init alone); full fine-tuning with GD or Adam; LoRA with vanilla, LoRA-GA, LoRA-One or
//! PiSSA factors, trained by GD, preconditioned GD or Adam. G = −∇ at the pre-trained weights on a
//! batch of b fine-tuning samples; η* is the SPEC §9 grid value with the lowest loss on that batch
//! after the step. LoRA-One's factors are `√η* U_r S_r^{1/2}`, `√η* S_r^{1/2} V_rᵀ`, so
//! `A0B0 = η* P_r(G)`: at step 0 LoRA-One *is* the one rank-r step, and training goes on from there.

use crate::engine::EngineError;
use crate::ensemble::quantile;
use crate::linalg::{canonicalize, exact_top_svd, orthonormalize, sin_theta, TopSvd};
use crate::rng::Rng;
use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};

pub const N_SAMPLES: usize = 1797;
pub const N_PIXELS: usize = 64;
pub const N_CLASSES: usize = 5;

/// The dataset: pixel values 0..=16 row by row, and the digit of each image.
#[derive(Clone, Debug, PartialEq)]
pub struct Digits {
    pub pixels: Vec<[u8; N_PIXELS]>,
    pub digit: Vec<u8>,
}

impl Digits {
    /// The asset format (`assets/digits.bin`): 1797 × 64 pixel bytes, then 1797 digit bytes.
    pub fn parse(bytes: &[u8]) -> Result<Digits, String> {
        if bytes.len() != N_SAMPLES * (N_PIXELS + 1) {
            return Err(format!(
                "digits data: expected {} bytes, got {}",
                N_SAMPLES * (N_PIXELS + 1),
                bytes.len()
            ));
        }
        let (px, dg) = bytes.split_at(N_SAMPLES * N_PIXELS);
        if let Some(p) = px.iter().find(|&&p| p > 16) {
            return Err(format!("digits data: pixel value {p} outside 0..=16"));
        }
        if let Some(d) = dg.iter().find(|&&d| d > 9) {
            return Err(format!("digits data: digit {d} outside 0..=9"));
        }
        Ok(Digits {
            pixels: px
                .chunks_exact(N_PIXELS)
                .map(|c| c.try_into().expect("64 bytes"))
                .collect(),
            digit: dg.to_vec(),
        })
    }

    /// The data shipped with the crate.
    pub fn embedded() -> Digits {
        Digits::parse(include_bytes!("../assets/digits.bin")).expect("the shipped asset is valid")
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v: Vec<u8> = self.pixels.iter().flatten().copied().collect();
        v.extend_from_slice(&self.digit);
        v
    }
}

/// One task's split: inputs (n × 64) and classes (digit / 2).
#[derive(Clone, Debug)]
pub struct Split {
    pub train_x: DMatrix<f64>,
    pub train_y: Vec<usize>,
    pub test_x: DMatrix<f64>,
    pub test_y: Vec<usize>,
}

/// The fine-tuning task (SPEC §9): odd → even digits with the shared 5-way head (the public
/// demos' task), or a domain shift of the 10-way task: pre-trained on the original images of half
/// the samples, fine-tuned on the other half's images mirrored, rotated a quarter turn, shifted a
/// pixel right, or with inverted intensities (where the pre-trained model is partly right, as a
/// pre-trained language model is on GLUE).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    OddEven,
    Mirror,
    Rotate,
    Shift,
    Invert,
}

impl Task {
    pub const ALL: [Task; 5] = [
        Task::OddEven,
        Task::Mirror,
        Task::Rotate,
        Task::Shift,
        Task::Invert,
    ];
    pub fn key(self) -> &'static str {
        match self {
            Task::OddEven => "odd-even",
            Task::Mirror => "mirror",
            Task::Rotate => "rotate",
            Task::Shift => "shift",
            Task::Invert => "invert",
        }
    }
    pub fn parse(s: &str) -> Option<Task> {
        Task::ALL.into_iter().find(|t| t.key() == s)
    }
    pub fn label(self) -> &'static str {
        match self {
            Task::OddEven => "odd → even digits (shared 5-way head)",
            Task::Mirror => "original → mirrored images (10-way)",
            Task::Rotate => "original → images turned 90° (10-way)",
            Task::Shift => "original → images shifted a pixel right (10-way)",
            Task::Invert => "original → inverted intensities (10-way)",
        }
    }
    pub fn classes(self) -> usize {
        match self {
            Task::OddEven => N_CLASSES,
            _ => 10,
        }
    }
    /// The fine-tuning images' transform (identity for odd → even).
    fn transform(self, p: &[u8; N_PIXELS]) -> [u8; N_PIXELS] {
        let mut q = [0u8; N_PIXELS];
        for r in 0..8 {
            for c in 0..8 {
                q[r * 8 + c] = match self {
                    Task::OddEven => p[r * 8 + c],
                    Task::Mirror => p[r * 8 + (7 - c)],
                    // a quarter turn clockwise: new (r, c) = old (7 − c, r)
                    Task::Rotate => p[(7 - c) * 8 + r],
                    Task::Shift => {
                        if c == 0 {
                            0
                        } else {
                            p[r * 8 + c - 1]
                        }
                    }
                    Task::Invert => 16 - p[r * 8 + c],
                };
            }
        }
        q
    }
}

/// Odd (pre-training) and even (fine-tuning) tasks, split with the seed: 70 % train, 30 % test.
pub fn tasks(data: &Digits, seed: u64) -> (Split, Split) {
    task_splits(data, Task::OddEven, seed, 1.0)
}

/// The pre-training and fine-tuning splits of a task (70 % train, 30 % test each, seeded); the
/// fine-tuning train split is cut to its first `ft_frac` (the small-data control).
pub fn task_splits(data: &Digits, task: Task, seed: u64, ft_frac: f64) -> (Split, Split) {
    let n = data.digit.len();
    let mut mean = [0.0f64; N_PIXELS];
    for p in &data.pixels {
        for (m, &v) in mean.iter_mut().zip(p) {
            *m += v as f64 / 16.0;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = Rng::new(seed, STREAM_SPLIT);
    shuffle(&mut order, &mut rng);
    let half = n / 2;
    let split = |pre: bool| {
        let idx: Vec<usize> = match task {
            Task::OddEven => order
                .iter()
                .copied()
                .filter(|&i| (data.digit[i] % 2 == 1) == pre)
                .collect(),
            _ if pre => order[..half].to_vec(),
            _ => order[half..].to_vec(),
        };
        let n_train = (idx.len() as f64 * 0.7).round() as usize;
        let keep = if pre {
            n_train
        } else {
            ((n_train as f64 * ft_frac).ceil() as usize).clamp(1, n_train)
        };
        let mk = |ids: &[usize]| {
            let imgs: Vec<[u8; N_PIXELS]> = ids
                .iter()
                .map(|&i| {
                    if pre {
                        data.pixels[i]
                    } else {
                        task.transform(&data.pixels[i])
                    }
                })
                .collect();
            let x = DMatrix::from_fn(ids.len(), N_PIXELS, |r, c| {
                imgs[r][c] as f64 / 16.0 - mean[c]
            });
            let y = ids
                .iter()
                .map(|&i| match task {
                    Task::OddEven => (data.digit[i] / 2) as usize,
                    _ => data.digit[i] as usize,
                })
                .collect();
            (x, y)
        };
        let (train_x, train_y) = mk(&idx[..keep]);
        let (test_x, test_y) = mk(&idx[n_train..]);
        Split {
            train_x,
            train_y,
            test_x,
            test_y,
        }
    };
    (split(true), split(false))
}

const STREAM_SPLIT: u64 = 101;
const STREAM_NET: u64 = 102;
const STREAM_BATCH: u64 = 103;
const STREAM_VANILLA: u64 = 104;

fn shuffle(v: &mut [usize], rng: &mut Rng) {
    for i in (1..v.len()).rev() {
        let j = ((rng.uniform_open0() * (i + 1) as f64) as usize).min(i);
        v.swap(i, j);
    }
}

/// The network's two weight matrices (paper layout: inputs × outputs).
#[derive(Clone, Debug, PartialEq)]
pub struct Net {
    pub w: [DMatrix<f64>; 2],
}

/// Loss, accuracy and (optionally) the gradients of both layers.
pub struct Eval {
    pub loss: f64,
    pub acc: f64,
    pub grad: Option<[DMatrix<f64>; 2]>,
}

impl Net {
    /// He-style seeded draw: W1 ~ N(0, 2/64), W2 ~ N(0, 1/h).
    pub fn init(hidden: usize, classes: usize, seed: u64) -> Net {
        let mut rng = Rng::new(seed, STREAM_NET);
        let w1 = rng.normal_matrix(N_PIXELS, hidden, (2.0 / N_PIXELS as f64).sqrt());
        let w2 = rng.normal_matrix(hidden, classes, (1.0 / hidden as f64).sqrt());
        Net { w: [w1, w2] }
    }

    /// Mean cross-entropy and accuracy on (x, y); with `grad`, ∇ of the loss for both layers.
    pub fn eval(&self, x: &DMatrix<f64>, y: &[usize], grad: bool) -> Eval {
        let n = x.nrows();
        let z1 = x * &self.w[0];
        let h = z1.map(|v| v.max(0.0));
        let mut z2 = &h * &self.w[1];
        let (mut loss, mut hits) = (0.0, 0usize);
        for i in 0..n {
            let mut row = z2.row_mut(i);
            // the first largest logit; the loss in log-sum-exp form, exact however large the
            // logits grow (as the GPU twin, `mlp.wgsl`)
            let best = (1..row.len()).fold(0, |b, j| if row[j] > row[b] { j } else { b });
            if best == y[i] {
                hits += 1;
            }
            let m = row[best];
            let zy = row[y[i]];
            row.apply(|v| *v = libm::exp(*v - m));
            let s = row.sum();
            row.apply(|v| *v /= s);
            loss += libm::log(s) - (zy - m);
        }
        let loss = loss / n as f64;
        let acc = hits as f64 / n as f64;
        let grad = grad.then(|| {
            // z2 now holds the softmax P; dZ2 = (P − Y)/n
            let mut dz2 = z2;
            for i in 0..n {
                dz2[(i, y[i])] -= 1.0;
            }
            dz2 /= n as f64;
            let g2 = h.transpose() * &dz2;
            let mut dz1 = dz2 * self.w[1].transpose();
            dz1.zip_apply(&z1, |d, z| {
                if z <= 0.0 {
                    *d = 0.0
                }
            });
            let g1 = x.transpose() * dz1;
            [g1, g2]
        });
        Eval { loss, acc, grad }
    }

    fn plus(&self, d: &[DMatrix<f64>; 2], s: f64) -> Net {
        Net {
            w: [&self.w[0] + &d[0] * s, &self.w[1] + &d[1] * s],
        }
    }
}

/// Where the digits model's forward/backward passes and the SVD of its layer gradients run:
/// [`CpuFt`] (the reference, f64 nalgebra) or the GPU backend (`gpu::GpuBackend`, f32 WGSL,
/// `src/gpu/mlp.rs`). Everything else (the optimisers, the η* search, the metrics, the landscape's
/// plane) is the same host code on both.
#[allow(async_fn_in_trait)]
pub trait FtCompute {
    /// `Net::eval` or its twin.
    async fn eval(
        &mut self,
        net: &Net,
        x: &DMatrix<f64>,
        y: &[usize],
        grad: bool,
    ) -> Result<Eval, EngineError>;
    /// The top-m singular triplets of a layer's gradient (`exact_top_svd` or its twin).
    async fn top_svd(&mut self, g: &DMatrix<f64>, m: usize) -> Result<TopSvd, EngineError>;
    /// For reports: "CPU" or the GPU adapter.
    fn name(&self) -> String;
}

/// The CPU reference engine of the digits model.
pub struct CpuFt;

impl FtCompute for CpuFt {
    async fn eval(
        &mut self,
        net: &Net,
        x: &DMatrix<f64>,
        y: &[usize],
        grad: bool,
    ) -> Result<Eval, EngineError> {
        Ok(net.eval(x, y, grad))
    }
    async fn top_svd(&mut self, g: &DMatrix<f64>, m: usize) -> Result<TopSvd, EngineError> {
        Ok(exact_top_svd(g, m))
    }
    fn name(&self) -> String {
        "CPU".into()
    }
}

/// The result of a computation on [`CpuFt`], whose futures never wait: the synchronous entry
/// points (`run`, `pretrain`, `fine_tune`, `FtRunner::step`) are the async ones on the CPU.
fn on_cpu<T>(f: impl std::future::Future<Output = Result<T, EngineError>>) -> T {
    use std::task::{Context, Poll, Waker};
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(Ok(v)) => v,
        Poll::Ready(Err(e)) => unreachable!("the CPU engine of the digits model failed: {e}"),
        Poll::Pending => unreachable!("the CPU engine of the digits model never waits"),
    }
}

/// Adam state for a list of matrices (β1 0.9, β2 0.999, ε 1e-8).
struct Adam {
    m: Vec<DMatrix<f64>>,
    v: Vec<DMatrix<f64>>,
    t: i32,
}

impl Adam {
    fn new(shapes: &[&DMatrix<f64>]) -> Adam {
        let z = |p: &&DMatrix<f64>| DMatrix::zeros(p.nrows(), p.ncols());
        Adam {
            m: shapes.iter().map(z).collect(),
            v: shapes.iter().map(z).collect(),
            t: 0,
        }
    }
    fn step(&mut self, params: &mut [&mut DMatrix<f64>], grads: &[DMatrix<f64>], lr: f64) {
        self.t += 1;
        let (b1, b2) = (0.9f64, 0.999f64);
        let c1 = 1.0 - b1.powi(self.t);
        let c2 = 1.0 - b2.powi(self.t);
        for (k, (p, g)) in params.iter_mut().zip(grads).enumerate() {
            self.m[k].zip_apply(g, |m, g| *m = b1 * *m + (1.0 - b1) * g);
            self.v[k].zip_apply(g, |v, g| *v = b2 * *v + (1.0 - b2) * g * g);
            let (m, v) = (&self.m[k], &self.v[k]);
            for ((pi, mi), vi) in p.iter_mut().zip(m.iter()).zip(v.iter()) {
                *pi -= lr * (mi / c1) / ((vi / c2).sqrt() + 1e-8);
            }
        }
    }
}

/// Fine-tuning settings (the `digits` preset's defaults are sized for the browser).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FtConfig {
    pub seed: u64,
    /// Repeats with seeds seed, seed+1, …: each its own split, pre-training and draws.
    pub seeds: usize,
    pub hidden: usize,
    pub rank: usize,
    /// Pre-training: Adam steps (full batch) and rate.
    pub pre_steps: usize,
    pub pre_lr: f64,
    /// Fine-tuning: steps, GD rate, Adam rate (full batch of the even train split).
    pub steps: usize,
    pub lr: f64,
    pub adam_lr: f64,
    /// Gradient batch for G and η* (0: the whole fine-tuning train split).
    pub batch: usize,
    /// Vanilla LoRA: A0 ~ N(0, α²).
    pub alpha2: f64,
    pub gamma_ga: f64,
    /// Preconditioned GD damping λ.
    pub damping: f64,
    pub record_every: usize,
    /// How the LoRA factors are trained.
    #[serde(default = "default_lora_opt")]
    pub lora_opt: FtOpt,
    /// The task: odd → even or a domain shift.
    #[serde(default = "default_task")]
    pub task: Task,
    /// Fraction of the fine-tuning train split used (the small-data control).
    #[serde(default = "default_ft_frac")]
    pub ft_frac: f64,
}

fn default_task() -> Task {
    Task::OddEven
}

fn default_ft_frac() -> f64 {
    1.0
}

fn default_lora_opt() -> FtOpt {
    FtOpt::Gd
}

impl Default for FtConfig {
    fn default() -> Self {
        FtConfig {
            seed: 0,
            seeds: 3,
            hidden: 32,
            rank: 4,
            pre_steps: 300,
            pre_lr: 1e-2,
            steps: 100,
            lr: 0.5,
            adam_lr: 1e-2,
            batch: 0,
            alpha2: 1.0 / N_PIXELS as f64,
            gamma_ga: 16.0,
            damping: 1e-3,
            record_every: 5,
            lora_opt: FtOpt::Gd,
            task: Task::OddEven,
            ft_frac: 1.0,
        }
    }
}

pub const FT_KEYS: [&str; 17] = [
    "seed",
    "seeds",
    "hidden",
    "rank",
    "pre_steps",
    "pre_lr",
    "steps",
    "lr",
    "adam_lr",
    "batch",
    "alpha2",
    "gamma_ga",
    "damping",
    "record_every",
    "lora_opt",
    "task",
    "ft_frac",
];

impl FtConfig {
    /// Set one field from text (CLI `--set`, URL); the range is checked by `validate`.
    pub fn set(&mut self, k: &str, v: &str) -> Result<(), crate::ConfigError> {
        let err = |m: String| crate::ConfigError::new(k, m);
        let whole = |v: &str| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| err(format!("expected a whole number, got `{v}`")))
        };
        let num = |v: &str| {
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| err(format!("expected a number, got `{v}`")))
        };
        let size = |v: &str| whole(v).map(|x| x.min(u32::MAX as u64) as usize);
        match k {
            "seed" => self.seed = whole(v)?,
            "seeds" => self.seeds = size(v)?,
            "hidden" => self.hidden = size(v)?,
            "rank" => self.rank = size(v)?,
            "pre_steps" => self.pre_steps = size(v)?,
            "pre_lr" => self.pre_lr = num(v)?,
            "steps" => self.steps = size(v)?,
            "lr" => self.lr = num(v)?,
            "adam_lr" => self.adam_lr = num(v)?,
            "batch" => self.batch = size(v)?,
            "alpha2" => self.alpha2 = num(v)?,
            "gamma_ga" => self.gamma_ga = num(v)?,
            "damping" => self.damping = num(v)?,
            "record_every" => self.record_every = size(v)?,
            "task" => {
                self.task = Task::parse(v.trim()).ok_or_else(|| {
                    err(format!(
                        "expected odd-even, mirror, rotate, shift or invert, got `{v}`"
                    ))
                })?
            }
            "ft_frac" => self.ft_frac = num(v)?,
            "lora_opt" => {
                self.lora_opt = FtOpt::parse(v.trim())
                    .ok_or_else(|| err(format!("expected gd, precond or adam, got `{v}`")))?
            }
            _ => {
                return Err(err(format!(
                    "unknown parameter of the digits task; known: {}",
                    FT_KEYS.join(", ")
                )))
            }
        }
        Ok(())
    }

    /// The URL / `--set` form of every field.
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        let v: [String; 17] = [
            self.seed.to_string(),
            self.seeds.to_string(),
            self.hidden.to_string(),
            self.rank.to_string(),
            self.pre_steps.to_string(),
            format!("{}", self.pre_lr),
            self.steps.to_string(),
            format!("{}", self.lr),
            format!("{}", self.adam_lr),
            self.batch.to_string(),
            format!("{}", self.alpha2),
            format!("{}", self.gamma_ga),
            format!("{}", self.damping),
            self.record_every.to_string(),
            self.lora_opt.key().to_string(),
            self.task.key().to_string(),
            format!("{}", self.ft_frac),
        ];
        FT_KEYS.iter().map(|k| k.to_string()).zip(v).collect()
    }

    /// The first field out of range, named with its range.
    pub fn validate(&self) -> Result<(), crate::ConfigError> {
        let bad = |k: &str, m: String| Err(crate::ConfigError::new(k, m));
        let int = |k: &str, v: usize, lo: usize, hi: usize| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                bad(k, format!("must be in {lo}..={hi}, got {v}"))
            }
        };
        let real = |k: &str, v: f64, lo: f64, hi: f64| {
            if v.is_finite() && v > lo && v <= hi {
                Ok(())
            } else {
                bad(k, format!("must be in ({lo}, {hi}], got {v}"))
            }
        };
        int("seeds", self.seeds, 1, 32)?;
        int("hidden", self.hidden, 2, 512)?;
        int("rank", self.rank, 1, self.hidden.min(N_PIXELS))?;
        int("pre_steps", self.pre_steps, 0, 20_000)?;
        real("pre_lr", self.pre_lr, 0.0, 1.0)?;
        int("steps", self.steps, 0, 20_000)?;
        real("lr", self.lr, 0.0, 100.0)?;
        real("adam_lr", self.adam_lr, 0.0, 1.0)?;
        int("batch", self.batch, 0, N_SAMPLES)?;
        real("alpha2", self.alpha2, 0.0, 100.0)?;
        real("gamma_ga", self.gamma_ga, 0.0, 1e6)?;
        if !(self.damping.is_finite() && self.damping >= 0.0 && self.damping <= 1.0) {
            return bad(
                "damping",
                format!("must be in [0, 1], got {}", self.damping),
            );
        }
        real("ft_frac", self.ft_frac, 0.0, 1.0)?;
        int("record_every", self.record_every, 1, 20_000)
    }

    /// Work in multiply-adds (pre-training, every method's steps, the landscape), for progress
    /// and for refusing what a tab cannot finish.
    pub fn work(&self, methods: usize) -> f64 {
        let n = N_SAMPLES as f64 * 0.35; // one task's train split
        let per_pass = n * (N_PIXELS * self.hidden + self.hidden * self.task.classes()) as f64;
        self.seeds as f64 * (3.0 * per_pass * (self.pre_steps + methods * self.steps) as f64)
            + (PLANE_GRID * PLANE_GRID) as f64 * per_pass
    }
}

/// Whether the GPU backend takes this configuration: its SVD returns at most 32 singular triplets,
/// and LoRA-GA needs min(2·rank, 64, hidden) of the first layer's gradient (the CPU engine takes
/// any rank the model has).
pub fn gpu_fits(cfg: &FtConfig) -> Result<(), crate::ConfigError> {
    let need = (2 * cfg.rank).min(N_PIXELS).min(cfg.hidden);
    if need > 32 {
        return Err(crate::ConfigError::new(
            "rank",
            format!(
                "must be at most 16 on the GPU backend when hidden > 32 (its SVD takes 32 singular triplets, LoRA-GA needs 2·rank), got {}; use the CPU engine",
                cfg.rank
            ),
        ));
    }
    Ok(())
}

/// The GPU/CPU crossover of the digits model, measured on the H200 (native wgpu on Vulkan, the
/// CPU reference on its host, `gpu-bench --only digits`, BENCHMARKS.md): one forward+backward pass
/// over the fine-tuning split takes 443–467 vs 377–591 µs at h = 32 (a tie within the host's
/// noise; the GPU's floor, one submission and readback, is 152–178 µs), 514–518 vs 1266–1913 µs at
/// h = 128, ~1 ms vs 9.5–13.5 ms at h = 512. The GPU is the faster place from h = 128.
pub const GPU_MIN_HIDDEN: usize = 128;

/// Whether a hardware GPU is the faster place for this configuration (`compute=auto`), or why
/// not. A software adapter never is (that choice is made from the adapter, not from here).
pub fn gpu_is_faster(cfg: &FtConfig) -> Result<(), String> {
    if cfg.hidden < GPU_MIN_HIDDEN {
        return Err(format!(
            "hidden = {} is below the GPU/CPU crossover of this model (hidden {GPU_MIN_HIDDEN}): the CPU engine is faster at this size",
            cfg.hidden
        ));
    }
    gpu_fits(cfg).map_err(|e| e.to_string())
}

/// A run has diverged when its train loss exceeds this factor times max(its loss at step 0, 1),
/// or is not finite: the linear engine's default rule (`divergence_factor`). The threshold,
/// not overflow, decides, so the f32 GPU and the f64 CPU engine stop at the same step.
pub const DIVERGENCE_FACTOR: f64 = 1e8;

/// The η* grid of SPEC §9 (the paper's Table 2).
pub const ETA_GRID: [f64; 11] = [10.0, 5.0, 1.0, 0.5, 0.1, 0.05, 0.01, 5e-3, 1e-3, 5e-4, 1e-4];

/// LoRA's initial factors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdapterInit {
    Vanilla,
    LoraGa,
    LoraOne,
    Pissa,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FtOpt {
    Gd,
    Precond,
    Adam,
}

impl FtOpt {
    pub fn key(self) -> &'static str {
        match self {
            FtOpt::Gd => "gd",
            FtOpt::Precond => "precond",
            FtOpt::Adam => "adam",
        }
    }
    pub fn parse(s: &str) -> Option<FtOpt> {
        [FtOpt::Gd, FtOpt::Precond, FtOpt::Adam]
            .into_iter()
            .find(|o| o.key() == s)
    }
}

/// One row of the talk's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum FtMethod {
    Pretrained,
    OneStepFull,
    OneStepRank,
    Full { opt: FtOpt },
    Lora { init: AdapterInit, opt: FtOpt },
}

impl FtMethod {
    /// The default preset's methods, LoRA trained by `lora_opt`.
    pub fn for_config(cfg: &FtConfig) -> Vec<FtMethod> {
        let mut v = FtMethod::defaults();
        for m in &mut v {
            if let FtMethod::Lora { opt, .. } = m {
                *opt = cfg.lora_opt;
            }
        }
        v
    }

    /// The default preset's methods (LoRA by GD).
    pub fn defaults() -> Vec<FtMethod> {
        use AdapterInit::*;
        let mut v = vec![
            FtMethod::Pretrained,
            FtMethod::OneStepFull,
            FtMethod::OneStepRank,
            FtMethod::Full { opt: FtOpt::Gd },
            FtMethod::Full { opt: FtOpt::Adam },
        ];
        for init in [Vanilla, LoraGa, LoraOne, Pissa] {
            v.push(FtMethod::Lora {
                init,
                opt: FtOpt::Gd,
            });
        }
        v
    }
    pub fn label(&self) -> String {
        let opt = |o: &FtOpt| match o {
            FtOpt::Gd => "GD",
            FtOpt::Precond => "precond. GD",
            FtOpt::Adam => "Adam",
        };
        match self {
            FtMethod::Pretrained => "pre-trained".into(),
            FtMethod::OneStepFull => "one full step W − η*∇".into(),
            FtMethod::OneStepRank => "spectral init alone W + η*P_r(G)".into(),
            FtMethod::Full { opt: o } => format!("full fine-tuning ({})", opt(o)),
            FtMethod::Lora { init, opt: o } => format!(
                "LoRA_r {} ({})",
                match init {
                    AdapterInit::Vanilla => "vanilla",
                    AdapterInit::LoraGa => "LoRA-GA",
                    AdapterInit::LoraOne => "LoRA-One",
                    AdapterInit::Pissa => "PiSSA",
                },
                opt(o)
            ),
        }
    }
}

/// One recorded step of one method.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FtRecord {
    pub step: usize,
    pub train_loss: f64,
    pub test_loss: f64,
    pub test_acc: f64,
    /// Per layer: sin θ between the adapter's top-r column space of A and G's top-r left
    /// singular subspace (LoRA only).
    pub sin_a: Option<[f64; 2]>,
    /// Likewise between B's row space and G's top-r right singular subspace.
    pub sin_b: Option<[f64; 2]>,
}

/// One method on one seed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FtRun {
    pub method: FtMethod,
    pub label: String,
    pub seed: u64,
    pub test_acc: f64,
    pub test_loss: f64,
    /// G and its SVD (the spectral methods), and η*'s grid search where used.
    pub init_ms: f64,
    pub train_ms: f64,
    /// η* where the method uses it.
    pub eta_star: Option<f64>,
    pub records: Vec<FtRecord>,
    /// Flattened (W1, W2) − W_pre at each record, projected on the landscape plane (set later).
    #[serde(default)]
    pub plane_path: Vec<[f64; 2]>,
    pub diverged_at: Option<usize>,
    /// The flattened weight changes at each record (for the plane; not exported).
    #[serde(skip)]
    pub deltas: Vec<Vec<f64>>,
}

/// What the pre-training reached (per seed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pretraining {
    pub seed: u64,
    pub odd_test_acc: f64,
    pub even_test_acc: f64,
    pub ms: f64,
}

/// Fig. 1(c): log-loss (fine-tuning train split) on the plane through W_pre spanned by the top
/// two principal directions of the full-FT (GD) path of the first seed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Landscape {
    pub u: Vec<f64>,
    pub v: Vec<f64>,
    /// ln loss, row-major over (v, u).
    pub ln_loss: Vec<f64>,
    /// Share of the path's variance the two directions hold.
    pub explained: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FtReport {
    pub schema: String,
    pub config: FtConfig,
    pub pretraining: Vec<Pretraining>,
    pub runs: Vec<FtRun>,
    pub landscape: Option<Landscape>,
}

pub const SCHEMA: &str = "lora-one-lab/digits/1";

fn flatten(d: &[DMatrix<f64>; 2]) -> Vec<f64> {
    d[0].iter().chain(d[1].iter()).copied().collect()
}

/// Pre-train on the odd digits (full-batch Adam from the seeded draw).
pub fn pretrain(cfg: &FtConfig, odd: &Split, seed: u64) -> Net {
    on_cpu(pretrain_on(&mut CpuFt, cfg, odd, seed))
}

/// [`pretrain`] on a backend.
pub async fn pretrain_on(
    be: &mut impl FtCompute,
    cfg: &FtConfig,
    odd: &Split,
    seed: u64,
) -> Result<Net, EngineError> {
    let mut p = Pretrainer::new(cfg, seed);
    p.advance(be, cfg, odd, cfg.pre_steps).await?;
    Ok(p.net)
}

/// Pre-training in progress: full-batch Adam from the seeded draw, resumable (the runner's
/// chunks and `pretrain` share it).
struct Pretrainer {
    net: Net,
    adam: Adam,
    done: usize,
    ms: f64,
}

impl Pretrainer {
    fn new(cfg: &FtConfig, seed: u64) -> Pretrainer {
        let net = Net::init(cfg.hidden, cfg.task.classes(), seed);
        let adam = Adam::new(&[&net.w[0], &net.w[1]]);
        Pretrainer {
            net,
            adam,
            done: 0,
            ms: 0.0,
        }
    }

    /// Up to `n` more steps.
    async fn advance(
        &mut self,
        be: &mut impl FtCompute,
        cfg: &FtConfig,
        odd: &Split,
        n: usize,
    ) -> Result<(), EngineError> {
        let t = web_time::Instant::now();
        let n = n.min(cfg.pre_steps - self.done);
        for _ in 0..n {
            let g = be
                .eval(&self.net, &odd.train_x, &odd.train_y, true)
                .await?
                .grad
                .expect("grad");
            let [w1, w2] = &mut self.net.w;
            self.adam.step(&mut [w1, w2], &g, cfg.pre_lr);
        }
        self.done += n;
        self.ms += t.elapsed().as_secs_f64() * 1e3;
        Ok(())
    }
}

/// The adapter of one layer: frozen weight, factors.
struct Adapter {
    frozen: DMatrix<f64>,
    a: DMatrix<f64>,
    b: DMatrix<f64>,
}

fn adapter_init(
    init: AdapterInit,
    w: &DMatrix<f64>,
    g: &TopSvd,
    cfg: &FtConfig,
    eta_star: f64,
    rng: &mut Rng,
) -> Adapter {
    let r = cfg.rank.min(w.nrows()).min(w.ncols());
    let (din, dout) = w.shape();
    let scaled = |u: &DMatrix<f64>, s: &[f64], v: &DMatrix<f64>, k: f64| {
        let mut a = u.columns(0, r).into_owned();
        let mut b = v.columns(0, r).transpose();
        for (i, &si) in s.iter().enumerate().take(r) {
            let f = (k * si).max(0.0).sqrt();
            a.column_mut(i).scale_mut(f);
            b.row_mut(i).scale_mut(f);
        }
        (a, b)
    };
    match init {
        AdapterInit::Vanilla => Adapter {
            frozen: w.clone(),
            a: rng.normal_matrix(din, r, cfg.alpha2.sqrt()),
            b: DMatrix::zeros(r, dout),
        },
        AdapterInit::LoraOne => {
            let (a, b) = scaled(&g.u, &g.s, &g.v, eta_star);
            Adapter {
                frozen: w.clone(),
                a,
                b,
            }
        }
        AdapterInit::LoraGa => {
            let c = libm::pow(dout as f64, 0.25) / cfg.gamma_ga.sqrt();
            let a = g.u.columns(0, r) * (-c);
            // directions r+1..2r where G has them (a thin G: fewer)
            let avail = g.v.ncols().saturating_sub(r).min(r);
            let mut b = DMatrix::zeros(r, dout);
            for i in 0..avail {
                b.row_mut(i).copy_from(&(g.v.column(r + i).transpose() * c));
            }
            let frozen = w - &a * &b;
            Adapter { frozen, a, b }
        }
        AdapterInit::Pissa => {
            let sv = exact_top_svd(w, r);
            let (a, b) = scaled(&sv.u, &sv.s, &sv.v, 1.0); // A0B0 = P_r(W): signs cancel
            let frozen = w - &a * &b;
            Adapter { frozen, a, b }
        }
    }
}
/// Run every method on every seed, then the landscape of the first seed.
pub fn run(data: &Digits, cfg: &FtConfig, methods: &[FtMethod]) -> FtReport {
    on_cpu(run_on(&mut CpuFt, data, cfg, methods))
}

/// [`run`] on a backend.
pub async fn run_on(
    be: &mut impl FtCompute,
    data: &Digits,
    cfg: &FtConfig,
    methods: &[FtMethod],
) -> Result<FtReport, EngineError> {
    let mut r = FtRunner::new(data.clone(), cfg.clone(), methods.to_vec());
    while !r.done() {
        r.step_on(be, f64::INFINITY).await?;
    }
    Ok(r.report())
}

/// Pre-training steps per chunk of the runner.
const PRE_CHUNK: usize = 10;
/// Landscape rows per chunk of the runner.
const PLANE_ROWS_PER_UNIT: usize = 3;
/// Fine-tuning steps per chunk of the runner.
const TUNE_CHUNK: usize = 10;

/// The same computation as [`run`], in chunks: `step(budget_ms)` works until the budget has passed
/// (one pre-training chunk or one method at a time), so a page can draw and answer between chunks;
/// `report` gives the finished part at any moment.
pub struct FtRunner {
    data: Digits,
    cfg: FtConfig,
    methods: Vec<FtMethod>,
    seed_i: usize,
    split: Option<(Split, Split)>,
    pre: Option<Pretrainer>,
    net: Option<Net>,
    method_i: usize,
    seed_runs: Vec<FtRun>,
    /// Seed 0's landscape while its rows are computed.
    grid: Option<PlaneGrid>,
    /// The method being trained.
    tuner: Option<Tuner>,
    out: FtReport,
}

impl FtRunner {
    pub fn new(data: Digits, cfg: FtConfig, methods: Vec<FtMethod>) -> FtRunner {
        let out = FtReport {
            schema: SCHEMA.into(),
            config: cfg.clone(),
            pretraining: Vec::new(),
            runs: Vec::new(),
            landscape: None,
        };
        FtRunner {
            data,
            cfg,
            methods,
            seed_i: 0,
            split: None,
            pre: None,
            net: None,
            method_i: 0,
            seed_runs: Vec::new(),
            grid: None,
            tuner: None,
            out,
        }
    }

    pub fn done(&self) -> bool {
        self.seed_i >= self.cfg.seeds
    }

    /// Fraction of the work done (pre-training steps and method steps, weighted alike).
    pub fn progress(&self) -> f64 {
        let per_seed = (self.cfg.pre_steps + self.methods.len() * self.cfg.steps.max(1)) as f64;
        let pre = match (&self.pre, &self.net) {
            (_, Some(_)) => self.cfg.pre_steps,
            (Some(p), None) => p.done,
            _ => 0,
        } as f64;
        let within = self.tuner.as_ref().map_or(0, |t| t.t.min(self.cfg.steps));
        let here = pre + (self.method_i * self.cfg.steps.max(1) + within) as f64;
        ((self.seed_i as f64 * per_seed + here) / (self.cfg.seeds as f64 * per_seed)).min(1.0)
    }

    /// Work until `budget_ms` has passed (at least one unit), on the CPU.
    pub fn step(&mut self, budget_ms: f64) {
        on_cpu(self.step_on(&mut CpuFt, budget_ms))
    }

    /// [`FtRunner::step`] on a backend. An error (the GPU device lost) leaves the runner
    /// part-way through a unit: start a new one.
    pub async fn step_on(
        &mut self,
        be: &mut impl FtCompute,
        budget_ms: f64,
    ) -> Result<(), EngineError> {
        let t0 = web_time::Instant::now();
        while !self.done() {
            self.unit(be).await?;
            if t0.elapsed().as_secs_f64() * 1e3 >= budget_ms {
                break;
            }
        }
        Ok(())
    }

    async fn unit(&mut self, be: &mut impl FtCompute) -> Result<(), EngineError> {
        let seed = self.cfg.seed + self.seed_i as u64;
        if self.split.is_none() {
            self.split = Some(task_splits(
                &self.data,
                self.cfg.task,
                seed,
                self.cfg.ft_frac,
            ));
        }
        let (odd, even) = self.split.as_ref().expect("split");
        if self.net.is_none() {
            let cfg = &self.cfg;
            let p = self.pre.get_or_insert_with(|| Pretrainer::new(cfg, seed));
            p.advance(be, cfg, odd, PRE_CHUNK).await?;
            if p.done >= cfg.pre_steps {
                let odd_test_acc = be.eval(&p.net, &odd.test_x, &odd.test_y, false).await?.acc;
                let even_test_acc = be
                    .eval(&p.net, &even.test_x, &even.test_y, false)
                    .await?
                    .acc;
                let p = self.pre.take().expect("pre-training");
                self.out.pretraining.push(Pretraining {
                    seed,
                    odd_test_acc,
                    even_test_acc,
                    ms: p.ms,
                });
                self.net = Some(p.net);
            }
            return Ok(());
        }
        let net = self.net.as_ref().expect("pre-trained net");
        if self.method_i < self.methods.len() {
            let m = self.methods[self.method_i];
            if self.tuner.is_none() {
                self.tuner = Some(Tuner::new(be, net, even, &self.cfg, m, seed).await?);
            }
            let tu = self.tuner.as_mut().expect("tuner");
            tu.advance(be, net, even, &self.cfg, TUNE_CHUNK).await?;
            if tu.finished {
                let tu = self.tuner.take().expect("tuner");
                self.seed_runs.push(tu.finish(be, net, even).await?);
                self.method_i += 1;
            }
            return Ok(());
        }
        // the seed's runs are done: seed 0's landscape, a few rows per unit, then the next seed
        if self.seed_i == 0 {
            if self.grid.is_none() && self.out.landscape.is_none() {
                self.grid = plane(&mut self.seed_runs);
            }
            if let Some(g) = self.grid.as_mut() {
                for _ in 0..PLANE_ROWS_PER_UNIT {
                    if !g.done() {
                        g.row(be, net, even).await?;
                    }
                }
                if !g.done() {
                    return Ok(());
                }
                self.out.landscape = self.grid.take().map(|g| g.land);
            }
        }
        let mut runs = std::mem::take(&mut self.seed_runs);
        for r in &mut runs {
            r.deltas.clear();
        }
        self.out.runs.extend(runs);
        self.seed_i += 1;
        self.method_i = 0;
        self.split = None;
        self.net = None;
        Ok(())
    }

    /// How many runs the report holds now (it grows a seed at a time).
    pub fn finished_runs(&self) -> usize {
        self.out.runs.len()
    }

    /// Everything finished so far (every finished seed's runs; the landscape once seed 0 is done).
    pub fn report(&self) -> FtReport {
        self.out.clone()
    }
}

/// The gradient batch: the first b of a seeded permutation of the train split (all when b = 0).
fn gradient_batch(even: &Split, cfg: &FtConfig, seed: u64) -> (DMatrix<f64>, Vec<usize>) {
    let n = even.train_x.nrows();
    if cfg.batch == 0 || cfg.batch >= n {
        return (even.train_x.clone(), even.train_y.clone());
    }
    let mut order: Vec<usize> = (0..n).collect();
    shuffle(&mut order, &mut Rng::new(seed, STREAM_BATCH));
    let ids = &order[..cfg.batch];
    (
        DMatrix::from_fn(ids.len(), N_PIXELS, |r, c| even.train_x[(ids[r], c)]),
        ids.iter().map(|&i| even.train_y[i]).collect(),
    )
}

/// The η* of the grid with the lowest loss on the batch after `net + η·dir`.
async fn grid_search(
    be: &mut impl FtCompute,
    net: &Net,
    dir: &[DMatrix<f64>; 2],
    bx: &DMatrix<f64>,
    by: &[usize],
) -> Result<f64, EngineError> {
    let mut best = (f64::INFINITY, ETA_GRID[ETA_GRID.len() - 1]);
    for &eta in &ETA_GRID {
        let l = be.eval(&net.plus(dir, eta), bx, by, false).await?.loss;
        if l.is_finite() && l < best.0 {
            best = (l, eta);
        }
    }
    Ok(best.1)
}

async fn record(
    be: &mut impl FtCompute,
    net: &Net,
    even: &Split,
    step: usize,
    sines: Option<([f64; 2], [f64; 2])>,
) -> Result<FtRecord, EngineError> {
    let tr = be.eval(net, &even.train_x, &even.train_y, false).await?;
    let te = be.eval(net, &even.test_x, &even.test_y, false).await?;
    Ok(FtRecord {
        step,
        train_loss: tr.loss,
        test_loss: te.loss,
        test_acc: te.acc,
        sin_a: sines.map(|s| s.0),
        sin_b: sines.map(|s| s.1),
    })
}

/// One method from the pre-trained net on the even task.
pub fn fine_tune(pre: &Net, even: &Split, cfg: &FtConfig, method: FtMethod, seed: u64) -> FtRun {
    on_cpu(async {
        let be = &mut CpuFt;
        let mut t = Tuner::new(be, pre, even, cfg, method, seed).await?;
        while !t.finished {
            t.advance(be, pre, even, cfg, usize::MAX).await?;
        }
        t.finish(be, pre, even).await
    })
}

/// What a fine-tuning method trains.
enum Trained {
    /// Nothing (the pre-trained model, the one-step methods: done at set-up).
    Nothing,
    Full {
        net: Net,
        adam: Adam,
        opt: FtOpt,
    },
    Lora {
        ad: Vec<Adapter>,
        adam: Adam,
        opt: FtOpt,
        /// G's top-r left and right bases per layer (the sin θ metric).
        bases: Vec<(DMatrix<f64>, DMatrix<f64>)>,
    },
}

/// One method, resumable: `advance(n)` takes up to n optimiser steps (the runner's chunks), with
/// the same arithmetic as one uninterrupted loop.
struct Tuner {
    method: FtMethod,
    seed: u64,
    t: usize,
    eta_star: Option<f64>,
    init_ms: f64,
    train_ms: f64,
    trained: Trained,
    records: Vec<FtRecord>,
    paths: Vec<Vec<f64>>,
    diverged_at: Option<usize>,
    /// The divergence threshold on the train loss (set from step 0).
    limit: f64,
    finished: bool,
}

fn delta_of(pre: &Net, n: &Net) -> Vec<f64> {
    flatten(&[&n.w[0] - &pre.w[0], &n.w[1] - &pre.w[1]])
}

fn effective(ad: &[Adapter]) -> Net {
    Net {
        w: [
            &ad[0].frozen + &ad[0].a * &ad[0].b,
            &ad[1].frozen + &ad[1].a * &ad[1].b,
        ],
    }
}

impl Tuner {
    /// G and its SVD, η* and the factors (or the whole method, for those without training).
    async fn new(
        be: &mut impl FtCompute,
        pre: &Net,
        even: &Split,
        cfg: &FtConfig,
        method: FtMethod,
        seed: u64,
    ) -> Result<Tuner, EngineError> {
        let t0 = web_time::Instant::now();
        let (bx, by) = gradient_batch(even, cfg, seed);
        let needs_g = !matches!(
            method,
            FtMethod::Pretrained
                | FtMethod::Full { .. }
                | FtMethod::Lora {
                    init: AdapterInit::Vanilla | AdapterInit::Pissa,
                    ..
                }
        );
        // the one-step gradient and its top-r SVD per layer (also the sin θ metric's subspaces)
        let grad = be.eval(pre, &bx, &by, true).await?.grad.expect("grad");
        let neg: [DMatrix<f64>; 2] = [-&grad[0], -&grad[1]];
        let r = cfg.rank;
        // canonical signs and completions: LoRA-GA pairs u_i with v_{r+i}, so an arbitrary
        // sign would make its start (and result) depend on the platform's eigensolver
        let svd: [TopSvd; 2] = [
            canonicalize(be.top_svd(&neg[0], 2 * r).await?, seed).0,
            canonicalize(be.top_svd(&neg[1], 2 * r).await?, seed).0,
        ];
        let mut tu = Tuner {
            method,
            seed,
            t: 0,
            eta_star: None,
            init_ms: 0.0,
            train_ms: 0.0,
            trained: Trained::Nothing,
            records: Vec::new(),
            paths: Vec::new(),
            diverged_at: None,
            limit: f64::INFINITY,
            finished: false,
        };
        match method {
            FtMethod::Pretrained => {
                tu.records.push(record(be, pre, even, 0, None).await?);
                tu.paths.push(delta_of(pre, pre));
                tu.finished = true;
            }
            FtMethod::OneStepFull | FtMethod::OneStepRank => {
                let dir: [DMatrix<f64>; 2] = if method == FtMethod::OneStepFull {
                    neg.clone()
                } else {
                    [rank_r(&svd[0], r), rank_r(&svd[1], r)]
                };
                let e = grid_search(be, pre, &dir, &bx, &by).await?;
                tu.eta_star = Some(e);
                tu.init_ms = t0.elapsed().as_secs_f64() * 1e3;
                let t1 = web_time::Instant::now();
                tu.records.push(record(be, pre, even, 0, None).await?);
                tu.paths.push(delta_of(pre, pre));
                let net = pre.plus(&dir, e);
                tu.records.push(record(be, &net, even, 1, None).await?);
                tu.paths.push(delta_of(pre, &net));
                tu.train_ms = t1.elapsed().as_secs_f64() * 1e3;
                tu.finished = true;
            }
            FtMethod::Full { opt } => {
                let net = pre.clone();
                let adam = Adam::new(&[&net.w[0], &net.w[1]]);
                tu.trained = Trained::Full { net, adam, opt };
            }
            FtMethod::Lora { init, opt } => {
                let e = if needs_g {
                    let dir = [rank_r(&svd[0], r), rank_r(&svd[1], r)];
                    grid_search(be, pre, &dir, &bx, &by).await?
                } else {
                    1.0
                };
                if init == AdapterInit::LoraOne {
                    tu.eta_star = Some(e);
                }
                let mut rng = Rng::new(seed, STREAM_VANILLA);
                let ad: Vec<Adapter> = (0..2)
                    .map(|l| adapter_init(init, &pre.w[l], &svd[l], cfg, e, &mut rng))
                    .collect();
                tu.init_ms = t0.elapsed().as_secs_f64() * 1e3;
                let bases = svd
                    .iter()
                    .map(|s| {
                        let k = r.min(s.s.len());
                        (
                            s.u.columns(0, k).into_owned(),
                            s.v.columns(0, k).into_owned(),
                        )
                    })
                    .collect();
                let adam = Adam::new(&[&ad[0].a, &ad[0].b, &ad[1].a, &ad[1].b]);
                tu.trained = Trained::Lora {
                    ad,
                    adam,
                    opt,
                    bases,
                };
            }
        }
        Ok(tu)
    }

    /// Diverged: a train loss that is not finite or above the threshold.
    fn diverges(&self, loss: f64) -> bool {
        !loss.is_finite() || loss > self.limit
    }

    /// Up to `n` more steps (records every `record_every` and at the end, as one loop would).
    async fn advance(
        &mut self,
        be: &mut impl FtCompute,
        pre: &Net,
        even: &Split,
        cfg: &FtConfig,
        n: usize,
    ) -> Result<(), EngineError> {
        let t0 = web_time::Instant::now();
        let every = cfg.record_every.max(1);
        let mut left = n;
        while !self.finished && left > 0 {
            let t = self.t;
            let (net, sines) = match &self.trained {
                Trained::Nothing => {
                    self.finished = true;
                    break;
                }
                Trained::Full { net, .. } => (net.clone(), None),
                Trained::Lora { ad, bases, .. } => {
                    let mut sa = [1.0; 2];
                    let mut sb = [1.0; 2];
                    if t % every == 0 || t == cfg.steps {
                        for l in 0..2 {
                            if ad[l].a.norm() > 0.0 {
                                sa[l] = sin_theta(&bases[l].0, &orthonormalize(&ad[l].a));
                            }
                            if ad[l].b.norm() > 0.0 {
                                sb[l] =
                                    sin_theta(&bases[l].1, &orthonormalize(&ad[l].b.transpose()));
                            }
                        }
                    }
                    (effective(ad), Some((sa, sb)))
                }
            };
            if t % every == 0 || t == cfg.steps {
                let rec = record(be, &net, even, t, sines).await?;
                if t == 0 {
                    self.limit = DIVERGENCE_FACTOR * rec.train_loss.max(1.0);
                }
                if self.diverges(rec.train_loss) {
                    self.diverged_at = Some(t);
                    self.finished = true;
                    break;
                }
                self.records.push(rec);
                self.paths.push(delta_of(pre, &net));
            }
            if t == cfg.steps {
                self.finished = true;
                break;
            }
            let ev = be.eval(&net, &even.train_x, &even.train_y, true).await?;
            // every step's loss is checked (the gradient pass computes it anyway)
            if self.diverges(ev.loss) {
                self.diverged_at = Some(t);
                self.finished = true;
                break;
            }
            let g = ev.grad.expect("grad");
            match &mut self.trained {
                Trained::Nothing => {}
                Trained::Full { net, adam, opt } => match opt {
                    FtOpt::Adam => {
                        let [w1, w2] = &mut net.w;
                        adam.step(&mut [w1, w2], &g, cfg.adam_lr);
                    }
                    _ => *net = net.plus(&g, -cfg.lr),
                },
                Trained::Lora { ad, adam, opt, .. } => {
                    // ∇_A = ∇_W Bᵀ, ∇_B = Aᵀ ∇_W (simultaneous)
                    let ga: Vec<DMatrix<f64>> =
                        (0..2).map(|l| &g[l] * ad[l].b.transpose()).collect();
                    let gb: Vec<DMatrix<f64>> =
                        (0..2).map(|l| ad[l].a.transpose() * &g[l]).collect();
                    match opt {
                        FtOpt::Gd => {
                            for l in 0..2 {
                                ad[l].a -= &ga[l] * cfg.lr;
                                ad[l].b -= &gb[l] * cfg.lr;
                            }
                        }
                        FtOpt::Precond => {
                            for l in 0..2 {
                                let k = ad[l].a.ncols();
                                let eye = DMatrix::<f64>::identity(k, k);
                                let bbt = &ad[l].b * ad[l].b.transpose() + &eye * cfg.damping;
                                let ata = ad[l].a.transpose() * &ad[l].a + &eye * cfg.damping;
                                let pa = crate::linalg::spd_solve(&bbt, &ga[l].transpose())
                                    .map(|x| x.transpose());
                                let pb = crate::linalg::spd_solve(&ata, &gb[l]);
                                if let (Some(pa), Some(pb)) = (pa, pb) {
                                    ad[l].a -= pa * cfg.lr;
                                    ad[l].b -= pb * cfg.lr;
                                }
                            }
                        }
                        FtOpt::Adam => {
                            let grads =
                                [ga[0].clone(), gb[0].clone(), ga[1].clone(), gb[1].clone()];
                            let (l0, l1) = ad.split_at_mut(1);
                            let (a0, b0) = (&mut l0[0].a, &mut l0[0].b);
                            let (a1, b1) = (&mut l1[0].a, &mut l1[0].b);
                            adam.step(&mut [a0, b0, a1, b1], &grads, cfg.adam_lr);
                        }
                    }
                }
            }
            self.t += 1;
            left -= 1;
        }
        self.train_ms += t0.elapsed().as_secs_f64() * 1e3;
        Ok(())
    }

    async fn finish(
        self,
        be: &mut impl FtCompute,
        pre: &Net,
        even: &Split,
    ) -> Result<FtRun, EngineError> {
        let last = match self.records.last() {
            Some(l) => l.clone(),
            None => record(be, pre, even, 0, None).await?,
        };
        Ok(FtRun {
            method: self.method,
            label: self.method.label(),
            seed: self.seed,
            test_acc: last.test_acc,
            test_loss: last.test_loss,
            init_ms: self.init_ms,
            train_ms: self.train_ms,
            eta_star: self.eta_star,
            records: self.records,
            plane_path: Vec::new(),
            diverged_at: self.diverged_at,
            deltas: self.paths,
        })
    }
}

/// P_r(G) from its top SVD.
fn rank_r(g: &TopSvd, r: usize) -> DMatrix<f64> {
    let r = r.min(g.s.len());
    let mut u = g.u.columns(0, r).into_owned();
    for i in 0..r {
        u.column_mut(i).scale_mut(g.s[i]);
    }
    u * g.v.columns(0, r).transpose()
}

/// Grid points per side of the landscape.
pub const PLANE_GRID: usize = 25;

/// Fig. 1(c)'s plane, set up: fills each run's `plane_path` and drops its deltas; the loss grid
/// is then filled row by row (`PlaneGrid::row`). The plane goes through W_pre along the top two
/// right singular vectors of the full-FT (GD) path `W_t − W_pre` (an uncentred PCA: the path
/// starts at W_pre, so the plane holds it from its start). None without a `Full { Gd }` run of at
/// least 3 records.
fn plane(runs: &mut [FtRun]) -> Option<PlaneGrid> {
    let full = runs
        .iter()
        .find(|r| r.method == FtMethod::Full { opt: FtOpt::Gd } && r.deltas.len() >= 3)?;
    let p = full.deltas[0].len();
    let d = DMatrix::from_fn(full.deltas.len(), p, |i, j| full.deltas[i][j]);
    let total = d.norm_squared();
    let sv = exact_top_svd(&d, 2);
    if sv.s.len() < 2 || total <= 0.0 {
        return None;
    }
    let explained = (sv.s[0].powi(2) + sv.s[1].powi(2)) / total;
    let (e1, e2) = (sv.v.column(0).into_owned(), sv.v.column(1).into_owned());
    let dot = |x: &[f64], e: &nalgebra::DVector<f64>| {
        x.iter().zip(e.iter()).map(|(a, b)| a * b).sum::<f64>()
    };
    let (mut lo, mut hi) = ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]);
    for r in runs.iter_mut() {
        r.plane_path = r
            .deltas
            .iter()
            .map(|x| [dot(x, &e1), dot(x, &e2)])
            .collect();
        for q in &r.plane_path {
            for k in 0..2 {
                if q[k].is_finite() {
                    lo[k] = lo[k].min(q[k]);
                    hi[k] = hi[k].max(q[k]);
                }
            }
        }
        r.deltas.clear();
    }
    let axis = |k: usize| {
        let span = (hi[k] - lo[k]).max(1e-3);
        let (a, b) = (lo[k] - 0.15 * span, hi[k] + 0.15 * span);
        (0..PLANE_GRID)
            .map(|i| a + (b - a) * i as f64 / (PLANE_GRID - 1) as f64)
            .collect::<Vec<f64>>()
    };
    Some(PlaneGrid {
        e: [e1, e2],
        land: Landscape {
            u: axis(0),
            v: axis(1),
            ln_loss: Vec::with_capacity(PLANE_GRID * PLANE_GRID),
            explained,
        },
    })
}

/// The landscape being filled: the plane's directions and the rows done so far.
struct PlaneGrid {
    e: [nalgebra::DVector<f64>; 2],
    land: Landscape,
}

impl PlaneGrid {
    fn done(&self) -> bool {
        self.land.ln_loss.len() >= self.land.u.len() * self.land.v.len()
    }
    /// The next row of ln loss (fine-tuning train split) at W_pre + u e1 + v e2.
    async fn row(
        &mut self,
        be: &mut impl FtCompute,
        pre: &Net,
        even: &Split,
    ) -> Result<(), EngineError> {
        let j = self.land.ln_loss.len() / self.land.u.len();
        let y = self.land.v[j];
        let (h, c) = (pre.w[0].ncols(), pre.w[1].ncols());
        for k in 0..self.land.u.len() {
            let x = self.land.u[k];
            let dir = &self.e[0] * x + &self.e[1] * y;
            let w1 = &pre.w[0]
                + DMatrix::from_column_slice(N_PIXELS, h, &dir.as_slice()[..N_PIXELS * h]);
            let w2 = &pre.w[1] + DMatrix::from_column_slice(h, c, &dir.as_slice()[N_PIXELS * h..]);
            let l = be
                .eval(&Net { w: [w1, w2] }, &even.train_x, &even.train_y, false)
                .await?
                .loss;
            self.land.ln_loss.push(libm::log(l));
        }
        Ok(())
    }
}

/// One CSV row per recorded step of every run.
pub fn to_csv(r: &FtReport) -> String {
    let mut s = String::from(
        "label,seed,step,train_loss,test_loss,test_acc,sin_a1,sin_a2,sin_b1,sin_b2,eta_star,init_ms,train_ms\n",
    );
    let o = |x: Option<f64>| x.map_or(String::new(), |v| format!("{v:e}"));
    for run in &r.runs {
        for q in &run.records {
            s.push_str(&format!(
                "\"{}\",{},{},{:e},{:e},{},{},{},{},{},{},{:.3},{:.3}\n",
                run.label,
                run.seed,
                q.step,
                q.train_loss,
                q.test_loss,
                q.test_acc,
                o(q.sin_a.map(|v| v[0])),
                o(q.sin_a.map(|v| v[1])),
                o(q.sin_b.map(|v| v[0])),
                o(q.sin_b.map(|v| v[1])),
                o(run.eta_star),
                run.init_ms,
                run.train_ms
            ));
        }
    }
    s
}

/// Per method label: the test accuracy's 10/50/90 % over seeds and the median times.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableRow {
    pub label: String,
    pub acc_q10: f64,
    pub acc_median: f64,
    pub acc_q90: f64,
    pub init_ms: f64,
    pub train_ms: f64,
    pub seeds: usize,
    /// Seeds whose run diverged (their accuracy is at the last finite record).
    pub diverged: usize,
}

pub fn table(r: &FtReport) -> Vec<TableRow> {
    let mut labels: Vec<String> = Vec::new();
    for run in &r.runs {
        if !labels.contains(&run.label) {
            labels.push(run.label.clone());
        }
    }
    labels
        .into_iter()
        .map(|l| {
            let rs: Vec<&FtRun> = r.runs.iter().filter(|x| x.label == l).collect();
            let sorted = |f: fn(&FtRun) -> f64| {
                let mut v: Vec<f64> = rs.iter().map(|x| f(x)).collect();
                v.sort_by(f64::total_cmp);
                v
            };
            let acc = sorted(|x| x.test_acc);
            TableRow {
                label: l,
                acc_q10: quantile(&acc, 0.1),
                acc_median: quantile(&acc, 0.5),
                acc_q90: quantile(&acc, 0.9),
                init_ms: quantile(&sorted(|x| x.init_ms), 0.5),
                train_ms: quantile(&sorted(|x| x.train_ms), 0.5),
                seeds: rs.len(),
                diverged: rs.iter().filter(|x| x.diverged_at.is_some()).count(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> FtConfig {
        FtConfig {
            seeds: 1,
            hidden: 16,
            pre_steps: 150,
            steps: 30,
            ..FtConfig::default()
        }
    }

    /// Both layers' gradients against central differences.
    #[test]
    fn gradients_match_finite_differences() {
        let data = Digits::embedded();
        let (odd, _) = tasks(&data, 3);
        let x = odd.train_x.rows(0, 40).into_owned();
        let y = &odd.train_y[..40];
        let net = Net::init(12, N_CLASSES, 3);
        let g = net.eval(&x, y, true).grad.unwrap();
        let h = 1e-6;
        for (l, gl) in g.iter().enumerate() {
            for &(i, j) in &[(0usize, 0usize), (5, 3), (11, 4)] {
                let (i, j) = (i % net.w[l].nrows(), j % net.w[l].ncols());
                let mut p = net.clone();
                p.w[l][(i, j)] += h;
                let mut m = net.clone();
                m.w[l][(i, j)] -= h;
                let fd = (p.eval(&x, y, false).loss - m.eval(&x, y, false).loss) / (2.0 * h);
                assert!(
                    (fd - gl[(i, j)]).abs() < 1e-6,
                    "layer {l} ({i},{j}): {fd} vs {}",
                    gl[(i, j)]
                );
            }
        }
    }

    #[test]
    fn splits_are_seeded_and_disjoint_by_parity() {
        let data = Digits::embedded();
        let (odd, even) = tasks(&data, 0);
        let n = odd.train_y.len() + odd.test_y.len() + even.train_y.len() + even.test_y.len();
        assert_eq!(n, N_SAMPLES);
        assert!(odd
            .train_y
            .iter()
            .chain(&even.test_y)
            .all(|&c| c < N_CLASSES));
        let (odd2, _) = tasks(&data, 0);
        assert_eq!(odd.train_x, odd2.train_x);
        let (odd3, _) = tasks(&data, 1);
        assert_ne!(odd.train_x, odd3.train_x);
    }

    /// Pre-training on the odd digits reaches ≥ 90 % held-out accuracy; the pre-trained net is
    /// far worse on the even digits (the fine-tuning task is a real shift).
    #[test]
    fn pretraining_learns_the_odd_digits() {
        let data = Digits::embedded();
        let cfg = FtConfig::default();
        let (odd, even) = tasks(&data, 0);
        let net = pretrain(&cfg, &odd, 0);
        let a = net.eval(&odd.test_x, &odd.test_y, false).acc;
        let b = net.eval(&even.test_x, &even.test_y, false).acc;
        assert!(a >= 0.9, "odd test accuracy {a}");
        assert!(b < a - 0.2, "even test accuracy {b} vs odd {a}");
    }

    /// The domain shifts: 10-way, disjoint halves of the data, the fine-tuning images transformed
    /// (and each transform a permutation or reflection of the pixel values); `ft_frac` cuts the
    /// fine-tuning train split; the pre-trained net is partly right on the shifted images.
    #[test]
    fn domain_shift_tasks_and_the_small_data_control() {
        let data = Digits::embedded();
        let p = [3u8; N_PIXELS];
        let mut ramp = [0u8; N_PIXELS];
        for (i, v) in ramp.iter_mut().enumerate() {
            *v = (i % 17) as u8;
        }
        assert_eq!(Task::Invert.transform(&p), [13u8; N_PIXELS]);
        let twice = Task::Mirror.transform(&Task::Mirror.transform(&ramp));
        assert_eq!(twice, ramp);
        let four = (0..4).fold(ramp, |q, _| Task::Rotate.transform(&q));
        assert_eq!(four, ramp);
        assert_eq!(Task::Shift.transform(&ramp)[0], 0);
        assert_eq!(Task::Shift.transform(&ramp)[1], ramp[0]);
        let (pre, ft) = task_splits(&data, Task::Mirror, 0, 1.0);
        assert_eq!(
            pre.train_y.len() + pre.test_y.len() + ft.train_y.len() + ft.test_y.len(),
            N_SAMPLES
        );
        assert!(pre.train_y.iter().any(|&c| c > 4));
        let (_, little) = task_splits(&data, Task::Mirror, 0, 0.1);
        assert_eq!(
            little.train_y.len(),
            (ft.train_y.len() as f64 * 0.1).ceil() as usize
        );
        assert_eq!(little.test_y, ft.test_y);
        let cfg = FtConfig {
            task: Task::Shift,
            ..small()
        };
        let net = pretrain(&cfg, &pre, 0);
        let (pre_s, ft_s) = task_splits(&data, Task::Shift, 0, 1.0);
        let a0 = net.eval(&pre_s.test_x, &pre_s.test_y, false).acc;
        let a1 = net.eval(&ft_s.test_x, &ft_s.test_y, false).acc;
        assert!(
            a0 > 0.85 && a1 > 0.2 && a1 < a0,
            "original {a0}, shifted {a1}"
        );
        let mut bad = FtConfig::default();
        bad.set("task", "upside-down").unwrap_err();
        bad.ft_frac = 0.0;
        assert_eq!(bad.validate().unwrap_err().field, "ft_frac");
    }

    /// LoRA-One's A0B0 is η*·P_r(G) of its layer, so at step 0 it is the one rank-r step; that
    /// step lowers the fine-tuning loss.
    #[test]
    fn lora_one_starts_at_the_rank_r_step_which_lowers_the_loss() {
        let data = Digits::embedded();
        let cfg = FtConfig {
            steps: 0,
            ..small()
        };
        let (odd, even) = tasks(&data, 0);
        let pre = pretrain(&cfg, &odd, 0);
        let one = fine_tune(&pre, &even, &cfg, FtMethod::OneStepRank, 0);
        let lo = fine_tune(
            &pre,
            &even,
            &cfg,
            FtMethod::Lora {
                init: AdapterInit::LoraOne,
                opt: FtOpt::Gd,
            },
            0,
        );
        assert_eq!(one.eta_star, lo.eta_star);
        let (a, b) = (&one.records[1], &lo.records[0]);
        assert!((a.train_loss - b.train_loss).abs() < 1e-12 && a.test_acc == b.test_acc);
        assert!(one.records[1].train_loss < one.records[0].train_loss);
        // and the factors themselves: A0B0 = η* P_r(G) layer by layer
        let (bx, by) = (even.train_x.clone(), even.train_y.clone());
        let g = pre.eval(&bx, &by, true).grad.unwrap();
        let mut rng = Rng::new(0, 0);
        for (l, gl) in g.iter().enumerate() {
            let neg = -gl;
            let sv = exact_top_svd(&neg, 2 * cfg.rank);
            let e = one.eta_star.unwrap();
            let ad = adapter_init(AdapterInit::LoraOne, &pre.w[l], &sv, &cfg, e, &mut rng);
            let want = rank_r(&sv, cfg.rank) * e;
            assert!((&ad.a * &ad.b - &want).norm() < 1e-10 * want.norm().max(1.0));
        }
    }

    /// Chunking changes no result: a runner stepped one unit at a time (with partial reports
    /// that only grow) equals `run`.
    #[test]
    fn chunked_runner_equals_run() {
        let data = Digits::embedded();
        let cfg = FtConfig {
            seeds: 2,
            steps: 23,
            ..small()
        };
        let m = FtMethod::defaults();
        let mut r = FtRunner::new(data.clone(), cfg.clone(), m.clone());
        let (mut units, mut last) = (0, 0.0);
        while !r.done() {
            r.step(0.0);
            units += 1;
            let p = r.progress();
            assert!(p >= last);
            last = p;
            assert!(r.report().runs.len() <= 2 * m.len());
        }
        assert!(units > 2 * (m.len() + cfg.pre_steps / PRE_CHUNK));
        let strip = |mut x: FtReport| {
            x.runs
                .iter_mut()
                .for_each(|y| (y.init_ms, y.train_ms) = (0.0, 0.0));
            x.pretraining.iter_mut().for_each(|p| p.ms = 0.0);
            x
        };
        assert_eq!(strip(r.report()), strip(run(&data, &cfg, &m)));
        // and the runner's chunked methods (10 steps at a time) equal each method run whole
        let (odd, even) = tasks(&data, cfg.seed);
        let pre = pretrain(&cfg, &odd, cfg.seed);
        let rep = r.report();
        for (k, &method) in m.iter().enumerate() {
            let whole = fine_tune(&pre, &even, &cfg, method, cfg.seed);
            assert_eq!(rep.runs[k].records, whole.records, "{}", whole.label);
        }
    }

    /// Every LoRA optimiser trains (preconditioned GD and Adam as well as GD), and the
    /// alignment metric is recorded for both layers.
    #[test]
    fn every_lora_optimiser_trains() {
        let data = Digits::embedded();
        let cfg = small();
        let (odd, even) = tasks(&data, 0);
        let pre = pretrain(&cfg, &odd, 0);
        let base = pre.eval(&even.test_x, &even.test_y, false).acc;
        for opt in [FtOpt::Gd, FtOpt::Precond, FtOpt::Adam] {
            for init in [AdapterInit::Vanilla, AdapterInit::LoraOne] {
                let r = fine_tune(&pre, &even, &cfg, FtMethod::Lora { init, opt }, 0);
                assert!(
                    r.test_acc > base + 0.2,
                    "{opt:?} {init:?}: {} vs {base}",
                    r.test_acc
                );
                let last = r.records.last().unwrap();
                let sa = last.sin_a.unwrap();
                assert!(sa.iter().all(|s| (0.0..=1.0).contains(s)));
            }
        }
    }

    #[test]
    fn the_gpu_is_chosen_from_the_measured_crossover() {
        let mut c = FtConfig::default();
        let e = gpu_is_faster(&c).unwrap_err();
        assert!(e.contains("hidden = 32") && e.contains("128"), "{e}");
        c.hidden = GPU_MIN_HIDDEN;
        gpu_is_faster(&c).unwrap();
        c.rank = 17;
        assert!(gpu_is_faster(&c).unwrap_err().contains("rank"));
    }

    /// A rate far too large is reported at the step whose loss crossed the threshold, whatever
    /// the record interval, and the loss is the true cross-entropy (log-sum-exp: no clamp).
    #[test]
    fn divergence_is_reported_at_its_step() {
        let data = Digits::embedded();
        let mut cfg = small();
        cfg.lr = 100.0;
        let (odd, even) = tasks(&data, 0);
        let pre = pretrain(&cfg, &odd, 0);
        let m = FtMethod::Full { opt: FtOpt::Gd };
        let mut at = Vec::new();
        for every in [1, 7] {
            cfg.record_every = every;
            let r = fine_tune(&pre, &even, &cfg, m, 0);
            let t = r.diverged_at.expect("lr = 100 diverges");
            assert!(t < cfg.steps);
            assert!(r
                .records
                .iter()
                .all(|x| x.step < t && x.train_loss.is_finite()));
            at.push(t);
            if every == 1 {
                // the loss grew past 1e8 × the step-0 loss over the finite records before it
                let l0 = r.records[0].train_loss;
                let last = r.records.last().unwrap().train_loss;
                assert!(
                    last <= DIVERGENCE_FACTOR * l0.max(1.0) && last > 10.0 * l0,
                    "{last}"
                );
            }
        }
        assert_eq!(at[0], at[1]);
        // a huge logit gap is a huge loss, not the 690 of a clamped probability
        let mut net = pre.clone();
        net.w[1] *= 1e4;
        let e = net.eval(&even.train_x, &even.train_y, false);
        assert!(e.loss.is_finite() && e.loss > 1e3, "{}", e.loss);
    }

    /// PiSSA and LoRA-GA leave the t = 0 model unchanged (offset); vanilla too (B0 = 0).
    #[test]
    fn offset_inits_keep_the_pretrained_model_at_step_0() {
        let data = Digits::embedded();
        let cfg = FtConfig {
            steps: 0,
            ..small()
        };
        let (odd, even) = tasks(&data, 0);
        let pre = pretrain(&cfg, &odd, 0);
        let base = fine_tune(&pre, &even, &cfg, FtMethod::Pretrained, 0).records[0].clone();
        for init in [
            AdapterInit::Vanilla,
            AdapterInit::LoraGa,
            AdapterInit::Pissa,
        ] {
            let r = fine_tune(
                &pre,
                &even,
                &cfg,
                FtMethod::Lora {
                    init,
                    opt: FtOpt::Gd,
                },
                0,
            );
            assert!(
                (r.records[0].train_loss - base.train_loss).abs() < 1e-10,
                "{init:?}"
            );
        }
    }

    /// Seeded: the whole report is reproducible bit for bit; fine-tuning helps; the landscape
    /// holds every run's projected path.
    #[test]
    fn runs_are_reproducible_and_fine_tuning_helps() {
        let data = Digits::embedded();
        let cfg = small();
        let m = FtMethod::defaults();
        let a = run(&data, &cfg, &m);
        let b = run(&data, &cfg, &m);
        let strip = |r: &FtReport| {
            let mut r = r.clone();
            for x in &mut r.runs {
                x.init_ms = 0.0;
                x.train_ms = 0.0;
            }
            for p in &mut r.pretraining {
                p.ms = 0.0;
            }
            r
        };
        assert_eq!(strip(&a), strip(&b));
        let acc = |label: &str| {
            a.runs
                .iter()
                .find(|r| r.label.starts_with(label))
                .unwrap()
                .test_acc
        };
        assert!(acc("full fine-tuning (GD)") > acc("pre-trained") + 0.2);
        assert!(acc("spectral init alone") > acc("pre-trained"));
        let l = a.landscape.as_ref().expect("landscape");
        assert_eq!(l.ln_loss.len(), PLANE_GRID * PLANE_GRID);
        assert!(l.explained > 0.5 && l.explained <= 1.0 + 1e-12);
        assert!(a
            .runs
            .iter()
            .filter(|r| r.seed == 0)
            .all(|r| r.plane_path.len() == r.records.len()));
        let t = table(&a);
        assert_eq!(t.len(), m.len());
    }
}
