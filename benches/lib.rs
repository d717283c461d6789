//! The workloads of tempo's benchmarks, shared by the criterion suites (`main.rs`), the
//! allocation probe (`memory.rs`) and the paired rounds' server (`pair.rs`), so all of
//! them measure exactly the same thing.
//!
//! Every input is built from a fixed seed, outside any timed region. `cargo xtask bench`
//! runs the suites and writes the summary; the same workloads are generated for PyTorch
//! by `xtask/src/bench.rs` (sizes and hyperparameters must stay in step with this file).
//!
//! ```
//! let sizes = benches::model_mix_sizes();
//! assert_eq!(sizes.len(), benches::MIX_TENSORS);
//! assert_eq!(sizes.iter().sum::<usize>(), benches::MIX_TOTAL);
//! ```

pub mod burn;
pub mod candle;

use std::error::Error;
use std::io::Read;
use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayD, Axis};
use tempo::ckpt::TrainingState;
use tempo::nn::{cross_entropy, Linear, Module, ReLU, Reduction, Sequential};
use tempo::optim::{build_optimizer, join, Optimizer, OptimizerSpec};
use tempo::param_groups::OptimizerParamGroups;
use tempo::sched::{build_scheduler, LRScheduler, SchedulerSpec};
use tempo::tensor::{Generator, Tensor, TensorData};

/// The error type of workload setup (a bench binary reports it and stops).
pub type BoxError = Box<dyn Error + Send + Sync>;
/// A setup result.
pub type Result<T> = std::result::Result<T, BoxError>;

/// Tensors in the model-shaped mix.
pub const MIX_TENSORS: usize = 200;
/// Parameters in the model-shaped mix, in total.
pub const MIX_TOTAL: usize = 10_000_000;

/// Whether the run is a quick one (`TEMPO_BENCH_QUICK=1`, set by `cargo xtask bench --quick`):
/// shorter measurements and fewer sizes.
pub fn quick() -> bool {
    std::env::var("TEMPO_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Where benchmarks may write files: `TEMPO_BENCH_SCRATCH` (set by xtask), else
/// `target/bench/scratch` in the workspace. Created if missing.
pub fn scratch_dir() -> Result<PathBuf> {
    let dir = match std::env::var_os("TEMPO_BENCH_SCRATCH") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("target")
            .join("bench")
            .join("scratch"),
    };
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// `n` samples of `N(0, std²)` from PyTorch's generator seeded with `seed`.
pub fn normal(n: usize, seed: u64, std: f64) -> ArrayD<f32> {
    Generator::new(seed).normal::<f32>(&[n], 0.0, std)
}

/// One parameter tensor per size, each with a gradient set (values from fixed seeds).
pub fn params_with_grads(sizes: &[usize], seed: u64) -> Result<Vec<Tensor<f32>>> {
    let mut out = Vec::with_capacity(sizes.len());
    for (i, &n) in sizes.iter().enumerate() {
        let s = seed.wrapping_mul(1_000_003).wrapping_add(2 * i as u64);
        let p = Tensor::parameter(normal(n, s, 1.0));
        p.set_grad(Some(normal(n, s + 1, 0.1)))?;
        out.push(p);
    }
    Ok(out)
}

/// The model-shaped mix: [`MIX_TENSORS`] tensors, [`MIX_TOTAL`] parameters in total.
///
/// Alternately a weight matrix and a small vector (a bias or a norm's scale, 1024
/// elements). The weights share the rest in proportion to `1 + (7k mod 13)`, so they range
/// from about 15 thousand to 190 thousand elements and some fall below the size at which
/// an update is split over two threads. The last weight takes the rounding remainder.
pub fn model_mix_sizes() -> Vec<usize> {
    let pairs = MIX_TENSORS / 2;
    let small = 1024;
    let rest = MIX_TOTAL - pairs * small;
    let weights: Vec<usize> = (0..pairs).map(|k| 1 + (7 * k) % 13).collect();
    let total: usize = weights.iter().sum();
    let mut sizes = Vec::with_capacity(MIX_TENSORS);
    let mut given = 0;
    for (k, &w) in weights.iter().enumerate() {
        let n = if k + 1 == pairs {
            rest - given
        } else {
            rest * w / total
        };
        given += n;
        sizes.push(n);
        sizes.push(small);
    }
    sizes
}

/// The optimizers of the step benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptKind {
    /// `SGD(lr=0.01, momentum=0.9)`.
    SGDMomentum,
    /// `Adam(lr=1e-3)`.
    Adam,
    /// `AdamW(lr=1e-3, weight_decay=0.01)`.
    AdamW,
}

impl OptKind {
    /// All of them, in report order.
    pub const ALL: [OptKind; 3] = [OptKind::SGDMomentum, OptKind::Adam, OptKind::AdamW];

    /// The benchmark id prefix (`adam_step`).
    pub fn bench_name(self) -> &'static str {
        match self {
            OptKind::SGDMomentum => "sgd_momentum_step",
            OptKind::Adam => "adam_step",
            OptKind::AdamW => "adamw_step",
        }
    }

    /// Bytes of memory traffic per parameter and step: what the update must read and write
    /// (SGD with momentum: reads p, g, buf, writes p, buf; Adam(W): reads p, g, m, v,
    /// writes p, m, v), all f32.
    pub fn bytes_per_param(self) -> usize {
        match self {
            OptKind::SGDMomentum => 20,
            OptKind::Adam | OptKind::AdamW => 28,
        }
    }

    /// The optimizer spec, by PyTorch's names.
    pub fn spec(self) -> &'static str {
        match self {
            OptKind::SGDMomentum => r#"{"type": "SGD", "kwargs": {"lr": 0.01, "momentum": 0.9}}"#,
            OptKind::Adam => r#"{"type": "Adam", "kwargs": {"lr": 0.001}}"#,
            OptKind::AdamW => r#"{"type": "AdamW", "kwargs": {"lr": 0.001, "weight_decay": 0.01}}"#,
        }
    }

    /// The optimizer over `params`.
    pub fn build(self, params: &[Tensor<f32>]) -> Result<Box<dyn Optimizer<f32>>> {
        Ok(build_optimizer(
            &OptimizerSpec::from_json(self.spec())?,
            params,
        )?)
    }
}

/// An optimizer over parameters with gradients, stepped `warm` times so that its state
/// exists (the steady state the step benchmarks measure).
pub struct OptWorkload {
    /// The parameters (their gradients stay set).
    pub params: Vec<Tensor<f32>>,
    /// The optimizer.
    pub opt: Box<dyn Optimizer<f32>>,
}

impl OptWorkload {
    /// Builds the workload for `kind` over tensors of `sizes`.
    pub fn new(kind: OptKind, sizes: &[usize], warm: usize) -> Result<Self> {
        let params = params_with_grads(sizes, 42)?;
        let mut opt = kind.build(&params)?;
        for _ in 0..warm {
            opt.step()?;
        }
        Ok(Self { params, opt })
    }

    /// One optimizer step.
    pub fn step(&mut self) -> Result<bool> {
        Ok(self.opt.step()?)
    }
}

/// The scheduler specs of the scheduler benchmarks: every scheduler tempo has, with
/// arguments that keep it in its working range for as many steps as criterion runs
/// (decay factors close to 1, long horizons), so no step touches subnormal numbers.
pub fn scheduler_specs() -> Result<Vec<(&'static str, SchedulerSpec)>> {
    let p = |s: &str| -> Result<SchedulerSpec> { Ok(s.parse::<SchedulerSpec>()?) };
    let lambda = |kind: &'static str, f: serde_json::Value| -> SchedulerSpec {
        SchedulerSpec::new(kind).kwarg("lr_lambda", f)
    };
    Ok(vec![
        (
            "LambdaLR",
            lambda(
                "LambdaLR",
                serde_json::json!({"fn": "warmup_linear", "warmup": 1000.0}),
            ),
        ),
        (
            "MultiplicativeLR",
            lambda(
                "MultiplicativeLR",
                serde_json::json!({"fn": "const", "factor": 0.9999999}),
            ),
        ),
        ("StepLR", p("StepLR(step_size=1000, gamma=0.999)")?),
        ("MultiStepLR", p("MultiStepLR(milestones=[30, 80], gamma=0.1)")?),
        ("ConstantLR", p("ConstantLR(factor=0.5, total_iters=100)")?),
        (
            "LinearLR",
            p("LinearLR(start_factor=0.1, end_factor=1.0, total_iters=100)")?,
        ),
        ("ExponentialLR", p("ExponentialLR(gamma=0.9999999)")?),
        ("PolynomialLR", p("PolynomialLR(total_iters=1000, power=2.0)")?),
        ("CosineAnnealingLR", p("CosineAnnealingLR(T_max=1000, eta_min=1e-5)")?),
        (
            "CosineAnnealingWarmRestarts",
            p("CosineAnnealingWarmRestarts(T_0=100, T_mult=1, eta_min=1e-5)")?,
        ),
        (
            "CyclicLR",
            p("CyclicLR(base_lr=1e-4, max_lr=1e-2, step_size_up=100)")?,
        ),
        (
            "OneCycleLR",
            p("OneCycleLR(max_lr=0.01, total_steps=1000000000000)")?,
        ),
        (
            "ReduceLROnPlateau",
            p("ReduceLROnPlateau(mode='min', factor=0.5, patience=10)")?,
        ),
        ("SWALR", p("SWALR(swa_lr=0.05, anneal_epochs=10)")?),
        (
            "SequentialLR",
            SchedulerSpec::new("SequentialLR")
                .kwarg("milestones", serde_json::json!([100]))
                .children(vec![
                    p("LinearLR(start_factor=0.1, total_iters=100)")?,
                    p("CosineAnnealingLR(T_max=1000)")?,
                ]),
        ),
        (
            "ChainedScheduler",
            SchedulerSpec::new("ChainedScheduler").children(vec![
                p("ConstantLR(factor=0.5, total_iters=10)")?,
                p("ExponentialLR(gamma=0.9999999)")?,
            ]),
        ),
        (
            "WarmupCosineLR",
            p("WarmupCosineLR(warmup_steps=100, total_steps=1000000000000)")?,
        ),
        (
            "WarmupStableDecayLR",
            p("WarmupStableDecayLR(warmup_steps=100, stable_steps=1000000000, decay_steps=1000000000)")?,
        ),
        ("InverseSqrtLR", p("InverseSqrtLR(warmup_steps=100)")?),
    ])
}

/// A scheduler on a real optimizer (Adam over one small tensor, lr 0.01): one
/// scheduler step is what a training loop pays per step.
pub struct SchedWorkload {
    /// The optimizer whose groups the scheduler writes.
    pub opt: Box<dyn Optimizer<f32>>,
    /// The scheduler.
    pub sched: Box<dyn LRScheduler>,
    metric: bool,
}

impl SchedWorkload {
    /// Builds `spec` on a fresh Adam.
    pub fn new(spec: &SchedulerSpec) -> Result<Self> {
        let params = params_with_grads(&[16], 7)?;
        let mut opt = build_optimizer(
            &OptimizerSpec::from_json(r#"{"type": "Adam", "kwargs": {"lr": 0.01}}"#)?,
            &params,
        )?;
        let groups: &mut dyn OptimizerParamGroups = &mut *opt;
        let sched = build_scheduler(spec, groups)?;
        let metric = sched.needs_metric();
        Ok(Self { opt, sched, metric })
    }

    /// One scheduler step (with a constant metric for ReduceLROnPlateau).
    #[inline]
    pub fn step(&mut self) -> Result<()> {
        let groups: &mut dyn OptimizerParamGroups = &mut *self.opt;
        if self.metric {
            self.sched.step_with_metric(groups, 1.0)?;
        } else {
            self.sched.step(groups)?;
        }
        Ok(())
    }
}

/// The seed's training loop, one iteration at a time: the 2-20-20-4 linear net
/// (`torch.manual_seed(0)` init), input `[1, 2]`, loss `sum(target - prediction)`,
/// Adam(lr=0.1), CyclicLR(base_lr=1e-3, max_lr=0.1, step_size_up=1, mode='triangular2',
/// cycle_momentum=False).
pub struct SeedLoop {
    model: Sequential<f32>,
    opt: Box<dyn Optimizer<f32>>,
    sched: Box<dyn LRScheduler>,
    input: Tensor<f32>,
    targets: Vec<Tensor<f32>>,
    next: usize,
}

impl SeedLoop {
    /// The seed's setup; the targets are ten `randint(0, 10, (4,))` draws, used in turn.
    pub fn new() -> Result<Self> {
        let mut rng = Generator::new(0);
        let model = Sequential::new()
            .with_named("fc1", Linear::new(2, 20, true, &mut rng))?
            .with_named("fc2", Linear::new(20, 20, true, &mut rng))?
            .with_named("out", Linear::new(20, 4, true, &mut rng))?;
        let input = Tensor::from_vec(&[1, 2], vec![1.0, 2.0])?;
        let mut targets = Vec::new();
        for _ in 0..10 {
            let t: Vec<f32> = rng.randint(0, 10, 4)?.iter().map(|&v| v as f32).collect();
            targets.push(Tensor::from_vec(&[1, 4], t)?);
        }
        let mut opt = build_optimizer(
            &OptimizerSpec::from_json(r#"{"type": "Adam", "kwargs": {"lr": 0.1}}"#)?,
            &model.parameters(),
        )?;
        let spec: SchedulerSpec = "CyclicLR(base_lr=1e-3, max_lr=0.1, step_size_up=1, \
            mode='triangular2', cycle_momentum=False)"
            .parse()?;
        let groups: &mut dyn OptimizerParamGroups = &mut *opt;
        let sched = build_scheduler(&spec, groups)?;
        Ok(Self {
            model,
            opt,
            sched,
            input,
            targets,
            next: 0,
        })
    }

    /// zero_grad, forward, loss, backward, Adam step, CyclicLR step. Returns the loss.
    pub fn iteration(&mut self) -> Result<f32> {
        let target = &self.targets[self.next % self.targets.len()];
        self.next += 1;
        self.opt.zero_grad();
        let pred = self.model.forward(&self.input)?;
        let loss = target.sub(&pred)?.sum();
        loss.backward()?;
        self.opt.step()?;
        let groups: &mut dyn OptimizerParamGroups = &mut *self.opt;
        self.sched.step(groups)?;
        Ok(loss.item()?)
    }
}

/// The handwritten digits as `tempo train` reads them: 64 pixels scaled by 1/16, a
/// class 0..9.
pub struct Digits {
    /// `[n, 64]` features.
    pub features: Array2<f32>,
    /// Classes.
    pub labels: Vec<usize>,
}

/// Reads and gunzips `crates/cli/data/digits.csv.gz` (the file `tempo train` embeds).
pub fn digits() -> Result<Digits> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/cli/data/digits.csv.gz");
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&path)?).read_to_string(&mut text)?;
    let mut values = Vec::new();
    let mut labels = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != 65 {
            return Err(format!(
                "{}: line {} has {} fields, expected 65",
                path.display(),
                i + 1,
                fields.len()
            )
            .into());
        }
        for f in &fields[..64] {
            values.push(f.trim().parse::<f32>()? / 16.0);
        }
        labels.push(fields[64].trim().parse::<usize>()?);
    }
    let features = Array2::from_shape_vec((labels.len(), 64), values)?;
    Ok(Digits { features, labels })
}

/// Mini-batches of the default `tempo train` epoch.
pub const TRAIN_BATCH: usize = 32;

/// One epoch of the default `tempo train` (training batches only: no evaluation, no
/// checkpoint): 64-128-10 ReLU MLP, mean cross-entropy, AdamW(lr=1e-3,
/// weight_decay=0.01), OneCycleLR(max_lr=0.01) stepped per batch, batches of 32 over the
/// training 80% of the digits (1437 samples, 45 batches) in a seeded random order.
/// OneCycleLR's horizon is set far out so that any number of epochs can be timed.
pub struct TrainEpoch {
    features: Array2<f32>,
    labels: Vec<usize>,
    order: Vec<usize>,
    model: Sequential<f32>,
    opt: Box<dyn Optimizer<f32>>,
    sched: Box<dyn LRScheduler>,
}

impl TrainEpoch {
    /// Loads the digits and builds the model, optimizer and scheduler from seed 0.
    pub fn new() -> Result<Self> {
        let data = digits()?;
        let mut rng = Generator::new(0);
        let n = data.labels.len();
        let mut order: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        order.truncate(n - (n as f64 * 0.2).ceil() as usize);
        let model = Sequential::new()
            .with(Linear::new(64, 128, true, &mut rng))?
            .with(ReLU)?
            .with(Linear::new(128, 10, true, &mut rng))?;
        let mut opt = build_optimizer(
            &OptimizerSpec::from_json(
                r#"{"type": "AdamW", "kwargs": {"lr": 0.001, "weight_decay": 0.01}}"#,
            )?,
            &model.parameters(),
        )?;
        let spec: SchedulerSpec = "OneCycleLR(max_lr=0.01, total_steps=1000000000000)".parse()?;
        let groups: &mut dyn OptimizerParamGroups = &mut *opt;
        let sched = build_scheduler(&spec, groups)?;
        Ok(Self {
            features: data.features,
            labels: data.labels,
            order,
            model,
            opt,
            sched,
        })
    }

    /// Samples per epoch.
    pub fn samples(&self) -> usize {
        self.order.len()
    }

    /// One epoch; returns the last batch's loss.
    pub fn epoch(&mut self) -> Result<f32> {
        let mut last = 0.0;
        for rows in self.order.chunks(TRAIN_BATCH) {
            let x = self.features.select(Axis(0), rows).into_dyn();
            let y: Vec<usize> = rows.iter().map(|&r| self.labels[r]).collect();
            self.opt.zero_grad();
            let logits = self.model.forward(&Tensor::from_array(x))?;
            let loss = cross_entropy(&logits, &y, Reduction::Mean)?;
            loss.backward()?;
            self.opt.step()?;
            let groups: &mut dyn OptimizerParamGroups = &mut *self.opt;
            self.sched.step(groups)?;
            last = loss.item()?;
        }
        Ok(last)
    }
}

/// The checkpoint model: 12 layers of a `[1024, 2048]` weight and a `[1024]` bias,
/// 25,178,112 parameters.
pub const CKPT_LAYERS: usize = 12;
/// Rows of each checkpoint weight.
pub const CKPT_OUT: usize = 1024;
/// Columns of each checkpoint weight.
pub const CKPT_IN: usize = 2048;

/// Parameters of the checkpoint model.
pub fn ckpt_params() -> usize {
    CKPT_LAYERS * (CKPT_OUT * CKPT_IN + CKPT_OUT)
}

/// A training state of the checkpoint model with Adam's state after one step (~302 MB
/// of f32: parameters, `exp_avg`, `exp_avg_sq`).
pub fn big_training_state() -> Result<TrainingState> {
    let mut params = Vec::new();
    let mut names = Vec::new();
    for l in 0..CKPT_LAYERS {
        let s = 1000 + 4 * l as u64;
        let w = Generator::new(s).normal::<f32>(&[CKPT_OUT, CKPT_IN], 0.0, 0.02);
        let b = Generator::new(s + 1).normal::<f32>(&[CKPT_OUT], 0.0, 0.02);
        names.push(format!("layers.{l}.weight"));
        params.push(Tensor::parameter(w));
        names.push(format!("layers.{l}.bias"));
        params.push(Tensor::parameter(b));
    }
    for (i, p) in params.iter().enumerate() {
        let shape = p.shape();
        p.set_grad(Some(
            Generator::new(5000 + i as u64).normal::<f32>(&shape, 0.0, 0.01),
        ))?;
    }
    let mut opt = OptKind::Adam.build(&params)?;
    opt.step()?;
    let optimizer = opt.state_dict();
    drop(opt);
    let model = names
        .into_iter()
        .zip(&params)
        .map(|(n, p)| (n, TensorData::from_array(p.to_array())))
        .collect();
    Ok(TrainingState {
        epoch: 1,
        step: 1,
        model,
        optimizer: Some(optimizer),
        ..TrainingState::default()
    })
}

/// Bytes of tensor data in a training state (what a checkpoint moves).
pub fn tensor_bytes(state: &TrainingState) -> usize {
    let model: usize = state.model.iter().map(|(_, t)| t.len() * 4).sum();
    let opt: usize = state.optimizer.as_ref().map_or(0, |o| {
        o.state
            .iter()
            .flat_map(|(_, ps)| ps.entries.iter().map(|(_, v)| v))
            .map(|v| match v {
                tempo::optim::StateValue::Tensor(t) => t.len() * 4,
                _ => 0,
            })
            .sum()
    });
    model + opt
}

/// Cores the updates may use: `available_parallelism`, at most 2 (what tempo-optim uses).
///
/// The bandwidth references below run on two cores through [`join`]: on the calling
/// thread and one of tempo-optim's worker threads, the threads an optimizer step runs
/// on, with the same dispatch.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(2))
}

/// The memory-bandwidth reference: STREAM's triad `a = b + s·c` over f32 arrays, on both
/// cores. STREAM counts 12 bytes per element (it ignores the write-allocate read of `a`).
pub fn triad(a: &mut [f32], b: &[f32], c: &[f32], s: f32) {
    let n = a.len().min(b.len()).min(c.len());
    let (a, b, c) = (&mut a[..n], &b[..n], &c[..n]);
    let mid = (n / 2) & !63;
    if cores() > 1 && n >= 1 << 16 {
        let (a0, a1) = a.split_at_mut(mid);
        join(
            || triad_one(a1, &b[mid..], &c[mid..], s),
            || triad_one(a0, &b[..mid], &c[..mid], s),
        );
    } else {
        triad_one(a, b, c, s);
    }
}

/// Whether the CPU has AVX2 (the reference loops are compiled for it then, as
/// tempo-optim's kernels are: the same instructions on both sides of a ratio).
fn avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[inline(always)]
fn triad_loop(a: &mut [f32], b: &[f32], c: &[f32], s: f32) {
    for ((a, &b), &c) in a.iter_mut().zip(b).zip(c) {
        *a = b + s * c;
    }
}

fn triad_one(a: &mut [f32], b: &[f32], c: &[f32], s: f32) {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU supports AVX2, checked just above.
        unsafe { triad_avx2(a, b, c, s) };
        return;
    }
    triad_loop(a, b, c, s);
}

/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn triad_avx2(a: &mut [f32], b: &[f32], c: &[f32], s: f32) {
    triad_loop(a, b, c, s);
}

/// The memory-bandwidth reference with Adam's access pattern and (almost) no
/// arithmetic: reads four arrays and writes three of them back in place, 28 bytes per
/// element, on both cores. The bound an Adam step can reach on this machine's memory.
pub fn adam_traffic(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    let n = p.len().min(g.len()).min(m.len()).min(v.len());
    let mid = (n / 2) & !63;
    if cores() > 1 && n >= 1 << 16 {
        let (p0, p1) = p[..n].split_at_mut(mid);
        let (m0, m1) = m[..n].split_at_mut(mid);
        let (v0, v1) = v[..n].split_at_mut(mid);
        join(
            || traffic_one(p1, &g[mid..n], m1, v1),
            || traffic_one(p0, &g[..mid], m0, v0),
        );
    } else {
        traffic_one(&mut p[..n], &g[..n], &mut m[..n], &mut v[..n]);
    }
}

#[inline(always)]
fn traffic_loop(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        *m += g;
        *v += *m;
        *p += *v;
    }
}

fn traffic_one(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU supports AVX2, checked just above.
        unsafe { traffic_avx2(p, g, m, v) };
        return;
    }
    traffic_loop(p, g, m, v);
}

/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn traffic_avx2(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    traffic_loop(p, g, m, v);
}

/// Adam's memory traffic (see [`adam_traffic`]) over the model-shaped mix: four
/// buffers per tensor.
pub struct MixTraffic {
    tensors: Vec<[Vec<f32>; 4]>,
}

impl MixTraffic {
    /// Buffers for tensors of `sizes`.
    pub fn new(sizes: &[usize]) -> Self {
        let tensors = sizes
            .iter()
            .map(|&n| [vec![0.5f32; n], vec![1e-9; n], vec![0.0; n], vec![0.0; n]])
            .collect();
        Self { tensors }
    }

    /// One pass, each tensor split over the cores on its own (as tempo-optim does).
    pub fn per_tensor(&mut self) {
        for [p, g, m, v] in &mut self.tensors {
            adam_traffic(p, g, m, v);
        }
    }

    /// One pass, the tensors dealt to two threads in contiguous runs of about half the
    /// elements each: one fork-join per step.
    pub fn one_fork_join(&mut self) {
        let total: usize = self.tensors.iter().map(|t| t[0].len()).sum();
        if cores() < 2 {
            for [p, g, m, v] in &mut self.tensors {
                traffic_one(p, g, m, v);
            }
            return;
        }
        // Split the element space in half; the tensor straddling the middle is cut.
        let mut first: Vec<Lane<'_>> = Vec::new();
        let mut second: Vec<Lane<'_>> = Vec::new();
        let mut seen = 0;
        for [p, g, m, v] in &mut self.tensors {
            let n = p.len();
            let half = total / 2;
            if seen + n <= half {
                first.push((p, g, m, v));
            } else if seen >= half {
                second.push((p, g, m, v));
            } else {
                let cut = half - seen;
                let (p0, p1) = p.split_at_mut(cut);
                let (g0, g1) = g.split_at(cut);
                let (m0, m1) = m.split_at_mut(cut);
                let (v0, v1) = v.split_at_mut(cut);
                first.push((p0, g0, m0, v0));
                second.push((p1, g1, m1, v1));
            }
            seen += n;
        }
        join(
            move || {
                for (p, g, m, v) in second {
                    traffic_one(p, g, m, v);
                }
            },
            move || {
                for (p, g, m, v) in first {
                    traffic_one(p, g, m, v);
                }
            },
        );
    }
}

type Lane<'a> = (&'a mut [f32], &'a [f32], &'a mut [f32], &'a mut [f32]);
