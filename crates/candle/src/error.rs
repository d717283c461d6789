//! The one error type of tempo-candle.

use thiserror::Error;

/// Everything that can go wrong when building, stepping, scheduling or checkpointing a
/// candle model with tempo.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CandleError {
    /// A parameter name that the `VarMap` does not hold.
    #[error("no variable named `{name}` (the VarMap holds: {known})")]
    UnknownName {
        /// The name asked for.
        name: String,
        /// The names the map holds, sorted, comma separated.
        known: String,
    },
    /// A name listed twice in a parameter order.
    #[error("parameter `{name}` is listed twice (positions {first} and {second})")]
    DuplicateName {
        /// The name.
        name: String,
        /// Its first position.
        first: usize,
        /// Its second position.
        second: usize,
    },
    /// A variable of the `VarMap` that the parameter order leaves out.
    #[error("the VarMap's variable `{name}` is not in the parameter order (list every variable, or select a subset explicitly)")]
    Unlisted {
        /// The name.
        name: String,
    },
    /// A group rule that matches no parameter.
    #[error("param group {group}: `{pattern}` matches no parameter")]
    MatchesNothing {
        /// The group.
        group: usize,
        /// The pattern (or `<predicate>`).
        pattern: String,
    },
    /// A parameter that two group rules match.
    #[error("parameter `{name}` is matched by param group {first} and by param group {second}")]
    MatchedTwice {
        /// The parameter.
        name: String,
        /// The first group that matches it.
        first: usize,
        /// The second.
        second: usize,
    },
    /// A parameter that no group rule matches (and there is no `rest` group).
    #[error("parameter `{name}` is in no param group (add a rule that matches it, or GroupRule::rest())")]
    Unassigned {
        /// The parameter.
        name: String,
    },
    /// A variable of a dtype or device tempo does not step or save.
    #[error("`{name}`: {reason}")]
    Unsupported {
        /// The variable.
        name: String,
        /// What is wrong and what is supported.
        reason: String,
    },
    /// A checkpoint's model does not fit the candle model.
    #[error("checkpoint does not fit the model: {reason}")]
    ModelMismatch {
        /// Which name or shape differs, expected and found.
        reason: String,
    },
    /// From candle.
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    /// From tempo's optimizers.
    #[error(transparent)]
    Optim(#[from] tempo_optim::OptimError),
    /// From tempo's schedulers.
    #[error(transparent)]
    Sched(#[from] tempo_sched::SchedError),
    /// From tempo's checkpoints.
    #[error(transparent)]
    Ckpt(#[from] tempo_ckpt::CkptError),
    /// From the scheduler seam.
    #[error(transparent)]
    ParamGroup(#[from] tempo_param_groups::ParamGroupError),
}

impl From<CandleError> for candle_core::Error {
    /// For `impl candle_nn::Optimizer`, whose methods return candle's error.
    fn from(e: CandleError) -> Self {
        match e {
            CandleError::Candle(e) => e,
            other => candle_core::Error::Msg(other.to_string()),
        }
    }
}
