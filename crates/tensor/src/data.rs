//! `TensorData`: an owned array whose element type is known at run time.

use ndarray::ArrayD;

use crate::{DType, Float, TensorError};

/// An owned n-dimensional array whose element type is known only at run time: what
/// state dicts and checkpoints hold, where f32 and f64 tensors sit side by side.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// f32 elements.
    F32(ArrayD<f32>),
    /// f64 elements.
    F64(ArrayD<f64>),
}

impl TensorData {
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::F32(_) => DType::F32,
            TensorData::F64(_) => DType::F64,
        }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            TensorData::F32(a) => a.shape(),
            TensorData::F64(a) => a.shape(),
        }
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(a) => a.len(),
            TensorData::F64(a) => a.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The array, if it holds elements of type `T`; errs naming both dtypes otherwise.
    pub fn into_array<T: Float>(self) -> Result<ArrayD<T>, TensorError> {
        T::from_tensor_data(self)
    }

    /// Wraps an array of any float element type.
    pub fn from_array<T: Float>(a: ArrayD<T>) -> Self {
        T::into_tensor_data(a)
    }

    /// The elements in row-major order, widened to f64.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match self {
            TensorData::F32(a) => a.iter().map(|&v| v as f64).collect(),
            TensorData::F64(a) => a.iter().copied().collect(),
        }
    }
}

impl From<ArrayD<f32>> for TensorData {
    fn from(a: ArrayD<f32>) -> Self {
        TensorData::F32(a)
    }
}

impl From<ArrayD<f64>> for TensorData {
    fn from(a: ArrayD<f64>) -> Self {
        TensorData::F64(a)
    }
}
