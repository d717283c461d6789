//! SWALR.

use std::f64::consts::PI;

use serde::{Deserialize, Serialize};
use tempo_param_groups::{Dict, OptimizerParamGroups, Value};

use crate::base::{self, invalid, leaf_scheduler, read_lrs, set_extra, At, Core, CosMemo, Rule};
use crate::state::StateReader;
use crate::{AnnealStrategy, PerGroup, SchedError};

fn ten() -> u64 {
    10
}

/// The arguments of [`SWALR`] (PyTorch's names and defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SWALRConfig {
    /// The lr to anneal to (required).
    pub swa_lr: PerGroup<f64>,
    /// The number of epochs of the anneal (10).
    #[serde(default = "ten")]
    pub anneal_epochs: u64,
    /// `cos` (default) or `linear`.
    #[serde(default)]
    pub anneal_strategy: AnnealStrategy,
    /// PyTorch's `last_epoch`: -1 (the default) for a fresh run; `k >= 0` to resume at
    /// epoch `k` (every group must then carry `initial_lr`, the base, and the constructor
    /// steps once, to epoch `k + 1`, as PyTorch's does).
    #[serde(default = "crate::base::fresh_run")]
    pub last_epoch: i64,
}

impl SWALRConfig {
    /// `swa_lr`, with PyTorch's defaults for the rest.
    pub fn new(swa_lr: impl Into<PerGroup<f64>>) -> Self {
        SWALRConfig {
            swa_lr: swa_lr.into(),
            anneal_epochs: 10,
            anneal_strategy: AnnealStrategy::Cos,
            last_epoch: -1,
        }
    }
}

/// Anneals each group's lr to a constant `swa_lr` for stochastic weight averaging
/// (Izmailov et al., 2018, <https://arxiv.org/abs/1803.05407>): PyTorch's
/// `torch.optim.swa_utils.SWALR`.
///
/// Driven by the step count; the anneal starts from the group's lr at construction. The
/// constructor writes `swa_lr` into every group; tempo also keeps it, so resuming does
/// not need it in the groups. No closed form ([`lr_at`](crate::LRScheduler::lr_at) is
/// `None`): it depends on the lr the groups had when SWALR was built.
#[derive(Debug, Clone)]
pub struct SWALR {
    core: Core,
    swa_lrs: Vec<f64>,
    anneal_epochs: i64,
    strategy: AnnealStrategy,
    /// A step's `alpha` is the next one's `prev_alpha`.
    cos: CosMemo,
}

impl SWALR {
    /// Writes `swa_lr` into every group and records `initial_lr`.
    pub fn new(
        opt: &mut dyn OptimizerParamGroups,
        config: SWALRConfig,
    ) -> Result<Self, SchedError> {
        let n = opt.num_groups();
        let swa_lrs = config.swa_lr.resolve("swa_lr", n)?;
        let anneal_epochs = i64::try_from(config.anneal_epochs).map_err(|_| {
            invalid(
                "SWALR",
                "anneal_epochs",
                "an int >= 0",
                config.anneal_epochs,
            )
        })?;
        for (g, &v) in swa_lrs.iter().enumerate() {
            set_extra(opt, g, "swa_lr", Value::Float(v))?;
        }
        let s = SWALR {
            core: Core::attach(opt, <Self as Rule>::NAME, config.last_epoch)?,
            swa_lrs,
            anneal_epochs,
            strategy: config.anneal_strategy,
            cos: CosMemo::default(),
        };
        base::construct(s, opt)
    }

    fn anneal(&mut self, t: f64) -> f64 {
        match self.strategy {
            AnnealStrategy::Cos => (1.0 - self.cos.cos(PI * t)) / 2.0,
            AnnealStrategy::Linear => t,
        }
    }
}

fn clamp01(x: f64) -> f64 {
    // max(0, min(1, x)), as Python evaluates it.
    let m = if x < 1.0 { x } else { 1.0 };
    if m > 0.0 {
        m
    } else {
        0.0
    }
}

impl Rule for SWALR {
    const NAME: &'static str = "SWALR";
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
        read_lrs(opt, out)?;
        let mut step = at.step_count - 1;
        if self.anneal_epochs == 0 {
            step = step.max(1);
        }
        let denom = self.anneal_epochs.max(1) as f64;
        let prev_alpha = self.anneal(clamp01((step - 1) as f64 / denom));
        let alpha = self.anneal(clamp01(step as f64 / denom));
        for (lr, &swa) in out.iter_mut().zip(&self.swa_lrs) {
            #[allow(clippy::float_cmp)] // PyTorch's exact test `alpha == 1`
            let prev_lr = if prev_alpha == 1.0 {
                swa
            } else {
                (*lr - prev_alpha * swa) / (1.0 - prev_alpha)
            };
            *lr = swa * alpha + prev_lr * (1.0 - alpha);
        }
        Ok(())
    }
    fn lr_at(&self, _step: u64) -> Option<Vec<f64>> {
        None
    }
    fn write_own(&self, d: &mut Dict) {
        d.insert("_anneal_strategy", self.strategy.as_str());
        d.insert("anneal_epochs", Value::Int(self.anneal_epochs));
    }
    fn read_own(&mut self, r: &mut StateReader<'_>, _groups: usize) -> Result<(), SchedError> {
        let s = r.choice("_anneal_strategy", &["cos", "linear"], "'cos' or 'linear'")?;
        self.strategy = AnnealStrategy::parse(s).unwrap_or_default();
        let ae = r.int("anneal_epochs")?;
        if ae < 0 {
            return Err(SchedError::StateWrongType {
                scheduler: Self::NAME,
                key: "anneal_epochs".into(),
                expected: "an int >= 0",
                found: ae.to_string(),
            });
        }
        self.anneal_epochs = ae;
        Ok(())
    }
}

leaf_scheduler!(SWALR);
