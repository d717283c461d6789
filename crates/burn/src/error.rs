//! [`BurnError`]: everything that can go wrong between tempo and burn.

use tempo_optim::OptimError;
use tempo_param_groups::ParamGroupError;
use tempo_sched::SchedError;

/// An error of tempo-burn: a tempo error, or a mismatch between tempo and burn.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BurnError {
    /// A scheduler error from tempo-sched (a bad argument, a bad state, ...).
    #[error(transparent)]
    Sched(#[from] SchedError),
    /// An optimizer error from tempo-optim (a bad hyperparameter, a bad state, ...).
    #[error(transparent)]
    Optim(#[from] OptimError),
    /// A param-group error from tempo-param-groups.
    #[error(transparent)]
    ParamGroup(#[from] ParamGroupError),
    /// The scheduler cycles momentum, and the group it would write belongs to one of
    /// burn's own optimizers, which keep their momentum where no scheduler can reach it.
    #[error(
        "{scheduler} cycles momentum (cycle_momentum=True), which burn's own optimizers do \
         not expose to a scheduler: schedule a tempo optimizer (TempoOptimizer) for group \
         {group}, or set cycle_momentum=False"
    )]
    MomentumNotReachable {
        /// The scheduler's name.
        scheduler: &'static str,
        /// The group whose momentum would be cycled.
        group: usize,
    },
    /// A scheduler was built for a number of groups other than the one given.
    #[error("expected {expected} {what}, found {found}")]
    CountMismatch {
        /// What was counted (`"parameter groups"`, `"burn parameter groups"`).
        what: &'static str,
        /// The expected count.
        expected: usize,
        /// The count found.
        found: usize,
    },
    /// A burn record that tempo-burn cannot read: not written by tempo-burn, truncated,
    /// or of another scheduler or optimizer.
    #[error("bad {what} record: {reason}")]
    BadRecord {
        /// Which record (`"scheduler"`, `"optimizer state"`).
        what: &'static str,
        /// What was expected and what was found.
        reason: String,
    },
    /// A tensor of a dtype tempo's optimizers do not step (they step f32 and f64).
    #[error("tempo optimizers step f32 and f64 parameters, found a {dtype} parameter")]
    UnsupportedDType {
        /// burn's name of the dtype found.
        dtype: String,
    },
    /// burn could not read a tensor back from its device.
    #[error("reading a burn tensor failed: {reason}")]
    TensorRead {
        /// burn's message.
        reason: String,
    },
}
