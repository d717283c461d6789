//! Element types: the run-time `DType` tag and the `Float` trait for f32/f64.

use std::fmt::{Debug, Display};

use ndarray::ArrayD;

use crate::{TensorData, TensorError};

/// The element type of a tensor, as a runtime tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float (PyTorch's `torch.float32`, its default).
    F32,
    /// 64-bit float (`torch.float64`).
    F64,
}

impl DType {
    /// PyTorch's name: `float32` or `float64`.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F64 => "float64",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F64 => 8,
        }
    }
}

/// A float element type: `f32` or `f64`.
///
/// Scalars that PyTorch keeps as Python floats (learning rates, bias corrections) stay
/// `f64` in tempo and meet a tensor through [`Float::from_f64`], which rounds once, as
/// PyTorch does where a Python scalar meets an f32 tensor.
pub trait Float:
    ndarray::LinalgScalar
    + ndarray::ScalarOperand
    + num_traits::Float
    + num_traits::FromPrimitive
    + std::ops::AddAssign
    + std::ops::SubAssign
    + std::ops::MulAssign
    + std::ops::DivAssign
    + std::iter::Sum
    + Default
    + Debug
    + Display
    + Send
    + Sync
    + 'static
{
    /// The runtime tag of this type.
    const DTYPE: DType;
    /// Rounds an f64 to this type (round to nearest even).
    fn from_f64(v: f64) -> Self;
    /// Widens to f64 (exact).
    fn to_f64(self) -> f64;
    /// Wraps an array of this type as dtype-tagged [`TensorData`].
    fn into_tensor_data(a: ArrayD<Self>) -> TensorData;
    /// Unwraps [`TensorData`] of this dtype; errs (naming both dtypes) on another dtype.
    fn from_tensor_data(d: TensorData) -> Result<ArrayD<Self>, TensorError>;
}

impl Float for f32 {
    const DTYPE: DType = DType::F32;
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn into_tensor_data(a: ArrayD<Self>) -> TensorData {
        TensorData::F32(a)
    }
    fn from_tensor_data(d: TensorData) -> Result<ArrayD<Self>, TensorError> {
        match d {
            TensorData::F32(a) => Ok(a),
            other => Err(TensorError::DType {
                expected: DType::F32,
                found: other.dtype(),
            }),
        }
    }
}

impl Float for f64 {
    const DTYPE: DType = DType::F64;
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    fn into_tensor_data(a: ArrayD<Self>) -> TensorData {
        TensorData::F64(a)
    }
    fn from_tensor_data(d: TensorData) -> Result<ArrayD<Self>, TensorError> {
        match d {
            TensorData::F64(a) => Ok(a),
            other => Err(TensorError::DType {
                expected: DType::F64,
                found: other.dtype(),
            }),
        }
    }
}
