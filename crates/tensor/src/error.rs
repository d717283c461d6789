use thiserror::Error;

/// Errors from tensor construction and operations.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum TensorError {
    /// The data does not fill the shape.
    #[error("shape {shape:?} needs {expected} elements, found {found}")]
    ElementCount {
        /// The requested shape.
        shape: Vec<usize>,
        /// Elements the shape needs.
        expected: usize,
        /// Elements given.
        found: usize,
    },
    /// Two shapes that must agree do not.
    #[error("shape mismatch in {op}: {left:?} vs {right:?}")]
    ShapeMismatch {
        /// The operation.
        op: &'static str,
        /// The left operand's shape.
        left: Vec<usize>,
        /// The right operand's shape.
        right: Vec<usize>,
    },
    /// `backward` was called on something that cannot start a backward pass.
    #[error("backward: {0}")]
    Backward(String),
}
