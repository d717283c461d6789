//! `TensorError`: errors from tensors, their operations and backward passes.

use thiserror::Error;

use crate::DType;

/// Errors from tensor construction, operations, backward passes and the random generator.
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
    /// An op needs a tensor with a single element (or a 0-d tensor).
    #[error("{op} needs a one-element tensor, found shape {shape:?}")]
    NotScalar {
        /// The operation.
        op: &'static str,
        /// The shape found.
        shape: Vec<usize>,
    },
    /// An axis argument does not exist for the tensor's rank.
    #[error("{op}: axis {axis} out of range for a tensor of rank {ndim}")]
    AxisOutOfRange {
        /// The operation.
        op: &'static str,
        /// The requested axis.
        axis: usize,
        /// The tensor's number of dimensions.
        ndim: usize,
    },
    /// An index (row, class label, ...) is past the end of its axis.
    #[error("{op}: index {index} out of range for an axis of length {len}")]
    IndexOutOfRange {
        /// The operation.
        op: &'static str,
        /// The index found.
        index: usize,
        /// The axis length.
        len: usize,
    },
    /// The tensor's rank is not one the op supports.
    #[error("{op} expects {expected}, found shape {shape:?}")]
    Rank {
        /// The operation.
        op: &'static str,
        /// What the op accepts, e.g. "a 2-d tensor".
        expected: &'static str,
        /// The shape found.
        shape: Vec<usize>,
    },
    /// A value of the wrong element type.
    #[error("expected dtype {expected}, found {found}")]
    DType {
        /// The dtype needed.
        expected: DType,
        /// The dtype found.
        found: DType,
    },
    /// An argument outside its domain (an empty range, a saved generator state of the
    /// wrong size, ...).
    #[error("{op}: {reason}")]
    InvalidArgument {
        /// The operation.
        op: &'static str,
        /// What was expected and what was found.
        reason: String,
    },
}
