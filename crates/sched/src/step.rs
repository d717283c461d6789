//! StepLR.

use serde::{Deserialize, Serialize};
use tempo_param_groups::{Dict, OptimizerParamGroups, Value};

use crate::base::{self, invalid, leaf_scheduler, read_lrs, At, Core, Rule};
use crate::state::StateReader;
use crate::SchedError;

fn point_one() -> f64 {
    0.1
}

/// The arguments of [`StepLR`] (PyTorch's names and defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepLRConfig {
    /// Epochs between two decays (required, > 0).
    pub step_size: u64,
    /// The decay factor (0.1).
    #[serde(default = "point_one")]
    pub gamma: f64,
    /// PyTorch's `last_epoch`: -1 (the default) for a fresh run; `k >= 0` to resume at
    /// epoch `k` (every group must then carry `initial_lr`, the base, and the constructor
    /// steps once, to epoch `k + 1`, as PyTorch's does).
    #[serde(default = "crate::base::fresh_run")]
    pub last_epoch: i64,
}

impl StepLRConfig {
    /// `step_size` with PyTorch's default `gamma = 0.1`.
    pub fn new(step_size: u64) -> Self {
        StepLRConfig {
            step_size,
            gamma: 0.1,
            last_epoch: -1,
        }
    }
}

/// Decays the lr by `gamma` every `step_size` epochs: PyTorch's
/// `torch.optim.lr_scheduler.StepLR`.
///
/// Unlike PyTorch (ZeroDivisionError at the first step), `step_size = 0` is refused by
/// the constructor.
#[derive(Debug, Clone)]
pub struct StepLR {
    core: Core,
    step_size: i64,
    gamma: f64,
}

impl StepLR {
    /// Records `initial_lr` in every group; the lr is not changed.
    pub fn new(
        opt: &mut dyn OptimizerParamGroups,
        config: StepLRConfig,
    ) -> Result<Self, SchedError> {
        let step_size = i64::try_from(config.step_size)
            .ok()
            .filter(|&s| s > 0)
            .ok_or_else(|| invalid("StepLR", "step_size", "an int > 0", config.step_size))?;
        let s = StepLR {
            core: Core::attach(opt, <Self as Rule>::NAME, config.last_epoch)?,
            step_size,
            gamma: config.gamma,
        };
        base::construct(s, opt)
    }
}

impl Rule for StepLR {
    const NAME: &'static str = "StepLR";
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
        let e = at.last_epoch;
        if e != 0 && e.rem_euclid(self.step_size) == 0 {
            out.iter_mut().for_each(|lr| *lr *= self.gamma);
        }
        Ok(())
    }
    fn closed_form(&self, base_lrs: &[f64], epoch: i64, out: &mut Vec<f64>) -> bool {
        let f = self.gamma.powf(epoch.div_euclid(self.step_size) as f64);
        out.extend(base_lrs.iter().map(|b| b * f));
        true
    }
    fn write_own(&self, d: &mut Dict) {
        d.insert("step_size", Value::Int(self.step_size));
        d.insert("gamma", Value::Float(self.gamma));
    }
    fn read_own(&mut self, r: &mut StateReader<'_>, _groups: usize) -> Result<(), SchedError> {
        let step_size = r.int("step_size")?;
        if step_size <= 0 {
            return Err(SchedError::StateWrongType {
                scheduler: Self::NAME,
                key: "step_size".into(),
                expected: "an int > 0",
                found: step_size.to_string(),
            });
        }
        self.step_size = step_size;
        self.gamma = r.float("gamma")?;
        Ok(())
    }
}

leaf_scheduler!(StepLR);
