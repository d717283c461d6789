//! A pickle writer for protocol 2, producing what `torch.save` produces for plain data
//! and tensors: tensors are `_rebuild_tensor_v2` calls on persistent storage ids.

use std::collections::HashMap;

use crate::object::MAX_DEPTH;
use crate::{AnyTensor, CkptError, Object};
use crate::{DTypeFiles, QScheme, QuantizedTensor, SparseLayout, SparseTensor};

/// Python batches APPENDS and SETITEMS by this many items.
const BATCH: usize = 1000;

struct Pickler<'a> {
    out: Vec<u8>,
    memo: HashMap<(&'static str, &'static str), u32>,
    next_memo: u32,
    tensors: Vec<&'a AnyTensor>,
}

/// Pickles `object`; returns the bytes of `data.pkl` and the tensors in storage-key order.
pub(crate) fn pickle(object: &Object) -> Result<(Vec<u8>, Vec<&AnyTensor>), CkptError> {
    let mut p = Pickler {
        out: vec![0x80, 2],
        memo: HashMap::new(),
        next_memo: 0,
        tensors: Vec::new(),
    };
    p.save(object, 0)?;
    p.out.push(b'.');
    Ok((p.out, p.tensors))
}

impl<'a> Pickler<'a> {
    /// A memoized constant: a global (`(module, name)`) or a string (`("", text)`),
    /// written once and then fetched from the memo, as Python's pickler does for
    /// repeated objects.
    fn constant(&mut self, key: (&'static str, &'static str), write: impl FnOnce(&mut Self)) {
        if let Some(&i) = self.memo.get(&key) {
            self.get(i);
            return;
        }
        write(self);
        let i = self.next_memo;
        self.next_memo += 1;
        if i < 256 {
            self.out.extend_from_slice(&[b'q', i as u8]);
        } else {
            self.out.push(b'r');
            self.out.extend_from_slice(&i.to_le_bytes());
        }
        self.memo.insert(key, i);
    }

    fn get(&mut self, i: u32) {
        if i < 256 {
            self.out.extend_from_slice(&[b'h', i as u8]);
        } else {
            self.out.push(b'j');
            self.out.extend_from_slice(&i.to_le_bytes());
        }
    }

    /// A global by its pickle path, `module\nname`.
    fn global(&mut self, path: &'static str) {
        let (module, name) = path.split_once('\n').unwrap_or(("", path));
        self.global_in(module, name);
    }

    /// A global: `name` in `module`.
    fn global_in(&mut self, module: &'static str, name: &'static str) {
        self.constant((module, name), |p| {
            p.out.push(b'c');
            p.out.extend_from_slice(module.as_bytes());
            p.out.push(b'\n');
            p.out.extend_from_slice(name.as_bytes());
            p.out.push(b'\n');
        });
    }

    fn int(&mut self, v: i64) {
        if (0..=0xFF).contains(&v) {
            self.out.extend_from_slice(&[b'K', v as u8]);
        } else if (0..=0xFFFF).contains(&v) {
            self.out.push(b'M');
            self.out.extend_from_slice(&(v as u16).to_le_bytes());
        } else if let Ok(v) = i32::try_from(v) {
            self.out.push(b'J');
            self.out.extend_from_slice(&v.to_le_bytes());
        } else {
            // LONG1: the shortest little-endian two's complement.
            let bytes = v.to_le_bytes();
            let mut n = 8;
            while n > 1 {
                let top = bytes[n - 1];
                let next_sign = bytes[n - 2] & 0x80;
                if (top == 0 && next_sign == 0) || (top == 0xFF && next_sign != 0) {
                    n -= 1;
                } else {
                    break;
                }
            }
            self.out.extend_from_slice(&[0x8a, n as u8]);
            self.out.extend_from_slice(&bytes[..n]);
        }
    }

    fn str(&mut self, s: &str) -> Result<(), CkptError> {
        let len = u32::try_from(s.len()).map_err(|_| CkptError::TooLarge {
            what: "a string for pickle protocol 2",
            found: s.len() as u64,
            limit: u64::from(u32::MAX),
        })?;
        self.out.push(b'X');
        self.out.extend_from_slice(&len.to_le_bytes());
        self.out.extend_from_slice(s.as_bytes());
        Ok(())
    }

    fn items(&mut self, items: &'a [Object], depth: usize) -> Result<(), CkptError> {
        for batch in items.chunks(BATCH) {
            if let [one] = batch {
                self.save(one, depth)?;
                self.out.push(b'a');
            } else {
                self.out.push(b'(');
                for i in batch {
                    self.save(i, depth)?;
                }
                self.out.push(b'e');
            }
        }
        Ok(())
    }

    fn set_items<K: Key>(
        &mut self,
        entries: &'a [(K, Object)],
        depth: usize,
    ) -> Result<(), CkptError> {
        for batch in entries.chunks(BATCH) {
            if let [(k, v)] = batch {
                k.save_key(self, depth)?;
                self.save(v, depth)?;
                self.out.push(b's');
            } else {
                self.out.push(b'(');
                for (k, v) in batch {
                    k.save_key(self, depth)?;
                    self.save(v, depth)?;
                }
                self.out.push(b'u');
            }
        }
        Ok(())
    }

    fn tuple(&mut self, items: &'a [Object], depth: usize) -> Result<(), CkptError> {
        match items.len() {
            0 => self.out.push(b')'),
            n @ 1..=3 => {
                for i in items {
                    self.save(i, depth)?;
                }
                self.out.push(0x84 + n as u8);
            }
            _ => {
                self.out.push(b'(');
                for i in items {
                    self.save(i, depth)?;
                }
                self.out.push(b't');
            }
        }
        Ok(())
    }

    fn int_tuple(&mut self, v: &[i64]) {
        match v.len() {
            0 => self.out.push(b')'),
            n @ 1..=3 => {
                for &i in v {
                    self.int(i);
                }
                self.out.push(0x84 + n as u8);
            }
            _ => {
                self.out.push(b'(');
                for &i in v {
                    self.int(i);
                }
                self.out.push(b't');
            }
        }
    }

    fn tensor(&mut self, t: &'a AnyTensor) -> Result<(), CkptError> {
        let key = self.tensors.len();
        self.tensors.push(t);
        let to_i64 = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        // Dtypes with a legacy storage class go through `_rebuild_tensor_v2` and a typed
        // storage; the others (uint16, float8, complex32, ...) as torch writes them: an
        // `UntypedStorage` of bytes and `_rebuild_tensor_v3` with the dtype.
        let legacy = t.dtype().torch_storage();
        self.global(if legacy.is_some() {
            "torch._utils\n_rebuild_tensor_v2"
        } else {
            "torch._utils\n_rebuild_tensor_v3"
        });
        self.out.push(b'(');
        // The persistent id: ('storage', torch.FloatStorage, '0', 'cpu', numel).
        self.out.push(b'(');
        self.constant(("", "'storage'"), |p| {
            p.out.extend_from_slice(b"X\x07\x00\x00\x00storage");
        });
        self.global_in("torch", legacy.unwrap_or("UntypedStorage"));
        self.str(&key.to_string())?;
        self.constant(("", "'cpu'"), |p| {
            p.out.extend_from_slice(b"X\x03\x00\x00\x00cpu");
        });
        // A typed storage counts elements, an untyped one bytes.
        self.int(to_i64(if legacy.is_some() {
            t.len()
        } else {
            t.nbytes()
        }));
        self.out.push(b't');
        self.out.push(b'Q');
        // offset, size, row-major stride, requires_grad, backward hooks.
        self.int(0);
        let shape: Vec<i64> = t.shape().iter().map(|&d| to_i64(d)).collect();
        let mut stride = vec![1i64; shape.len()];
        for i in (0..shape.len().saturating_sub(1)).rev() {
            stride[i] = stride[i + 1].saturating_mul(shape[i + 1]);
        }
        self.int_tuple(&shape);
        self.int_tuple(&stride);
        self.out.push(0x89);
        self.global("collections\nOrderedDict");
        self.out.extend_from_slice(b")R");
        if legacy.is_none() {
            self.global_in("torch", t.dtype().torch_name());
        }
        self.out.extend_from_slice(b"tR");
        Ok(())
    }

    /// `_rebuild_sparse_tensor(_get_layout("torch.sparse_coo"), (indices, values,
    /// torch.Size(size), is_coalesced))`, or `(compressed_indices, plain_indices,
    /// values, torch.Size(size))` for the compressed layouts, as torch writes them.
    fn sparse(&mut self, s: &'a SparseTensor) -> Result<(), CkptError> {
        self.global("torch._utils\n_rebuild_sparse_tensor");
        self.global("torch.serialization\n_get_layout");
        self.str(&s.layout().to_string())?;
        self.out.extend_from_slice(&[0x85, b'R']);
        self.out.push(b'(');
        for (_, t) in s.parts() {
            self.tensor(t)?;
        }
        self.global("torch\nSize");
        let size: Vec<i64> = s
            .size()
            .iter()
            .map(|&d| i64::try_from(d).unwrap_or(i64::MAX))
            .collect();
        self.int_tuple(&size);
        self.out.extend_from_slice(&[0x85, b'R']);
        match (s.layout(), s.is_coalesced()) {
            (SparseLayout::Coo, Some(true)) => self.out.push(0x88),
            (SparseLayout::Coo, Some(false)) => self.out.push(0x89),
            // Files written before PyTorch 2.1 have no flag: so do their copies.
            _ => {}
        }
        self.out.extend_from_slice(&[b't', 0x86, b'R']);
        Ok(())
    }

    /// `_rebuild_qtensor(storage, 0, size, stride, quantizer_params, False,
    /// OrderedDict())`, the storage a `torch.QInt8Storage` (...) of the integers, as
    /// torch writes it.
    fn qtensor(&mut self, q: &'a QuantizedTensor) -> Result<(), CkptError> {
        let to_i64 = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        self.global("torch._utils\n_rebuild_qtensor");
        self.out.push(b'(');
        let key = self.tensors.len();
        self.tensors.push(q.data());
        self.out.push(b'(');
        self.constant(("", "'storage'"), |p| {
            p.out.extend_from_slice(b"X\x07\x00\x00\x00storage");
        });
        self.global(q.dtype().storage_global());
        self.str(&key.to_string())?;
        self.constant(("", "'cpu'"), |p| {
            p.out.extend_from_slice(b"X\x03\x00\x00\x00cpu");
        });
        // Elements of the quantized dtype; bytes for the packed ones.
        self.int(to_i64(q.data().len()));
        self.out.extend_from_slice(b"tQ");
        self.int(0);
        let shape: Vec<i64> = q.shape().iter().map(|&d| to_i64(d)).collect();
        let mut stride = vec![1i64; shape.len()];
        for i in (0..shape.len().saturating_sub(1)).rev() {
            stride[i] = stride[i + 1].saturating_mul(shape[i + 1]);
        }
        self.int_tuple(&shape);
        self.int_tuple(&stride);
        match q.scheme() {
            QScheme::PerTensorAffine { scale, zero_point } => {
                self.global("torch\nper_tensor_affine");
                self.out.push(b'G');
                self.out.extend_from_slice(&scale.to_be_bytes());
                self.int(*zero_point);
                self.out.push(0x87);
            }
            QScheme::PerChannelAffine {
                scales,
                zero_points,
                axis,
                float_qparams_name,
            } => {
                self.out.push(b'(');
                self.global(if *float_qparams_name {
                    "torch\nper_channel_affine_float_qparams"
                } else {
                    "torch\nper_channel_affine"
                });
                self.tensor(scales)?;
                self.tensor(zero_points)?;
                self.int(to_i64(*axis));
                self.out.push(b't');
            }
        }
        self.out.push(0x89);
        self.global("collections\nOrderedDict");
        self.out.extend_from_slice(b")RtR");
        Ok(())
    }

    fn save(&mut self, o: &'a Object, depth: usize) -> Result<(), CkptError> {
        if depth > MAX_DEPTH {
            return Err(CkptError::TooDeep { limit: MAX_DEPTH });
        }
        let d = depth + 1;
        match o {
            Object::None => self.out.push(b'N'),
            Object::Bool(true) => self.out.push(0x88),
            Object::Bool(false) => self.out.push(0x89),
            Object::Int(v) => self.int(*v),
            Object::Float(f) => {
                self.out.push(b'G');
                self.out.extend_from_slice(&f.to_be_bytes());
            }
            Object::Str(s) => self.str(s)?,
            Object::Bytes(b) if b.is_empty() => {
                self.global("__builtin__\nbytes");
                self.out.extend_from_slice(b")R");
            }
            Object::Bytes(b) => {
                // Protocol 2 has no bytes opcode: Python writes codecs.encode(latin1 text).
                self.global("_codecs\nencode");
                let text: String = b.iter().map(|&c| char::from(c)).collect();
                self.str(&text)?;
                self.constant(("", "'latin1'"), |p| {
                    p.out.extend_from_slice(b"X\x06\x00\x00\x00latin1");
                });
                self.out.extend_from_slice(&[0x86, b'R']);
            }
            Object::List(items) => {
                self.out.push(b']');
                self.items(items, d)?;
            }
            Object::Tuple(items) => self.tuple(items, d)?,
            Object::Set(items) | Object::FrozenSet(items) => {
                self.global(if matches!(o, Object::Set(_)) {
                    "__builtin__\nset"
                } else {
                    "__builtin__\nfrozenset"
                });
                self.out.push(b']');
                self.items(items, d)?;
                self.out.extend_from_slice(&[0x85, b'R']);
            }
            Object::Dict(entries) => {
                self.out.push(b'}');
                self.set_items(entries, d)?;
            }
            Object::OrderedDict { entries, attrs } => {
                self.global("collections\nOrderedDict");
                self.out.extend_from_slice(b")R");
                self.set_items(entries, d)?;
                if !attrs.is_empty() {
                    self.out.push(b'}');
                    self.set_items(attrs, d)?;
                    self.out.push(b'b');
                }
            }
            Object::Counter(entries) => {
                self.global("collections\nCounter");
                self.out.push(b'}');
                self.set_items(entries, d)?;
                self.out.extend_from_slice(&[0x85, b'R']);
            }
            Object::Tensor(t) => self.tensor(t)?,
            Object::Sparse(sparse) => self.sparse(sparse)?,
            Object::Quantized(q) => self.qtensor(q)?,
            Object::Record { class, .. } => {
                return Err(CkptError::Unsupported {
                    path: format!("a value of class `{class}`"),
                    what: "an inert record, read for inspection only".into(),
                })
            }
            Object::MetaTensor { dtype, shape } => {
                // _rebuild_meta_tensor_no_storage(dtype, size, stride, requires_grad)
                self.global("torch._utils\n_rebuild_meta_tensor_no_storage");
                self.out.push(b'(');
                self.global_in("torch", dtype.torch_name());
                let to_i64 = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
                let size: Vec<i64> = shape.iter().map(|&d| to_i64(d)).collect();
                let mut stride = vec![1i64; size.len()];
                for i in (0..size.len().saturating_sub(1)).rev() {
                    stride[i] = stride[i + 1].saturating_mul(size[i + 1]);
                }
                self.int_tuple(&size);
                self.int_tuple(&stride);
                self.out.push(0x89);
                self.out.extend_from_slice(b"tR");
            }
        }
        Ok(())
    }
}

/// A dict key: an object, or an attribute name.
trait Key {
    fn save_key<'a>(&'a self, p: &mut Pickler<'a>, depth: usize) -> Result<(), CkptError>;
}

impl Key for Object {
    fn save_key<'a>(&'a self, p: &mut Pickler<'a>, depth: usize) -> Result<(), CkptError> {
        p.save(self, depth)
    }
}

impl Key for String {
    fn save_key<'a>(&'a self, p: &mut Pickler<'a>, _depth: usize) -> Result<(), CkptError> {
        p.str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints_use_the_shortest_opcode() {
        let cases: &[(i64, &[u8])] = &[
            (5, b"K\x05"),
            (300, b"M\x2c\x01"),
            (-1, b"J\xff\xff\xff\xff"),
            (1 << 40, b"\x8a\x06\x00\x00\x00\x00\x00\x01"),
            (-(1 << 40), b"\x8a\x06\x00\x00\x00\x00\x00\xff"),
            (i64::MIN, b"\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x80"),
            (1 << 31, b"\x8a\x05\x00\x00\x00\x80\x00"),
        ];
        for (v, want) in cases {
            let (bytes, _) = pickle(&Object::Int(*v)).unwrap();
            assert_eq!(&bytes[2..bytes.len() - 1], *want, "{v}");
        }
    }

    #[test]
    fn pickled_plain_data_unpickles_to_itself() {
        let o = Object::List(vec![
            Object::str_dict([(
                "a",
                Object::Tuple(vec![Object::Float(0.9), Object::Float(0.999)]),
            )]),
            Object::Dict(vec![
                (Object::Int(3), Object::None),
                (Object::Tuple(vec![]), Object::Bool(false)),
            ]),
            Object::Counter(vec![(Object::Int(10), Object::Int(2))]),
            Object::Set(vec![Object::Int(1), Object::Str("x".into())]),
            Object::FrozenSet(vec![]),
            Object::Bytes(vec![0, 200, 255]),
            Object::Bytes(vec![]),
            Object::Tuple((0..5).map(Object::Int).collect()),
            Object::List((0..2500).map(Object::Int).collect()),
            Object::OrderedDict {
                entries: vec![(Object::Str("k".into()), Object::Int(i64::MAX))],
                attrs: vec![("_metadata".into(), Object::str_dict([("", Object::Int(1))]))],
            },
        ]);
        let (bytes, tensors) = pickle(&o).unwrap();
        assert!(tensors.is_empty());
        let back = super::super::unpickle::unpickle(&bytes, &mut |_| unreachable!()).unwrap();
        assert_eq!(back, o);
    }
}
