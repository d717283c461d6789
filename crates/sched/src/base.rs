//! PyTorch's `LRScheduler` base class: the state every epoch-driven scheduler shares, and
//! the step protocol (`_initial_step`, `step`, `step(epoch)`, `_update_lr`) written once.

use tempo_param_groups::{Dict, OptimizerParamGroups, ParamGroupError, Value};

use crate::state::{float_list, StateReader};
use crate::SchedError;

/// The base class's attributes: `base_lrs`, `last_epoch`, `_step_count`, `_last_lr`;
/// plus what a step needs to run without allocating and to be taken back.
///
/// Invariant: after a successful step `scratch` holds the `last_lr` of before it and
/// `prev_epoch`/`prev_step_count` the counters of before it, so that
/// [`undo`](Core::undo) restores the state exactly; `scratch` is otherwise only a buffer
/// (it is not state and is never written to a state dict).
#[derive(Debug, Clone)]
pub(crate) struct Core {
    pub(crate) base_lrs: Vec<f64>,
    pub(crate) last_epoch: i64,
    pub(crate) step_count: i64,
    pub(crate) last_lr: Vec<f64>,
    scratch: Vec<f64>,
    prev_epoch: i64,
    prev_step_count: i64,
}

/// The counters a step computes the lr for: `last_epoch` and `_step_count` as they are
/// after the step (PyTorch increments both before calling `get_lr`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct At {
    pub(crate) last_epoch: i64,
    pub(crate) step_count: i64,
}

impl Core {
    fn new(base_lrs: Vec<f64>, last_epoch: i64, step_count: i64, last_lr: Vec<f64>) -> Core {
        let n = base_lrs.len();
        Core {
            base_lrs,
            last_epoch,
            step_count,
            last_lr,
            scratch: Vec::with_capacity(n),
            prev_epoch: last_epoch,
            prev_step_count: step_count,
        }
    }

    /// The base constructor before its initial step. With `last_epoch == -1` (a fresh
    /// run) `initial_lr` is set with `setdefault` in every group and becomes `base_lrs`;
    /// otherwise every group must already carry `initial_lr` (PyTorch's `KeyError`; here
    /// [`SchedError::MissingGroupKey`]) and nothing is written. The counter is
    /// `last_epoch`, so that the initial step computes epoch `last_epoch + 1`.
    pub(crate) fn attach(
        opt: &mut dyn OptimizerParamGroups,
        scheduler: &'static str,
        last_epoch: i64,
    ) -> Result<Core, SchedError> {
        check_last_epoch(scheduler, last_epoch)?;
        let n = opt.num_groups();
        let mut base_lrs = Vec::with_capacity(n);
        for g in 0..n {
            let base = match opt.initial_lr(g) {
                Some(v) => v,
                None if last_epoch == -1 => {
                    let lr = opt.lr(g)?;
                    set_extra(opt, g, "initial_lr", Value::Float(lr))?;
                    lr
                }
                None => return Err(missing_group_key(scheduler, g, "initial_lr", last_epoch)),
            };
            base_lrs.push(base);
        }
        Ok(Core::new(base_lrs, last_epoch, 0, Vec::with_capacity(n)))
    }

    pub(crate) fn groups(&self) -> usize {
        self.base_lrs.len()
    }

    /// The counters of the next plain step.
    pub(crate) fn next_step(&self) -> At {
        At {
            last_epoch: self.last_epoch + 1,
            step_count: self.step_count + 1,
        }
    }

    /// The reusable lr buffer, emptied; hand it back with [`finish`](Core::finish).
    pub(crate) fn take_buffer(&mut self) -> Vec<f64> {
        let mut lrs = std::mem::take(&mut self.scratch);
        lrs.clear();
        // A no-op but after a clone, which copies only the buffer's length.
        lrs.reserve(self.base_lrs.len());
        lrs
    }

    /// Ends a step begun with [`take_buffer`](Core::take_buffer): if it succeeded
    /// (`ok`), `lrs` becomes `last_lr` and the counters `at` (the old ones are kept for
    /// [`undo`](Core::undo)); otherwise nothing changes.
    pub(crate) fn finish(&mut self, at: At, mut lrs: Vec<f64>, ok: bool) {
        if ok {
            self.prev_epoch = self.last_epoch;
            self.prev_step_count = self.step_count;
            self.last_epoch = at.last_epoch;
            self.step_count = at.step_count;
            std::mem::swap(&mut self.last_lr, &mut lrs);
        }
        self.scratch = lrs;
    }

    /// Computes the lrs with `fill` (given `base_lrs` and the emptied buffer), then
    /// [`finish`](Core::finish)es with its result.
    pub(crate) fn update(
        &mut self,
        at: At,
        fill: impl FnOnce(&[f64], &mut Vec<f64>) -> Result<(), SchedError>,
    ) -> Result<(), SchedError> {
        let mut lrs = self.take_buffer();
        let result = fill(&self.base_lrs, &mut lrs);
        self.finish(at, lrs, result.is_ok());
        result
    }

    /// Takes back the last successful [`update`](Core::update).
    pub(crate) fn undo(&mut self) {
        std::mem::swap(&mut self.last_lr, &mut self.scratch);
        self.last_epoch = self.prev_epoch;
        self.step_count = self.prev_step_count;
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
        Ok(Core::new(base_lrs, last_epoch, step_count, last_lr))
    }
}

/// PyTorch's default `last_epoch`: a fresh run.
pub(crate) fn fresh_run() -> i64 {
    -1
}

/// `Err` unless `last_epoch` is -1 (a fresh run) or an epoch `>= 0` whose next epoch
/// exists. (PyTorch takes any int; below -1 its schedules compute nonsense.)
pub(crate) fn check_last_epoch(scheduler: &'static str, last_epoch: i64) -> Result<(), SchedError> {
    if (-1..i64::MAX / 2).contains(&last_epoch) {
        Ok(())
    } else {
        Err(invalid(
            scheduler,
            "last_epoch",
            "-1 (a fresh run) or the epoch to resume at (>= 0)",
            last_epoch,
        ))
    }
}

/// The `Err` for a group that lacks `key`, which a scheduler built with `last_epoch`
/// (not -1) reads instead of writing it.
pub(crate) fn missing_group_key(
    scheduler: &'static str,
    group: usize,
    key: &'static str,
    last_epoch: i64,
) -> SchedError {
    SchedError::MissingGroupKey {
        scheduler,
        group,
        key,
        last_epoch,
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
    let mut lrs = Vec::with_capacity(opt.num_groups());
    read_lrs(opt, &mut lrs)?;
    Ok(lrs)
}

/// Appends each group's current lr to `out` (which a caller reuses, so a step allocates
/// nothing).
pub(crate) fn read_lrs(
    opt: &dyn OptimizerParamGroups,
    out: &mut Vec<f64>,
) -> Result<(), SchedError> {
    Ok(opt.lrs_into(out)?)
}

pub(crate) fn write_lrs(opt: &mut dyn OptimizerParamGroups, lrs: &[f64]) -> Result<(), SchedError> {
    Ok(opt.set_lrs(lrs)?)
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

/// Writes momentum to `betas[0]` (`use_beta1`, keeping the rest of `betas`, written back
/// as a tuple) or `momentum`, as CyclicLR/OneCycleLR do.
///
/// For `betas`, a group whose [`OptimizerParamGroups::momentum_key`] is `Beta1` (it has
/// `betas`) goes through [`OptimizerParamGroups::set_momentum`], which writes `betas[0]`
/// of a pair in place, exactly as the general path below does, and fails (changing
/// nothing) on anything else (`betas` that is not a pair). Then, and for a group without
/// `betas`, the general path decides, so the outcome is always that of reading, editing
/// and writing `betas`.
pub(crate) fn write_momentum(
    opt: &mut dyn OptimizerParamGroups,
    group: usize,
    use_beta1: bool,
    momentum: f64,
) -> Result<(), SchedError> {
    if !use_beta1 {
        opt.set_f64(group, "momentum", momentum)?;
        return Ok(());
    }
    // `set_momentum` writes `betas[0]` of a pair when the group has `betas` (and
    // `momentum` when it has only that, which is not what `use_beta1` asks).
    if opt.get(group, "betas").is_some() && opt.set_momentum(group, momentum).is_ok() {
        return Ok(());
    }
    let betas = opt.get(group, "betas").cloned().unwrap_or_default();
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
    Ok(())
}

/// `f64::cos` that keeps its last argument and value, for a recursive rule that needs
/// the cosine at this step and at the last one (CosineAnnealingLR, SWALR): each is
/// computed once. The value for an argument is always `x.cos()`, bit for bit. Not state.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CosMemo {
    last: Option<(u64, f64)>,
}

impl CosMemo {
    pub(crate) fn cos(&mut self, x: f64) -> f64 {
        match self.last {
            Some((bits, c)) if bits == x.to_bits() => c,
            _ => {
                let c = x.cos();
                self.last = Some((x.to_bits(), c));
                c
            }
        }
    }
}

/// A scheduler derived from PyTorch's `LRScheduler`: its own rule on top of [`Core`].
pub(crate) trait Rule: Clone + Send + Sync + 'static {
    const NAME: &'static str;

    fn core(&self) -> &Core;
    fn core_mut(&mut self) -> &mut Core;

    /// PyTorch's `get_lr()` at `at` (the counters after the step), pushing one lr per
    /// group onto the empty `out`; `initial` is `_is_initial`. May write momentum into
    /// the groups, as PyTorch's does. Reads the groups' lrs before computing anything
    /// from them. `&mut self` only for caches that are not state (a [`CosMemo`]).
    fn get_lr(
        &mut self,
        at: At,
        opt: &mut dyn OptimizerParamGroups,
        initial: bool,
        out: &mut Vec<f64>,
    ) -> Result<(), SchedError>;

    /// PyTorch's `_get_closed_form_lr()` at `epoch`, for the classes that define it:
    /// pushes one lr per group onto the empty `out` and returns `true`; `false` (and
    /// `out` untouched) for the others.
    fn closed_form(&self, base_lrs: &[f64], epoch: i64, out: &mut Vec<f64>) -> bool {
        let _ = (base_lrs, epoch, out);
        false
    }

    /// The lr after `step` steps, without an optimizer.
    fn lr_at(&self, step: u64) -> Option<Vec<f64>> {
        let epoch = i64::try_from(step).ok()?;
        let base_lrs = &self.core().base_lrs;
        let mut out = Vec::with_capacity(base_lrs.len());
        self.closed_form(base_lrs, epoch, &mut out).then_some(out)
    }

    /// Whether a step may write the groups' momentum (or `betas`).
    fn writes_momentum(&self) -> bool {
        false
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

/// One update of the lrs at `at`: validate the group count, compute into the core's
/// buffer (the closed form if asked and defined, else `get_lr`), write the groups, then
/// commit the core. On error the scheduler is unchanged.
fn apply<R: Rule>(
    s: &mut R,
    opt: &mut dyn OptimizerParamGroups,
    at: At,
    initial: bool,
    closed_form: bool,
) -> Result<(), SchedError> {
    check_groups(s.core().groups(), opt)?;
    let mut lrs = s.core_mut().take_buffer();
    let result = compute(s, opt, at, initial, closed_form, &mut lrs);
    s.core_mut().finish(at, lrs, result.is_ok());
    result
}

fn compute<R: Rule>(
    s: &mut R,
    opt: &mut dyn OptimizerParamGroups,
    at: At,
    initial: bool,
    closed_form: bool,
    lrs: &mut Vec<f64>,
) -> Result<(), SchedError> {
    if !(closed_form && s.closed_form(&s.core().base_lrs, at.last_epoch, lrs)) {
        s.get_lr(at, opt, initial, lrs)?;
    }
    write_lrs(opt, lrs)
}

pub(crate) fn step<R: Rule>(
    s: &mut R,
    opt: &mut dyn OptimizerParamGroups,
) -> Result<(), SchedError> {
    let at = s.core().next_step();
    apply(s, opt, at, false, false)
}

pub(crate) fn initial_step<R: Rule>(
    s: &mut R,
    opt: &mut dyn OptimizerParamGroups,
) -> Result<(), SchedError> {
    let at = At {
        last_epoch: s.core().last_epoch + 1,
        step_count: 1,
    };
    apply(s, opt, at, true, false)
}

pub(crate) fn restart_at<R: Rule>(
    s: &mut R,
    opt: &mut dyn OptimizerParamGroups,
    epoch: i64,
) -> Result<(), SchedError> {
    let at = At {
        last_epoch: epoch,
        step_count: s.core().step_count,
    };
    apply(s, opt, at, false, true)
}

pub(crate) fn step_to_epoch<R: Rule>(
    s: &mut R,
    opt: &mut dyn OptimizerParamGroups,
    epoch: f64,
) -> Result<(), SchedError> {
    let e = whole_epoch(R::NAME, epoch)?;
    let at = At {
        last_epoch: e,
        step_count: s.core().step_count + 1,
    };
    apply(s, opt, at, false, true)
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

/// Implements [`LRScheduler`](crate::LRScheduler) for a [`Rule`].
macro_rules! leaf_scheduler {
    ($t:ty) => {
        impl $crate::LRScheduler for $t {
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
            fn clone_box(&self) -> Box<dyn $crate::LRScheduler> {
                Box::new(self.clone())
            }
            fn undo_epoch(&mut self) {
                $crate::base::Rule::core_mut(self).last_epoch -= 1;
            }
            fn undo_step(&mut self) {
                $crate::base::Rule::core_mut(self).undo();
            }
            fn writes_momentum(&self) -> bool {
                $crate::base::Rule::writes_momentum(self)
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
