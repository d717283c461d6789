//! PyTorch's `LRScheduler` base class: the state every epoch-driven scheduler shares, and
//! the step protocol (`_initial_step`, `step`, `step(epoch)`, `_update_lr`) written once.

use tempo_param_groups::{Dict, OptimizerParamGroups, ParamGroupError, Value};

use crate::state::{float_list, StateReader};
use crate::SchedError;

/// The base class's attributes: `base_lrs`, `last_epoch`, `_step_count`, `_last_lr`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Core {
    pub(crate) base_lrs: Vec<f64>,
    pub(crate) last_epoch: i64,
    pub(crate) step_count: i64,
    pub(crate) last_lr: Vec<f64>,
}

impl Core {
    /// The base constructor before its initial step: `initial_lr` is set with
    /// `setdefault` in every group and becomes `base_lrs`; `last_epoch = -1`.
    pub(crate) fn attach(opt: &mut dyn OptimizerParamGroups) -> Result<Core, SchedError> {
        let n = opt.num_groups();
        let mut base_lrs = Vec::with_capacity(n);
        for g in 0..n {
            let base = match opt.initial_lr(g) {
                Some(v) => v,
                None => {
                    let lr = opt.lr(g)?;
                    set_extra(opt, g, "initial_lr", Value::Float(lr))?;
                    lr
                }
            };
            base_lrs.push(base);
        }
        Ok(Core {
            base_lrs,
            last_epoch: -1,
            step_count: 0,
            last_lr: Vec::new(),
        })
    }

    pub(crate) fn groups(&self) -> usize {
        self.base_lrs.len()
    }

    /// Appends PyTorch's tail keys, in PyTorch's order.
    pub(crate) fn write(&self, d: &mut Dict) {
        d.insert("base_lrs", float_list(&self.base_lrs));
        d.insert("last_epoch", Value::Int(self.last_epoch));
        d.insert("_step_count", Value::Int(self.step_count));
        d.insert("_is_initial", Value::Bool(false));
        d.insert("_get_lr_called_within_step", Value::Bool(false));
        d.insert("_last_lr", float_list(&self.last_lr));
    }

    pub(crate) fn read(r: &mut StateReader<'_>, groups: usize) -> Result<Core, SchedError> {
        let base_lrs = r.floats("base_lrs", groups)?;
        let last_epoch = r.int("last_epoch")?;
        let step_count = r.int("_step_count")?;
        let last_lr = r.floats("_last_lr", groups)?;
        // Transient flags, always False at rest; older PyTorch versions lack them.
        for key in ["_is_initial", "_get_lr_called_within_step"] {
            if r.optional(key).is_some() {
                r.boolean(key)?;
            }
        }
        Ok(Core {
            base_lrs,
            last_epoch,
            step_count,
            last_lr,
        })
    }
}

/// Writes a bookkeeping key (`initial_lr`, `max_lr`, `swa_lr`, ...) into a group. An
/// optimizer that refuses the key (`UnknownKey`) is fine: tempo's schedulers keep their
/// own copy of every value they need.
pub(crate) fn set_extra(
    opt: &mut dyn OptimizerParamGroups,
    group: usize,
    key: &str,
    value: Value,
) -> Result<(), SchedError> {
    match opt.set(group, key, value) {
        Ok(()) | Err(ParamGroupError::UnknownKey { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Each group's current lr.
pub(crate) fn current_lrs(opt: &dyn OptimizerParamGroups) -> Result<Vec<f64>, SchedError> {
    (0..opt.num_groups())
        .map(|g| opt.lr(g).map_err(SchedError::from))
        .collect()
}

pub(crate) fn write_lrs(opt: &mut dyn OptimizerParamGroups, lrs: &[f64]) -> Result<(), SchedError> {
    for (g, &lr) in lrs.iter().enumerate() {
        opt.set_lr(g, lr)?;
    }
    Ok(())
}

/// `Err` unless the optimizer still has `groups` groups.
pub(crate) fn check_groups(
    groups: usize,
    opt: &dyn OptimizerParamGroups,
) -> Result<(), SchedError> {
    if opt.num_groups() == groups {
        Ok(())
    } else {
        Err(SchedError::GroupCountMismatch {
            arg: "param_groups".into(),
            expected: groups,
            got: opt.num_groups(),
        })
    }
}

/// Writes momentum to `betas[0]` (`use_beta1`) or `momentum`, as CyclicLR/OneCycleLR do.
pub(crate) fn write_momentum(
    opt: &mut dyn OptimizerParamGroups,
    group: usize,
    use_beta1: bool,
    momentum: f64,
) -> Result<(), SchedError> {
    if use_beta1 {
        let betas = opt.get(group, "betas").unwrap_or_default();
        let mut items = betas.as_slice().map(<[Value]>::to_vec).unwrap_or_default();
        if items.is_empty() {
            return Err(ParamGroupError::WrongType {
                key: "betas".into(),
                expected: "a pair of numbers",
                found: betas.type_name(),
            }
            .into());
        }
        items[0] = Value::Float(momentum);
        opt.set(group, "betas", Value::Tuple(items))?;
    } else {
        opt.set_f64(group, "momentum", momentum)?;
    }
    Ok(())
}

/// A scheduler derived from PyTorch's `LRScheduler`: its own rule on top of [`Core`].
pub(crate) trait Rule: Clone + Send + Sync + 'static {
    const NAME: &'static str;

    fn core(&self) -> &Core;
    fn core_mut(&mut self) -> &mut Core;

    /// PyTorch's `get_lr()` at `core.last_epoch` (already advanced); `initial` is
    /// `_is_initial`. May write momentum into the groups, as PyTorch's does.
    fn get_lr(
        &self,
        core: &Core,
        opt: &mut dyn OptimizerParamGroups,
        initial: bool,
    ) -> Result<Vec<f64>, SchedError>;

    /// PyTorch's `_get_closed_form_lr()` at `epoch`, for the classes that define it.
    fn closed_form(&self, base_lrs: &[f64], epoch: i64) -> Option<Vec<f64>> {
        let _ = (base_lrs, epoch);
        None
    }

    /// The lr after `step` steps, without an optimizer.
    fn lr_at(&self, step: u64) -> Option<Vec<f64>> {
        self.closed_form(&self.core().base_lrs, i64::try_from(step).ok()?)
    }

    /// The scheduler's own keys, which come before the base tail.
    fn write_own(&self, d: &mut Dict);

    /// Keys PyTorch puts after the base tail (`lr_lambdas`, `_scale_fn_custom`).
    fn write_trailing(&self, d: &mut Dict) {
        let _ = d;
    }

    /// Reads the scheduler's own (and trailing) keys into `self`.
    fn read_own(&mut self, r: &mut StateReader<'_>, groups: usize) -> Result<(), SchedError>;
}

/// Runs the constructor's initial step and returns the scheduler.
pub(crate) fn construct<R: Rule>(
    mut s: R,
    opt: &mut dyn OptimizerParamGroups,
) -> Result<R, SchedError> {
    initial_step(&mut s, opt)?;
    Ok(s)
}

fn apply<R: Rule>(
    s: &mut R,
    opt: &mut dyn OptimizerParamGroups,
    core: Core,
    initial: bool,
    closed_form: bool,
) -> Result<(), SchedError> {
    check_groups(core.groups(), opt)?;
    let mut core = core;
    let lrs = match closed_form
        .then(|| s.closed_form(&core.base_lrs, core.last_epoch))
        .flatten()
    {
        Some(lrs) => lrs,
        None => s.get_lr(&core, opt, initial)?,
    };
    write_lrs(opt, &lrs)?;
    core.last_lr = lrs;
    *s.core_mut() = core;
    Ok(())
}

pub(crate) fn step<R: Rule>(
    s: &mut R,
    opt: &mut dyn OptimizerParamGroups,
) -> Result<(), SchedError> {
    let mut core = s.core().clone();
    core.step_count += 1;
    core.last_epoch += 1;
    apply(s, opt, core, false, false)
}

pub(crate) fn initial_step<R: Rule>(
    s: &mut R,
    opt: &mut dyn OptimizerParamGroups,
) -> Result<(), SchedError> {
    let mut core = s.core().clone();
    core.step_count = 1;
    core.last_epoch += 1;
    apply(s, opt, core, true, false)
}

pub(crate) fn restart_at<R: Rule>(
    s: &mut R,
    opt: &mut dyn OptimizerParamGroups,
    epoch: i64,
) -> Result<(), SchedError> {
    let mut core = s.core().clone();
    core.last_epoch = epoch;
    apply(s, opt, core, false, true)
}

pub(crate) fn step_to_epoch<R: Rule>(
    s: &mut R,
    opt: &mut dyn OptimizerParamGroups,
    epoch: f64,
) -> Result<(), SchedError> {
    let e = whole_epoch(R::NAME, epoch)?;
    let mut core = s.core().clone();
    core.step_count += 1;
    core.last_epoch = e;
    apply(s, opt, core, false, true)
}

/// `epoch` as a whole number of epochs, or `Err(InvalidEpoch)`.
pub(crate) fn whole_epoch(scheduler: &'static str, epoch: f64) -> Result<i64, SchedError> {
    if epoch.fract() == 0.0 && (0.0..9.0e15).contains(&epoch) {
        Ok(epoch as i64)
    } else {
        Err(SchedError::InvalidEpoch {
            scheduler,
            epoch,
            reason: "this scheduler needs a whole, non-negative epoch",
        })
    }
}

pub(crate) fn state_dict<R: Rule>(s: &R) -> Dict {
    let mut d = Dict::new();
    s.write_own(&mut d);
    s.core().write(&mut d);
    s.write_trailing(&mut d);
    d
}

pub(crate) fn load_state_dict<R: Rule>(s: &mut R, state: &Dict) -> Result<(), SchedError> {
    let groups = s.core().groups();
    let mut r = StateReader::new(state, R::NAME);
    let mut fresh = s.clone();
    fresh.read_own(&mut r, groups)?;
    let core = Core::read(&mut r, groups)?;
    r.finish()?;
    *fresh.core_mut() = core;
    *s = fresh;
    Ok(())
}

/// Implements [`LrScheduler`](crate::LrScheduler) for a [`Rule`].
macro_rules! leaf_scheduler {
    ($t:ty) => {
        impl $crate::LrScheduler for $t {
            fn step(
                &mut self,
                opt: &mut dyn tempo_param_groups::OptimizerParamGroups,
            ) -> Result<(), $crate::SchedError> {
                $crate::base::step(self, opt)
            }
            fn step_to_epoch(
                &mut self,
                opt: &mut dyn tempo_param_groups::OptimizerParamGroups,
                epoch: f64,
            ) -> Result<(), $crate::SchedError> {
                $crate::base::step_to_epoch(self, opt, epoch)
            }
            fn last_lr(&self) -> &[f64] {
                &$crate::base::Rule::core(self).last_lr
            }
            fn state_dict(&self) -> tempo_param_groups::Dict {
                $crate::base::state_dict(self)
            }
            fn load_state_dict(
                &mut self,
                state: &tempo_param_groups::Dict,
            ) -> Result<(), $crate::SchedError> {
                $crate::base::load_state_dict(self, state)
            }
            fn name(&self) -> &'static str {
                <Self as $crate::base::Rule>::NAME
            }
            fn lr_at(&self, step: u64) -> Option<Vec<f64>> {
                $crate::base::Rule::lr_at(self, step)
            }
            fn clone_box(&self) -> Box<dyn $crate::LrScheduler> {
                Box::new(self.clone())
            }
            fn undo_epoch(&mut self) {
                $crate::base::Rule::core_mut(self).last_epoch -= 1;
            }
            fn initial_step(
                &mut self,
                opt: &mut dyn tempo_param_groups::OptimizerParamGroups,
            ) -> Result<(), $crate::SchedError> {
                $crate::base::initial_step(self, opt)
            }
            fn restart_at(
                &mut self,
                opt: &mut dyn tempo_param_groups::OptimizerParamGroups,
                epoch: i64,
            ) -> Result<(), $crate::SchedError> {
                $crate::base::restart_at(self, opt, epoch)
            }
        }
    };
}
pub(crate) use leaf_scheduler;

/// `Err(InvalidArgument)` for scheduler `s`.
pub(crate) fn invalid(
    scheduler: &'static str,
    arg: &'static str,
    expected: &'static str,
    found: impl ToString,
) -> SchedError {
    SchedError::InvalidArgument {
        scheduler,
        arg,
        expected,
        found: found.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::whole_epoch;
    use crate::SchedError;

    #[test]
    fn only_whole_non_negative_epochs() {
        assert_eq!(whole_epoch("StepLR", 4.0), Ok(4));
        assert_eq!(whole_epoch("StepLR", 0.0), Ok(0));
        for bad in [-1.0, 2.5, f64::NAN, f64::INFINITY] {
            assert!(
                matches!(
                    whole_epoch("StepLR", bad),
                    Err(SchedError::InvalidEpoch { .. })
                ),
                "{bad}"
            );
        }
    }
}
