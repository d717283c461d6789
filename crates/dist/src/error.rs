//! The errors of tempo-dist.

use tempo_optim::OptimError;
use tempo_param_groups::ParamGroupError;
use tempo_tensor::TensorError;

/// What went wrong in a distributed step, check, save or load.
///
/// Every error that involves another rank is raised on every rank alike (the ranks agree
/// on the outcome before returning), so no rank is left waiting for the others.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DistError {
    /// The wrapped optimizer failed on this rank.
    #[error(transparent)]
    Optim(#[from] OptimError),
    /// A param group read or write failed (a missing group or key, a wrong type).
    #[error(transparent)]
    ParamGroup(#[from] ParamGroupError),
    /// A tensor operation failed (a gradient of the wrong shape, ...).
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// The optimizer cannot be sharded (it needs every parameter at once).
    #[error("{name} cannot be sharded across ranks: it is not elementwise (it needs all parameters at once); use an elementwise optimizer such as SGD or AdamW")]
    NotElementwise {
        /// PyTorch's class name of the refused optimizer.
        name: String,
    },
    /// Flat sharding was asked for an optimizer whose update needs whole tensors.
    #[error("{name} cannot be sharded by ranges of elements (Sharding::Flat): its update needs whole tensors; use Sharding::WholeParameters (the default), which steps each parameter on one rank")]
    FlatNotElementwise {
        /// PyTorch's class name of the refused optimizer.
        name: String,
    },
    /// A rank disagrees with rank 0 about something every rank must share.
    #[error("rank {rank} disagrees with rank 0 about {what}: rank 0 has {expected}, rank {rank} has {found}")]
    RankMismatch {
        /// The first disagreeing rank.
        rank: usize,
        /// What they disagree about (`"the parameters"`, `"the param groups"`, ...).
        what: String,
        /// Rank 0's value.
        expected: String,
        /// The disagreeing rank's value.
        found: String,
    },
    /// Another rank failed, so this one stops too.
    #[error("rank {rank} failed during {during}{}; every rank stops", if message.is_empty() { String::new() } else { format!(": {message}") })]
    PeerFailed {
        /// The first rank that failed.
        rank: usize,
        /// The collective operation it failed in (`"the optimizer step"`, ...).
        during: String,
        /// Its error, when it could be told.
        message: String,
    },
    /// A rank left the group (its process or thread ended) during a collective.
    #[error("rank {rank} left during {during}; every rank stops")]
    RankLost {
        /// The rank that left.
        rank: usize,
        /// The collective operation that noticed.
        during: &'static str,
    },
    /// A state received from another rank could not be decoded.
    #[error("a state message from rank {rank} is malformed: {reason}")]
    Malformed {
        /// The sending rank.
        rank: usize,
        /// What was wrong.
        reason: String,
    },
    /// A bad argument (a rank out of range, a zero bucket size, ...).
    #[error("invalid {what}: expected {expected}, found {found}")]
    InvalidArgument {
        /// The argument.
        what: &'static str,
        /// What it must be.
        expected: String,
        /// What it was.
        found: String,
    },
    /// MPI could not be started or used.
    #[error("MPI: {message}")]
    Mpi {
        /// What failed.
        message: String,
    },
}
