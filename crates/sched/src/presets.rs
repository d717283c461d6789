//! Schedules users otherwise build by hand from LambdaLR or SequentialLR: linear warmup +
//! cosine decay, warmup-stable-decay and inverse square root (Noam). Each is a scheduler
//! like the others (state dict, exact resume) with a closed form; none is in PyTorch.

use std::f64::consts::PI;

use serde::{Deserialize, Serialize};
use tempo_param_groups::{Dict, OptimizerParamGroups, Value};

use crate::base::{self, invalid, leaf_scheduler, At, Core, Rule};
use crate::state::StateReader;
use crate::SchedError;

fn to_i64(name: &'static str, arg: &'static str, v: u64) -> Result<i64, SchedError> {
    i64::try_from(v).map_err(|_| invalid(name, arg, "an int that fits i64", v))
}

/// `e / w` during a linear warmup of `w` steps from 0.
fn warmup(e: i64, w: i64) -> f64 {
    e as f64 / w as f64
}

/// The arguments of [`WarmupCosineLR`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarmupCosineLRConfig {
    /// Steps of linear warmup from 0 to the base lr.
    pub warmup_steps: u64,
    /// The step at which the cosine reaches `min_lr` (including the warmup).
    pub total_steps: u64,
    /// The lr at and after `total_steps` (0).
    #[serde(default)]
    pub min_lr: f64,
    /// PyTorch's `last_epoch`: -1 (the default) for a fresh run; `k >= 0` to resume at
    /// epoch `k` (every group must then carry `initial_lr`, the base, and the constructor
    /// steps once, to epoch `k + 1`, as PyTorch's does).
    #[serde(default = "crate::base::fresh_run")]
    pub last_epoch: i64,
}

/// Linear warmup, then cosine decay to `min_lr` (Loshchilov & Hutter, SGDR, as used by
/// most transformer recipes, e.g. Hugging Face's `get_cosine_schedule_with_warmup`).
///
/// `lr(e) = base * e / warmup_steps` for `e < warmup_steps`, then
/// `min_lr + (base - min_lr) * (1 + cos(pi * p)) / 2` with
/// `p = min(1, (e - warmup_steps) / (total_steps - warmup_steps))`; it stays at `min_lr`
/// after `total_steps`. Not a PyTorch class: PyTorch users write
/// `SequentialLR([LinearLR, CosineAnnealingLR])`, which has no floor after `T_max`.
#[derive(Debug, Clone)]
pub struct WarmupCosineLR {
    core: Core,
    warmup_steps: i64,
    total_steps: i64,
    min_lr: f64,
}

impl WarmupCosineLR {
    /// Records `initial_lr` and sets the lr of step 0.
    pub fn new(
        opt: &mut dyn OptimizerParamGroups,
        config: WarmupCosineLRConfig,
    ) -> Result<Self, SchedError> {
        const NAME: &str = "WarmupCosineLR";
        let warmup_steps = to_i64(NAME, "warmup_steps", config.warmup_steps)?;
        let total_steps = to_i64(NAME, "total_steps", config.total_steps)?;
        if total_steps <= warmup_steps {
            return Err(invalid(
                NAME,
                "total_steps",
                "greater than warmup_steps",
                total_steps,
            ));
        }
        let s = WarmupCosineLR {
            core: Core::attach(opt, <Self as Rule>::NAME, config.last_epoch)?,
            warmup_steps,
            total_steps,
            min_lr: config.min_lr,
        };
        base::construct(s, opt)
    }

    fn factor_at(&self, base: f64, e: i64) -> f64 {
        let (w, t) = (self.warmup_steps, self.total_steps);
        if e < w {
            return base * warmup(e, w);
        }
        let p = ((e - w) as f64 / (t - w) as f64).min(1.0);
        self.min_lr + (base - self.min_lr) * (1.0 + (PI * p).cos()) / 2.0
    }
}

impl Rule for WarmupCosineLR {
    const NAME: &'static str = "WarmupCosineLR";
    fn core(&self) -> &Core {
        &self.core
    }
    fn core_mut(&mut self) -> &mut Core {
        &mut self.core
    }
    fn get_lr(
        &mut self,
        at: At,
        _: &mut dyn OptimizerParamGroups,
        _: bool,
        out: &mut Vec<f64>,
    ) -> Result<(), SchedError> {
        self.closed_form(&self.core.base_lrs, at.last_epoch, out);
        Ok(())
    }
    fn closed_form(&self, base_lrs: &[f64], epoch: i64, out: &mut Vec<f64>) -> bool {
        out.extend(base_lrs.iter().map(|&b| self.factor_at(b, epoch)));
        true
    }
    fn write_own(&self, d: &mut Dict) {
        d.insert("warmup_steps", Value::Int(self.warmup_steps));
        d.insert("total_steps", Value::Int(self.total_steps));
        d.insert("min_lr", Value::Float(self.min_lr));
    }
    fn read_own(&mut self, r: &mut StateReader<'_>, _groups: usize) -> Result<(), SchedError> {
        let (w, t) = (r.int("warmup_steps")?, r.int("total_steps")?);
        if w < 0 || t <= w {
            return Err(SchedError::StateWrongType {
                scheduler: Self::NAME,
                key: "total_steps".into(),
                expected: "0 <= warmup_steps < total_steps",
                found: format!("warmup_steps {w}, total_steps {t}"),
            });
        }
        self.warmup_steps = w;
        self.total_steps = t;
        self.min_lr = r.float("min_lr")?;
        Ok(())
    }
}

leaf_scheduler!(WarmupCosineLR);

/// The shape of [`WarmupStableDecayLR`]'s final decay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecayShape {
    /// `1 - p`.
    #[default]
    Linear,
    /// `(1 + cos(pi p)) / 2`.
    Cosine,
    /// `1 - sqrt(p)` (Hägele et al., 2024).
    #[serde(rename = "1-sqrt", alias = "one_minus_sqrt")]
    OneMinusSqrt,
}

impl DecayShape {
    fn as_str(self) -> &'static str {
        match self {
            DecayShape::Linear => "linear",
            DecayShape::Cosine => "cosine",
            DecayShape::OneMinusSqrt => "1-sqrt",
        }
    }
    fn eval(self, p: f64) -> f64 {
        match self {
            DecayShape::Linear => 1.0 - p,
            DecayShape::Cosine => (1.0 + (PI * p).cos()) / 2.0,
            DecayShape::OneMinusSqrt => 1.0 - p.sqrt(),
        }
    }
}

/// The arguments of [`WarmupStableDecayLR`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarmupStableDecayLRConfig {
    /// Steps of linear warmup from 0.
    pub warmup_steps: u64,
    /// Steps at the base lr.
    pub stable_steps: u64,
    /// Steps of decay to `min_lr` (> 0).
    pub decay_steps: u64,
    /// The lr at the end (0).
    #[serde(default)]
    pub min_lr: f64,
    /// `linear` (default), `cosine` or `1-sqrt`.
    #[serde(default)]
    pub decay: DecayShape,
    /// PyTorch's `last_epoch`: -1 (the default) for a fresh run; `k >= 0` to resume at
    /// epoch `k` (every group must then carry `initial_lr`, the base, and the constructor
    /// steps once, to epoch `k + 1`, as PyTorch's does).
    #[serde(default = "crate::base::fresh_run")]
    pub last_epoch: i64,
}

/// Warmup-stable-decay ("trapezoidal", Zhai et al. 2022; Hu et al., MiniCPM, 2024;
/// Hägele et al. 2024, <https://arxiv.org/abs/2405.18392>): linear warmup from 0, a
/// constant phase at the base lr, then a decay of the chosen shape to `min_lr`, where it
/// stays. Not a PyTorch class.
#[derive(Debug, Clone)]
pub struct WarmupStableDecayLR {
    core: Core,
    warmup_steps: i64,
    stable_steps: i64,
    decay_steps: i64,
    min_lr: f64,
    decay: DecayShape,
}

impl WarmupStableDecayLR {
    /// Records `initial_lr` and sets the lr of step 0.
    pub fn new(
        opt: &mut dyn OptimizerParamGroups,
        config: WarmupStableDecayLRConfig,
    ) -> Result<Self, SchedError> {
        const NAME: &str = "WarmupStableDecayLR";
        if config.decay_steps == 0 {
            return Err(invalid(NAME, "decay_steps", "an int > 0", 0));
        }
        let s = WarmupStableDecayLR {
            core: Core::attach(opt, <Self as Rule>::NAME, config.last_epoch)?,
            warmup_steps: to_i64(NAME, "warmup_steps", config.warmup_steps)?,
            stable_steps: to_i64(NAME, "stable_steps", config.stable_steps)?,
            decay_steps: to_i64(NAME, "decay_steps", config.decay_steps)?,
            min_lr: config.min_lr,
            decay: config.decay,
        };
        base::construct(s, opt)
    }

    fn lr(&self, base: f64, e: i64) -> f64 {
        let (w, s, d) = (self.warmup_steps, self.stable_steps, self.decay_steps);
        if e < w {
            return base * warmup(e, w);
        }
        if e < w + s {
            return base;
        }
        let p = ((e - w - s) as f64 / d as f64).min(1.0);
        self.min_lr + (base - self.min_lr) * self.decay.eval(p)
    }
}

impl Rule for WarmupStableDecayLR {
    const NAME: &'static str = "WarmupStableDecayLR";
    fn core(&self) -> &Core {
        &self.core
    }
    fn core_mut(&mut self) -> &mut Core {
        &mut self.core
    }
    fn get_lr(
        &mut self,
        at: At,
        _: &mut dyn OptimizerParamGroups,
        _: bool,
        out: &mut Vec<f64>,
    ) -> Result<(), SchedError> {
        self.closed_form(&self.core.base_lrs, at.last_epoch, out);
        Ok(())
    }
    fn closed_form(&self, base_lrs: &[f64], epoch: i64, out: &mut Vec<f64>) -> bool {
        out.extend(base_lrs.iter().map(|&b| self.lr(b, epoch)));
        true
    }
    fn write_own(&self, d: &mut Dict) {
        d.insert("warmup_steps", Value::Int(self.warmup_steps));
        d.insert("stable_steps", Value::Int(self.stable_steps));
        d.insert("decay_steps", Value::Int(self.decay_steps));
        d.insert("min_lr", Value::Float(self.min_lr));
        d.insert("decay", self.decay.as_str());
    }
    fn read_own(&mut self, r: &mut StateReader<'_>, _groups: usize) -> Result<(), SchedError> {
        let (w, s, d) = (
            r.int("warmup_steps")?,
            r.int("stable_steps")?,
            r.int("decay_steps")?,
        );
        if w < 0 || s < 0 || d <= 0 {
            return Err(SchedError::StateWrongType {
                scheduler: Self::NAME,
                key: "decay_steps".into(),
                expected: "warmup_steps, stable_steps >= 0 and decay_steps > 0",
                found: format!("{w}, {s}, {d}"),
            });
        }
        (self.warmup_steps, self.stable_steps, self.decay_steps) = (w, s, d);
        self.min_lr = r.float("min_lr")?;
        self.decay = match r.choice(
            "decay",
            &["linear", "cosine", "1-sqrt"],
            "'linear', 'cosine' or '1-sqrt'",
        )? {
            "linear" => DecayShape::Linear,
            "cosine" => DecayShape::Cosine,
            _ => DecayShape::OneMinusSqrt,
        };
        Ok(())
    }
}

leaf_scheduler!(WarmupStableDecayLR);

/// The arguments of [`InverseSqrtLR`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InverseSqrtLRConfig {
    /// Steps to the peak (>= 1).
    pub warmup_steps: u64,
    /// PyTorch's `last_epoch`: -1 (the default) for a fresh run; `k >= 0` to resume at
    /// epoch `k` (every group must then carry `initial_lr`, the base, and the constructor
    /// steps once, to epoch `k + 1`, as PyTorch's does).
    #[serde(default = "crate::base::fresh_run")]
    pub last_epoch: i64,
}

/// The inverse-square-root schedule of "Attention Is All You Need" (Vaswani et al.,
/// 2017, "Noam"), normalised so that the peak is the base lr: with `s = e + 1`,
/// `lr = base * min(s / warmup_steps, sqrt(warmup_steps / s))`. Not a PyTorch class.
#[derive(Debug, Clone)]
pub struct InverseSqrtLR {
    core: Core,
    warmup_steps: i64,
}

impl InverseSqrtLR {
    /// Records `initial_lr` and sets the lr of step 0.
    pub fn new(
        opt: &mut dyn OptimizerParamGroups,
        config: InverseSqrtLRConfig,
    ) -> Result<Self, SchedError> {
        const NAME: &str = "InverseSqrtLR";
        let w = to_i64(NAME, "warmup_steps", config.warmup_steps)?;
        if w < 1 {
            return Err(invalid(NAME, "warmup_steps", "an int >= 1", w));
        }
        base::construct(
            InverseSqrtLR {
                core: Core::attach(opt, <Self as Rule>::NAME, config.last_epoch)?,
                warmup_steps: w,
            },
            opt,
        )
    }

    fn factor(&self, e: i64) -> f64 {
        let s = (e + 1) as f64;
        let w = self.warmup_steps as f64;
        (s / w).min((w / s).sqrt())
    }
}

impl Rule for InverseSqrtLR {
    const NAME: &'static str = "InverseSqrtLR";
    fn core(&self) -> &Core {
        &self.core
    }
    fn core_mut(&mut self) -> &mut Core {
        &mut self.core
    }
    fn get_lr(
        &mut self,
        at: At,
        _: &mut dyn OptimizerParamGroups,
        _: bool,
        out: &mut Vec<f64>,
    ) -> Result<(), SchedError> {
        self.closed_form(&self.core.base_lrs, at.last_epoch, out);
        Ok(())
    }
    fn closed_form(&self, base_lrs: &[f64], epoch: i64, out: &mut Vec<f64>) -> bool {
        let f = self.factor(epoch);
        out.extend(base_lrs.iter().map(|b| b * f));
        true
    }
    fn write_own(&self, d: &mut Dict) {
        d.insert("warmup_steps", Value::Int(self.warmup_steps));
    }
    fn read_own(&mut self, r: &mut StateReader<'_>, _groups: usize) -> Result<(), SchedError> {
        let w = r.int("warmup_steps")?;
        if w < 1 {
            return Err(SchedError::StateWrongType {
                scheduler: Self::NAME,
                key: "warmup_steps".into(),
                expected: "an int >= 1",
                found: w.to_string(),
            });
        }
        self.warmup_steps = w;
        Ok(())
    }
}

leaf_scheduler!(InverseSqrtLR);
