//! PolynomialLR.

use serde::{Deserialize, Serialize};
use tempo_param_groups::{Dict, OptimizerParamGroups, Value};

use crate::base::{self, invalid, leaf_scheduler, read_lrs, At, Core, Rule};
use crate::state::StateReader;
use crate::SchedError;

/// The arguments of [`PolynomialLR`] (PyTorch's names and defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolynomialLRConfig {
    /// The epoch at which the lr reaches 0 (5).
    pub total_iters: u64,
    /// The polynomial's power (1.0).
    pub power: f64,
    /// PyTorch's `last_epoch`: -1 (the default) for a fresh run; `k >= 0` to resume at
    /// epoch `k` (every group must then carry `initial_lr`, the base, and the constructor
    /// steps once, to epoch `k + 1`, as PyTorch's does).
    #[serde(default = "crate::base::fresh_run")]
    pub last_epoch: i64,
}

impl Default for PolynomialLRConfig {
    fn default() -> Self {
        PolynomialLRConfig {
            total_iters: 5,
            power: 1.0,
            last_epoch: -1,
        }
    }
}

/// `lr = base * (1 - min(e, T)/T) ** power`, reached recursively: PyTorch's
/// `torch.optim.lr_scheduler.PolynomialLR`.
///
/// Unlike PyTorch (division by zero), `total_iters = 0` is refused.
#[derive(Debug, Clone)]
pub struct PolynomialLR {
    core: Core,
    total_iters: i64,
    power: f64,
}

impl PolynomialLR {
    /// Records `initial_lr` in every group; the lr is not changed.
    pub fn new(
        opt: &mut dyn OptimizerParamGroups,
        config: PolynomialLRConfig,
    ) -> Result<Self, SchedError> {
        let total_iters = i64::try_from(config.total_iters)
            .ok()
            .filter(|&t| t > 0)
            .ok_or_else(|| {
                invalid(
                    "PolynomialLR",
                    "total_iters",
                    "an int > 0",
                    config.total_iters,
                )
            })?;
        base::construct(
            PolynomialLR {
                core: Core::attach(opt, <Self as Rule>::NAME, config.last_epoch)?,
                total_iters,
                power: config.power,
            },
            opt,
        )
    }
}

impl Rule for PolynomialLR {
    const NAME: &'static str = "PolynomialLR";
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
        let (e, t) = (at.last_epoch, self.total_iters);
        if initial || e > t {
            return Ok(());
        }
        let (ef, tf) = (e as f64, t as f64);
        let decay = ((1.0 - ef / tf) / (1.0 - (ef - 1.0) / tf)).powf(self.power);
        out.iter_mut().for_each(|lr| *lr *= decay);
        Ok(())
    }
    fn closed_form(&self, base_lrs: &[f64], epoch: i64, out: &mut Vec<f64>) -> bool {
        let t = self.total_iters;
        let f = (1.0 - t.min(epoch) as f64 / t as f64).powf(self.power);
        out.extend(base_lrs.iter().map(|b| b * f));
        true
    }
    fn write_own(&self, d: &mut Dict) {
        d.insert("total_iters", Value::Int(self.total_iters));
        d.insert("power", Value::Float(self.power));
    }
    fn read_own(&mut self, r: &mut StateReader<'_>, _groups: usize) -> Result<(), SchedError> {
        let t = r.int("total_iters")?;
        if t <= 0 {
            return Err(SchedError::StateWrongType {
                scheduler: Self::NAME,
                key: "total_iters".into(),
                expected: "an int > 0",
                found: t.to_string(),
            });
        }
        self.total_iters = t;
        self.power = r.float("power")?;
        Ok(())
    }
}

leaf_scheduler!(PolynomialLR);
