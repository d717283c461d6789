//! Quantized tensors as `torch.save` writes them: integers in a quantized storage
//! (`QInt8Storage`, `QUInt8Storage`, `QInt32Storage`, `QUInt4x2Storage`,
//! `QUInt2x4Storage`) and the quantizer's parameters.
//!
//! PyTorch pickles one as `torch._utils._rebuild_qtensor(storage, offset, size, stride,
//! quantizer_params, requires_grad, hooks)`, with `quantizer_params`
//! `(torch.per_tensor_affine, scale, zero_point)` or `(torch.per_channel_affine,
//! scales, zero_points, axis)` (scales and zero points as tensors: float64 and int64,
//! or float32 and float32 for a `per_channel_affine_float_qparams` tensor, which torch
//! writes under the name `per_channel_affine`). tempo keeps the integers (row-major;
//! the packed bytes for the 4- and 2-bit types) and the parameters bit for bit.

use crate::{AnyTensor, CkptError, DType};

/// The dtype of a quantized tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum QDType {
    /// `torch.qint8`: signed 8-bit integers.
    QInt8,
    /// `torch.quint8`: unsigned 8-bit integers.
    QUInt8,
    /// `torch.qint32`: signed 32-bit integers.
    QInt32,
    /// `torch.quint4x2`: unsigned 4-bit integers, two a byte (the first in the low bits).
    QUInt4x2,
    /// `torch.quint2x4`: unsigned 2-bit integers, four a byte.
    QUInt2x4,
}

const QDTYPES: [QDType; 5] = [
    QDType::QInt8,
    QDType::QUInt8,
    QDType::QInt32,
    QDType::QUInt4x2,
    QDType::QUInt2x4,
];

impl QDType {
    /// PyTorch's name (`qint8`).
    pub fn torch_name(self) -> &'static str {
        match self {
            QDType::QInt8 => "qint8",
            QDType::QUInt8 => "quint8",
            QDType::QInt32 => "qint32",
            QDType::QUInt4x2 => "quint4x2",
            QDType::QUInt2x4 => "quint2x4",
        }
    }

    /// The pickle global of its storage class (`torch\nQInt8Storage`).
    pub(crate) fn storage_global(self) -> &'static str {
        match self {
            QDType::QInt8 => "torch\nQInt8Storage",
            QDType::QUInt8 => "torch\nQUInt8Storage",
            QDType::QInt32 => "torch\nQInt32Storage",
            QDType::QUInt4x2 => "torch\nQUInt4x2Storage",
            QDType::QUInt2x4 => "torch\nQUInt2x4Storage",
        }
    }

    /// The dtype of a storage class name (`QInt8Storage`).
    pub fn from_storage_name(name: &str) -> Option<QDType> {
        QDTYPES
            .into_iter()
            .find(|q| q.storage_global().strip_prefix("torch\n") == Some(name))
    }

    /// The dtype of PyTorch's name (`qint8`).
    pub fn from_torch_name(name: &str) -> Option<QDType> {
        QDTYPES.into_iter().find(|q| q.torch_name() == name)
    }

    /// The integer dtype tempo keeps the values in: int8, uint8 or int32, and uint8
    /// bytes of packed values for the 4- and 2-bit types.
    pub fn int_dtype(self) -> DType {
        match self {
            QDType::QInt8 => DType::I8,
            QDType::QInt32 => DType::I32,
            QDType::QUInt8 | QDType::QUInt4x2 | QDType::QUInt2x4 => DType::U8,
        }
    }

    /// Bits per value.
    pub fn bits(self) -> usize {
        match self {
            QDType::QInt8 | QDType::QUInt8 => 8,
            QDType::QInt32 => 32,
            QDType::QUInt4x2 => 4,
            QDType::QUInt2x4 => 2,
        }
    }

    /// Whether several values share a byte.
    pub fn is_packed(self) -> bool {
        self.bits() < 8
    }

    /// The storage elements (bytes for the packed types) that hold `numel` values.
    pub(crate) fn storage_len(self, numel: usize) -> Option<usize> {
        if self.is_packed() {
            let per_byte = 8 / self.bits();
            Some(numel.checked_add(per_byte - 1)? / per_byte)
        } else {
            Some(numel)
        }
    }
}

impl std::fmt::Display for QDType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.torch_name())
    }
}

/// How a quantized tensor's integers map to real values: `(q - zero_point) * scale`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum QScheme {
    /// `torch.per_tensor_affine`: one scale and zero point.
    PerTensorAffine {
        /// The scale.
        scale: f64,
        /// The zero point.
        zero_point: i64,
    },
    /// `torch.per_channel_affine` (or `per_channel_affine_float_qparams`): a scale and
    /// a zero point per index of dimension `axis`.
    PerChannelAffine {
        /// The scales (float64, or float32 for float qparams), one per channel.
        scales: AnyTensor,
        /// The zero points (int64, or float32 for float qparams), one per channel.
        zero_points: AnyTensor,
        /// The channel dimension.
        axis: usize,
        /// Whether the file names the scheme `per_channel_affine_float_qparams`
        /// (`torch.save` writes `per_channel_affine` for those tensors too, with float
        /// zero points).
        float_qparams_name: bool,
    },
}

impl QScheme {
    /// PyTorch's name of the scheme as the file names it.
    pub fn torch_name(&self) -> &'static str {
        match self {
            QScheme::PerTensorAffine { .. } => "per_tensor_affine",
            QScheme::PerChannelAffine {
                float_qparams_name: true,
                ..
            } => "per_channel_affine_float_qparams",
            QScheme::PerChannelAffine { .. } => "per_channel_affine",
        }
    }
}

/// A quantized tensor: its dtype, shape, integers and quantizer parameters.
///
/// Invariant: the integers fit the dtype and shape, and per-channel parameters have
/// one value per channel (checked by [`QuantizedTensor::new`], the only constructor).
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedTensor {
    dtype: QDType,
    shape: Vec<usize>,
    data: AnyTensor,
    scheme: QScheme,
}

impl QuantizedTensor {
    /// A quantized tensor of `dtype` and `shape`: `data` holds its integers in
    /// row-major order in [`QDType::int_dtype`] with the same shape, or, for the packed
    /// types, the bytes of the packed values as a 1-D uint8 tensor.
    pub fn new(
        dtype: QDType,
        shape: Vec<usize>,
        data: AnyTensor,
        scheme: QScheme,
    ) -> Result<QuantizedTensor, CkptError> {
        let bad = |detail: String| CkptError::InvalidTensor {
            path: String::new(),
            what: format!("a quantized tensor of dtype torch.{dtype}"),
            detail,
        };
        if data.dtype() != dtype.int_dtype() {
            return Err(bad(format!(
                "its integers must be {}, found {}",
                dtype.int_dtype(),
                data.dtype()
            )));
        }
        let numel = crate::tensor::numel(&shape)
            .ok_or_else(|| bad(format!("shape {shape:?} overflows")))?;
        if dtype.is_packed() {
            let need = dtype.storage_len(numel).unwrap_or(usize::MAX);
            if data.shape() != [need] {
                return Err(bad(format!(
                    "{numel} values of {} bits need {need} bytes, found data of shape {:?}",
                    dtype.bits(),
                    data.shape()
                )));
            }
        } else if data.shape() != shape.as_slice() {
            return Err(bad(format!(
                "shape {shape:?}, but its integers have shape {:?}",
                data.shape()
            )));
        }
        if let QScheme::PerChannelAffine {
            scales,
            zero_points,
            axis,
            ..
        } = &scheme
        {
            let Some(&channels) = shape.get(*axis) else {
                return Err(bad(format!(
                    "per-channel axis {axis} is outside shape {shape:?}"
                )));
            };
            for (name, t, ok) in [
                (
                    "scales",
                    scales,
                    matches!(scales.dtype(), DType::F64 | DType::F32),
                ),
                (
                    "zero points",
                    zero_points,
                    matches!(
                        zero_points.dtype(),
                        DType::I64 | DType::I32 | DType::F32 | DType::F64
                    ),
                ),
            ] {
                if t.shape() != [channels] || !ok {
                    return Err(bad(format!(
                        "{channels} {name} (one per index of dimension {axis}) expected, found a {} tensor of shape {:?}",
                        t.dtype(),
                        t.shape()
                    )));
                }
            }
        }
        Ok(QuantizedTensor {
            dtype,
            shape,
            data,
            scheme,
        })
    }

    /// The dtype.
    pub fn dtype(&self) -> QDType {
        self.dtype
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The integers (see [`QuantizedTensor::new`]).
    pub fn data(&self) -> &AnyTensor {
        &self.data
    }

    /// The quantizer's parameters.
    pub fn scheme(&self) -> &QScheme {
        &self.scheme
    }

    /// What differs between `self` and `other`, bit for bit; `None` if they are
    /// identical.
    pub fn first_difference(&self, other: &QuantizedTensor) -> Option<String> {
        if self.dtype != other.dtype || self.shape != other.shape {
            return Some(format!(
                "{} {:?}, then {} {:?}",
                self.dtype, self.shape, other.dtype, other.shape
            ));
        }
        if let Some(d) = self.data.first_difference(&other.data) {
            return Some(format!("integers: {d}"));
        }
        match (&self.scheme, &other.scheme) {
            (
                QScheme::PerTensorAffine { scale, zero_point },
                QScheme::PerTensorAffine {
                    scale: s2,
                    zero_point: z2,
                },
            ) if scale.to_bits() == s2.to_bits() && zero_point == z2 => None,
            (
                QScheme::PerChannelAffine {
                    scales,
                    zero_points,
                    axis,
                    float_qparams_name,
                },
                QScheme::PerChannelAffine {
                    scales: s2,
                    zero_points: z2,
                    axis: a2,
                    float_qparams_name: f2,
                },
            ) if axis == a2 && float_qparams_name == f2 => scales
                .first_difference(s2)
                .map(|d| format!("scales: {d}"))
                .or_else(|| {
                    zero_points
                        .first_difference(z2)
                        .map(|d| format!("zero points: {d}"))
                }),
            (a, b) => Some(format!("quantizer {a:?}, then {b:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Elements;

    #[test]
    fn integers_and_parameters_must_fit_the_shape() {
        let ints = |shape: &[usize], n: usize| {
            AnyTensor::new(shape.to_vec(), Elements::I8(vec![1; n])).unwrap()
        };
        let per_tensor = || QScheme::PerTensorAffine {
            scale: 0.1,
            zero_point: 3,
        };
        assert!(
            QuantizedTensor::new(QDType::QInt8, vec![2, 3], ints(&[2, 3], 6), per_tensor()).is_ok()
        );
        assert!(
            QuantizedTensor::new(QDType::QInt8, vec![3, 2], ints(&[2, 3], 6), per_tensor())
                .is_err()
        );
        assert!(
            QuantizedTensor::new(QDType::QUInt8, vec![2, 3], ints(&[2, 3], 6), per_tensor())
                .is_err()
        );
        // 5 four-bit values in 3 bytes.
        let bytes = |n: usize| AnyTensor::new(vec![n], Elements::U8(vec![0x10; n])).unwrap();
        assert!(QuantizedTensor::new(QDType::QUInt4x2, vec![5], bytes(3), per_tensor()).is_ok());
        assert!(QuantizedTensor::new(QDType::QUInt4x2, vec![5], bytes(2), per_tensor()).is_err());
        assert!(QuantizedTensor::new(QDType::QUInt2x4, vec![5], bytes(2), per_tensor()).is_ok());
        let per_channel = |n: usize, axis: usize| QScheme::PerChannelAffine {
            scales: AnyTensor::new(vec![n], Elements::F64(vec![0.5; n])).unwrap(),
            zero_points: AnyTensor::new(vec![n], Elements::I64(vec![0; n])).unwrap(),
            axis,
            float_qparams_name: false,
        };
        assert!(QuantizedTensor::new(
            QDType::QInt8,
            vec![2, 3],
            ints(&[2, 3], 6),
            per_channel(3, 1)
        )
        .is_ok());
        for (n, axis) in [(2, 1), (3, 0), (3, 2)] {
            let err = QuantizedTensor::new(
                QDType::QInt8,
                vec![2, 3],
                ints(&[2, 3], 6),
                per_channel(n, axis),
            )
            .unwrap_err();
            assert!(
                matches!(err, CkptError::InvalidTensor { ref what, .. } if what.contains("torch.qint8")),
                "{err}"
            );
        }
        assert_eq!(
            QDType::from_storage_name("QUInt4x2Storage"),
            Some(QDType::QUInt4x2)
        );
        assert_eq!(QDType::from_torch_name("qint32"), Some(QDType::QInt32));
    }
}
