//! `NnError`: errors from layers, losses and module state dicts.

use tempo_tensor::TensorError;
use thiserror::Error;

/// Errors from layers, losses and state dicts.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum NnError {
    /// A tensor op failed (mismatched shapes, ...).
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// A state dict's keys are not the module's (strict loading, like PyTorch).
    #[error("state dict keys do not match the module: missing keys {missing:?}, unexpected keys {unexpected:?}")]
    KeyMismatch {
        /// Parameters of the module that the state dict lacks.
        missing: Vec<String>,
        /// Entries of the state dict that the module does not have.
        unexpected: Vec<String>,
    },
    /// A state dict entry's shape is not the parameter's.
    #[error("size mismatch for {key}: the module's parameter has shape {expected:?}, the state dict's has shape {found:?}")]
    ShapeMismatch {
        /// The parameter's dotted name.
        key: String,
        /// The module's shape.
        expected: Vec<usize>,
        /// The state dict's shape.
        found: Vec<usize>,
    },
    /// A name used twice (children of a `Sequential`, keys of a state dict).
    #[error("duplicate name {name:?}")]
    DuplicateName {
        /// The repeated name.
        name: String,
    },
    /// A child name that cannot form a dotted parameter path.
    #[error("invalid module name {name:?}: expected a non-empty name without '.'")]
    InvalidName {
        /// The name given.
        name: String,
    },
    /// A layer built from arrays of inconsistent shapes.
    #[error("{what}: expected shape {expected:?}, found {found:?}")]
    BadShape {
        /// Which array.
        what: &'static str,
        /// The shape needed.
        expected: Vec<usize>,
        /// The shape given.
        found: Vec<usize>,
    },
}
