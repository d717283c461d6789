//! Element types: the run-time `DType` tag and the `Float` trait for f32/f64.

use std::fmt::{Debug, Display};

use ndarray::ArrayD;

use crate::{TensorData, TensorError};

/// Declares the dtypes once: variant, bytes per element, PyTorch's name, doc line.
macro_rules! dtypes {
    ($( $v:ident, $size:expr, $torch:expr, $doc:expr; )*) => {
        /// The element type of a tensor, as a run-time tag: every dtype `torch.save`
        /// writes that has a fixed size per element, the one list of dtypes in tempo.
        /// tempo computes in [`F32`](DType::F32) and [`F64`](DType::F64) (the [`Float`]
        /// types); tempo-ckpt reads, keeps and writes every other one.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum DType {
            $( #[doc = $doc] $v, )*
        }

        impl DType {
            /// Every dtype, in the order above.
            pub const ALL: &'static [DType] = &[$(DType::$v),*];

            /// Bytes per element.
            pub fn size(self) -> usize {
                match self { $(DType::$v => $size,)* }
            }

            /// PyTorch's name (`float32`, `bfloat16`, `float8_e4m3fn`, ...).
            pub fn torch_name(self) -> &'static str {
                match self { $(DType::$v => $torch,)* }
            }
        }
    };
}

dtypes! {
    Bool, 1, "bool", "`torch.bool`: one byte, 0 or 1.";
    U8, 1, "uint8", "`torch.uint8`.";
    I8, 1, "int8", "`torch.int8`.";
    I16, 2, "int16", "`torch.int16`.";
    I32, 4, "int32", "`torch.int32`.";
    I64, 8, "int64", "`torch.int64`.";
    F16, 2, "float16", "`torch.float16`.";
    BF16, 2, "bfloat16", "`torch.bfloat16`.";
    F32, 4, "float32", "`torch.float32`, PyTorch's default.";
    F64, 8, "float64", "`torch.float64`.";
    U16, 2, "uint16", "`torch.uint16`.";
    U32, 4, "uint32", "`torch.uint32`.";
    U64, 8, "uint64", "`torch.uint64`.";
    F8E4M3FN, 1, "float8_e4m3fn", "`torch.float8_e4m3fn`.";
    F8E4M3FNUZ, 1, "float8_e4m3fnuz", "`torch.float8_e4m3fnuz`.";
    F8E5M2, 1, "float8_e5m2", "`torch.float8_e5m2`.";
    F8E5M2FNUZ, 1, "float8_e5m2fnuz", "`torch.float8_e5m2fnuz`.";
    F8E8M0FNU, 1, "float8_e8m0fnu", "`torch.float8_e8m0fnu` (a power of two).";
    C32, 4, "complex32", "`torch.complex32`: two float16s.";
    C64, 8, "complex64", "`torch.complex64`: two float32s.";
    C128, 16, "complex128", "`torch.complex128`: two float64s.";
}

impl DType {
    /// The dtype of a `torch.<name>` dtype's name (`float32`, `float8_e4m3fn`, and
    /// the aliases `float`, `half`, `cfloat`, ...); `None` for a name that is not one
    /// of [`DType::ALL`].
    pub fn from_torch_name(name: &str) -> Option<DType> {
        let name = match name {
            "float" => "float32",
            "double" => "float64",
            "half" => "float16",
            "long" => "int64",
            "int" => "int32",
            "short" => "int16",
            "cfloat" => "complex64",
            "cdouble" => "complex128",
            "chalf" => "complex32",
            other => other,
        };
        DType::ALL.iter().copied().find(|d| d.torch_name() == name)
    }
}

impl Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.torch_name())
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
