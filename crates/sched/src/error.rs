//! [`SchedError`]: what can go wrong in this crate.

use tempo_param_groups::ParamGroupError;
use thiserror::Error;

/// Everything that can go wrong when building, stepping or restoring a scheduler.
///
/// Where PyTorch raises `ValueError`, `KeyError` or `ZeroDivisionError` (sometimes only
/// many steps later), tempo returns one of these, as early as it can tell.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum SchedError {
    /// Reading or writing a param group failed.
    #[error(transparent)]
    ParamGroup(#[from] ParamGroupError),
    /// A constructor argument is out of its domain.
    #[error("{scheduler}: `{arg}` must be {expected}, found {found}")]
    InvalidArgument {
        /// The scheduler's PyTorch class name.
        scheduler: &'static str,
        /// The argument's PyTorch name.
        arg: &'static str,
        /// What was expected.
        expected: &'static str,
        /// The value that was given.
        found: String,
    },
    /// A per-group list (or a state list) has the wrong length.
    #[error("`{arg}` has {got} values, expected one per param group ({expected})")]
    GroupCountMismatch {
        /// The argument or state key.
        arg: String,
        /// The number of param groups.
        expected: usize,
        /// The number of values found.
        got: usize,
    },
    /// A scheduler built with `last_epoch >= 0` (resuming) found a group without a key
    /// it reads instead of writing (PyTorch's `KeyError`): `initial_lr` for every
    /// scheduler; OneCycleLR also reads `max_lr`, `min_lr` and its momentum bounds.
    #[error(
        "{scheduler} with last_epoch = {last_epoch}: param group {group} has no `{key}`, which a \
         resumed scheduler reads instead of writing. Load the optimizer's state dict (saved \
         from the run being resumed; it holds `{key}`) before building the scheduler, or set \
         `{key}` in the group yourself, or build with last_epoch = -1 for a fresh run"
    )]
    MissingGroupKey {
        /// The scheduler's PyTorch class name.
        scheduler: &'static str,
        /// The index of the group that lacks the key.
        group: usize,
        /// The missing key (`initial_lr`, ...).
        key: &'static str,
        /// The `last_epoch` the scheduler was built with.
        last_epoch: i64,
    },
    /// SequentialLR reached the milestone of a child that is itself a composite: PyTorch
    /// restarts the child with `_update_lr(0)`, which a SequentialLR or ChainedScheduler
    /// does not have (`NotImplementedError`).
    #[error(
        "SequentialLR: at milestone {milestone} the next child is a {child}, which cannot be \
         restarted (PyTorch raises NotImplementedError here); only the first child of a \
         SequentialLR may be a composite"
    )]
    CompositeAtMilestone {
        /// The nested composite's class name.
        child: &'static str,
        /// The milestone (the outer SequentialLR's epoch).
        milestone: i64,
    },
    /// OneCycleLR was stepped past `total_steps`.
    #[error("OneCycleLR: tried to step {step} times, but total_steps is {total_steps}")]
    PastTotalSteps {
        /// The step that was attempted.
        step: i64,
        /// The configured number of steps.
        total_steps: i64,
    },
    /// A schedule phase of zero length would be divided by (PyTorch: ZeroDivisionError).
    #[error("{scheduler}: {what} is zero, so the schedule divides by zero")]
    DivisionByZero {
        /// The scheduler's PyTorch class name.
        scheduler: &'static str,
        /// What is zero.
        what: &'static str,
    },
    /// `step` was called without a metric on a scheduler that needs one (ReduceLROnPlateau).
    #[error("{scheduler} needs a metric: call step_with_metric instead of step")]
    MetricRequired {
        /// The scheduler's PyTorch class name.
        scheduler: &'static str,
    },
    /// `step_to_epoch` was called with an epoch this scheduler cannot jump to.
    #[error("{scheduler}: cannot step to epoch {epoch}: {reason}")]
    InvalidEpoch {
        /// The scheduler's PyTorch class name.
        scheduler: &'static str,
        /// The requested epoch.
        epoch: f64,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A state dict lacks a key this scheduler needs.
    #[error("{scheduler} state dict: missing key `{key}`")]
    StateMissingKey {
        /// The scheduler's PyTorch class name.
        scheduler: &'static str,
        /// The missing key.
        key: String,
    },
    /// A state dict has a key this scheduler does not know (it is another scheduler's).
    #[error("{scheduler} state dict: unexpected key `{key}` (is it another scheduler's state?)")]
    StateUnexpectedKey {
        /// The scheduler's PyTorch class name.
        scheduler: &'static str,
        /// The unknown key.
        key: String,
    },
    /// A state dict value has the wrong type or an invalid value.
    #[error("{scheduler} state dict: `{key}` must be {expected}, found {found}")]
    StateWrongType {
        /// The scheduler's PyTorch class name.
        scheduler: &'static str,
        /// The key.
        key: String,
        /// What was expected.
        expected: &'static str,
        /// What was found.
        found: String,
    },
    /// A spec names a scheduler tempo does not have.
    #[error("unknown scheduler `{name}`")]
    UnknownScheduler {
        /// The name in the spec.
        name: String,
    },
    /// A spec's kwargs do not fit the scheduler's config.
    #[error("{scheduler}: invalid arguments: {reason}")]
    InvalidSpec {
        /// The scheduler named in the spec.
        scheduler: String,
        /// What is wrong (names the argument).
        reason: String,
    },
    /// A Python-call-like scheduler string could not be parsed.
    #[error("cannot parse scheduler call at byte {position}: expected {expected}, found {found}")]
    Parse {
        /// Byte offset in the input.
        position: usize,
        /// What the parser expected.
        expected: &'static str,
        /// What it found.
        found: String,
    },
}
