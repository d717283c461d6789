//! OneCycleLR.

use std::f64::consts::PI;

use serde::{Deserialize, Serialize};
use tempo_param_groups::{Dict, MomentumKey, OptimizerParamGroups, Value};

use crate::base::{self, invalid, leaf_scheduler, set_extra, write_momentum, At, Core, Rule};
use crate::state::StateReader;
use crate::{PerGroup, SchedError};

/// How OneCycleLR (and SWALR) interpolate between two values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnnealStrategy {
    /// Cosine annealing.
    #[default]
    Cos,
    /// Linear interpolation.
    Linear,
}

impl AnnealStrategy {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AnnealStrategy::Cos => "cos",
            AnnealStrategy::Linear => "linear",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "cos" => Some(AnnealStrategy::Cos),
            "linear" => Some(AnnealStrategy::Linear),
            _ => None,
        }
    }

    /// What OneCycleLR's `_anneal_func(start, end, pct)` computes from `pct` alone
    /// (`cos_out` for `cos`), the same for every group and value at a step.
    fn curve(self, pct: f64) -> f64 {
        match self {
            AnnealStrategy::Cos => (PI * pct).cos() + 1.0,
            AnnealStrategy::Linear => pct,
        }
    }

    /// `_anneal_func(start, end, pct)`, given `curve(pct)`.
    fn anneal(self, start: f64, end: f64, curve: f64) -> f64 {
        match self {
            AnnealStrategy::Cos => end + (start - end) / 2.0 * curve,
            AnnealStrategy::Linear => (end - start) * curve + start,
        }
    }
}

fn default_pct() -> f64 {
    0.3
}
fn yes() -> bool {
    true
}
fn base_m() -> PerGroup<f64> {
    PerGroup::All(0.85)
}
fn max_m() -> PerGroup<f64> {
    PerGroup::All(0.95)
}
fn div() -> f64 {
    25.0
}
fn final_div() -> f64 {
    1e4
}

/// The arguments of [`OneCycleLR`] (PyTorch's names and defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OneCycleLRConfig {
    /// The peak lr (required).
    pub max_lr: PerGroup<f64>,
    /// The number of steps in the cycle; else `epochs * steps_per_epoch`.
    #[serde(default)]
    pub total_steps: Option<u64>,
    /// Epochs, with `steps_per_epoch`, when `total_steps` is not given.
    #[serde(default)]
    pub epochs: Option<u64>,
    /// Steps per epoch, with `epochs`.
    #[serde(default)]
    pub steps_per_epoch: Option<u64>,
    /// The fraction of the cycle spent rising (0.3), in `[0, 1]`.
    #[serde(default = "default_pct")]
    pub pct_start: f64,
    /// `cos` (default) or `linear`.
    #[serde(default)]
    pub anneal_strategy: AnnealStrategy,
    /// Whether to cycle momentum (or `betas[0]`) inversely to the lr (true).
    #[serde(default = "yes")]
    pub cycle_momentum: bool,
    /// The momentum at the lr's peak (0.85).
    #[serde(default = "base_m")]
    pub base_momentum: PerGroup<f64>,
    /// The momentum at the start and end (0.95).
    #[serde(default = "max_m")]
    pub max_momentum: PerGroup<f64>,
    /// `initial_lr = max_lr / div_factor` (25).
    #[serde(default = "div")]
    pub div_factor: f64,
    /// `min_lr = initial_lr / final_div_factor` (1e4).
    #[serde(default = "final_div")]
    pub final_div_factor: f64,
    /// fast.ai's three phases (up, back down to `initial_lr`, then annihilation).
    #[serde(default)]
    pub three_phase: bool,
    /// PyTorch's `last_epoch`: -1 (the default) for a fresh run; `k >= 0` to resume at
    /// epoch `k` (every group must then carry `initial_lr`, the base, and the constructor
    /// steps once, to epoch `k + 1`, as PyTorch's does).
    #[serde(default = "crate::base::fresh_run")]
    pub last_epoch: i64,
}

impl OneCycleLRConfig {
    /// `max_lr` and `total_steps`, with PyTorch's defaults for everything else.
    pub fn new(max_lr: impl Into<PerGroup<f64>>, total_steps: u64) -> Self {
        OneCycleLRConfig {
            max_lr: max_lr.into(),
            total_steps: Some(total_steps),
            epochs: None,
            steps_per_epoch: None,
            pct_start: 0.3,
            anneal_strategy: AnnealStrategy::Cos,
            cycle_momentum: true,
            base_momentum: PerGroup::All(0.85),
            max_momentum: PerGroup::All(0.95),
            div_factor: 25.0,
            final_div_factor: 1e4,
            three_phase: false,
            last_epoch: -1,
        }
    }
}

/// A group value a phase starts or ends at, by PyTorch's group key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    InitialLr,
    MaxLr,
    MinLr,
    MaxMomentum,
    BaseMomentum,
}

impl Key {
    fn as_str(self) -> &'static str {
        match self {
            Key::InitialLr => "initial_lr",
            Key::MaxLr => "max_lr",
            Key::MinLr => "min_lr",
            Key::MaxMomentum => "max_momentum",
            Key::BaseMomentum => "base_momentum",
        }
    }
}

const LR_KEYS: &[Key] = &[Key::InitialLr, Key::MaxLr, Key::MinLr];
const MOMENTUM_KEYS: &[Key] = &[Key::MaxMomentum, Key::BaseMomentum];

#[derive(Debug, Clone, PartialEq)]
struct Phase {
    end_step: f64,
    /// The last phase's `end_step` is PyTorch's int `total_steps - 1`.
    end_is_int: bool,
    start_lr: Key,
    end_lr: Key,
    start_momentum: Key,
    end_momentum: Key,
}

#[derive(Debug, Clone)]
struct Momentum {
    use_beta1: bool,
    base: Vec<f64>,
    max: Vec<f64>,
}

/// The 1cycle policy (Smith & Topin, 2017, <https://arxiv.org/abs/1708.07120>):
/// PyTorch's `torch.optim.lr_scheduler.OneCycleLR`, stepped once per batch.
///
/// The constructor writes `initial_lr = max_lr / div_factor` (overwriting), `max_lr` and
/// `min_lr` into every group and, with `cycle_momentum`, the momentum (or `betas[0]`).
/// As in PyTorch, step number `total_steps` still extrapolates; unlike PyTorch, the next
/// one is [`SchedError::PastTotalSteps`] (naming both numbers) and changes nothing. The
/// group values are kept inside the scheduler too, so it needs none of them to resume.
#[derive(Debug, Clone)]
pub struct OneCycleLR {
    core: Core,
    total_steps: i64,
    phases: Vec<Phase>,
    anneal: AnnealStrategy,
    max_lrs: Vec<f64>,
    min_lrs: Vec<f64>,
    momentum: Option<Momentum>,
}

impl OneCycleLR {
    /// Writes the group keys and the lr (and momentum) of step 0. With `last_epoch >= 0`
    /// it writes no keys and reads them, as PyTorch does: `initial_lr`, `max_lr`, `min_lr`
    /// (and `max_momentum`, `base_momentum` with `cycle_momentum`) must be in every group
    /// ([`SchedError::MissingGroupKey`] names a missing one); a `last_epoch` whose next
    /// step is past `total_steps` is [`SchedError::PastTotalSteps`].
    pub fn new(
        opt: &mut dyn OptimizerParamGroups,
        config: OneCycleLRConfig,
    ) -> Result<Self, SchedError> {
        const NAME: &str = "OneCycleLR";
        let positive = |arg: &'static str, v: u64| {
            i64::try_from(v)
                .ok()
                .filter(|&v| v > 0)
                .ok_or_else(|| invalid(NAME, arg, "an int > 0", v))
        };
        let total_steps = match (config.total_steps, config.epochs, config.steps_per_epoch) {
            (Some(t), _, _) => positive("total_steps", t)?,
            (None, Some(e), Some(s)) => {
                let (e, s) = (positive("epochs", e)?, positive("steps_per_epoch", s)?);
                e.checked_mul(s).ok_or_else(|| {
                    invalid(NAME, "epochs", "epochs * steps_per_epoch to fit i64", e)
                })?
            }
            _ => {
                return Err(invalid(
                    NAME,
                    "total_steps",
                    "given, or both epochs and steps_per_epoch given",
                    "None",
                ))
            }
        };
        let pct = config.pct_start;
        let t = total_steps as f64;
        let phase = |end_step: f64, end_is_int, lrs: (Key, Key), ms: (Key, Key)| Phase {
            end_step,
            end_is_int,
            start_lr: lrs.0,
            end_lr: lrs.1,
            start_momentum: ms.0,
            end_momentum: ms.1,
        };
        let last = (total_steps - 1) as f64;
        let phases = if config.three_phase {
            vec![
                phase(
                    pct * t - 1.0,
                    false,
                    (Key::InitialLr, Key::MaxLr),
                    (Key::MaxMomentum, Key::BaseMomentum),
                ),
                phase(
                    2.0 * pct * t - 2.0,
                    false,
                    (Key::MaxLr, Key::InitialLr),
                    (Key::BaseMomentum, Key::MaxMomentum),
                ),
                phase(
                    last,
                    true,
                    (Key::InitialLr, Key::MinLr),
                    (Key::MaxMomentum, Key::MaxMomentum),
                ),
            ]
        } else {
            vec![
                phase(
                    pct * t - 1.0,
                    false,
                    (Key::InitialLr, Key::MaxLr),
                    (Key::MaxMomentum, Key::BaseMomentum),
                ),
                phase(
                    last,
                    true,
                    (Key::MaxLr, Key::MinLr),
                    (Key::BaseMomentum, Key::MaxMomentum),
                ),
            ]
        };
        if !(0.0..=1.0).contains(&pct) {
            return Err(invalid(NAME, "pct_start", "a float between 0 and 1", pct));
        }
        let n = opt.num_groups();
        let max_lrs = config.max_lr.resolve("max_lr", n)?;
        let initial_lrs: Vec<f64> = max_lrs.iter().map(|m| m / config.div_factor).collect();
        let min_lrs: Vec<f64> = initial_lrs
            .iter()
            .map(|i| i / config.final_div_factor)
            .collect();
        let momentum = if config.cycle_momentum {
            let use_beta1 = n > 0 && opt.momentum_key(0)? == MomentumKey::Beta1;
            let max = config.max_momentum.resolve("max_momentum", n)?;
            let base = config.base_momentum.resolve("base_momentum", n)?;
            Some(Momentum {
                use_beta1,
                base,
                max,
            })
        } else {
            None
        };
        base::check_last_epoch(NAME, config.last_epoch)?;
        let (core, max_lrs, min_lrs, momentum) = if config.last_epoch == -1 {
            for g in 0..n {
                set_extra(opt, g, "initial_lr", Value::Float(initial_lrs[g]))?;
                set_extra(opt, g, "max_lr", Value::Float(max_lrs[g]))?;
                set_extra(opt, g, "min_lr", Value::Float(min_lrs[g]))?;
            }
            if let Some(m) = &momentum {
                for g in 0..n {
                    write_momentum(opt, g, m.use_beta1, m.max[g])?;
                    set_extra(opt, g, "max_momentum", Value::Float(m.max[g]))?;
                    set_extra(opt, g, "base_momentum", Value::Float(m.base[g]))?;
                }
            }
            let mut core = Core::attach(opt, NAME, config.last_epoch)?;
            core.base_lrs = initial_lrs;
            (core, max_lrs, min_lrs, momentum)
        } else {
            // Resuming, PyTorch writes nothing and reads the phases' ends from the
            // groups: `initial_lr`, `max_lr`, `min_lr` and the momentum bounds.
            let core = Core::attach(opt, NAME, config.last_epoch)?;
            let read = |opt: &dyn OptimizerParamGroups, key: &'static str| {
                (0..n)
                    .map(|g| {
                        opt.get(g, key)
                            .and_then(|v| v.as_f64())
                            .ok_or_else(|| base::missing_group_key(NAME, g, key, config.last_epoch))
                    })
                    .collect::<Result<Vec<f64>, SchedError>>()
            };
            let (max_lrs, min_lrs) = (read(opt, "max_lr")?, read(opt, "min_lr")?);
            let momentum = match momentum {
                Some(m) => Some(Momentum {
                    use_beta1: m.use_beta1,
                    max: read(opt, "max_momentum")?,
                    base: read(opt, "base_momentum")?,
                }),
                None => None,
            };
            (core, max_lrs, min_lrs, momentum)
        };
        let s = OneCycleLR {
            core,
            total_steps,
            phases,
            anneal: config.anneal_strategy,
            max_lrs,
            min_lrs,
            momentum,
        };
        base::construct(s, opt)
    }

    fn value(&self, base_lrs: &[f64], g: usize, key: Key) -> f64 {
        match key {
            Key::InitialLr => base_lrs[g],
            Key::MaxLr => self.max_lrs[g],
            Key::MinLr => self.min_lrs[g],
            Key::MaxMomentum => self.momentum.as_ref().map_or(0.0, |m| m.max[g]),
            Key::BaseMomentum => self.momentum.as_ref().map_or(0.0, |m| m.base[g]),
        }
    }

    /// Group `g`'s lr in `phase`, given the anneal's `curve` at the step.
    fn lr_in(&self, base_lrs: &[f64], g: usize, phase: &Phase, curve: f64) -> f64 {
        self.anneal.anneal(
            self.value(base_lrs, g, phase.start_lr),
            self.value(base_lrs, g, phase.end_lr),
            curve,
        )
    }

    /// Group `g`'s momentum in `phase`, given the anneal's `curve` at the step.
    fn momentum_in(&self, base_lrs: &[f64], g: usize, phase: &Phase, curve: f64) -> f64 {
        self.anneal.anneal(
            self.value(base_lrs, g, phase.start_momentum),
            self.value(base_lrs, g, phase.end_momentum),
            curve,
        )
    }

    /// The phase of step `n` and the anneal's curve there (from PyTorch's `pct`);
    /// `None` without phases.
    fn locate(&self, n: i64) -> Result<Option<(&Phase, f64)>, SchedError> {
        if n > self.total_steps {
            return Err(SchedError::PastTotalSteps {
                step: n,
                total_steps: self.total_steps,
            });
        }
        let nf = n as f64;
        let mut start = 0.0;
        let mut chosen = None;
        for (i, phase) in self.phases.iter().enumerate() {
            if nf <= phase.end_step || i == self.phases.len() - 1 {
                chosen = Some((phase, start));
                break;
            }
            start = phase.end_step;
        }
        let Some((phase, start)) = chosen else {
            return Ok(None);
        };
        if phase.end_step - start == 0.0 {
            return Err(SchedError::DivisionByZero {
                scheduler: "OneCycleLR",
                what: "the length of the current phase (pct_start * total_steps == 1?)",
            });
        }
        let pct = (nf - start) / (phase.end_step - start);
        Ok(Some((phase, self.anneal.curve(pct))))
    }

    /// The number of steps in the cycle.
    pub fn total_steps(&self) -> u64 {
        self.total_steps as u64
    }
}

impl Rule for OneCycleLR {
    const NAME: &'static str = "OneCycleLR";
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
        let Some((phase, curve)) = self.locate(at.last_epoch)? else {
            return Ok(());
        };
        let base_lrs = &self.core.base_lrs;
        if let Some(m) = &self.momentum {
            for g in 0..base_lrs.len() {
                let mom = self.momentum_in(base_lrs, g, phase, curve);
                write_momentum(opt, g, m.use_beta1, mom)?;
            }
        }
        out.extend((0..base_lrs.len()).map(|g| self.lr_in(base_lrs, g, phase, curve)));
        Ok(())
    }
    fn lr_at(&self, step: u64) -> Option<Vec<f64>> {
        let base_lrs = &self.core.base_lrs;
        let Some((phase, curve)) = self.locate(i64::try_from(step).ok()?).ok()? else {
            return Some(Vec::new());
        };
        Some(
            (0..base_lrs.len())
                .map(|g| self.lr_in(base_lrs, g, phase, curve))
                .collect(),
        )
    }
    fn writes_momentum(&self) -> bool {
        self.momentum.is_some()
    }
    fn write_own(&self, d: &mut Dict) {
        d.insert("total_steps", Value::Int(self.total_steps));
        let phases = self
            .phases
            .iter()
            .map(|p| {
                let mut pd = Dict::new();
                let end = if p.end_is_int {
                    Value::Int(p.end_step as i64)
                } else {
                    Value::Float(p.end_step)
                };
                pd.insert("end_step", end);
                pd.insert("start_lr", p.start_lr.as_str());
                pd.insert("end_lr", p.end_lr.as_str());
                pd.insert("start_momentum", p.start_momentum.as_str());
                pd.insert("end_momentum", p.end_momentum.as_str());
                Value::Dict(pd)
            })
            .collect();
        d.insert("_schedule_phases", Value::List(phases));
        d.insert("_anneal_func_type", self.anneal.as_str());
        d.insert("cycle_momentum", Value::Bool(self.momentum.is_some()));
        if let Some(m) = &self.momentum {
            d.insert("use_beta1", Value::Bool(m.use_beta1));
        }
    }
    fn read_own(&mut self, r: &mut StateReader<'_>, _groups: usize) -> Result<(), SchedError> {
        const NAME: &str = "OneCycleLR";
        let wrong = |key: &str, expected: &'static str, found: &Value| SchedError::StateWrongType {
            scheduler: NAME,
            key: key.into(),
            expected,
            found: found.to_string(),
        };
        let total = r.int("total_steps")?;
        if total <= 0 {
            return Err(wrong("total_steps", "an int > 0", &Value::Int(total)));
        }
        self.total_steps = total;
        let mut phases = Vec::new();
        for item in r.list("_schedule_phases")? {
            let pd = item
                .as_dict()
                .ok_or_else(|| wrong("_schedule_phases", "a list of dicts", item))?;
            let end = pd.get("end_step").cloned().unwrap_or_default();
            let end_step = end
                .as_f64()
                .ok_or_else(|| wrong("end_step", "a number", &end))?;
            let key = |k: &str, allowed: &'static [Key]| {
                let v = pd.get(k).cloned().unwrap_or_default();
                v.as_str()
                    .and_then(|s| allowed.iter().copied().find(|a| a.as_str() == s))
                    .ok_or_else(|| wrong(k, "a group key of OneCycleLR", &v))
            };
            phases.push(Phase {
                end_step,
                end_is_int: matches!(end, Value::Int(_)),
                start_lr: key("start_lr", LR_KEYS)?,
                end_lr: key("end_lr", LR_KEYS)?,
                start_momentum: key("start_momentum", MOMENTUM_KEYS)?,
                end_momentum: key("end_momentum", MOMENTUM_KEYS)?,
            });
        }
        if phases.is_empty() {
            return Err(wrong(
                "_schedule_phases",
                "a non-empty list",
                &Value::List(Vec::new()),
            ));
        }
        self.phases = phases;
        let anneal = r.string("_anneal_func_type")?;
        self.anneal = AnnealStrategy::parse(anneal).ok_or_else(|| {
            wrong(
                "_anneal_func_type",
                "'cos' or 'linear'",
                &Value::from(anneal),
            )
        })?;
        let cycle = r.boolean("cycle_momentum")?;
        match (&mut self.momentum, cycle) {
            (Some(m), true) => m.use_beta1 = r.boolean("use_beta1")?,
            (None, false) => {}
            _ => {
                return Err(wrong(
                    "cycle_momentum",
                    "the value this OneCycleLR was constructed with",
                    &Value::Bool(cycle),
                ))
            }
        }
        Ok(())
    }
}

leaf_scheduler!(OneCycleLR);
