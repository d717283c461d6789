//! Tensors as files hold them: any of PyTorch's common dtypes, contiguous, row-major.

use std::borrow::Cow;
use std::mem::MaybeUninit;

use ndarray::{ArrayD, IxDyn};
use tempo_tensor::{DType, TensorData};

use crate::io::Filled;
use crate::CkptError;

/// Declares, for each of tempo-tensor's [`DType`]s, what files need of it: the element
/// type in memory, bytes per scalar component (for byte order), the safetensors name,
/// and the legacy storage class `torch.save` writes (or `None`: PyTorch writes an
/// `UntypedStorage` and the dtype, through `_rebuild_tensor_v3`). The matches are
/// exhaustive: a dtype tempo-tensor adds does not compile here until it is declared.
macro_rules! dtype_files {
    ($( $v:ident, $t:ty, $part:expr, $st:expr, $storage:expr; )*) => {
        /// How checkpoint files name each [`DType`]. tempo-tensor declares the dtypes
        /// and PyTorch's names for them; the file formats' names live here, with the
        /// formats.
        pub trait DTypeFiles: Sized {
            /// The safetensors name (`F32`, `BF16`, `F8_E4M3`, ...). The dtypes that
            /// safetensors does not name (float8 `fnuz` variants, complex) get names
            /// in its style (`F8_E4M3FNUZ`, `C64`).
            fn safetensors_name(self) -> &'static str;

            /// The legacy storage class `torch.save` names for this dtype
            /// (`FloatStorage`, ...), or `None` for the dtypes it writes as an
            /// `UntypedStorage` paired with the dtype.
            fn torch_storage(self) -> Option<&'static str>;

            /// The dtype of a safetensors name.
            fn from_safetensors_name(name: &str) -> Result<Self, CkptError>;

            /// The dtype of a storage class name (`FloatStorage` → `F32`).
            fn from_torch_storage(name: &str) -> Result<Self, CkptError>;
        }

        impl DTypeFiles for DType {
            fn safetensors_name(self) -> &'static str {
                match self { $(DType::$v => $st,)* }
            }

            fn torch_storage(self) -> Option<&'static str> {
                match self { $(DType::$v => $storage,)* }
            }

            fn from_safetensors_name(name: &str) -> Result<DType, CkptError> {
                DType::ALL
                    .iter()
                    .copied()
                    .find(|d| d.safetensors_name() == name)
                    .ok_or_else(|| CkptError::UnknownDType {
                        found: name.to_string(),
                    })
            }

            fn from_torch_storage(name: &str) -> Result<DType, CkptError> {
                DType::ALL
                    .iter()
                    .copied()
                    .find(|d| d.torch_storage() == Some(name))
                    .ok_or_else(|| CkptError::UnknownDType {
                        found: name.to_string(),
                    })
            }
        }

        /// Bytes per scalar component (a complex number has two): the unit whose byte
        /// order a big-endian machine reverses.
        fn part_size(dtype: DType) -> usize {
            match dtype { $(DType::$v => $part,)* }
        }

        /// The elements of a tensor in row-major order, one vector type per dtype.
        ///
        /// Floats that Rust has no type for (16- and 8-bit floats) are kept as their
        /// raw bits, complex numbers as `[re, im]` pairs: tempo only moves them.
        #[derive(Debug, Clone, PartialEq)]
        #[non_exhaustive]
        pub enum Elements {
            $( #[doc = concat!("The elements of a [`DType::", stringify!($v), "`] tensor.")] $v(Vec<$t>), )*
        }

        macro_rules! each_elements {
            ($e:expr, $x:ident => $body:expr) => {
                match $e { $(Elements::$v($x) => $body,)* }
            };
        }

        impl Elements {
            /// The dtype.
            pub fn dtype(&self) -> DType {
                match self { $(Elements::$v(_) => DType::$v,)* }
            }

            /// `len` zeroed elements of `dtype` (the allocation is lazily zeroed by the
            /// OS for large sizes, so this costs no pass over memory).
            pub(crate) fn zeroed(dtype: DType, len: usize) -> Elements {
                match dtype { $(DType::$v => Elements::$v(vec![<$t>::default(); len]),)* }
            }

            /// The elements at `indices` (in order), which the caller has bounds-checked.
            fn gather(&self, indices: &[usize]) -> Elements {
                match self {
                    $(Elements::$v(v) => Elements::$v(indices.iter().map(|&i| v[i]).collect()),)*
                }
            }
        }
    };
}

dtype_files! {
    Bool, bool, 1, "BOOL", Some("BoolStorage");
    U8, u8, 1, "U8", Some("ByteStorage");
    I8, i8, 1, "I8", Some("CharStorage");
    I16, i16, 2, "I16", Some("ShortStorage");
    I32, i32, 4, "I32", Some("IntStorage");
    I64, i64, 8, "I64", Some("LongStorage");
    F16, u16, 2, "F16", Some("HalfStorage");
    BF16, u16, 2, "BF16", Some("BFloat16Storage");
    F32, f32, 4, "F32", Some("FloatStorage");
    F64, f64, 8, "F64", Some("DoubleStorage");
    U16, u16, 2, "U16", None;
    U32, u32, 4, "U32", None;
    U64, u64, 8, "U64", None;
    F8E4M3FN, u8, 1, "F8_E4M3", None;
    F8E4M3FNUZ, u8, 1, "F8_E4M3FNUZ", None;
    F8E5M2, u8, 1, "F8_E5M2", None;
    F8E5M2FNUZ, u8, 1, "F8_E5M2FNUZ", None;
    F8E8M0FNU, u8, 1, "F8_E8M0", None;
    C32, [u16; 2], 2, "C32", None;
    C64, [f32; 2], 4, "C64", Some("ComplexFloatStorage");
    C128, [f64; 2], 8, "C128", Some("ComplexDoubleStorage");
}

/// The dtypes tempo holds, by PyTorch's names, for error messages.
pub(crate) fn known_dtypes() -> String {
    let names: Vec<&str> = DType::ALL.iter().map(|d| d.torch_name()).collect();
    names.join(", ")
}

/// Converts between little-endian file bytes and native elements in place.
/// A vector of `len` elements whose little-endian bytes `fill` writes into its
/// uninitialised memory.
fn filled_vec<T: bytemuck::Pod>(
    len: usize,
    part: usize,
    fill: impl FnOnce(&mut [MaybeUninit<u8>]) -> Result<Filled, CkptError>,
) -> Result<Vec<T>, CkptError> {
    let mut v = Vec::<T>::with_capacity(len);
    let spare = &mut v.spare_capacity_mut()[..len];
    let nbytes = std::mem::size_of_val(spare);
    // SAFETY: the first `len` elements of the spare capacity, as bytes: `MaybeUninit<u8>`
    // has alignment 1 and no validity requirement.
    let bytes = unsafe { std::slice::from_raw_parts_mut(spare.as_mut_ptr().cast(), nbytes) };
    let filled = fill(bytes)?;
    if !filled.is_for(bytes) {
        return Err(CkptError::malformed(
            "tensor bytes",
            format!("{nbytes} bytes read"),
            "a read into another buffer",
        ));
    }
    // SAFETY: `filled` proves every byte of the first `len` elements was written, and
    // any bytes are a valid `T` (`Pod`).
    unsafe { v.set_len(len) };
    fix_endianness(bytemuck::cast_slice_mut(&mut v), part);
    Ok(v)
}

fn fix_endianness(bytes: &mut [u8], size: usize) {
    if cfg!(target_endian = "big") && size > 1 {
        for chunk in bytes.chunks_exact_mut(size) {
            chunk.reverse();
        }
    }
}

impl Elements {
    /// The number of elements.
    pub fn len(&self) -> usize {
        each_elements!(self, v => v.len())
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements as little-endian bytes: borrowed on little-endian machines.
    pub fn le_bytes(&self) -> Cow<'_, [u8]> {
        let bytes: &[u8] = match self {
            Elements::Bool(v) => return Cow::Owned(v.iter().map(|&b| u8::from(b)).collect()),
            other => each_elements!(other, v => bytemuck::cast_slice(v)),
        };
        if cfg!(target_endian = "big") {
            let mut owned = bytes.to_vec();
            fix_endianness(&mut owned, part_size(self.dtype()));
            Cow::Owned(owned)
        } else {
            Cow::Borrowed(bytes)
        }
    }

    /// `len` elements of `dtype` whose little-endian bytes `fill` writes, straight into
    /// the elements' memory, which is not zeroed first (a `bool` tensor's bytes go
    /// through a byte buffer and must be 0 or 1). `fill` is called once, with a buffer of
    /// exactly `len * dtype.size()` bytes, and proves it filled that buffer.
    pub(crate) fn fill_le(
        dtype: DType,
        len: usize,
        fill: impl FnOnce(&mut [MaybeUninit<u8>]) -> Result<Filled, CkptError>,
    ) -> Result<Elements, CkptError> {
        let part = part_size(dtype);
        Ok(match Elements::zeroed(dtype, 0) {
            Elements::Bool(_) => {
                let raw: Vec<u8> = filled_vec(len, 1, fill)?;
                let bools = raw
                    .iter()
                    .map(|&b| match b {
                        0 => Ok(false),
                        1 => Ok(true),
                        other => Err(CkptError::malformed(
                            "bool tensor",
                            "bytes 0 or 1",
                            format!("{other}"),
                        )),
                    })
                    .collect::<Result<_, _>>()?;
                Elements::Bool(bools)
            }
            Elements::U8(_) => Elements::U8(filled_vec(len, part, fill)?),
            Elements::I8(_) => Elements::I8(filled_vec(len, part, fill)?),
            Elements::I16(_) => Elements::I16(filled_vec(len, part, fill)?),
            Elements::I32(_) => Elements::I32(filled_vec(len, part, fill)?),
            Elements::I64(_) => Elements::I64(filled_vec(len, part, fill)?),
            Elements::F16(_) => Elements::F16(filled_vec(len, part, fill)?),
            Elements::BF16(_) => Elements::BF16(filled_vec(len, part, fill)?),
            Elements::F32(_) => Elements::F32(filled_vec(len, part, fill)?),
            Elements::F64(_) => Elements::F64(filled_vec(len, part, fill)?),
            Elements::U16(_) => Elements::U16(filled_vec(len, part, fill)?),
            Elements::U32(_) => Elements::U32(filled_vec(len, part, fill)?),
            Elements::U64(_) => Elements::U64(filled_vec(len, part, fill)?),
            Elements::F8E4M3FN(_) => Elements::F8E4M3FN(filled_vec(len, part, fill)?),
            Elements::F8E4M3FNUZ(_) => Elements::F8E4M3FNUZ(filled_vec(len, part, fill)?),
            Elements::F8E5M2(_) => Elements::F8E5M2(filled_vec(len, part, fill)?),
            Elements::F8E5M2FNUZ(_) => Elements::F8E5M2FNUZ(filled_vec(len, part, fill)?),
            Elements::F8E8M0FNU(_) => Elements::F8E8M0FNU(filled_vec(len, part, fill)?),
            Elements::C32(_) => Elements::C32(filled_vec(len, part, fill)?),
            Elements::C64(_) => Elements::C64(filled_vec(len, part, fill)?),
            Elements::C128(_) => Elements::C128(filled_vec(len, part, fill)?),
        })
    }

    /// Elements from little-endian bytes (`bytes.len()` must be a multiple of the size).
    pub(crate) fn from_le_bytes(dtype: DType, bytes: &[u8]) -> Result<Elements, CkptError> {
        let size = dtype.size();
        if !bytes.len().is_multiple_of(size) {
            return Err(CkptError::malformed(
                "tensor bytes",
                format!("a multiple of {size} bytes for {dtype}"),
                format!("{} bytes", bytes.len()),
            ));
        }
        Elements::fill_le(dtype, bytes.len() / size, |buf| {
            Ok(crate::io::copy_bytes(bytes, buf)?)
        })
    }
}

/// A tensor as a checkpoint holds it: a shape and its elements in row-major order.
///
/// Invariant: the product of `shape` equals the number of elements (checked by every
/// constructor). A 0-d tensor (PyTorch's `tensor(5.)`) has shape `[]` and one element.
#[derive(Debug, Clone, PartialEq)]
pub struct AnyTensor {
    shape: Vec<usize>,
    elements: Elements,
}

/// The number of elements of `shape`, or an error if it overflows.
pub(crate) fn numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

impl AnyTensor {
    /// A tensor of `shape` holding `elements`; `Err` if their counts differ.
    pub fn new(shape: Vec<usize>, elements: Elements) -> Result<AnyTensor, CkptError> {
        match numel(&shape) {
            Some(n) if n == elements.len() => Ok(AnyTensor { shape, elements }),
            _ => Err(CkptError::BadTensor {
                name: String::new(),
                detail: format!("shape {shape:?} does not hold {} elements", elements.len()),
            }),
        }
    }

    /// A zero-element stand-in for a tensor written from elsewhere.
    pub(crate) fn placeholder() -> AnyTensor {
        AnyTensor {
            shape: vec![0],
            elements: Elements::F32(Vec::new()),
        }
    }

    /// A tensor from little-endian bytes.
    pub fn from_le_bytes(
        dtype: DType,
        shape: Vec<usize>,
        bytes: &[u8],
    ) -> Result<AnyTensor, CkptError> {
        AnyTensor::new(shape, Elements::from_le_bytes(dtype, bytes)?)
    }

    /// The dtype.
    pub fn dtype(&self) -> DType {
        self.elements.dtype()
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.elements.len()
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.elements.is_empty()
    }

    /// The elements in row-major order.
    pub fn elements(&self) -> &Elements {
        &self.elements
    }

    /// The shape and the elements.
    pub fn into_parts(self) -> (Vec<usize>, Elements) {
        (self.shape, self.elements)
    }

    /// The size of the data in bytes.
    pub fn nbytes(&self) -> usize {
        self.len() * self.dtype().size()
    }

    /// The data as little-endian bytes (borrowed on little-endian machines).
    pub fn le_bytes(&self) -> Cow<'_, [u8]> {
        self.elements.le_bytes()
    }

    /// What differs between `self` and `other`, bit for bit (dtype, shape, then the
    /// first differing element's bytes); `None` if they are identical. NaNs compare by
    /// their bits, so a NaN equals the same NaN, and `0.0` differs from `-0.0`.
    pub fn first_difference(&self, other: &AnyTensor) -> Option<String> {
        if self.dtype() != other.dtype() {
            return Some(format!("dtype {}, then {}", self.dtype(), other.dtype()));
        }
        if self.shape != other.shape {
            return Some(format!("shape {:?}, then {:?}", self.shape, other.shape));
        }
        let (a, b) = (self.le_bytes(), other.le_bytes());
        if a == b {
            return None;
        }
        let size = self.dtype().size().max(1);
        let i = a
            .iter()
            .zip(b.iter())
            .position(|(x, y)| x != y)
            .unwrap_or(0)
            / size;
        let bytes = |v: &[u8]| format!("{:02x?}", &v[i * size..((i + 1) * size).min(v.len())]);
        Some(format!(
            "element {i} (row-major) has the little-endian bytes {}, then {}",
            bytes(&a),
            bytes(&b)
        ))
    }

    /// The single value of a one-element float or int tensor (PyTorch's `t.item()`),
    /// widened to f64; `None` for other tensors.
    pub fn item_f64(&self) -> Option<f64> {
        if self.len() != 1 {
            return None;
        }
        match &self.elements {
            Elements::F32(v) => Some(f64::from(v[0])),
            Elements::F64(v) => Some(v[0]),
            Elements::I64(v) => Some(v[0] as f64),
            Elements::I32(v) => Some(f64::from(v[0])),
            _ => None,
        }
    }

    /// Converts an f32 or f64 tensor to a [`TensorData`] without copying the elements;
    /// `Err` for other dtypes (tempo computes in f32 and f64 only).
    pub fn into_tensor_data(self) -> Result<TensorData, CkptError> {
        let dtype = self.dtype();
        let shape = IxDyn(&self.shape);
        let bad_shape = |e: ndarray::ShapeError| CkptError::BadTensor {
            name: String::new(),
            detail: e.to_string(),
        };
        match self.elements {
            Elements::F32(v) => Ok(TensorData::F32(
                ArrayD::from_shape_vec(shape, v).map_err(bad_shape)?,
            )),
            Elements::F64(v) => Ok(TensorData::F64(
                ArrayD::from_shape_vec(shape, v).map_err(bad_shape)?,
            )),
            _ => Err(CkptError::schema(
                "",
                "a float32 or float64 tensor",
                format!("a {dtype} tensor"),
            )),
        }
    }

    /// Reads a view of a storage: `offset`, `size` and `stride` in elements, as in
    /// `torch.as_strided`. Every index is bounds-checked against the storage.
    pub(crate) fn from_view(
        storage: &Elements,
        offset: usize,
        size: &[usize],
        stride: &[usize],
    ) -> Result<AnyTensor, String> {
        let n = numel(size).ok_or_else(|| format!("size {size:?} overflows"))?;
        if size.len() != stride.len() {
            return Err(format!(
                "size {size:?} and stride {stride:?} differ in length"
            ));
        }
        if n == 0 {
            return Ok(AnyTensor {
                shape: size.to_vec(),
                elements: storage.gather(&[]),
            });
        }
        let mut last = offset;
        for (&d, &s) in size.iter().zip(stride) {
            last = (d - 1)
                .checked_mul(s)
                .and_then(|x| x.checked_add(last))
                .ok_or_else(|| format!("view {size:?}/{stride:?} overflows"))?;
        }
        if last >= storage.len() {
            return Err(format!(
                "view (offset {offset}, size {size:?}, stride {stride:?}) reaches element {last}, the storage has {}",
                storage.len()
            ));
        }
        let mut indices = Vec::with_capacity(n);
        let mut index = vec![0usize; size.len()];
        for _ in 0..n {
            let flat = offset + index.iter().zip(stride).map(|(i, s)| i * s).sum::<usize>();
            indices.push(flat);
            for axis in (0..size.len()).rev() {
                index[axis] += 1;
                if index[axis] < size[axis] {
                    break;
                }
                index[axis] = 0;
            }
        }
        Ok(AnyTensor {
            shape: size.to_vec(),
            elements: storage.gather(&indices),
        })
    }
}

impl From<TensorData> for AnyTensor {
    fn from(data: TensorData) -> AnyTensor {
        fn parts<T: Clone>(a: ArrayD<T>) -> (Vec<usize>, Vec<T>) {
            let shape = a.shape().to_vec();
            let n = a.len();
            if !a.is_standard_layout() {
                return (shape, a.iter().cloned().collect());
            }
            // Standard layout: the elements are contiguous from the array's offset.
            let (mut v, offset) = a.into_raw_vec_and_offset();
            let start = offset.unwrap_or(0);
            if start == 0 && v.len() == n {
                return (shape, v);
            }
            v.truncate(start + n);
            (shape, v.split_off(start))
        }
        match data {
            TensorData::F32(a) => {
                let (shape, v) = parts(a);
                AnyTensor {
                    shape,
                    elements: Elements::F32(v),
                }
            }
            TensorData::F64(a) => {
                let (shape, v) = parts(a);
                AnyTensor {
                    shape,
                    elements: Elements::F64(v),
                }
            }
        }
    }
}

impl From<&TensorData> for AnyTensor {
    fn from(data: &TensorData) -> AnyTensor {
        // A memcpy for the usual standard-layout arrays; an element walk otherwise.
        fn copy<T: Clone>(a: &ArrayD<T>) -> Vec<T> {
            match a.as_slice() {
                Some(s) => s.to_vec(),
                None => a.iter().cloned().collect(),
            }
        }
        match data {
            TensorData::F32(a) => AnyTensor {
                shape: a.shape().to_vec(),
                elements: Elements::F32(copy(a)),
            },
            TensorData::F64(a) => AnyTensor {
                shape: a.shape().to_vec(),
                elements: Elements::F64(copy(a)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_for_every_dtype() {
        for &d in DType::ALL {
            assert_eq!(
                DType::from_safetensors_name(d.safetensors_name()).unwrap(),
                d
            );
            if let Some(storage) = d.torch_storage() {
                assert_eq!(DType::from_torch_storage(storage).unwrap(), d);
            }
            assert_eq!(DType::from_torch_name(d.torch_name()), Some(d));
            assert_eq!(Elements::zeroed(d, 3).dtype(), d);
            let bytes: Vec<u8> = (0..3 * d.size()).map(|i| (i % 2) as u8).collect();
            let t = AnyTensor::from_le_bytes(d, vec![3], &bytes).unwrap();
            assert_eq!(&*t.le_bytes(), &bytes[..], "{d}");
        }
        assert_eq!(DType::from_torch_name("cfloat"), Some(DType::C64));
        assert_eq!(DType::from_torch_name("qint8"), None);
        assert!(matches!(
            DType::from_safetensors_name("F4"),
            Err(CkptError::UnknownDType { found }) if found == "F4"
        ));
    }

    #[test]
    fn views_gather_in_row_major_order() {
        let storage = Elements::I64((0..12).collect());
        // The transpose of a 3x4 matrix starting at element 0.
        let t = AnyTensor::from_view(&storage, 0, &[4, 3], &[1, 4]).unwrap();
        assert_eq!(
            t.elements(),
            &Elements::I64(vec![0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11])
        );
        // A row with an offset; an expanded scalar (stride 0).
        let row = AnyTensor::from_view(&storage, 4, &[4], &[1]).unwrap();
        assert_eq!(row.elements(), &Elements::I64(vec![4, 5, 6, 7]));
        let expanded = AnyTensor::from_view(&storage, 11, &[3], &[0]).unwrap();
        assert_eq!(expanded.elements(), &Elements::I64(vec![11, 11, 11]));
        let scalar = AnyTensor::from_view(&storage, 3, &[], &[]).unwrap();
        assert_eq!(scalar.shape(), &[] as &[usize]);
        assert_eq!(scalar.item_f64(), Some(3.0));
    }

    #[test]
    fn views_past_the_storage_are_errors() {
        let storage = Elements::F32(vec![0.0; 6]);
        assert!(AnyTensor::from_view(&storage, 0, &[2, 4], &[4, 1]).is_err());
        assert!(AnyTensor::from_view(&storage, 6, &[1], &[1]).is_err());
        assert!(AnyTensor::from_view(&storage, 0, &[usize::MAX, 2], &[1, 1]).is_err());
        assert!(AnyTensor::from_view(&storage, 0, &[2], &[1, 1]).is_err());
        assert!(AnyTensor::from_view(&storage, 100, &[0, 5], &[5, 1]).is_ok());
    }

    #[test]
    fn bytes_round_trip_and_bools_are_checked() {
        let t = AnyTensor::new(vec![2], Elements::F32(vec![1.5, -0.25])).unwrap();
        let back = AnyTensor::from_le_bytes(DType::F32, vec![2], &t.le_bytes()).unwrap();
        assert_eq!(back, t);
        assert!(AnyTensor::from_le_bytes(DType::Bool, vec![2], &[0, 2]).is_err());
        assert!(AnyTensor::from_le_bytes(DType::F64, vec![1], &[0; 7]).is_err());
        assert!(AnyTensor::new(vec![3], Elements::U8(vec![1, 2])).is_err());
    }

    #[test]
    fn tensor_data_converts_both_ways() {
        let a = ArrayD::from_shape_vec(IxDyn(&[2, 2]), vec![1.0f64, 2.0, 3.0, 4.0]).unwrap();
        let t = AnyTensor::from(TensorData::F64(a.t().to_owned()));
        assert_eq!(t.elements(), &Elements::F64(vec![1.0, 3.0, 2.0, 4.0]));
        let data = t.into_tensor_data().unwrap();
        assert_eq!(data.shape(), &[2, 2]);
        let ints = AnyTensor::new(vec![1], Elements::I32(vec![1])).unwrap();
        assert!(matches!(
            ints.into_tensor_data(),
            Err(CkptError::Schema { .. })
        ));
    }
}
