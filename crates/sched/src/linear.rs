//! LinearLR.

use serde::{Deserialize, Serialize};
use tempo_param_groups::{Dict, OptimizerParamGroups, Value};

use crate::base::{self, invalid, leaf_scheduler, read_lrs, At, Core, Rule};
use crate::state::StateReader;
use crate::SchedError;

/// The arguments of [`LinearLR`] (PyTorch's names and defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinearLRConfig {
    /// The factor at epoch 0 (1/3), in `(0, 1]`.
    pub start_factor: f64,
    /// The factor from `total_iters` on (1.0), in `[0, 1]`.
    pub end_factor: f64,
    /// The number of epochs of the ramp (5).
    pub total_iters: u64,
    /// PyTorch's `last_epoch`: -1 (the default) for a fresh run; `k >= 0` to resume at
    /// epoch `k` (every group must then carry `initial_lr`, the base, and the constructor
    /// steps once, to epoch `k + 1`, as PyTorch's does).
    #[serde(default = "crate::base::fresh_run")]
    pub last_epoch: i64,
}

impl Default for LinearLRConfig {
    fn default() -> Self {
        LinearLRConfig {
            start_factor: 1.0 / 3.0,
            end_factor: 1.0,
            total_iters: 5,
            last_epoch: -1,
        }
    }
}

/// Ramps the lr's factor linearly from `start_factor` to `end_factor` over
/// `total_iters` epochs: PyTorch's `torch.optim.lr_scheduler.LinearLR` (the usual warmup).
///
/// With `total_iters = 0` PyTorch's closed form divides by zero; tempo's stays at
/// `start_factor`, as the recursive form does.
#[derive(Debug, Clone)]
pub struct LinearLR {
    core: Core,
    start_factor: f64,
    end_factor: f64,
    total_iters: i64,
}

impl LinearLR {
    /// Records `initial_lr` and multiplies every group's lr by `start_factor`.
    pub fn new(
        opt: &mut dyn OptimizerParamGroups,
        config: LinearLRConfig,
    ) -> Result<Self, SchedError> {
        let (sf, ef) = (config.start_factor, config.end_factor);
        if !(sf > 0.0 && sf <= 1.0) {
            return Err(invalid("LinearLR", "start_factor", "> 0 and <= 1", sf));
        }
        if !(0.0..=1.0).contains(&ef) {
            return Err(invalid("LinearLR", "end_factor", "between 0 and 1", ef));
        }
        let total_iters = i64::try_from(config.total_iters).map_err(|_| {
            invalid(
                "LinearLR",
                "total_iters",
                "an int that fits i64",
                config.total_iters,
            )
        })?;
        let s = LinearLR {
            core: Core::attach(opt, <Self as Rule>::NAME, config.last_epoch)?,
            start_factor: sf,
            end_factor: ef,
            total_iters,
        };
        base::construct(s, opt)
    }
}

impl Rule for LinearLR {
    const NAME: &'static str = "LinearLR";
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
        initial: bool,
        out: &mut Vec<f64>,
    ) -> Result<(), SchedError> {
        read_lrs(opt, out)?;
        let e = at.last_epoch;
        let (sf, ef, t) = (self.start_factor, self.end_factor, self.total_iters);
        if e == 0 {
            out.iter_mut().for_each(|lr| *lr *= sf);
            return Ok(());
        }
        if initial || e > t {
            return Ok(());
        }
        let f = 1.0 + (ef - sf) / (t as f64 * sf + (e - 1) as f64 * (ef - sf));
        out.iter_mut().for_each(|lr| *lr *= f);
        Ok(())
    }
    fn closed_form(&self, base_lrs: &[f64], epoch: i64, out: &mut Vec<f64>) -> bool {
        let (sf, ef, t) = (self.start_factor, self.end_factor, self.total_iters);
        let f = if t == 0 {
            sf
        } else {
            sf + ((ef - sf) * t.min(epoch) as f64) / t as f64
        };
        out.extend(base_lrs.iter().map(|b| b * f));
        true
    }
    fn write_own(&self, d: &mut Dict) {
        d.insert("start_factor", Value::Float(self.start_factor));
        d.insert("end_factor", Value::Float(self.end_factor));
        d.insert("total_iters", Value::Int(self.total_iters));
    }
    fn read_own(&mut self, r: &mut StateReader<'_>, _groups: usize) -> Result<(), SchedError> {
        self.start_factor = r.float("start_factor")?;
        self.end_factor = r.float("end_factor")?;
        self.total_iters = r.int("total_iters")?;
        Ok(())
    }
}

leaf_scheduler!(LinearLR);
