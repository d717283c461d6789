//! The `LRScheduler` trait every scheduler, preset and composite implements.

use tempo_param_groups::{Dict, OptimizerParamGroups};

use crate::SchedError;

/// A learning-rate scheduler: what every tempo scheduler, preset and composite does.
///
/// A scheduler borrows the optimizer's param groups only while it writes them: at
/// construction (`X::new(&mut opt, config)`) and at each [`step`](Self::step). It keeps no
/// reference in between, so the training loop reads
///
/// ```text
/// optimizer.step(); scheduler.step(&mut optimizer)?;
/// ```
///
/// The trait is object-safe: composites hold `Box<dyn LRScheduler>` children and
/// [`build_scheduler`](crate::build_scheduler) returns one.
pub trait LRScheduler: Send {
    /// One scheduler step (PyTorch's `scheduler.step()`): advance the epoch and write each
    /// group's new `lr` (and momentum, for CyclicLR/OneCycleLR with `cycle_momentum`).
    ///
    /// ReduceLROnPlateau (and a composite whose active child is one) returns
    /// [`SchedError::MetricRequired`]. On error nothing is changed.
    ///
    /// A step allocates nothing once the scheduler has stepped (its buffers are sized
    /// at construction), beyond what `opt`'s own accessors do; the one exception is a
    /// [`ChainedScheduler`](crate::ChainedScheduler) with a child that cycles
    /// `betas[0]`, which keeps a copy of each group's `betas` for its rollback.
    fn step(&mut self, opt: &mut dyn OptimizerParamGroups) -> Result<(), SchedError>;

    /// One step with a validation metric (PyTorch's `ReduceLROnPlateau.step(metrics)`).
    ///
    /// Schedulers that do not use a metric ignore it and do a plain [`step`](Self::step),
    /// so a composite can pass the metric down to every child.
    fn step_with_metric(
        &mut self,
        opt: &mut dyn OptimizerParamGroups,
        metric: f64,
    ) -> Result<(), SchedError> {
        let _ = metric;
        self.step(opt)
    }

    /// PyTorch's deprecated `step(epoch)`: jump to `epoch`, using the closed form where the
    /// scheduler has one (else the recursive rule, as PyTorch does).
    ///
    /// CosineAnnealingWarmRestarts accepts fractional epochs; the other schedulers need a
    /// whole, non-negative epoch, and composites and ReduceLROnPlateau refuse
    /// ([`SchedError::InvalidEpoch`]).
    fn step_to_epoch(
        &mut self,
        opt: &mut dyn OptimizerParamGroups,
        epoch: f64,
    ) -> Result<(), SchedError>;

    /// The lr of each group after the last step (PyTorch's `get_last_lr()`).
    fn last_lr(&self) -> &[f64];

    /// The scheduler's state, with PyTorch's keys, value types and key order.
    fn state_dict(&self) -> Dict;

    /// Restores a state produced by [`state_dict`](Self::state_dict) here or by PyTorch.
    ///
    /// Unlike PyTorch's `__dict__.update`, the state is validated (keys of this scheduler
    /// kind, value types, one value per group); on error nothing is changed. Like PyTorch,
    /// it does not write the optimizer's groups: their values come back with the
    /// optimizer's state. The scheduler's own state carries its base values, so groups
    /// without `initial_lr` resume fine.
    fn load_state_dict(&mut self, state: &Dict) -> Result<(), SchedError>;

    /// The PyTorch class name (`"CyclicLR"`), or the preset's name.
    fn name(&self) -> &'static str;

    /// The closed form: each group's lr after `step` steps (`step == 0` is the lr set at
    /// construction), computed from the scheduler's base values without touching any
    /// optimizer. `step` counts epochs from a fresh start: a scheduler built with
    /// `last_epoch = k` is at epoch `k + 1` after its construction. `None` for schedulers without one (ReduceLROnPlateau, SWALR,
    /// ChainedScheduler, SequentialLR with a child that has none) and past OneCycleLR's
    /// `total_steps`.
    fn lr_at(&self, step: u64) -> Option<Vec<f64>>;

    /// A boxed copy of the scheduler in its current state (closures are shared).
    fn clone_box(&self) -> Box<dyn LRScheduler>;

    /// Composition: whether the next [`step`](Self::step) needs a metric.
    fn needs_metric(&self) -> bool {
        false
    }

    /// Composition (SequentialLR's construction): take back the epoch the constructor
    /// counted (PyTorch's `recursive_undo`: `last_epoch -= 1` on every leaf).
    fn undo_epoch(&mut self);

    /// Composition (ChainedScheduler's rollback when a later child fails): take back the
    /// last successful [`step`](Self::step), [`step_with_metric`](Self::step_with_metric),
    /// [`initial_step`](Self::initial_step) or [`restart_at`](Self::restart_at), so that
    /// the scheduler's state is exactly what it was before that call. The groups are not
    /// touched (the caller restores them). Valid once after such a successful call, and
    /// only then; it allocates nothing.
    fn undo_step(&mut self);

    /// Composition: whether a step may write the groups' momentum (`momentum` or
    /// `betas`) besides their `lr` (CyclicLR and OneCycleLR with `cycle_momentum`, and a
    /// composite holding one), so that ChainedScheduler knows which values to keep for a
    /// rollback.
    fn writes_momentum(&self) -> bool;

    /// Composition (SequentialLR's construction): redo the constructor's initial step
    /// (PyTorch's `_initial_step`) on the current group values.
    fn initial_step(&mut self, opt: &mut dyn OptimizerParamGroups) -> Result<(), SchedError>;

    /// Composition (SequentialLR at a milestone): set the epoch to `epoch` and write the
    /// closed-form lr there, or the recursive rule's if there is none (PyTorch's
    /// `_update_lr(epoch)`), without counting a step.
    fn restart_at(
        &mut self,
        opt: &mut dyn OptimizerParamGroups,
        epoch: i64,
    ) -> Result<(), SchedError>;
}

impl Clone for Box<dyn LRScheduler> {
    fn clone(&self) -> Self {
        self.clone_box()
    }
}
