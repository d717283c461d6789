//! ExponentialLR.

use serde::{Deserialize, Serialize};
use tempo_param_groups::{Dict, OptimizerParamGroups, Value};

use crate::base::{self, leaf_scheduler, read_lrs, At, Core, Rule};
use crate::state::StateReader;
use crate::SchedError;

/// The arguments of [`ExponentialLR`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExponentialLRConfig {
    /// The decay factor per epoch (required).
    pub gamma: f64,
    /// PyTorch's `last_epoch`: -1 (the default) for a fresh run; `k >= 0` to resume at
    /// epoch `k` (every group must then carry `initial_lr`, the base, and the constructor
    /// steps once, to epoch `k + 1`, as PyTorch's does).
    #[serde(default = "crate::base::fresh_run")]
    pub last_epoch: i64,
}

/// `lr *= gamma` every epoch: PyTorch's `torch.optim.lr_scheduler.ExponentialLR`.
#[derive(Debug, Clone)]
pub struct ExponentialLR {
    core: Core,
    gamma: f64,
}

impl ExponentialLR {
    /// Records `initial_lr` in every group; the lr is not changed.
    pub fn new(
        opt: &mut dyn OptimizerParamGroups,
        config: ExponentialLRConfig,
    ) -> Result<Self, SchedError> {
        base::construct(
            ExponentialLR {
                core: Core::attach(opt, <Self as Rule>::NAME, config.last_epoch)?,
                gamma: config.gamma,
            },
            opt,
        )
    }
}

impl Rule for ExponentialLR {
    const NAME: &'static str = "ExponentialLR";
    fn core(&self) -> &Core {
        &self.core
    }
    fn core_mut(&mut self) -> &mut Core {
        &mut self.core
    }
    fn get_lr(
        &mut self,
        _at: At,
        opt: &mut dyn OptimizerParamGroups,
        initial: bool,
        out: &mut Vec<f64>,
    ) -> Result<(), SchedError> {
        read_lrs(opt, out)?;
        if !initial {
            out.iter_mut().for_each(|lr| *lr *= self.gamma);
        }
        Ok(())
    }
    fn closed_form(&self, base_lrs: &[f64], epoch: i64, out: &mut Vec<f64>) -> bool {
        let f = self.gamma.powf(epoch as f64);
        out.extend(base_lrs.iter().map(|b| b * f));
        true
    }
    fn write_own(&self, d: &mut Dict) {
        d.insert("gamma", Value::Float(self.gamma));
    }
    fn read_own(&mut self, r: &mut StateReader<'_>, _groups: usize) -> Result<(), SchedError> {
        self.gamma = r.float("gamma")?;
        Ok(())
    }
}

leaf_scheduler!(ExponentialLR);
