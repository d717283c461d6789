//! CyclicLR.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tempo_param_groups::{Dict, OptimizerParamGroups, Value};

use crate::base::{self, invalid, leaf_scheduler, set_extra, write_momentum, At, Core, Rule};
use crate::state::{float_list, StateReader};
use crate::{PerGroup, SchedError};

/// A custom CyclicLR scale function of the cycle number or the iteration (PyTorch's
/// `scale_fn`). Shared, so the scheduler can be cloned; not part of the state.
#[derive(Clone)]
pub struct ScaleFn(Arc<dyn Fn(f64) -> f64 + Send + Sync>);

impl ScaleFn {
    /// Wraps a closure; it receives the cycle number (`scale_mode = cycle`) or the
    /// iteration (`iterations`), both whole numbers.
    pub fn new(f: impl Fn(f64) -> f64 + Send + Sync + 'static) -> Self {
        ScaleFn(Arc::new(f))
    }

    /// The function's value at `x`.
    pub fn call(&self, x: f64) -> f64 {
        (self.0)(x)
    }
}

impl fmt::Debug for ScaleFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ScaleFn(<closure>)")
    }
}

/// CyclicLR's built-in policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CyclicMode {
    /// A triangle of constant amplitude (scale 1).
    #[default]
    Triangular,
    /// A triangle whose amplitude halves every cycle (scale `1 / 2**(cycle - 1)`).
    Triangular2,
    /// Amplitude `gamma ** iteration`.
    ExpRange,
}

impl CyclicMode {
    fn as_str(self) -> &'static str {
        match self {
            CyclicMode::Triangular => "triangular",
            CyclicMode::Triangular2 => "triangular2",
            CyclicMode::ExpRange => "exp_range",
        }
    }
}

/// Whether the scale function sees the cycle number or the iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScaleMode {
    /// The cycle number (1, 2, ...).
    #[default]
    Cycle,
    /// The iteration (`last_epoch`).
    Iterations,
}

impl ScaleMode {
    fn as_str(self) -> &'static str {
        match self {
            ScaleMode::Cycle => "cycle",
            ScaleMode::Iterations => "iterations",
        }
    }
}

fn two_thousand() -> f64 {
    2000.0
}
fn one() -> f64 {
    1.0
}
fn yes() -> bool {
    true
}
fn point_eight() -> PerGroup<f64> {
    PerGroup::All(0.8)
}
fn point_nine() -> PerGroup<f64> {
    PerGroup::All(0.9)
}

/// The arguments of [`CyclicLR`] (PyTorch's names and defaults).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CyclicLRConfig {
    /// The lower bound of the cycle (required).
    pub base_lr: PerGroup<f64>,
    /// The upper bound of the cycle (required).
    pub max_lr: PerGroup<f64>,
    /// Iterations of the rising half (2000).
    #[serde(default = "two_thousand")]
    pub step_size_up: f64,
    /// Iterations of the falling half (`step_size_up` when `None`).
    #[serde(default)]
    pub step_size_down: Option<f64>,
    /// The policy (`triangular`).
    #[serde(default)]
    pub mode: CyclicMode,
    /// `exp_range`'s base (1.0).
    #[serde(default = "one")]
    pub gamma: f64,
    /// A custom scale function, which replaces `mode`'s.
    #[serde(skip)]
    pub scale_fn: Option<ScaleFn>,
    /// What a custom `scale_fn` sees (`cycle`); the built-in modes force their own.
    #[serde(default)]
    pub scale_mode: ScaleMode,
    /// Whether to cycle momentum (or `betas[0]`) inversely to the lr (true).
    #[serde(default = "yes")]
    pub cycle_momentum: bool,
    /// The momentum at the lr's peak (0.8).
    #[serde(default = "point_eight")]
    pub base_momentum: PerGroup<f64>,
    /// The momentum at the lr's trough (0.9).
    #[serde(default = "point_nine")]
    pub max_momentum: PerGroup<f64>,
    /// PyTorch's `last_epoch`: -1 (the default) for a fresh run; `k >= 0` to resume at
    /// epoch `k` (every group must then carry `initial_lr`, the base, and the constructor
    /// steps once, to epoch `k + 1`, as PyTorch's does).
    #[serde(default = "crate::base::fresh_run")]
    pub last_epoch: i64,
}

impl CyclicLRConfig {
    /// The bounds, with PyTorch's defaults for everything else.
    pub fn new(base_lr: impl Into<PerGroup<f64>>, max_lr: impl Into<PerGroup<f64>>) -> Self {
        CyclicLRConfig {
            base_lr: base_lr.into(),
            max_lr: max_lr.into(),
            step_size_up: 2000.0,
            step_size_down: None,
            mode: CyclicMode::Triangular,
            gamma: 1.0,
            scale_fn: None,
            scale_mode: ScaleMode::Cycle,
            cycle_momentum: true,
            base_momentum: PerGroup::All(0.8),
            max_momentum: PerGroup::All(0.9),
            last_epoch: -1,
        }
    }
}

#[derive(Debug, Clone)]
struct Momentum {
    use_beta1: bool,
    base: Vec<f64>,
    max: Vec<f64>,
}

/// Cyclical learning rates (Smith, 2017, <https://arxiv.org/abs/1506.01186>): PyTorch's
/// `torch.optim.lr_scheduler.CyclicLR`, stepped once per batch.
///
/// The constructor overwrites each group's `lr` with `base_lr` (and, with
/// `cycle_momentum`, the momentum or `betas[0]` with `max_momentum`), as PyTorch does.
/// Unlike PyTorch, `triangular2` never overflows: after ~1000 cycles PyTorch's
/// `2.0 ** x` raises OverflowError, tempo's scale reaches 0 and the lr stays `base_lr`.
#[derive(Debug, Clone)]
pub struct CyclicLR {
    core: Core,
    max_lrs: Vec<f64>,
    total_size: f64,
    step_ratio: f64,
    mode: CyclicMode,
    gamma: f64,
    scale_mode: ScaleMode,
    scale_fn: Option<ScaleFn>,
    momentum: Option<Momentum>,
}

impl CyclicLR {
    /// Sets `lr = base_lr` (and the momentum) in every group, records `initial_lr`
    /// (kept if present: the first lr is then that old `initial_lr`, as in PyTorch).
    /// With `last_epoch >= 0` it writes neither (nor the momentum bounds' keys): the
    /// first value, at epoch `last_epoch + 1`, takes `initial_lr` as its base, the next
    /// ones `base_lr`, as PyTorch's do.
    pub fn new(
        opt: &mut dyn OptimizerParamGroups,
        config: CyclicLRConfig,
    ) -> Result<Self, SchedError> {
        let n = opt.num_groups();
        let base_lrs = config.base_lr.resolve("base_lr", n)?;
        let max_lrs = config.max_lr.resolve("max_lr", n)?;
        let up = config.step_size_up;
        if !(up > 0.0 && up.is_finite()) {
            return Err(invalid("CyclicLR", "step_size_up", "a number > 0", up));
        }
        let down = config.step_size_down.unwrap_or(up);
        if !(down >= 0.0 && down.is_finite()) {
            return Err(invalid("CyclicLR", "step_size_down", "a number >= 0", down));
        }
        let total_size = up + down;
        let momentum = if config.cycle_momentum {
            let use_beta1 = match n {
                0 => false,
                _ => opt.momentum_key(0)? == tempo_param_groups::MomentumKey::Beta1,
            };
            let base = config.base_momentum.resolve("base_momentum", n)?;
            let max = config.max_momentum.resolve("max_momentum", n)?;
            Some(Momentum {
                use_beta1,
                base,
                max,
            })
        } else {
            None
        };
        base::check_last_epoch("CyclicLR", config.last_epoch)?;
        let fresh = config.last_epoch == -1;
        for (g, &lr) in base_lrs.iter().enumerate().filter(|_| fresh) {
            opt.set_lr(g, lr)?;
        }
        if let Some(m) = momentum.as_ref().filter(|_| fresh) {
            for g in 0..n {
                write_momentum(opt, g, m.use_beta1, m.max[g])?;
                set_extra(opt, g, "max_momentum", Value::Float(m.max[g]))?;
                set_extra(opt, g, "base_momentum", Value::Float(m.base[g]))?;
            }
        }
        let mut s = CyclicLR {
            core: Core::attach(opt, <Self as Rule>::NAME, config.last_epoch)?,
            max_lrs,
            total_size,
            step_ratio: up / total_size,
            mode: config.mode,
            gamma: config.gamma,
            scale_mode: config.scale_mode,
            scale_fn: config.scale_fn,
            momentum,
        };
        s.init_scale_fn();
        let mut s = base::construct(s, opt)?;
        s.core.base_lrs = base_lrs;
        Ok(s)
    }

    /// PyTorch's `_init_scale_fn`: a built-in mode forces its scale mode.
    fn init_scale_fn(&mut self) {
        if self.scale_fn.is_none() {
            self.scale_mode = match self.mode {
                CyclicMode::Triangular | CyclicMode::Triangular2 => ScaleMode::Cycle,
                CyclicMode::ExpRange => ScaleMode::Iterations,
            };
        }
    }

    fn scale(&self, x: f64) -> f64 {
        match (&self.scale_fn, self.mode) {
            (Some(f), _) => f.call(x),
            (None, CyclicMode::Triangular) => 1.0,
            (None, CyclicMode::Triangular2) => 1.0 / 2.0f64.powf(x - 1.0),
            (None, CyclicMode::ExpRange) => self.gamma.powf(x),
        }
    }

    /// (scale factor, the scale function's value) at epoch `e`.
    fn phase(&self, e: i64) -> (f64, f64) {
        let ef = e as f64;
        let cycle = (1.0 + ef / self.total_size).floor();
        let x = 1.0 + ef / self.total_size - cycle;
        let scale_factor = if x <= self.step_ratio {
            x / self.step_ratio
        } else {
            (x - 1.0) / (self.step_ratio - 1.0)
        };
        let f = match self.scale_mode {
            ScaleMode::Cycle => self.scale(cycle),
            ScaleMode::Iterations => self.scale(ef),
        };
        (scale_factor, f)
    }

    /// Pushes each group's lr for a [`phase`](Self::phase) onto `out`.
    fn push_lrs(&self, base_lrs: &[f64], (scale_factor, f): (f64, f64), out: &mut Vec<f64>) {
        out.extend(base_lrs.iter().zip(&self.max_lrs).map(|(&b, &m)| {
            let height = (m - b) * scale_factor;
            b + height * f
        }));
    }
}

impl Rule for CyclicLR {
    const NAME: &'static str = "CyclicLR";
    fn core(&self) -> &Core {
        &self.core
    }
    fn core_mut(&mut self) -> &mut Core {
        &mut self.core
    }
    fn get_lr(
        &mut self,
        at: At,
        opt: &mut dyn OptimizerParamGroups,
        _initial: bool,
        out: &mut Vec<f64>,
    ) -> Result<(), SchedError> {
        let phase = self.phase(at.last_epoch);
        self.push_lrs(&self.core.base_lrs, phase, out);
        if let Some(m) = &self.momentum {
            // The built-in scale functions are pure; a custom one is called again, as
            // it always was.
            let (scale_factor, f) = match self.scale_fn {
                Some(_) => self.phase(at.last_epoch),
                None => phase,
            };
            for (g, (&b, &mx)) in m.base.iter().zip(&m.max).enumerate() {
                let height = (mx - b) * scale_factor;
                write_momentum(opt, g, m.use_beta1, mx - height * f)?;
            }
        }
        Ok(())
    }
    fn lr_at(&self, step: u64) -> Option<Vec<f64>> {
        let phase = self.phase(i64::try_from(step).ok()?);
        let mut out = Vec::with_capacity(self.core.base_lrs.len());
        self.push_lrs(&self.core.base_lrs, phase, &mut out);
        Some(out)
    }
    fn writes_momentum(&self) -> bool {
        self.momentum.is_some()
    }
    fn write_own(&self, d: &mut Dict) {
        d.insert("max_lrs", float_list(&self.max_lrs));
        d.insert("total_size", Value::Float(self.total_size));
        d.insert("step_ratio", Value::Float(self.step_ratio));
        d.insert("mode", Value::from(self.mode.as_str()));
        d.insert("gamma", Value::Float(self.gamma));
        d.insert("scale_mode", Value::from(self.scale_mode.as_str()));
        d.insert("cycle_momentum", Value::Bool(self.momentum.is_some()));
        if let Some(m) = &self.momentum {
            d.insert("use_beta1", Value::Bool(m.use_beta1));
            d.insert("base_momentums", float_list(&m.base));
            d.insert("max_momentums", float_list(&m.max));
        }
    }
    fn write_trailing(&self, d: &mut Dict) {
        d.insert("_scale_fn_custom", Value::None);
    }
    fn read_own(&mut self, r: &mut StateReader<'_>, groups: usize) -> Result<(), SchedError> {
        self.max_lrs = r.floats("max_lrs", groups)?;
        let total_size = r.float("total_size")?;
        let step_ratio = r.float("step_ratio")?;
        if total_size.is_nan() || total_size <= 0.0 || !(0.0..=1.0).contains(&step_ratio) {
            return Err(SchedError::StateWrongType {
                scheduler: Self::NAME,
                key: "total_size".into(),
                expected: "total_size > 0 and step_ratio in [0, 1]",
                found: format!("total_size {total_size}, step_ratio {step_ratio}"),
            });
        }
        self.total_size = total_size;
        self.step_ratio = step_ratio;
        self.mode = match r.choice(
            "mode",
            &["triangular", "triangular2", "exp_range"],
            "a CyclicLR mode",
        )? {
            "triangular" => CyclicMode::Triangular,
            "triangular2" => CyclicMode::Triangular2,
            _ => CyclicMode::ExpRange,
        };
        self.gamma = r.float("gamma")?;
        // PyTorch treats every scale_mode other than 'cycle' as 'iterations'.
        self.scale_mode = if r.string("scale_mode")? == "cycle" {
            ScaleMode::Cycle
        } else {
            ScaleMode::Iterations
        };
        self.momentum = if r.boolean("cycle_momentum")? {
            Some(Momentum {
                use_beta1: r.boolean("use_beta1")?,
                base: r.floats("base_momentums", groups)?,
                max: r.floats("max_momentums", groups)?,
            })
        } else {
            None
        };
        // None, or a callable object's attributes: tempo's closures have none.
        r.value("_scale_fn_custom")?;
        self.init_scale_fn();
        Ok(())
    }
}

leaf_scheduler!(CyclicLR);
