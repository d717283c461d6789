//! `ParamGroupError`: what can go wrong reading or writing a param group.

use thiserror::Error;

/// What can go wrong when a scheduler reads or writes a param group.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum ParamGroupError {
    /// The group index is out of range.
    #[error("param group {group} does not exist (the optimizer has {groups} groups)")]
    NoSuchGroup {
        /// The index that was asked for.
        group: usize,
        /// How many groups the optimizer has.
        groups: usize,
    },
    /// The group has no hyperparameter of that name.
    #[error("param group {group} has no key `{key}`")]
    MissingKey {
        /// The group index.
        group: usize,
        /// The key that was asked for.
        key: String,
    },
    /// The optimizer does not accept a hyperparameter of that name.
    #[error("param group {group} does not accept the key `{key}`")]
    UnknownKey {
        /// The group index.
        group: usize,
        /// The key that was written.
        key: String,
    },
    /// The value has the wrong type for the key.
    #[error("`{key}` must be {expected}, found {found}")]
    WrongType {
        /// The key.
        key: String,
        /// What was expected, e.g. "a number".
        expected: &'static str,
        /// The type that was found.
        found: &'static str,
    },
    /// The group has neither `momentum` nor `betas`, so momentum cannot be cycled.
    #[error(
        "param group {group} has neither `momentum` nor `betas`: momentum cannot be read or cycled"
    )]
    NoMomentum {
        /// The group index.
        group: usize,
    },
}
