//! MultiStepLR.

use serde::{Deserialize, Serialize};
use tempo_param_groups::{Dict, OptimizerParamGroups, Value};

use crate::base::{self, leaf_scheduler, read_lrs, At, Core, Rule};
use crate::state::StateReader;
use crate::SchedError;

fn point_one() -> f64 {
    0.1
}

/// The arguments of [`MultiStepLR`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultiStepLRConfig {
    /// The epochs at which the lr decays; a repeated milestone decays once per repeat.
    pub milestones: Vec<i64>,
    /// The decay factor (0.1).
    #[serde(default = "point_one")]
    pub gamma: f64,
    /// PyTorch's `last_epoch`: -1 (the default) for a fresh run; `k >= 0` to resume at
    /// epoch `k` (every group must then carry `initial_lr`, the base, and the constructor
    /// steps once, to epoch `k + 1`, as PyTorch's does).
    #[serde(default = "crate::base::fresh_run")]
    pub last_epoch: i64,
}

/// Decays the lr by `gamma` at each milestone: PyTorch's
/// `torch.optim.lr_scheduler.MultiStepLR`.
///
/// The milestones are a multiset (PyTorch's `Counter`): a milestone listed twice
/// multiplies by `gamma ** 2`. The state dict holds it as a `Value::Map` epoch → count.
#[derive(Debug, Clone)]
pub struct MultiStepLR {
    core: Core,
    /// (epoch, multiplicity), in first-occurrence order, as a `Counter` iterates.
    milestones: Vec<(i64, i64)>,
    gamma: f64,
}

impl MultiStepLR {
    /// Records `initial_lr` in every group (and decays at construction if 0 is a
    /// milestone, as PyTorch does).
    pub fn new(
        opt: &mut dyn OptimizerParamGroups,
        config: MultiStepLRConfig,
    ) -> Result<Self, SchedError> {
        let mut milestones: Vec<(i64, i64)> = Vec::new();
        for m in config.milestones {
            match milestones.iter_mut().find(|(e, _)| *e == m) {
                Some((_, c)) => *c += 1,
                None => milestones.push((m, 1)),
            }
        }
        base::construct(
            MultiStepLR {
                core: Core::attach(opt, <Self as Rule>::NAME, config.last_epoch)?,
                milestones,
                gamma: config.gamma,
            },
            opt,
        )
    }
}

impl Rule for MultiStepLR {
    const NAME: &'static str = "MultiStepLR";
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
        if let Some(&(_, count)) = self.milestones.iter().find(|(e, _)| *e == at.last_epoch) {
            let f = self.gamma.powf(count as f64);
            out.iter_mut().for_each(|lr| *lr *= f);
        }
        Ok(())
    }
    fn closed_form(&self, base_lrs: &[f64], epoch: i64, out: &mut Vec<f64>) -> bool {
        // bisect_right(sorted(elements), epoch): the milestones <= epoch, with multiplicity.
        let passed: i64 = self
            .milestones
            .iter()
            .filter(|(e, _)| *e <= epoch)
            .map(|(_, c)| c)
            .sum();
        let f = self.gamma.powf(passed as f64);
        out.extend(base_lrs.iter().map(|b| b * f));
        true
    }
    fn write_own(&self, d: &mut Dict) {
        let map = self
            .milestones
            .iter()
            .map(|&(e, c)| (Value::Int(e), Value::Int(c)))
            .collect();
        d.insert("milestones", Value::Map(map));
        d.insert("gamma", Value::Float(self.gamma));
    }
    fn read_own(&mut self, r: &mut StateReader<'_>, _groups: usize) -> Result<(), SchedError> {
        let v = r.value("milestones")?;
        let wrong = || SchedError::StateWrongType {
            scheduler: Self::NAME,
            key: "milestones".into(),
            expected: "a Counter of int epochs to int counts",
            found: v.to_string(),
        };
        let mut milestones = Vec::new();
        match v {
            Value::Map(entries) => {
                for (k, c) in entries {
                    milestones.push((k.as_i64().ok_or_else(wrong)?, c.as_i64().ok_or_else(wrong)?));
                }
            }
            // A Counter whose keys came through a string-keyed dict (e.g. JSON).
            Value::Dict(d) => {
                for (k, c) in d.iter() {
                    let k: i64 = k.parse().map_err(|_| wrong())?;
                    milestones.push((k, c.as_i64().ok_or_else(wrong)?));
                }
            }
            _ => return Err(wrong()),
        }
        self.milestones = milestones;
        self.gamma = r.float("gamma")?;
        Ok(())
    }
}

leaf_scheduler!(MultiStepLR);
