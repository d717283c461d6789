//! ConstantLR.

use serde::{Deserialize, Serialize};
use tempo_param_groups::{Dict, OptimizerParamGroups, Value};

use crate::base::{self, invalid, leaf_scheduler, read_lrs, At, Core, Rule};
use crate::state::StateReader;
use crate::SchedError;

/// The arguments of [`ConstantLR`] (PyTorch's names and defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConstantLRConfig {
    /// The factor applied until `total_iters` (1/3), in `[0, 1]`.
    pub factor: f64,
    /// The epoch at which the factor is lifted (5).
    pub total_iters: u64,
    /// PyTorch's `last_epoch`: -1 (the default) for a fresh run; `k >= 0` to resume at
    /// epoch `k` (every group must then carry `initial_lr`, the base, and the constructor
    /// steps once, to epoch `k + 1`, as PyTorch's does).
    #[serde(default = "crate::base::fresh_run")]
    pub last_epoch: i64,
}

impl Default for ConstantLRConfig {
    fn default() -> Self {
        ConstantLRConfig {
            factor: 1.0 / 3.0,
            total_iters: 5,
            last_epoch: -1,
        }
    }
}

/// Multiplies the lr by `factor` until `total_iters`: PyTorch's
/// `torch.optim.lr_scheduler.ConstantLR`.
///
/// Unlike PyTorch (ZeroDivisionError when the factor is lifted), `factor = 0` with
/// `total_iters > 0` is refused by the constructor.
#[derive(Debug, Clone)]
pub struct ConstantLR {
    core: Core,
    factor: f64,
    total_iters: i64,
}

impl ConstantLR {
    /// Records `initial_lr` and multiplies every group's lr by `factor`.
    pub fn new(
        opt: &mut dyn OptimizerParamGroups,
        config: ConstantLRConfig,
    ) -> Result<Self, SchedError> {
        let f = config.factor;
        if !(0.0..=1.0).contains(&f) {
            return Err(invalid("ConstantLR", "factor", "between 0 and 1", f));
        }
        let total_iters = i64::try_from(config.total_iters).map_err(|_| {
            invalid(
                "ConstantLR",
                "total_iters",
                "an int that fits i64",
                config.total_iters,
            )
        })?;
        if f == 0.0 && total_iters > 0 {
            return Err(invalid(
                "ConstantLR",
                "factor",
                "> 0 when total_iters > 0 (it is divided by)",
                f,
            ));
        }
        base::construct(
            ConstantLR {
                core: Core::attach(opt, <Self as Rule>::NAME, config.last_epoch)?,
                factor: f,
                total_iters,
            },
            opt,
        )
    }
}

impl Rule for ConstantLR {
    const NAME: &'static str = "ConstantLR";
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
        if e == 0 {
            out.iter_mut().for_each(|lr| *lr *= self.factor);
        } else if e == self.total_iters {
            out.iter_mut().for_each(|lr| *lr *= 1.0 / self.factor);
        }
        Ok(())
    }
    fn closed_form(&self, base_lrs: &[f64], epoch: i64, out: &mut Vec<f64>) -> bool {
        let lifted = if epoch >= self.total_iters {
            1.0 - self.factor
        } else {
            0.0
        };
        let f = self.factor + lifted;
        out.extend(base_lrs.iter().map(|b| b * f));
        true
    }
    /// The closed form, except for `total_iters = 0`: PyTorch's closed form then says
    /// `base` while its steps keep `base * factor` forever; `lr_at` is what stepping gives.
    fn lr_at(&self, step: u64) -> Option<Vec<f64>> {
        if self.total_iters == 0 {
            return Some(self.core.base_lrs.iter().map(|b| b * self.factor).collect());
        }
        let mut out = Vec::with_capacity(self.core.base_lrs.len());
        self.closed_form(&self.core.base_lrs, i64::try_from(step).ok()?, &mut out);
        Some(out)
    }
    fn write_own(&self, d: &mut Dict) {
        d.insert("factor", Value::Float(self.factor));
        d.insert("total_iters", Value::Int(self.total_iters));
    }
    fn read_own(&mut self, r: &mut StateReader<'_>, _groups: usize) -> Result<(), SchedError> {
        self.factor = r.float("factor")?;
        self.total_iters = r.int("total_iters")?;
        Ok(())
    }
}

leaf_scheduler!(ConstantLR);
