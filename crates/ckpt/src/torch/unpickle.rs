//! A pickle virtual machine for protocols 0 to 5 that builds plain data and tensors,
//! and nothing else: like `torch.load(weights_only=True)`, it resolves only an
//! allow-list of globals, and none of them runs code.
//!
//! Objects live in an arena and the stack holds handles, so that a container stored in
//! the memo and filled later (`EMPTY_DICT`, `BINPUT`, `MARK`, ..., `SETITEMS`) is the same
//! container wherever it is referenced, as in Python. Every length is checked against
//! the bytes that remain; the arena, the stack and the memo grow by at most one entry
//! per opcode; the tree built at the end is limited in depth and in size.

use std::collections::HashMap;

use crate::object::MAX_DEPTH;
use crate::{
    AnyTensor, CkptError, DType, DTypeFiles, Elements, Object, QDType, QScheme, QuantizedTensor,
    SparseLayout, SparseTensor,
};

/// What a `_rebuild_tensor_v2` call asks for: a view of a storage record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TensorSpec {
    /// The storage key (`data/<key>` in the archive).
    pub(crate) key: String,
    /// The storage's dtype.
    pub(crate) dtype: DType,
    /// The storage's length in elements.
    pub(crate) storage_numel: u64,
    /// The view's offset in elements.
    pub(crate) offset: usize,
    /// The view's size.
    pub(crate) size: Vec<usize>,
    /// The view's stride in elements.
    pub(crate) stride: Vec<usize>,
}

type H = usize;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Global {
    OrderedDict,
    Counter,
    RebuildTensorV2,
    RebuildTensorV3,
    RebuildMeta,
    /// `torch._utils._rebuild_sparse_tensor(layout, data)`.
    RebuildSparse,
    /// `torch.serialization._get_layout(name)`: how a layout object is pickled.
    GetLayout,
    /// `torch._utils._rebuild_qtensor(storage, offset, size, stride, params, ...)`.
    RebuildQTensor,
    /// A quantized storage class (`torch.QInt8Storage`).
    QStorage(QDType),
    /// A qscheme object, by PyTorch's name (`per_tensor_affine`).
    QScheme(&'static str),
    RebuildTensor,
    RebuildParameter,
    RebuildParameterWithState,
    Storage(DType),
    /// `torch.UntypedStorage`: bytes, typed by `_rebuild_tensor_v3`'s dtype.
    UntypedStorage,
    /// A dtype object (`torch.float8_e4m3fn`).
    Dtype(DType),
    /// Something `torch.load(weights_only=True)` accepts but tempo cannot hold: a
    /// dtype, storage class or rebuild function, described.
    Unsupported(&'static str),
    Set,
    FrozenSet,
    ByteArray,
    Bytes,
    CodecsEncode,
    TorchSize,
}

#[derive(Debug)]
enum Node {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<H>),
    Tuple(Vec<H>),
    Set(Vec<H>),
    FrozenSet(Vec<H>),
    Dict(Vec<(H, H)>),
    OrderedDict {
        entries: Vec<(H, H)>,
        attrs: Vec<(H, H)>,
    },
    Counter(Vec<(H, H)>),
    Global(Global),
    Storage {
        key: String,
        dtype: DType,
        numel: u64,
        /// The quantized dtype of a quantized storage (`dtype` is then its integers').
        quantized: Option<QDType>,
    },
    /// A `_rebuild_qtensor` call: the integers to load and the quantizer's parameters.
    QTensor {
        dtype: QDType,
        shape: Vec<usize>,
        data: Box<TensorSpec>,
        params: QParams,
    },
    Tensor(Box<TensorSpec>),
    Meta {
        dtype: DType,
        shape: Vec<usize>,
    },
    /// A sparse layout object.
    Layout(SparseLayout),
    /// Inspection mode: a class off the allow-list, by its path (never imported).
    Class(String),
    /// Inspection mode: an instance of such a class, as data (never constructed).
    Record {
        class: String,
        args: Vec<H>,
        state: Option<H>,
    },
    /// A `_rebuild_sparse_tensor` call: the parts are tensor nodes, in the order
    /// torch writes them.
    Sparse {
        layout: SparseLayout,
        parts: Vec<H>,
        size: Vec<usize>,
        is_coalesced: Option<bool>,
    },
    /// A value tempo cannot hold, described; an error, with its key path, if the
    /// result contains it.
    Unsupported(String),
}

impl Node {
    fn type_name(&self) -> &'static str {
        match self {
            Node::None => "None",
            Node::Bool(_) => "bool",
            Node::Int(_) => "int",
            Node::Float(_) => "float",
            Node::Str(_) => "str",
            Node::Bytes(_) => "bytes",
            Node::List(_) => "list",
            Node::Tuple(_) => "tuple",
            Node::Set(_) => "set",
            Node::FrozenSet(_) => "frozenset",
            Node::Dict(_) => "dict",
            Node::OrderedDict { .. } => "OrderedDict",
            Node::Counter(_) => "Counter",
            Node::Global(_) => "a global",
            Node::Storage { .. } => "a storage",
            Node::Tensor(_) | Node::Meta { .. } | Node::Sparse { .. } | Node::QTensor { .. } => {
                "Tensor"
            }
            Node::Layout(_) => "a layout",
            Node::Class(_) => "a class",
            Node::Record { .. } => "a record",
            Node::Unsupported(_) => "an unsupported value",
        }
    }
}

/// A quantizer's parameters as the pickle gives them.
#[derive(Debug)]
enum QParams {
    PerTensor {
        scale: f64,
        zero_point: i64,
    },
    /// Scales and zero points are tensors, or lists of numbers (older files).
    PerChannel {
        scales: H,
        zero_points: H,
        axis: usize,
        float_qparams_name: bool,
    },
}

/// The qschemes `torch.load(weights_only=True)` resolves.
const QSCHEMES: &[&str] = &[
    "per_tensor_affine",
    "per_channel_affine",
    "per_channel_affine_float_qparams",
    "per_tensor_symmetric",
    "per_channel_symmetric",
];

/// Names in `torch` that PyTorch's safe loader accepts but tempo does not hold: the
/// quantized dtypes and their storages, the bit-packed and sub-byte dtypes, the
/// layouts and memory formats of the tensors tempo refuses anyway.
const UNSUPPORTED_DTYPES: &[&str] = &[
    "qint8",
    "quint8",
    "qint32",
    "quint4x2",
    "quint2x4",
    "QInt8Storage",
    "QUInt8Storage",
    "QInt32Storage",
    "QUInt4x2Storage",
    "QUInt2x4Storage",
    "bits8",
    "bits16",
    "bits1x8",
    "bits2x4",
    "bits4x2",
    "float4_e2m1fn_x2",
    "int1",
    "int2",
    "int3",
    "int4",
    "int5",
    "int6",
    "int7",
    "uint1",
    "uint2",
    "uint3",
    "uint4",
    "uint5",
    "uint6",
    "uint7",
    "sparse_coo",
    "sparse_csr",
    "sparse_csc",
    "sparse_bsr",
    "sparse_bsc",
    "per_tensor_affine",
    "per_channel_affine",
    "per_channel_affine_float_qparams",
];

/// Maps Python 2 module names (pickle protocol 2 writes them) to Python 3's.
fn resolve_global(module: &str, name: &str) -> Result<Global, CkptError> {
    let module = match module {
        "__builtin__" => "builtins",
        "copy_reg" => "copyreg",
        m => m,
    };
    let g = match (module, name) {
        ("collections", "OrderedDict") => Global::OrderedDict,
        ("collections", "Counter") => Global::Counter,
        ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
        ("torch._utils", "_rebuild_tensor_v3") => Global::RebuildTensorV3,
        ("torch", "UntypedStorage") => Global::UntypedStorage,
        ("torch._utils", "_rebuild_qtensor") => Global::RebuildQTensor,
        ("torch", name) if QDType::from_storage_name(name).is_some() => {
            Global::QStorage(QDType::from_storage_name(name).unwrap_or(QDType::QInt8))
        }
        ("torch", name) if QSCHEMES.contains(&name) => {
            Global::QScheme(QSCHEMES.iter().find(|&&q| q == name).copied().unwrap_or(""))
        }
        ("torch._utils", "_rebuild_sparse_tensor") => Global::RebuildSparse,
        ("torch.serialization", "_get_layout") => Global::GetLayout,
        ("torch._utils", "_rebuild_meta_tensor_no_storage") => Global::RebuildMeta,
        ("torch._utils", "_rebuild_nested_tensor") => Global::Unsupported("a nested tensor"),
        ("torch._utils", "_rebuild_wrapper_subclass") => Global::Unsupported("a tensor subclass"),
        ("torch._tensor", "_rebuild_from_type_v2") => Global::Unsupported("a tensor subclass"),
        ("torch", name) if DType::from_torch_name(name).is_some() => {
            Global::Dtype(DType::from_torch_name(name).unwrap_or(DType::U8))
        }
        ("torch", name) if UNSUPPORTED_DTYPES.contains(&name) => Global::Unsupported(
            UNSUPPORTED_DTYPES
                .iter()
                .find(|&&n| n == name)
                .copied()
                .unwrap_or("a dtype"),
        ),
        ("torch._utils", "_rebuild_tensor") => Global::RebuildTensor,
        ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
        ("torch._utils", "_rebuild_parameter_with_state") => Global::RebuildParameterWithState,
        ("builtins", "set") => Global::Set,
        ("builtins", "frozenset") => Global::FrozenSet,
        ("builtins", "bytearray") => Global::ByteArray,
        ("builtins", "bytes") => Global::Bytes,
        ("_codecs", "encode") => Global::CodecsEncode,
        ("torch", "Size") => Global::TorchSize,
        ("torch", storage) if storage.ends_with("Storage") => {
            Global::Storage(DType::from_torch_storage(storage)?)
        }
        _ => {
            return Err(CkptError::ForbiddenGlobal {
                module: module.to_string(),
                name: name.to_string(),
            })
        }
    };
    Ok(g)
}

struct Vm<'a> {
    data: &'a [u8],
    pos: usize,
    op_pos: usize,
    op: u8,
    nodes: Vec<Node>,
    stack: Vec<H>,
    marks: Vec<usize>,
    memo: HashMap<u64, H>,
    /// Inspection mode: a global off the allow-list is a class reference, and calling
    /// it an inert record, instead of an error. Nothing is imported or called either way.
    inert: bool,
}

/// Runs the pickle in `data` and returns its root, calling `load` for each tensor.
pub(crate) fn unpickle(
    data: &[u8],
    load: &mut dyn FnMut(&TensorSpec) -> Result<AnyTensor, CkptError>,
) -> Result<Object, CkptError> {
    unpickle_prefix(data, load).map(|(o, _)| o)
}

/// [`unpickle`] in inspection mode: instances of classes off the allow-list (a pickled
/// dataclass, an enum member) become inert [`Object::Record`]s of their class path,
/// constructor arguments and state. Nothing is imported or called.
pub(crate) fn unpickle_inert(
    data: &[u8],
    load: &mut dyn FnMut(&TensorSpec) -> Result<AnyTensor, CkptError>,
) -> Result<Object, CkptError> {
    run_vm(data, load, true).map(|(o, _)| o)
}

/// Runs the pickle at the start of `data` (the legacy format writes several in a
/// row) and returns its root and its length in bytes.
pub(crate) fn unpickle_prefix(
    data: &[u8],
    load: &mut dyn FnMut(&TensorSpec) -> Result<AnyTensor, CkptError>,
) -> Result<(Object, usize), CkptError> {
    run_vm(data, load, false)
}

/// The tensors the pickle at the start of `data` refers to (every storage view, in
/// the order they appear) and the pickle's length, without building its value: the
/// legacy format's storages come after its pickle, so their specs are needed first.
pub(crate) fn tensor_specs_prefix(data: &[u8]) -> Result<(Vec<TensorSpec>, usize), CkptError> {
    let mut vm = Vm {
        data,
        pos: 0,
        op_pos: 0,
        op: 0,
        nodes: Vec::new(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        inert: false,
    };
    vm.run()?;
    let specs = vm
        .nodes
        .iter()
        .filter_map(|n| match n {
            Node::Tensor(spec) | Node::QTensor { data: spec, .. } => Some((**spec).clone()),
            _ => None,
        })
        .collect();
    Ok((specs, vm.pos))
}

fn run_vm(
    data: &[u8],
    load: &mut dyn FnMut(&TensorSpec) -> Result<AnyTensor, CkptError>,
    inert: bool,
) -> Result<(Object, usize), CkptError> {
    let mut vm = Vm {
        data,
        pos: 0,
        op_pos: 0,
        op: 0,
        nodes: Vec::new(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        inert,
    };
    let root = vm.run()?;
    let limit = 8 * data.len() + 1024;
    let mut builder = Builder {
        nodes: &vm.nodes,
        budget: limit,
        limit,
        load,
    };
    Ok((builder.build(root, 0, "")?, vm.pos))
}

impl<'a> Vm<'a> {
    fn err(&self, detail: impl Into<String>) -> CkptError {
        CkptError::Pickle {
            offset: self.op_pos,
            opcode: self.op,
            detail: detail.into(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CkptError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| {
                self.err(format!(
                    "needs {n} bytes of argument, only {} remain",
                    self.data.len() - self.pos
                ))
            })?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, CkptError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, CkptError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, CkptError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, CkptError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    /// A length argument, checked against the bytes that remain.
    fn len_arg(&mut self, n: u64) -> Result<usize, CkptError> {
        let remaining = (self.data.len() - self.pos) as u64;
        if n > remaining {
            return Err(self.err(format!("announces {n} bytes, only {remaining} remain")));
        }
        Ok(n as usize)
    }
    fn line(&mut self) -> Result<&'a str, CkptError> {
        let rest = &self.data[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| self.err("a text argument has no terminating newline"))?;
        self.pos += end + 1;
        std::str::from_utf8(&rest[..end]).map_err(|_| self.err("a text argument is not UTF-8"))
    }

    fn push(&mut self, node: Node) {
        self.nodes.push(node);
        self.stack.push(self.nodes.len() - 1);
    }

    fn pop(&mut self) -> Result<H, CkptError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.err("pops from an empty stack"));
        }
        self.stack
            .pop()
            .ok_or_else(|| self.err("pops from an empty stack"))
    }

    fn top(&self) -> Result<H, CkptError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.err("reads an empty stack"));
        }
        self.stack
            .last()
            .copied()
            .ok_or_else(|| self.err("reads an empty stack"))
    }

    fn pop_mark(&mut self) -> Result<Vec<H>, CkptError> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| self.err("needs a MARK, there is none"))?;
        Ok(self.stack.split_off(mark))
    }

    fn str_node(&mut self, bytes: &[u8]) -> Result<(), CkptError> {
        let s = std::str::from_utf8(bytes).map_err(|_| self.err("a string is not valid UTF-8"))?;
        self.push(Node::Str(s.to_string()));
        Ok(())
    }

    fn int_node(&mut self, bytes: &[u8]) -> Result<(), CkptError> {
        // Little-endian two's complement of any length; it must fit in an i64.
        let negative = bytes.last().is_some_and(|&b| b & 0x80 != 0);
        let fill = if negative { 0xFF } else { 0 };
        if bytes.len() > 8 && bytes[8..].iter().any(|&b| b != fill) {
            return Err(self.err(format!(
                "an int of {} bytes does not fit in 64 bits",
                bytes.len()
            )));
        }
        let mut a = [fill; 8];
        let n = bytes.len().min(8);
        a[..n].copy_from_slice(&bytes[..n]);
        let v = i64::from_le_bytes(a);
        if bytes.len() >= 8 && (v < 0) != negative {
            return Err(self.err("an int does not fit in 64 bits"));
        }
        self.push(Node::Int(v));
        Ok(())
    }

    /// Pushes the global `module.name`: an allowed one, or in inspection mode a class
    /// reference for any other.
    fn global(&mut self, module: &str, name: &str) -> Result<(), CkptError> {
        match resolve_global(module, name) {
            Ok(g) => self.push(Node::Global(g)),
            Err(CkptError::ForbiddenGlobal { module, name }) if self.inert => {
                self.push(Node::Class(format!("{module}.{name}")));
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    fn memo_get(&mut self, idx: u64) -> Result<(), CkptError> {
        let h = *self
            .memo
            .get(&idx)
            .ok_or_else(|| self.err(format!("memo index {idx} was never stored")))?;
        self.stack.push(h);
        Ok(())
    }

    fn memo_put(&mut self, idx: u64) -> Result<(), CkptError> {
        let h = self.top()?;
        self.memo.insert(idx, h);
        Ok(())
    }

    fn ints(&self, h: H, what: &str) -> Result<Vec<usize>, CkptError> {
        match &self.nodes[h] {
            Node::Tuple(items) | Node::List(items) => items
                .iter()
                .map(|&i| match self.nodes[i] {
                    Node::Int(v) if v >= 0 => Ok(v as usize),
                    ref other => Err(self.err(format!(
                        "{what} must hold non-negative ints, found {}",
                        other.type_name()
                    ))),
                })
                .collect(),
            other => Err(self.err(format!(
                "{what} must be a tuple, found {}",
                other.type_name()
            ))),
        }
    }

    fn int(&self, h: H, what: &str) -> Result<i64, CkptError> {
        match self.nodes[h] {
            Node::Int(v) => Ok(v),
            ref other => Err(self.err(format!(
                "{what} must be an int, found {}",
                other.type_name()
            ))),
        }
    }

    /// The items of an iterable argument (list, tuple, set).
    fn iterable(&self, h: H, what: &str) -> Result<Vec<H>, CkptError> {
        match &self.nodes[h] {
            Node::List(v) | Node::Tuple(v) | Node::Set(v) | Node::FrozenSet(v) => Ok(v.clone()),
            other => Err(self.err(format!(
                "{what} must be a list, found {}",
                other.type_name()
            ))),
        }
    }

    fn pairs(&self, h: H, what: &str) -> Result<Vec<(H, H)>, CkptError> {
        match &self.nodes[h] {
            Node::Dict(e) | Node::Counter(e) | Node::OrderedDict { entries: e, .. } => {
                Ok(e.clone())
            }
            Node::List(items) | Node::Tuple(items) => items
                .iter()
                .map(|&i| match &self.nodes[i] {
                    Node::Tuple(p) | Node::List(p) if p.len() == 2 => Ok((p[0], p[1])),
                    other => Err(self.err(format!(
                        "{what} must hold pairs, found {}",
                        other.type_name()
                    ))),
                })
                .collect(),
            other => Err(self.err(format!(
                "{what} must be a dict, found {}",
                other.type_name()
            ))),
        }
    }

    /// `_rebuild_qtensor(storage, storage_offset, size, stride, quantizer_params,
    /// requires_grad, backward_hooks)`.
    fn rebuild_qtensor(&mut self, args: &[H]) -> Result<(), CkptError> {
        if args.len() != 7 {
            return Err(self.err(format!(
                "_rebuild_qtensor takes 7 arguments, got {}",
                args.len()
            )));
        }
        let (key, int_dtype, numel, dtype) = match &self.nodes[args[0]] {
            Node::Storage {
                key,
                dtype,
                numel,
                quantized: Some(q),
            } => (key.clone(), *dtype, *numel, *q),
            Node::Unsupported(what) => {
                let what = what.clone();
                self.push(Node::Unsupported(what));
                return Ok(());
            }
            other => {
                let found = other.type_name();
                return Err(self.err(format!(
                    "a quantized tensor's storage must be a quantized storage, found {found}"
                )));
            }
        };
        let offset = self.int(args[1], "a storage offset")?;
        let offset = usize::try_from(offset)
            .map_err(|_| self.err(format!("negative storage offset {offset}")))?;
        let size = self.ints(args[2], "a tensor's size")?;
        let stride = self.ints(args[3], "a tensor's stride")?;
        if size.len() != stride.len() || size.len() > 64 {
            return Err(self.err(format!("size {size:?} and stride {stride:?}")));
        }
        let params = match &self.nodes[args[4]] {
            Node::Tuple(p) => p.clone(),
            other => {
                let found = other.type_name();
                return Err(self.err(format!("quantizer params must be a tuple, found {found}")));
            }
        };
        let scheme = match params.first().map(|&h| &self.nodes[h]) {
            Some(Node::Global(Global::QScheme(name))) => *name,
            _ => return Err(self.err("quantizer params must start with a qscheme")),
        };
        let params = match (scheme, params.len()) {
            ("per_tensor_affine", 3) => {
                let scale = match self.nodes[params[1]] {
                    Node::Float(f) => f,
                    Node::Int(i) => i as f64,
                    ref other => {
                        let found = other.type_name();
                        return Err(self.err(format!("a scale must be a float, found {found}")));
                    }
                };
                let zero_point = self.int(params[2], "a zero point")?;
                QParams::PerTensor { scale, zero_point }
            }
            ("per_channel_affine" | "per_channel_affine_float_qparams", 4) => {
                let axis = self.int(params[3], "a per-channel axis")?;
                let axis = usize::try_from(axis)
                    .map_err(|_| self.err(format!("negative per-channel axis {axis}")))?;
                QParams::PerChannel {
                    scales: params[1],
                    zero_points: params[2],
                    axis,
                    float_qparams_name: scheme == "per_channel_affine_float_qparams",
                }
            }
            (name, n) => {
                // torch.load refuses the symmetric schemes too, when it rebuilds.
                let what = format!("a quantized tensor with the qscheme {name} ({n} parameters)");
                self.push(Node::Unsupported(what));
                return Ok(());
            }
        };
        let n = crate::tensor::numel(&size)
            .ok_or_else(|| self.err(format!("size {size:?} overflows")))?;
        let spec = if dtype.is_packed() {
            // Values packed several to a byte: only a whole, contiguous tensor has bytes
            // of its own.
            let whole = offset == 0
                && super::is_contiguous(&size, &stride)
                && dtype.storage_len(n).map(|l| l as u64) == Some(numel);
            if !whole {
                let what = format!(
                    "a torch.{dtype} tensor that is a view (offset {offset}, size {size:?}, stride {stride:?}) of a storage of {numel} bytes"
                );
                self.push(Node::Unsupported(what));
                return Ok(());
            }
            let bytes = usize::try_from(numel)
                .map_err(|_| self.err(format!("a storage of {numel} bytes")))?;
            TensorSpec {
                key,
                dtype: int_dtype,
                storage_numel: numel,
                offset: 0,
                size: vec![bytes],
                stride: vec![1],
            }
        } else {
            TensorSpec {
                key,
                dtype: int_dtype,
                storage_numel: numel,
                offset,
                size: size.clone(),
                stride,
            }
        };
        self.push(Node::QTensor {
            dtype,
            shape: size,
            data: Box::new(spec),
            params,
        });
        Ok(())
    }

    /// Calls an allowed global with `args` (a tuple handle).
    fn call(&mut self, g: Global, args: H) -> Result<(), CkptError> {
        let args = match &self.nodes[args] {
            Node::Tuple(a) => a.clone(),
            other => {
                return Err(self.err(format!(
                    "call arguments must be a tuple, found {}",
                    other.type_name()
                )))
            }
        };
        let arity = |n: &[usize]| n.contains(&args.len());
        let want = |this: &Self, n: &[usize]| -> Result<(), CkptError> {
            if arity(n) {
                Ok(())
            } else {
                Err(this.err(format!("{g:?} takes {n:?} arguments, got {}", args.len())))
            }
        };
        match g {
            Global::OrderedDict => {
                want(self, &[0, 1])?;
                let entries = match args.first() {
                    Some(&a) => self.pairs(a, "OrderedDict's argument")?,
                    None => Vec::new(),
                };
                self.push(Node::OrderedDict {
                    entries,
                    attrs: Vec::new(),
                });
            }
            Global::Counter => {
                want(self, &[0, 1])?;
                let entries = match args.first() {
                    Some(&a) => self.pairs(a, "Counter's argument")?,
                    None => Vec::new(),
                };
                self.push(Node::Counter(entries));
            }
            Global::Set | Global::FrozenSet => {
                want(self, &[0, 1])?;
                let items = match args.first() {
                    Some(&a) => self.iterable(a, "set's argument")?,
                    None => Vec::new(),
                };
                self.push(if g == Global::Set {
                    Node::Set(items)
                } else {
                    Node::FrozenSet(items)
                });
            }
            Global::ByteArray | Global::Bytes => {
                want(self, &[0, 1])?;
                let bytes = match args.first().map(|&a| &self.nodes[a]) {
                    None => Vec::new(),
                    Some(Node::Bytes(b)) => b.clone(),
                    Some(other) => {
                        return Err(
                            self.err(format!("bytes() of {} is not supported", other.type_name()))
                        )
                    }
                };
                self.push(Node::Bytes(bytes));
            }
            Global::CodecsEncode => {
                want(self, &[2])?;
                let (text, codec) = match (&self.nodes[args[0]], &self.nodes[args[1]]) {
                    (Node::Str(t), Node::Str(c)) => (t, c),
                    _ => return Err(self.err("_codecs.encode takes two strings")),
                };
                if codec != "latin1" && codec != "latin-1" {
                    return Err(self.err(format!("_codecs.encode with `{codec}` (only latin1)")));
                }
                let bytes: Option<Vec<u8>> =
                    text.chars().map(|c| u8::try_from(c as u32).ok()).collect();
                let bytes = bytes
                    .ok_or_else(|| self.err("a latin1 string holds a character above U+00FF"))?;
                self.push(Node::Bytes(bytes));
            }
            Global::TorchSize => {
                want(self, &[0, 1])?;
                let items = match args.first() {
                    Some(&a) => self.iterable(a, "torch.Size's argument")?,
                    None => Vec::new(),
                };
                self.push(Node::Tuple(items));
            }
            Global::RebuildTensorV2 | Global::RebuildTensorV3 | Global::RebuildTensor => {
                match g {
                    Global::RebuildTensorV2 => want(self, &[6, 7])?,
                    Global::RebuildTensorV3 => want(self, &[7, 8])?,
                    _ => want(self, &[4])?,
                }
                if let Node::Unsupported(what) = &self.nodes[args[0]] {
                    let what = what.clone();
                    self.push(Node::Unsupported(what));
                    return Ok(());
                }
                let (key, dtype, numel) = match &self.nodes[args[0]] {
                    Node::Storage {
                        key,
                        dtype,
                        numel,
                        quantized: None,
                    } => (key.clone(), *dtype, *numel),
                    Node::Storage {
                        quantized: Some(q), ..
                    } => {
                        let what = format!("a plain tensor over a torch.{q} storage");
                        self.push(Node::Unsupported(what));
                        return Ok(());
                    }
                    other => {
                        return Err(self.err(format!(
                            "a tensor's first argument must be a storage, found {}",
                            other.type_name()
                        )))
                    }
                };
                // `_rebuild_tensor_v3` types a storage of bytes with its dtype argument.
                let (dtype, numel) = if g == Global::RebuildTensorV3 {
                    let to = match self.nodes[args[6]] {
                        Node::Global(Global::Dtype(d)) => d,
                        Node::Global(Global::Unsupported(what)) => {
                            self.push(Node::Unsupported(format!("a tensor of dtype torch.{what}")));
                            return Ok(());
                        }
                        ref other => {
                            let found = other.type_name();
                            return Err(self.err(format!(
                                "_rebuild_tensor_v3's dtype must be a torch dtype, found {found}"
                            )));
                        }
                    };
                    if dtype == to {
                        (to, numel)
                    } else if dtype == DType::U8 {
                        let size = to.size() as u64;
                        if numel % size != 0 {
                            return Err(self.err(format!(
                                "a storage of {numel} bytes does not hold whole {to} elements"
                            )));
                        }
                        (to, numel / size)
                    } else {
                        return Err(self.err(format!(
                            "a {dtype} storage read as {to} by _rebuild_tensor_v3"
                        )));
                    }
                } else {
                    (dtype, numel)
                };
                let offset = self.int(args[1], "a storage offset")?;
                let offset = usize::try_from(offset)
                    .map_err(|_| self.err(format!("negative storage offset {offset}")))?;
                let size = self.ints(args[2], "a tensor's size")?;
                let stride = self.ints(args[3], "a tensor's stride")?;
                if size.len() != stride.len() {
                    return Err(self.err(format!(
                        "size {size:?} and stride {stride:?} differ in length"
                    )));
                }
                if size.len() > 64 {
                    return Err(self.err(format!("a tensor of {} dimensions", size.len())));
                }
                self.push(Node::Tensor(Box::new(TensorSpec {
                    key,
                    dtype,
                    storage_numel: numel,
                    offset,
                    size,
                    stride,
                })));
            }
            Global::RebuildMeta => {
                want(self, &[4])?;
                let dtype = match self.nodes[args[0]] {
                    Node::Global(Global::Dtype(d)) => d,
                    Node::Global(Global::Unsupported(what)) => {
                        self.push(Node::Unsupported(format!(
                            "a meta tensor of dtype torch.{what}"
                        )));
                        return Ok(());
                    }
                    ref other => {
                        let found = other.type_name();
                        return Err(self.err(format!(
                            "a meta tensor's dtype must be a torch dtype, found {found}"
                        )));
                    }
                };
                let shape = self.ints(args[1], "a meta tensor's size")?;
                if shape.len() > 64 {
                    return Err(self.err(format!("a tensor of {} dimensions", shape.len())));
                }
                self.push(Node::Meta { dtype, shape });
            }
            Global::GetLayout => {
                want(self, &[1])?;
                let name = match &self.nodes[args[0]] {
                    Node::Str(name) => name.clone(),
                    other => {
                        let found = other.type_name();
                        return Err(self.err(format!("_get_layout takes a string, found {found}")));
                    }
                };
                match SparseLayout::from_torch_name(&name) {
                    Some(layout) => self.push(Node::Layout(layout)),
                    // `torch.strided` and the rest: layouts as values, which tempo does
                    // not hold.
                    None => self.push(Node::Unsupported(format!("the layout object {name}"))),
                }
            }
            Global::RebuildSparse => {
                want(self, &[2])?;
                let layout = match &self.nodes[args[0]] {
                    Node::Layout(l) => *l,
                    Node::Unsupported(what) => {
                        let what = format!("a sparse tensor of {what}");
                        self.push(Node::Unsupported(what));
                        return Ok(());
                    }
                    other => {
                        let found = other.type_name();
                        return Err(self.err(format!(
                            "_rebuild_sparse_tensor's layout must be a layout, found {found}"
                        )));
                    }
                };
                let data = match &self.nodes[args[1]] {
                    Node::Tuple(items) => items.clone(),
                    other => {
                        let found = other.type_name();
                        return Err(self.err(format!(
                            "_rebuild_sparse_tensor's data must be a tuple, found {found}"
                        )));
                    }
                };
                // COO: (indices, values, size[, is_coalesced]); compressed: (compressed
                // indices, plain indices, values, size).
                let (n_parts, lens): (usize, &[usize]) = if layout.is_compressed() {
                    (3, &[4])
                } else {
                    (2, &[3, 4])
                };
                if !lens.contains(&data.len()) {
                    return Err(self.err(format!(
                        "a {layout} tensor's data has {} items, expected {lens:?}",
                        data.len()
                    )));
                }
                for &part in &data[..n_parts] {
                    match &self.nodes[part] {
                        Node::Tensor(_) => {}
                        Node::Unsupported(what) => {
                            let what = format!("a {layout} tensor with {what}");
                            self.push(Node::Unsupported(what));
                            return Ok(());
                        }
                        other => {
                            let found = other.type_name();
                            return Err(self.err(format!(
                                "a {layout} tensor's parts must be tensors, found {found}"
                            )));
                        }
                    }
                }
                let size = self.ints(data[n_parts], "a sparse tensor's size")?;
                if size.len() > 64 {
                    return Err(self.err(format!("a tensor of {} dimensions", size.len())));
                }
                let is_coalesced = match data.get(n_parts + 1).map(|&h| &self.nodes[h]) {
                    None | Some(Node::None) => None,
                    Some(Node::Bool(b)) => Some(*b),
                    Some(other) => {
                        let found = other.type_name();
                        return Err(self.err(format!("is_coalesced must be a bool, found {found}")));
                    }
                };
                self.push(Node::Sparse {
                    layout,
                    parts: data[..n_parts].to_vec(),
                    size,
                    is_coalesced,
                });
            }
            Global::RebuildQTensor => self.rebuild_qtensor(&args)?,
            Global::RebuildParameter | Global::RebuildParameterWithState => {
                want(
                    self,
                    if g == Global::RebuildParameter {
                        &[3]
                    } else {
                        &[4]
                    },
                )?;
                if !matches!(
                    self.nodes[args[0]],
                    Node::Tensor(_)
                        | Node::Meta { .. }
                        | Node::Sparse { .. }
                        | Node::QTensor { .. }
                ) {
                    return Err(self.err("a parameter's data must be a tensor"));
                }
                // A parameter is loaded as its data, as `state_dict()` would give it.
                self.stack.push(args[0]);
            }
            Global::Storage(_)
            | Global::UntypedStorage
            | Global::Dtype(_)
            | Global::QStorage(_)
            | Global::QScheme(_) => {
                return Err(self.err("storage classes and dtypes cannot be called"))
            }
            Global::Unsupported(what) => {
                // Refused when the result holds it, with its key path.
                self.push(Node::Unsupported(what.to_string()));
            }
        }
        Ok(())
    }

    fn run(&mut self) -> Result<H, CkptError> {
        loop {
            self.op_pos = self.pos;
            let op = self.take(1).map_err(|_| CkptError::Pickle {
                offset: self.pos,
                opcode: 0,
                detail: "the pickle ends without STOP".into(),
            })?[0];
            self.op = op;
            match op {
                0x80 => {
                    let proto = self.u8()?;
                    if proto > 5 {
                        return Err(
                            self.err(format!("protocol {proto} (this reader knows 0 to 5)"))
                        );
                    }
                }
                0x95 => {
                    self.u64()?; // FRAME: a hint only
                }
                b'.' => {
                    let root = self.pop()?;
                    return Ok(root);
                }
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    let floor = self.marks.last().copied().unwrap_or(0);
                    if self.stack.len() > floor {
                        self.stack.pop();
                    } else {
                        self.pop_mark()?;
                    }
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let h = self.top()?;
                    self.stack.push(h);
                }
                b'N' => self.push(Node::None),
                0x88 => self.push(Node::Bool(true)),
                0x89 => self.push(Node::Bool(false)),
                b'I' => {
                    let line = self.line()?;
                    match line {
                        "01" => self.push(Node::Bool(true)),
                        "00" => self.push(Node::Bool(false)),
                        _ => {
                            let v = line
                                .parse::<i64>()
                                .map_err(|_| self.err(format!("bad INT `{line}`")))?;
                            self.push(Node::Int(v));
                        }
                    }
                }
                b'L' => {
                    let line = self.line()?;
                    let digits = line.strip_suffix('L').unwrap_or(line);
                    let v = digits
                        .parse::<i64>()
                        .map_err(|_| self.err(format!("LONG `{line}` does not fit in 64 bits")))?;
                    self.push(Node::Int(v));
                }
                b'J' => {
                    let v = self.u32()? as i32;
                    self.push(Node::Int(i64::from(v)));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Node::Int(i64::from(v)));
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push(Node::Int(i64::from(v)));
                }
                0x8a => {
                    let n = self.u8()?;
                    let b = self.take(usize::from(n))?;
                    self.int_node(b)?;
                }
                0x8b => {
                    let n = self.u32()? as i32;
                    let n = u64::try_from(n).map_err(|_| self.err("negative LONG4 length"))?;
                    let n = self.len_arg(n)?;
                    let b = self.take(n)?;
                    self.int_node(b)?;
                }
                b'F' => {
                    let line = self.line()?;
                    let v = line
                        .trim()
                        .parse::<f64>()
                        .map_err(|_| self.err(format!("bad FLOAT `{line}`")))?;
                    self.push(Node::Float(v));
                }
                b'G' => {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(self.take(8)?);
                    self.push(Node::Float(f64::from_be_bytes(a)));
                }
                b'X' | 0x8c | 0x8d | b'T' | b'U' => {
                    let n = match op {
                        b'X' | b'T' => u64::from(self.u32()?),
                        0x8c | b'U' => u64::from(self.u8()?),
                        _ => self.u64()?,
                    };
                    let n = self.len_arg(n)?;
                    let b = self.take(n)?;
                    self.str_node(b)?;
                }
                b'V' | b'S' => {
                    let line = self.line()?;
                    let text = if op == b'S' {
                        let inner = line
                            .strip_prefix('\'')
                            .and_then(|l| l.strip_suffix('\''))
                            .or_else(|| line.strip_prefix('"').and_then(|l| l.strip_suffix('"')));
                        inner.ok_or_else(|| self.err("STRING must be quoted"))?
                    } else {
                        line
                    };
                    if text.contains('\\') {
                        return Err(self.err("escaped text strings are not supported"));
                    }
                    self.push(Node::Str(text.to_string()));
                }
                b'B' | b'C' | 0x8e | 0x96 => {
                    let n = match op {
                        b'B' => u64::from(self.u32()?),
                        b'C' => u64::from(self.u8()?),
                        _ => self.u64()?,
                    };
                    let n = self.len_arg(n)?;
                    let b = self.take(n)?.to_vec();
                    self.push(Node::Bytes(b));
                }
                b']' => self.push(Node::List(Vec::new())),
                b')' => self.push(Node::Tuple(Vec::new())),
                b'}' => self.push(Node::Dict(Vec::new())),
                0x8f => self.push(Node::Set(Vec::new())),
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Node::List(items));
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Node::Tuple(items));
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    self.push(Node::FrozenSet(items));
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push(Node::Tuple(items));
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    if items.len() % 2 != 0 {
                        return Err(self.err("DICT needs an even number of items"));
                    }
                    let pairs = items.chunks_exact(2).map(|p| (p[0], p[1])).collect();
                    self.push(Node::Dict(pairs));
                }
                b'a' => {
                    let item = self.pop()?;
                    let target = self.top()?;
                    match &mut self.nodes[target] {
                        Node::List(v) => v.push(item),
                        other => {
                            let found = other.type_name();
                            return Err(self.err(format!("APPEND to {found}")));
                        }
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let target = self.top()?;
                    match &mut self.nodes[target] {
                        Node::List(v) => v.extend(items),
                        other => {
                            let found = other.type_name();
                            return Err(self.err(format!("APPENDS to {found}")));
                        }
                    }
                }
                b's' | b'u' => {
                    let items = if op == b's' {
                        let v = self.pop()?;
                        let k = self.pop()?;
                        vec![k, v]
                    } else {
                        self.pop_mark()?
                    };
                    if items.len() % 2 != 0 {
                        return Err(self.err("SETITEMS needs an even number of items"));
                    }
                    let target = self.top()?;
                    match &mut self.nodes[target] {
                        Node::Dict(e) | Node::Counter(e) | Node::OrderedDict { entries: e, .. } => {
                            e.extend(items.chunks_exact(2).map(|p| (p[0], p[1])));
                        }
                        other => {
                            let found = other.type_name();
                            return Err(self.err(format!("SETITEM on {found}")));
                        }
                    }
                }
                0x90 => {
                    let items = self.pop_mark()?;
                    let target = self.top()?;
                    match &mut self.nodes[target] {
                        Node::Set(v) => v.extend(items),
                        other => {
                            let found = other.type_name();
                            return Err(self.err(format!("ADDITEMS on {found}")));
                        }
                    }
                }
                b'g' => {
                    let line = self.line()?;
                    let idx = line
                        .parse::<u64>()
                        .map_err(|_| self.err(format!("bad GET `{line}`")))?;
                    self.memo_get(idx)?;
                }
                b'h' => {
                    let idx = u64::from(self.u8()?);
                    self.memo_get(idx)?;
                }
                b'j' => {
                    let idx = u64::from(self.u32()?);
                    self.memo_get(idx)?;
                }
                b'p' => {
                    let line = self.line()?;
                    let idx = line
                        .parse::<u64>()
                        .map_err(|_| self.err(format!("bad PUT `{line}`")))?;
                    self.memo_put(idx)?;
                }
                b'q' => {
                    let idx = u64::from(self.u8()?);
                    self.memo_put(idx)?;
                }
                b'r' => {
                    let idx = u64::from(self.u32()?);
                    self.memo_put(idx)?;
                }
                0x94 => {
                    let idx = self.memo.len() as u64;
                    self.memo_put(idx)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.global(module, name)?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (module, name) = match (&self.nodes[module], &self.nodes[name]) {
                        (Node::Str(m), Node::Str(n)) => (m.clone(), n.clone()),
                        _ => return Err(self.err("STACK_GLOBAL needs two strings")),
                    };
                    self.global(&module, &name)?;
                }
                b'R' | 0x81 => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    match self.nodes[callable] {
                        Node::Global(g) => {
                            if op == 0x81
                                && !matches!(
                                    g,
                                    Global::OrderedDict
                                        | Global::Counter
                                        | Global::Set
                                        | Global::FrozenSet
                                        | Global::TorchSize
                                )
                            {
                                return Err(self.err(format!("NEWOBJ of {g:?}")));
                            }
                            self.call(g, args)?;
                        }
                        Node::Class(ref class) => {
                            // Inspection mode: the call is recorded, never made.
                            let class = class.clone();
                            let args = match &self.nodes[args] {
                                Node::Tuple(a) => a.clone(),
                                other => {
                                    let found = other.type_name();
                                    return Err(self.err(format!(
                                        "call arguments must be a tuple, found {found}"
                                    )));
                                }
                            };
                            self.push(Node::Record {
                                class,
                                args,
                                state: None,
                            });
                        }
                        ref other => {
                            let found = other.type_name();
                            return Err(self.err(format!("calls {found}, which is not callable")));
                        }
                    }
                }
                b'b' => {
                    let state = self.pop()?;
                    let target = self.top()?;
                    if let Node::Record { state: s, .. } = &mut self.nodes[target] {
                        // An inert record keeps its state as data, whatever its shape.
                        *s = Some(state);
                        continue;
                    }
                    // OrderedDict's state is its instance dict (`_metadata`), possibly
                    // paired with slot state.
                    let dict_state = match &self.nodes[state] {
                        Node::Dict(e) => e.clone(),
                        Node::Tuple(p) if p.len() == 2 => {
                            match (&self.nodes[p[0]], &self.nodes[p[1]]) {
                                (Node::Dict(e), Node::None) => e.clone(),
                                (Node::None, Node::None) => Vec::new(),
                                _ => return Err(self.err("BUILD with slot state is not supported")),
                            }
                        }
                        other => {
                            let found = other.type_name();
                            return Err(self.err(format!("BUILD with a state of type {found}")));
                        }
                    };
                    for &(k, _) in &dict_state {
                        if !matches!(self.nodes[k], Node::Str(_)) {
                            return Err(self.err("attribute names must be strings"));
                        }
                    }
                    match &mut self.nodes[target] {
                        Node::OrderedDict { attrs, .. } => attrs.extend(dict_state),
                        other => {
                            let found = other.type_name();
                            return Err(self.err(format!("BUILD on {found}")));
                        }
                    }
                }
                b'Q' | b'P' => {
                    if op == b'P' {
                        return Err(self.err("text persistent ids are not used by torch.save"));
                    }
                    let pid = self.pop()?;
                    let items = match &self.nodes[pid] {
                        Node::Tuple(items) if items.len() == 5 => items.clone(),
                        // The legacy format adds a view of the storage, None since
                        // PyTorch 0.4.
                        Node::Tuple(items)
                            if items.len() == 6 && matches!(self.nodes[items[5]], Node::None) =>
                        {
                            items[..5].to_vec()
                        }
                        Node::Tuple(items) if items.len() == 6 => {
                            return Err(self.err(
                                "a storage view (written by PyTorch before 0.4) is not supported",
                            ))
                        }
                        other => {
                            let found = other.type_name();
                            return Err(self.err(format!(
                                "a persistent id must be ('storage', type, key, location, numel), found {found}"
                            )));
                        }
                    };
                    match &self.nodes[items[0]] {
                        Node::Str(s) if s == "storage" => {}
                        _ => return Err(self.err("a persistent id must start with 'storage'")),
                    }
                    let mut quantized = None;
                    let dtype = match self.nodes[items[1]] {
                        Node::Global(Global::Storage(d)) => d,
                        Node::Global(Global::QStorage(q)) => {
                            quantized = Some(q);
                            q.int_dtype()
                        }
                        // Bytes, typed later by `_rebuild_tensor_v3`.
                        Node::Global(Global::UntypedStorage) => DType::U8,
                        Node::Global(Global::Unsupported(what)) => {
                            self.push(Node::Unsupported(format!("a storage of torch.{what}")));
                            continue;
                        }
                        ref other => {
                            let found = other.type_name();
                            return Err(self.err(format!(
                                "a storage type must be a torch.*Storage class, found {found}"
                            )));
                        }
                    };
                    let key = match &self.nodes[items[2]] {
                        Node::Str(k) => k.clone(),
                        Node::Int(i) => i.to_string(),
                        _ => return Err(self.err("a storage key must be a string")),
                    };
                    if !matches!(self.nodes[items[3]], Node::Str(_)) {
                        return Err(self.err("a storage location must be a string"));
                    }
                    let numel = self.int(items[4], "a storage's size")?;
                    let numel = u64::try_from(numel)
                        .map_err(|_| self.err(format!("negative storage size {numel}")))?;
                    self.push(Node::Storage {
                        key,
                        dtype,
                        numel,
                        quantized,
                    });
                }
                other => {
                    let what = match other {
                        b'i' | b'o' | 0x92 => "builds arbitrary objects",
                        0x82..=0x84 => "uses the extension registry",
                        0x97 | 0x98 => "uses out-of-band buffers",
                        _ => "is not a pickle opcode",
                    };
                    return Err(self.err(format!("opcode {what}; it is not supported")));
                }
            }
        }
    }
}

/// A dict key reduced to what Python's `==`/`hash` compare (so `1`, `1.0` and `True`
/// are the same key), for deduplicating keys as a Python dict does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum KeyRepr {
    None,
    Int(i64),
    Float(u64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<KeyRepr>),
    Unique(usize),
}

fn key_repr(o: &Object, unique: &mut usize) -> KeyRepr {
    match o {
        Object::None => KeyRepr::None,
        Object::Bool(b) => KeyRepr::Int(i64::from(*b)),
        Object::Int(i) => KeyRepr::Int(*i),
        Object::Float(f) => {
            if f.fract() == 0.0 && f.abs() < 9.0e18 {
                KeyRepr::Int(*f as i64)
            } else {
                KeyRepr::Float(f.to_bits())
            }
        }
        Object::Str(s) => KeyRepr::Str(s.clone()),
        Object::Bytes(b) => KeyRepr::Bytes(b.clone()),
        Object::Tuple(items) => KeyRepr::Tuple(items.iter().map(|i| key_repr(i, unique)).collect()),
        _ => {
            *unique += 1;
            KeyRepr::Unique(*unique)
        }
    }
}

/// Python dict semantics: a repeated key keeps its first position and its last value.
fn dedup(pairs: Vec<(Object, Object)>) -> Vec<(Object, Object)> {
    let mut seen: HashMap<KeyRepr, usize> = HashMap::with_capacity(pairs.len());
    let mut unique = 0;
    let mut out: Vec<(Object, Object)> = Vec::with_capacity(pairs.len());
    for (k, v) in pairs {
        let r = key_repr(&k, &mut unique);
        match seen.get(&r) {
            Some(&i) => out[i].1 = v,
            None => {
                seen.insert(r, out.len());
                out.push((k, v));
            }
        }
    }
    out
}

fn dedup_set(items: Vec<Object>) -> Vec<Object> {
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    let mut unique = 0;
    items
        .into_iter()
        .filter(|o| seen.insert(key_repr(o, &mut unique)))
        .collect()
}

struct Builder<'n, 'l> {
    nodes: &'n [Node],
    /// How many more units may be built (a node is one unit, plus one per byte of a
    /// string or bytes value): shared references are copied, so a small pickle could
    /// otherwise describe an exponentially large tree, or a huge string many times.
    budget: usize,
    /// The initial budget, for the error message.
    limit: usize,
    load: &'l mut dyn FnMut(&TensorSpec) -> Result<AnyTensor, CkptError>,
}

impl Builder<'_, '_> {
    /// Per-channel scales or zero points: a tensor, or a list of numbers that
    /// `_rebuild_qtensor` turns into one (float64 scales and int64 zero points, or
    /// float32 both for `per_channel_affine_float_qparams`).
    fn qparam(
        &mut self,
        h: H,
        depth: usize,
        path: &str,
        scales: bool,
        float_qparams: bool,
    ) -> Result<AnyTensor, CkptError> {
        let items = match self.build(h, depth + 1, path)? {
            Object::Tensor(t) => return Ok(t),
            Object::List(items) => items,
            other => {
                return Err(CkptError::schema(
                    path,
                    "a tensor or a list",
                    other.type_name(),
                ))
            }
        };
        let num = |o: &Object| match *o {
            Object::Float(f) => Some(f),
            Object::Int(i) => Some(i as f64),
            _ => None,
        };
        let values: Vec<f64> = items
            .iter()
            .map(num)
            .collect::<Option<_>>()
            .ok_or_else(|| CkptError::schema(path, "a list of numbers", "another list"))?;
        let n = values.len();
        let elements = match (scales, float_qparams) {
            (true, false) => Elements::F64(values),
            (_, true) => Elements::F32(values.iter().map(|&v| v as f32).collect()),
            (false, false) => {
                let ints = items.iter().map(Object::as_i64).collect::<Option<Vec<_>>>();
                Elements::I64(
                    ints.ok_or_else(|| CkptError::schema(path, "a list of ints", "floats"))?,
                )
            }
        };
        AnyTensor::new(vec![n], elements)
    }

    fn build(&mut self, h: H, depth: usize, path: &str) -> Result<Object, CkptError> {
        if depth > MAX_DEPTH {
            return Err(CkptError::TooDeep { limit: MAX_DEPTH });
        }
        let nodes = self.nodes;
        let cost = match &nodes[h] {
            Node::Str(s) => 1 + s.len(),
            Node::Bytes(b) => 1 + b.len(),
            _ => 1,
        };
        self.budget = self.budget.checked_sub(cost).ok_or(CkptError::TooLarge {
            what: "the unpickled object tree, in nodes plus string bytes (shared references are copied)",
            found: (self.limit + cost - self.budget) as u64,
            limit: self.limit as u64,
        })?;
        let child = |segment: &str| {
            if path.is_empty() {
                segment.to_string()
            } else {
                format!("{path}.{segment}")
            }
        };
        let list = |b: &mut Self, v: &[H]| -> Result<Vec<Object>, CkptError> {
            v.iter()
                .enumerate()
                .map(|(n, &i)| b.build(i, depth + 1, &child(&n.to_string())))
                .collect()
        };
        let pairs = |b: &mut Self, e: &[(H, H)]| -> Result<Vec<(Object, Object)>, CkptError> {
            let mut out = Vec::with_capacity(e.len());
            for &(k, v) in e {
                let key = b.build(k, depth + 1, &child("(key)"))?;
                let value = b.build(v, depth + 1, &child(&crate::object::key_repr(&key)))?;
                out.push((key, value));
            }
            Ok(dedup(out))
        };
        Ok(match &nodes[h] {
            Node::None => Object::None,
            Node::Bool(b) => Object::Bool(*b),
            Node::Int(i) => Object::Int(*i),
            Node::Float(f) => Object::Float(*f),
            Node::Str(s) => Object::Str(s.clone()),
            Node::Bytes(b) => Object::Bytes(b.clone()),
            Node::List(v) => Object::List(list(self, v)?),
            Node::Tuple(v) => Object::Tuple(list(self, v)?),
            Node::Set(v) => Object::Set(dedup_set(list(self, v)?)),
            Node::FrozenSet(v) => Object::FrozenSet(dedup_set(list(self, v)?)),
            Node::Dict(e) => Object::Dict(pairs(self, e)?),
            Node::Counter(e) => Object::Counter(pairs(self, e)?),
            Node::OrderedDict { entries, attrs } => {
                let entries = pairs(self, entries)?;
                let attrs = pairs(self, attrs)?
                    .into_iter()
                    .map(|(k, v)| match k {
                        Object::Str(k) => Ok((k, v)),
                        other => Err(CkptError::malformed(
                            "OrderedDict attribute",
                            "a string name",
                            other.type_name(),
                        )),
                    })
                    .collect::<Result<_, _>>()?;
                Object::OrderedDict { entries, attrs }
            }
            Node::Tensor(spec) => Object::Tensor((self.load)(spec)?),
            Node::Meta { dtype, shape } => Object::MetaTensor {
                dtype: *dtype,
                shape: shape.clone(),
            },
            Node::Sparse {
                layout,
                parts,
                size,
                is_coalesced,
            } => {
                let names: &[&str] = match layout {
                    SparseLayout::Coo => &["indices", "values"],
                    _ => &["compressed_indices", "plain_indices", "values"],
                };
                let mut tensors = Vec::with_capacity(parts.len());
                for (&part, name) in parts.iter().zip(names) {
                    match self.build(part, depth + 1, &child(name))? {
                        Object::Tensor(t) => tensors.push(t),
                        other => {
                            return Err(CkptError::schema(
                                child(name),
                                "a tensor",
                                other.type_name(),
                            ))
                        }
                    }
                }
                let mut tensors = tensors.into_iter();
                let mut next = || tensors.next().unwrap_or_else(AnyTensor::placeholder);
                let sparse = if layout.is_compressed() {
                    let (c, p, v) = (next(), next(), next());
                    SparseTensor::compressed(*layout, c, p, v, size.clone())
                } else {
                    let (i, v) = (next(), next());
                    SparseTensor::coo(i, v, size.clone(), *is_coalesced)
                };
                Object::Sparse(Box::new(sparse.map_err(|e| e.at(path))?))
            }
            Node::Unsupported(what) => {
                return Err(CkptError::Unsupported {
                    path: if path.is_empty() {
                        "the root".into()
                    } else {
                        path.to_string()
                    },
                    what: what.clone(),
                })
            }
            Node::QTensor {
                dtype,
                shape,
                data,
                params,
            } => {
                let data = (self.load)(data)?;
                let scheme = match params {
                    QParams::PerTensor { scale, zero_point } => QScheme::PerTensorAffine {
                        scale: *scale,
                        zero_point: *zero_point,
                    },
                    QParams::PerChannel {
                        scales,
                        zero_points,
                        axis,
                        float_qparams_name,
                    } => {
                        // Lists (older files) become the tensors torch makes of them.
                        let float = *float_qparams_name;
                        let scales = self.qparam(*scales, depth, &child("scales"), true, float)?;
                        let zero_points =
                            self.qparam(*zero_points, depth, &child("zero_points"), false, float)?;
                        QScheme::PerChannelAffine {
                            scales,
                            zero_points,
                            axis: *axis,
                            float_qparams_name: float,
                        }
                    }
                };
                let q = QuantizedTensor::new(*dtype, shape.clone(), data, scheme)
                    .map_err(|e| e.at(path))?;
                Object::Quantized(Box::new(q))
            }
            Node::Class(class) => Object::Record {
                class: class.clone(),
                args: Vec::new(),
                state: None,
            },
            Node::Record { class, args, state } => Object::Record {
                class: class.clone(),
                args: list(self, args)?,
                state: match state {
                    Some(h) => Some(Box::new(self.build(*h, depth + 1, &child("(state)"))?)),
                    None => None,
                },
            },
            Node::Layout(layout) => {
                return Err(CkptError::Unsupported {
                    path: if path.is_empty() {
                        "the root".into()
                    } else {
                        path.to_string()
                    },
                    what: format!("the layout object {layout}"),
                })
            }
            Node::Global(g) => {
                return Err(CkptError::malformed(
                    "pickle result",
                    "data",
                    format!("the global {g:?}"),
                ))
            }
            Node::Storage { key, .. } => {
                return Err(CkptError::malformed(
                    "pickle result",
                    "data",
                    format!("the bare storage `{key}`"),
                ))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(data: &[u8]) -> Result<Object, CkptError> {
        unpickle(data, &mut |spec| {
            let storage = crate::tensor::Elements::zeroed(spec.dtype, spec.storage_numel as usize);
            AnyTensor::from_view(&storage, spec.offset, &spec.size, &spec.stride).map_err(
                |detail| CkptError::BadTensor {
                    name: spec.key.clone(),
                    detail,
                },
            )
        })
    }

    #[test]
    fn memoized_containers_are_shared_like_in_python() {
        // d = {}; l = [d, d]; d['a'] = 1  → [{'a': 1}, {'a': 1}]
        let p = b"\x80\x02]q\x00(}q\x01h\x01e}q\x02X\x01\x00\x00\x00aK\x01s0h\x01X\x01\x00\x00\x00aK\x01s0.";
        let o = run(p).unwrap();
        let d = Object::str_dict([("a", Object::Int(1))]);
        assert_eq!(o, Object::List(vec![d.clone(), d]));
    }

    #[test]
    fn python_pickles_of_plain_data_load() {
        // {'a': (1, 2.5, None, True), 3: (-2**63, -1)}
        let p = b"\x80\x02}q\x00(X\x01\x00\x00\x00a(K\x01G@\x04\x00\x00\x00\x00\x00\x00N\x88tq\x01K\x03\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x80J\xff\xff\xff\xff\x86u.";
        let o = run(p).unwrap();
        let e = o.entries().unwrap();
        assert_eq!(e[0].0, Object::Str("a".into()));
        assert_eq!(
            e[0].1,
            Object::Tuple(vec![
                Object::Int(1),
                Object::Float(2.5),
                Object::None,
                Object::Bool(true)
            ])
        );
        assert_eq!(e[1].0, Object::Int(3));
        // 0x80.. as 8 bytes is i64::MIN.
        assert_eq!(
            e[1].1,
            Object::Tuple(vec![Object::Int(i64::MIN), Object::Int(-1)])
        );
    }

    #[test]
    fn python_pickles_of_every_protocol_load() {
        // pickle.dumps(obj, protocol=p).hex() for
        // obj = {'a': [1, 2.5, None, True], 'b': ('x', b'\\x00\\xff'), 'c': {1, 2},
        //        'd': frozenset({3}), 'e': OrderedDict([('k', 1)]), 'f': Counter({5: 2}),
        //        'g': 2**40, 'h': -3, 'u': 'ünï'}
        let pickles = [
        (2, "80027d71002858010000006171015d7102284b014740040000000000004e886558010000006271035801000000787104635f636f646563730a656e636f64650a7105580300000000c3bf710658060000006c6174696e31710786710852710986710a580100000063710b635f5f6275696c74696e5f5f0a7365740a710c5d710d284b014b026585710e52710f5801000000647110635f5f6275696c74696e5f5f0a66726f7a656e7365740a71115d71124b0361857113527114580100000065711563636f6c6c656374696f6e730a4f726465726564446963740a71162952711758010000006b71184b0173580100000066711963636f6c6c656374696f6e730a436f756e7465720a711a7d711b4b054b027385711c52711d580100000067711e8a06000000000001580100000068711f4afdffffff58010000007571205805000000c3bc6ec3af7121752e"),
        (3, "80037d71002858010000006171015d7102284b014740040000000000004e886558010000006271035801000000787104430200ff71058671065801000000637107636275696c74696e730a7365740a71085d7109284b014b026585710a52710b580100000064710c636275696c74696e730a66726f7a656e7365740a710d5d710e4b036185710f527110580100000065711163636f6c6c656374696f6e730a4f726465726564446963740a71122952711358010000006b71144b0173580100000066711563636f6c6c656374696f6e730a436f756e7465720a71167d71174b054b0273857118527119580100000067711a8a06000000000001580100000068711b4afdffffff580100000075711c5805000000c3bc6ec3af711d752e"),
        (4, "800495a8000000000000007d94288c0161945d94284b014740040000000000004e88658c0162948c017894430200ff9486948c0163948f94284b014b02908c016494284b0391948c0165948c0b636f6c6c656374696f6e73948c0b4f726465726564446963749493942952948c016b944b01738c016694680c8c07436f756e7465729493947d944b054b0273859452948c0167948a060000000000018c0168944afdffffff8c0175948c05c3bc6ec3af94752e"),
        (5, "800595a8000000000000007d94288c0161945d94284b014740040000000000004e88658c0162948c017894430200ff9486948c0163948f94284b014b02908c016494284b0391948c0165948c0b636f6c6c656374696f6e73948c0b4f726465726564446963749493942952948c016b944b01738c016694680c8c07436f756e7465729493947d944b054b0273859452948c0167948a060000000000018c0168944afdffffff8c0175948c05c3bc6ec3af94752e"),
        ];
        let s = |v: &str| Object::Str(v.into());
        let expected = Object::Dict(vec![
            (
                s("a"),
                Object::List(vec![
                    Object::Int(1),
                    Object::Float(2.5),
                    Object::None,
                    Object::Bool(true),
                ]),
            ),
            (
                s("b"),
                Object::Tuple(vec![s("x"), Object::Bytes(vec![0, 255])]),
            ),
            (s("c"), Object::Set(vec![Object::Int(1), Object::Int(2)])),
            (s("d"), Object::FrozenSet(vec![Object::Int(3)])),
            (
                s("e"),
                Object::OrderedDict {
                    entries: vec![(s("k"), Object::Int(1))],
                    attrs: vec![],
                },
            ),
            (
                s("f"),
                Object::Counter(vec![(Object::Int(5), Object::Int(2))]),
            ),
            (s("g"), Object::Int(1 << 40)),
            (s("h"), Object::Int(-3)),
            (s("u"), s("ünï")),
        ]);
        for (protocol, hex) in pickles {
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            assert_eq!(run(&bytes).unwrap(), expected, "protocol {protocol}");
        }
    }

    #[test]
    fn repeated_keys_keep_the_first_position_and_the_last_value() {
        let p = b"\x80\x02}(K\x01K\x02K\x02K\x03\x88K\x04u.";
        let o = run(p).unwrap();
        assert_eq!(
            o,
            Object::Dict(vec![
                (Object::Int(1), Object::Int(4)),
                (Object::Int(2), Object::Int(3))
            ])
        );
    }

    #[test]
    fn forbidden_globals_are_errors() {
        let p = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00lsq\x00\x85R.";
        match run(p) {
            Err(CkptError::ForbiddenGlobal { module, name }) => {
                assert_eq!((module.as_str(), name.as_str()), ("os", "system"))
            }
            other => panic!("expected ForbiddenGlobal, got {other:?}"),
        }
        let p = b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93.";
        assert!(matches!(run(p), Err(CkptError::ForbiddenGlobal { .. })));
        assert!(matches!(
            run(b"\x80\x02cbuiltins\nobject\n)\x81."),
            Err(CkptError::ForbiddenGlobal { .. })
        ));
    }

    #[test]
    fn bad_pickles_are_errors_not_panics() {
        let cases: &[&[u8]] = &[
            b"",
            b"\x80\x02",
            b"\x80\x02h\x05.",
            b"\x80\x02j\xff\xff\xff\xff.",
            b"\x80\x02X\xff\xff\xff\x7f.",
            b"\x80\x02\x8d\xff\xff\xff\xff\xff\xff\xff\xff.",
            b"\x80\x02a.",
            b"\x80\x02K\x01a.",
            b"\x80\x02(u.",
            b"\x80\x02)\x82\x01.",
            b"\x80\x06.",
            b"\x80\x02\x8b\x00\x00\x00\x80.",
            b"\x80\x02\x8a\x10\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01.",
            b"\x80\x02]q\x00h\x00a.",
            b"\x80\x02I12345678901234567890123\n.",
        ];
        for c in cases {
            assert!(run(c).is_err(), "{c:?} should be an error");
        }
    }

    fn unhex(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn inspection_mode_reads_a_dataclass_with_an_enum_as_inert_records() {
        // pickle.dumps(TrainingArguments(learning_rate=2e-5, lr_scheduler_type=
        // SchedulerType.COSINE, warmup_ratio=0.1, max_steps=500), protocol=p).hex() for
        // a @dataclass TrainingArguments in `transformers.training_args` and
        // `class SchedulerType(str, enum.Enum)` in `transformers.trainer_utils`, as
        // transformers defines them: the dataclass is NEWOBJ + BUILD with its
        // attribute dict, the enum member a call of its class with its value.
        let pickles = [
            (2, "8002637472616e73666f726d6572732e747261696e696e675f617267730a547261696e696e67417267756d656e74730a7100298171017d710228580d0000006c6561726e696e675f726174657103473ef4f8b588e368f158110000006c725f7363686564756c65725f747970657104637472616e73666f726d6572732e747261696e65725f7574696c730a5363686564756c6572547970650a71055806000000636f73696e657106857107527108580c0000007761726d75705f726174696f7109473fb999999999999a580c0000007761726d75705f7374657073710a4b0058090000006d61785f7374657073710b4df40158100000006e756d5f747261696e5f65706f636873710c47400800000000000075622e"),
            (3, "8003637472616e73666f726d6572732e747261696e696e675f617267730a547261696e696e67417267756d656e74730a7100298171017d710228580d0000006c6561726e696e675f726174657103473ef4f8b588e368f158110000006c725f7363686564756c65725f747970657104637472616e73666f726d6572732e747261696e65725f7574696c730a5363686564756c6572547970650a71055806000000636f73696e657106857107527108580c0000007761726d75705f726174696f7109473fb999999999999a580c0000007761726d75705f7374657073710a4b0058090000006d61785f7374657073710b4df40158100000006e756d5f747261696e5f65706f636873710c47400800000000000075622e"),
            (4, "800495f9000000000000008c1a7472616e73666f726d6572732e747261696e696e675f61726773948c11547261696e696e67417267756d656e74739493942981947d94288c0d6c6561726e696e675f7261746594473ef4f8b588e368f18c116c725f7363686564756c65725f74797065948c1a7472616e73666f726d6572732e747261696e65725f7574696c73948c0d5363686564756c6572547970659493948c06636f73696e6594859452948c0c7761726d75705f726174696f94473fb999999999999a8c0c7761726d75705f7374657073944b008c096d61785f7374657073944df4018c106e756d5f747261696e5f65706f6368739447400800000000000075622e"),
        ];
        let no_tensors = &mut |_: &TensorSpec| -> Result<AnyTensor, CkptError> { unreachable!() };
        let enum_member = Object::Record {
            class: "transformers.trainer_utils.SchedulerType".into(),
            args: vec![Object::Str("cosine".into())],
            state: None,
        };
        let expected = Object::Record {
            class: "transformers.training_args.TrainingArguments".into(),
            args: vec![],
            state: Some(Box::new(Object::str_dict([
                ("learning_rate", Object::Float(2e-5)),
                ("lr_scheduler_type", enum_member),
                ("warmup_ratio", Object::Float(0.1)),
                ("warmup_steps", Object::Int(0)),
                ("max_steps", Object::Int(500)),
                ("num_train_epochs", Object::Float(3.0)),
            ]))),
        };
        for (protocol, hex) in pickles {
            let bytes = unhex(hex);
            let o = unpickle_inert(&bytes, no_tensors).unwrap();
            assert_eq!(o.first_difference(&expected), None, "protocol {protocol}");
            // The safe loader proper refuses it, naming the class.
            match run(&bytes) {
                Err(CkptError::ForbiddenGlobal { module, name }) => {
                    assert_eq!(
                        (module.as_str(), name.as_str()),
                        ("transformers.training_args", "TrainingArguments")
                    );
                }
                other => panic!("{other:?}"),
            }
        }
        // Code stays refused in inspection mode as data: `os.system("ls")` is a record
        // of the call, never a call, and no writer takes a record.
        let p = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00lsq\x00\x85R.";
        let o = unpickle_inert(p, no_tensors).unwrap();
        assert_eq!(
            o,
            Object::Record {
                class: "os.system".into(),
                args: vec![Object::Str("ls".into())],
                state: None
            }
        );
        assert!(matches!(
            super::super::pickle::pickle(&o),
            Err(CkptError::Unsupported { .. })
        ));
    }

    #[test]
    fn deep_nesting_and_exponential_sharing_are_refused() {
        let mut p = b"\x80\x02".to_vec();
        p.extend(std::iter::repeat_n(b']', 100_000));
        p.extend(std::iter::repeat_n(b'a', 99_999));
        p.push(b'.');
        assert!(matches!(run(&p), Err(CkptError::TooDeep { .. })));
        // l0 = []; l1 = [l0, l0]; l2 = [l1, l1]; ... a 2^40 node tree in a few hundred bytes.
        let mut p = b"\x80\x02]".to_vec();
        for _ in 0..40 {
            p.extend_from_slice(b"q\x00h\x00\x86");
        }
        p.push(b'.');
        assert!(matches!(run(&p), Err(CkptError::TooLarge { .. })));
        // A 64 KiB string fetched from the memo 10000 times: 640 MB from 100 KB.
        let mut p = b"\x80\x02]X\x00\x00\x01\x00".to_vec();
        p.extend(std::iter::repeat_n(b'a', 1 << 16));
        p.extend_from_slice(b"q\x000(");
        for _ in 0..10_000 {
            p.extend_from_slice(b"h\x00");
        }
        p.extend_from_slice(b"e.");
        assert!(matches!(run(&p), Err(CkptError::TooLarge { .. })));
    }
}
