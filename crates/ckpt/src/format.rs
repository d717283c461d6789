//! The tempo checkpoint format, version 1 (specified in `docs/checkpoint-format.md`).
//!
//! A tempo checkpoint is a valid safetensors file. Its `__metadata__` comes first in
//! the header and holds the format's magic and version, a CRC-32 of the whole file, and
//! the checkpoint's content: an [`Object`] tree as JSON, in which every tensor is a
//! reference (`{"$tensor": "name"}`) to a safetensors tensor.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value as Json};

use crate::object::MAX_DEPTH;
use tempo_tensor::TensorData;

use crate::{
    AnyTensor, CkptError, DType, Object, QDType, QScheme, QuantizedTensor, SparseLayout,
    SparseTensor,
};

/// The format version this build writes, and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;

/// The bytes every tempo checkpoint has at offset 8 (after the safetensors header
/// length): the start of its header, up to the version number.
pub const MAGIC: &[u8] = br#"{"__metadata__":{"format":"tempo-checkpoint","format_version":""#;

/// What precedes the 8 hex digits of the checksum in the header.
pub(crate) const CHECKSUM_KEY: &[u8] = br#""checksum":"crc32:"#;

/// The largest header tempo writes or reads (safetensors' own limit).
pub(crate) const MAX_HEADER: u64 = 100_000_000;

/// A tensor to be written, borrowed from an [`Object`] or straight from a state.
#[derive(Clone, Copy)]
pub(crate) enum TensorView<'a> {
    Any(&'a AnyTensor),
    Data(&'a TensorData),
}

impl TensorView<'_> {
    pub(crate) fn dtype(&self) -> DType {
        match self {
            TensorView::Any(t) => t.dtype(),
            TensorView::Data(TensorData::F32(_)) => DType::F32,
            TensorView::Data(TensorData::F64(_)) => DType::F64,
        }
    }

    pub(crate) fn shape(&self) -> &[usize] {
        match self {
            TensorView::Any(t) => t.shape(),
            TensorView::Data(d) => d.shape(),
        }
    }

    pub(crate) fn nbytes(&self) -> usize {
        match self {
            TensorView::Any(t) => t.nbytes(),
            TensorView::Data(d) => d.len() * self.dtype().size(),
        }
    }

    /// The little-endian bytes, borrowed whenever the memory already is that.
    pub(crate) fn le_bytes(&self) -> Cow<'_, [u8]> {
        let little = cfg!(target_endian = "little");
        match self {
            TensorView::Any(t) => t.le_bytes(),
            TensorView::Data(TensorData::F32(a)) if little && a.as_slice().is_some() => {
                Cow::Borrowed(bytemuck::cast_slice(a.as_slice().unwrap_or_default()))
            }
            TensorView::Data(TensorData::F64(a)) if little && a.as_slice().is_some() => {
                Cow::Borrowed(bytemuck::cast_slice(a.as_slice().unwrap_or_default()))
            }
            TensorView::Data(d) => Cow::Owned(AnyTensor::from(*d).le_bytes().into_owned()),
        }
    }
}

/// A tensor to be written: its name in the safetensors header.
pub(crate) struct NamedTensor<'a> {
    pub(crate) name: String,
    pub(crate) tensor: TensorView<'a>,
}

/// Encodes an object tree as JSON, collecting its tensors.
pub(crate) struct Encoder<'a> {
    pub(crate) tensors: Vec<NamedTensor<'a>>,
    names: HashSet<String>,
    /// Tensors that replace the tree's tensors, in traversal order (the tree then
    /// holds placeholders), so that a state is written without copying it first.
    substitutes: std::vec::IntoIter<&'a TensorData>,
}

/// The `$float` text of a NaN: `nan` for the quiet NaN Python writes (`float("nan")`,
/// bits `0x7ff8000000000000`), `-nan` for its negative, else `nan:0x` and the 16 hex
/// digits of its bits, so that every NaN's sign and payload round-trip.
fn nan_text(f: f64) -> String {
    let bits = f.to_bits();
    if bits == QUIET_NAN {
        "nan".into()
    } else if bits == QUIET_NAN | SIGN {
        "-nan".into()
    } else {
        format!("nan:{bits:#018x}")
    }
}

const QUIET_NAN: u64 = 0x7ff8_0000_0000_0000;
const SIGN: u64 = 1 << 63;

/// The NaN a `$float` text names, if it names one (see [`nan_text`]).
fn nan_from_text(s: &str) -> Option<f64> {
    let bits = match s {
        "nan" => QUIET_NAN,
        "-nan" => QUIET_NAN | SIGN,
        _ => {
            let hex = s.strip_prefix("nan:0x")?;
            if hex.len() != 16 {
                return None;
            }
            u64::from_str_radix(hex, 16).ok()?
        }
    };
    Some(f64::from_bits(bits)).filter(|f| f.is_nan())
}

fn float_json(f: f64) -> Json {
    match serde_json::Number::from_f64(f) {
        Some(n) => Json::Number(n),
        None => {
            let s = if f.is_nan() {
                nan_text(f)
            } else if f > 0.0 {
                "inf".into()
            } else {
                "-inf".into()
            };
            tagged("$float", Json::String(s))
        }
    }
}

fn tagged(tag: &str, v: Json) -> Json {
    let mut m = Map::new();
    m.insert(tag.to_string(), v);
    Json::Object(m)
}

/// `path/segment`, or `segment` at the root.
fn join(path: &str, segment: &str) -> String {
    if path.is_empty() {
        segment.to_string()
    } else {
        format!("{path}/{segment}")
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Whether entries can be a plain JSON object: unique string keys, none starting `$`.
fn plain_keys(entries: &[(Object, Object)]) -> bool {
    let mut seen = HashSet::with_capacity(entries.len());
    entries.iter().all(|(k, _)| match k {
        Object::Str(s) => !s.starts_with('$') && seen.insert(s.as_str()),
        _ => false,
    })
}

impl<'a> Encoder<'a> {
    pub(crate) fn new(substitutes: Vec<&'a TensorData>) -> Self {
        Encoder {
            tensors: Vec::new(),
            names: HashSet::new(),
            substitutes: substitutes.into_iter(),
        }
    }

    /// Whether every substitute was used.
    pub(crate) fn substitutes_used(&self) -> bool {
        self.substitutes.len() == 0
    }

    fn name_for(&mut self, path: &str) -> String {
        let base = if path.is_empty() || path == "__metadata__" {
            format!("tensor/{path}")
        } else {
            path.to_string()
        };
        let mut name = base.clone();
        let mut n = 1;
        while !self.names.insert(name.clone()) {
            n += 1;
            name = format!("{base}#{n}");
        }
        name
    }

    fn pairs(
        &mut self,
        entries: &'a [(Object, Object)],
        path: &str,
        depth: usize,
    ) -> Result<Json, CkptError> {
        let mut out = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            let key = self.encode(k, &join(path, "key"), depth)?;
            let value = self.encode(v, &join(path, &crate::object::key_repr(k)), depth)?;
            out.push(Json::Array(vec![key, value]));
        }
        Ok(Json::Array(out))
    }

    fn plain(
        &mut self,
        entries: &'a [(Object, Object)],
        path: &str,
        depth: usize,
    ) -> Result<Json, CkptError> {
        let mut m = Map::new();
        for (k, v) in entries {
            let k = k.as_str().unwrap_or_default();
            m.insert(k.to_string(), self.encode(v, &join(path, k), depth)?);
        }
        Ok(Json::Object(m))
    }

    /// A part of a sparse or quantized tensor: a tensor entry, never a substitute.
    fn part(&mut self, t: &'a AnyTensor, path: &str) -> Json {
        let name = self.name_for(path);
        self.tensors.push(NamedTensor {
            name: name.clone(),
            tensor: TensorView::Any(t),
        });
        tagged("$tensor", Json::String(name))
    }

    /// The JSON form of `o`; `path` names its tensors (`model/fc1.weight`).
    pub(crate) fn encode(
        &mut self,
        o: &'a Object,
        path: &str,
        depth: usize,
    ) -> Result<Json, CkptError> {
        if depth > MAX_DEPTH {
            return Err(CkptError::TooDeep { limit: MAX_DEPTH });
        }
        let d = depth + 1;
        let list = |e: &mut Self, items: &'a [Object]| -> Result<Json, CkptError> {
            let v = items
                .iter()
                .enumerate()
                .map(|(i, x)| e.encode(x, &join(path, &i.to_string()), d))
                .collect::<Result<_, _>>()?;
            Ok(Json::Array(v))
        };
        Ok(match o {
            Object::None => Json::Null,
            Object::Bool(b) => Json::Bool(*b),
            Object::Int(i) => Json::from(*i),
            Object::Float(f) => float_json(*f),
            Object::Str(s) => Json::String(s.clone()),
            Object::Bytes(b) => tagged("$bytes", Json::String(hex(b))),
            Object::List(items) => list(self, items)?,
            Object::Tuple(items) => tagged("$tuple", list(self, items)?),
            Object::Set(items) => tagged("$set", list(self, items)?),
            Object::FrozenSet(items) => tagged("$frozenset", list(self, items)?),
            Object::Dict(e) if plain_keys(e) => self.plain(e, path, d)?,
            Object::Dict(e) => tagged("$dict", self.pairs(e, path, d)?),
            Object::Counter(e) => tagged("$counter", self.pairs(e, path, d)?),
            Object::OrderedDict { entries, attrs } => {
                let body = if plain_keys(entries) {
                    self.plain(entries, path, d)?
                } else {
                    self.pairs(entries, path, d)?
                };
                let mut m = Map::new();
                m.insert("$ordered_dict".into(), body);
                if !attrs.is_empty() {
                    let mut a = Map::new();
                    for (k, v) in attrs {
                        a.insert(k.clone(), self.encode(v, &join(path, k), d)?);
                    }
                    m.insert("$attrs".into(), Json::Object(a));
                }
                Json::Object(m)
            }
            Object::MetaTensor { dtype, shape } => {
                let mut m = Map::new();
                m.insert("dtype".into(), Json::String(dtype.torch_name().into()));
                m.insert(
                    "shape".into(),
                    shape.iter().map(|&d| Json::from(d)).collect(),
                );
                tagged("$meta_tensor", Json::Object(m))
            }
            Object::Record { class, .. } => {
                return Err(CkptError::Unsupported {
                    path: if path.is_empty() {
                        "the root".into()
                    } else {
                        path.to_string()
                    },
                    what: format!("an inert record of `{class}`, read for inspection only"),
                })
            }
            Object::Quantized(q) => {
                let mut m = Map::new();
                m.insert("dtype".into(), Json::String(q.dtype().torch_name().into()));
                m.insert(
                    "shape".into(),
                    q.shape().iter().map(|&d| Json::from(d)).collect(),
                );
                m.insert("data".into(), self.part(q.data(), &join(path, "data")));
                m.insert(
                    "qscheme".into(),
                    Json::String(q.scheme().torch_name().into()),
                );
                match q.scheme() {
                    QScheme::PerTensorAffine { scale, zero_point } => {
                        m.insert("scale".into(), float_json(*scale));
                        m.insert("zero_point".into(), Json::from(*zero_point));
                    }
                    QScheme::PerChannelAffine {
                        scales,
                        zero_points,
                        axis,
                        ..
                    } => {
                        m.insert("scales".into(), self.part(scales, &join(path, "scales")));
                        m.insert(
                            "zero_points".into(),
                            self.part(zero_points, &join(path, "zero_points")),
                        );
                        m.insert("axis".into(), Json::from(*axis));
                    }
                }
                tagged("$quantized_tensor", Json::Object(m))
            }
            Object::Sparse(sparse) => {
                let mut m = Map::new();
                m.insert(
                    "layout".into(),
                    Json::String(sparse.layout().torch_name().into()),
                );
                m.insert(
                    "size".into(),
                    sparse.size().iter().map(|&d| Json::from(d)).collect(),
                );
                let names = sparse_part_names(sparse.layout());
                for ((_, t), name) in sparse.parts().into_iter().zip(names) {
                    let tensor = self.part(t, &join(path, name));
                    m.insert((*name).into(), tensor);
                }
                if let Some(c) = sparse.is_coalesced() {
                    m.insert("is_coalesced".into(), Json::Bool(c));
                }
                tagged("$sparse_tensor", Json::Object(m))
            }
            Object::Tensor(t) => {
                let name = self.name_for(path);
                self.tensors.push(NamedTensor {
                    name: name.clone(),
                    tensor: match self.substitutes.next() {
                        Some(d) => TensorView::Data(d),
                        None => TensorView::Any(t),
                    },
                });
                tagged("$tensor", Json::String(name))
            }
        })
    }
}

/// The keys of a `$sparse_tensor`'s parts, in the order `torch.save` writes them.
fn sparse_part_names(layout: SparseLayout) -> &'static [&'static str] {
    if layout.is_compressed() {
        &["compressed_indices", "plain_indices", "values"]
    } else {
        &["indices", "values"]
    }
}

/// The key path of a sparse or quantized tensor, from the name of its part `part`
/// (`model/emb.weight/values` → `model.emb.weight`), for errors.
fn owner(v: &Json, part: &str) -> String {
    v.get(part)
        .and_then(|p| p.get("$tensor"))
        .and_then(Json::as_str)
        .and_then(|name| name.strip_suffix(&format!("/{part}")))
        .map_or_else(
            || "a tensor of the tempo checkpoint".into(),
            |p| p.replace('/', "."),
        )
}

/// The dims of a JSON list of sizes.
fn dims(v: Option<&Json>) -> Option<Vec<usize>> {
    v?.as_array()?
        .iter()
        .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
        .collect()
}

fn bad(found: impl Into<String>) -> CkptError {
    CkptError::malformed(
        "tempo checkpoint content",
        "a value of the format's JSON encoding",
        found,
    )
}

/// Decodes the JSON form, taking tensors out of `tensors` by name (each exactly once).
pub(crate) fn decode(
    j: &Json,
    tensors: &mut HashMap<String, AnyTensor>,
    depth: usize,
) -> Result<Object, CkptError> {
    decode_in(j, tensors, depth, false)
}

/// [`decode`]; with `peek`, the tensors are stand-ins (see `peek_object`), and sparse
/// and quantized tensors, whose parts cannot be checked, decode to `None`.
pub(crate) fn decode_in(
    j: &Json,
    tensors: &mut HashMap<String, AnyTensor>,
    depth: usize,
    peek: bool,
) -> Result<Object, CkptError> {
    if depth > MAX_DEPTH {
        return Err(CkptError::TooDeep { limit: MAX_DEPTH });
    }
    let d = depth + 1;
    let list = |v: &Json, t: &mut HashMap<String, AnyTensor>| -> Result<Vec<Object>, CkptError> {
        match v {
            Json::Array(items) => items.iter().map(|x| decode_in(x, t, d, peek)).collect(),
            other => Err(bad(format!(
                "a tag whose value is {other} instead of a list"
            ))),
        }
    };
    let pairs = |v: &Json,
                 t: &mut HashMap<String, AnyTensor>|
     -> Result<Vec<(Object, Object)>, CkptError> {
        match v {
            Json::Array(items) => items
                .iter()
                .map(|p| match p {
                    Json::Array(kv) if kv.len() == 2 => Ok((
                        decode_in(&kv[0], t, d, peek)?,
                        decode_in(&kv[1], t, d, peek)?,
                    )),
                    other => Err(bad(format!("{other} instead of a [key, value] pair"))),
                })
                .collect(),
            Json::Object(m) => m
                .iter()
                .map(|(k, v)| Ok((Object::Str(k.clone()), decode_in(v, t, d, peek)?)))
                .collect(),
            other => Err(bad(format!("{other} instead of a list of pairs"))),
        }
    };
    Ok(match j {
        Json::Null => Object::None,
        Json::Bool(b) => Object::Bool(*b),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                if n.is_f64() {
                    Object::Float(i as f64)
                } else {
                    Object::Int(i)
                }
            } else if n.is_u64() {
                return Err(bad(format!("the int {n}, beyond 64 bits")));
            } else {
                Object::Float(n.as_f64().ok_or_else(|| bad(format!("the number {n}")))?)
            }
        }
        Json::String(s) => Object::Str(s.clone()),
        Json::Array(_) => Object::List(list(j, tensors)?),
        Json::Object(m) => {
            let tag = m.keys().next().filter(|k| k.starts_with('$'));
            let Some(tag) = tag else {
                return Ok(Object::Dict(pairs(j, tensors)?));
            };
            let v = &m[tag];
            let single = |o: Object| {
                if m.len() == 1 {
                    Ok(o)
                } else {
                    Err(bad(format!("extra keys next to `{tag}`")))
                }
            };
            match tag.as_str() {
                "$tuple" => single(Object::Tuple(list(v, tensors)?))?,
                "$set" => single(Object::Set(list(v, tensors)?))?,
                "$frozenset" => single(Object::FrozenSet(list(v, tensors)?))?,
                "$dict" => single(Object::Dict(pairs(v, tensors)?))?,
                "$counter" => single(Object::Counter(pairs(v, tensors)?))?,
                "$bytes" => {
                    let b = v
                        .as_str()
                        .and_then(unhex)
                        .ok_or_else(|| bad("`$bytes` that is not hex"))?;
                    single(Object::Bytes(b))?
                }
                "$float" => {
                    let f = match v.as_str() {
                        Some("inf") => f64::INFINITY,
                        Some("-inf") => f64::NEG_INFINITY,
                        Some(s) => {
                            nan_from_text(s).ok_or_else(|| bad(format!("`$float` of {v}")))?
                        }
                        None => return Err(bad(format!("`$float` of {v}"))),
                    };
                    single(Object::Float(f))?
                }
                "$meta_tensor" => {
                    let dtype = v
                        .get("dtype")
                        .and_then(Json::as_str)
                        .and_then(DType::from_torch_name)
                        .ok_or_else(|| bad(format!("a `$meta_tensor` dtype in {v}")))?;
                    let shape = v
                        .get("shape")
                        .and_then(Json::as_array)
                        .and_then(|dims| {
                            dims.iter()
                                .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                                .collect::<Option<Vec<_>>>()
                        })
                        .ok_or_else(|| bad(format!("a `$meta_tensor` shape in {v}")))?;
                    single(Object::MetaTensor { dtype, shape })?
                }
                "$sparse_tensor" if peek => Object::None,
                "$sparse_tensor" => {
                    let layout = v
                        .get("layout")
                        .and_then(Json::as_str)
                        .and_then(SparseLayout::from_torch_name)
                        .ok_or_else(|| bad(format!("a `$sparse_tensor` layout in {v}")))?;
                    let size = dims(v.get("size"))
                        .ok_or_else(|| bad(format!("a `$sparse_tensor` size in {v}")))?;
                    let names = sparse_part_names(layout);
                    let keys = names.len() + 2 + usize::from(v.get("is_coalesced").is_some());
                    if v.as_object().map(Map::len) != Some(keys) {
                        return Err(bad(format!("the keys of a {layout} `$sparse_tensor`: {v}")));
                    }
                    let mut parts = Vec::with_capacity(names.len());
                    for name in names {
                        match v
                            .get(*name)
                            .map(|p| decode_in(p, tensors, d, peek))
                            .transpose()?
                        {
                            Some(Object::Tensor(t)) => parts.push(t),
                            _ => return Err(bad(format!("a `$sparse_tensor` without `{name}`"))),
                        }
                    }
                    let is_coalesced = match v.get("is_coalesced") {
                        None => None,
                        Some(Json::Bool(b)) => Some(*b),
                        Some(other) => return Err(bad(format!("is_coalesced {other}"))),
                    };
                    let mut parts = parts.into_iter();
                    let mut next = || parts.next().unwrap_or_else(AnyTensor::placeholder);
                    let sparse = if layout.is_compressed() {
                        let (c, p, values) = (next(), next(), next());
                        SparseTensor::compressed(layout, c, p, values, size)
                    } else {
                        let (i, values) = (next(), next());
                        SparseTensor::coo(i, values, size, is_coalesced)
                    };
                    let sparse = sparse.map_err(|e| e.at(&owner(v, "values")))?;
                    single(Object::Sparse(Box::new(sparse)))?
                }
                "$quantized_tensor" if peek => Object::None,
                "$quantized_tensor" => {
                    let field = |k: &str| v.get(k).ok_or_else(|| bad(format!("`{k}` in {v}")));
                    let dtype = field("dtype")?
                        .as_str()
                        .and_then(QDType::from_torch_name)
                        .ok_or_else(|| bad(format!("a `$quantized_tensor` dtype in {v}")))?;
                    let shape = dims(v.get("shape"))
                        .ok_or_else(|| bad(format!("a `$quantized_tensor` shape in {v}")))?;
                    let mut tensor = |k: &str| match decode_in(field(k)?, tensors, d, peek)? {
                        Object::Tensor(t) => Ok(t),
                        other => Err(bad(format!("`{k}` of a {}", other.type_name()))),
                    };
                    let data = tensor("data")?;
                    let qscheme = field("qscheme")?.as_str().unwrap_or_default();
                    let (scheme, keys) = match qscheme {
                        "per_tensor_affine" => {
                            let scale =
                                match decode_in(field("scale")?, &mut HashMap::new(), d, peek)? {
                                    Object::Float(f) => f,
                                    _ => return Err(bad(format!("a scale in {v}"))),
                                };
                            let zero_point = field("zero_point")?
                                .as_i64()
                                .ok_or_else(|| bad(format!("a zero point in {v}")))?;
                            (QScheme::PerTensorAffine { scale, zero_point }, 6)
                        }
                        "per_channel_affine" | "per_channel_affine_float_qparams" => {
                            let scales = tensor("scales")?;
                            let zero_points = tensor("zero_points")?;
                            let axis = field("axis")?
                                .as_u64()
                                .and_then(|a| usize::try_from(a).ok())
                                .ok_or_else(|| bad(format!("an axis in {v}")))?;
                            let float_qparams_name = qscheme == "per_channel_affine_float_qparams";
                            let scheme = QScheme::PerChannelAffine {
                                scales,
                                zero_points,
                                axis,
                                float_qparams_name,
                            };
                            (scheme, 7)
                        }
                        other => return Err(bad(format!("the qscheme `{other}`"))),
                    };
                    if v.as_object().map(Map::len) != Some(keys) {
                        return Err(bad(format!("the keys of a `$quantized_tensor`: {v}")));
                    }
                    let q = QuantizedTensor::new(dtype, shape, data, scheme)
                        .map_err(|e| e.at(&owner(v, "data")))?;
                    single(Object::Quantized(Box::new(q)))?
                }
                "$tensor" => {
                    let name = v
                        .as_str()
                        .ok_or_else(|| bad("a `$tensor` reference that is not a string"))?;
                    let t = tensors.remove(name).ok_or_else(|| CkptError::BadTensor {
                        name: name.to_string(),
                        detail: "referenced but not in the file, or referenced twice".into(),
                    })?;
                    single(Object::Tensor(t))?
                }
                "$ordered_dict" => {
                    let entries = pairs(v, tensors)?;
                    let mut attrs = Vec::new();
                    for (k, a) in m.iter().skip(1) {
                        if k != "$attrs" {
                            return Err(bad(format!("the key `{k}` in an `$ordered_dict`")));
                        }
                        let Json::Object(a) = a else {
                            return Err(bad("`$attrs` that is not an object"));
                        };
                        for (name, value) in a {
                            attrs.push((name.clone(), decode_in(value, tensors, d, peek)?));
                        }
                    }
                    Object::OrderedDict { entries, attrs }
                }
                other => return Err(bad(format!("the unknown tag `{other}`"))),
            }
        }
    })
}

/// The `$tensor` names a JSON content references, in order.
pub(crate) fn tensor_refs(j: &Json, out: &mut Vec<String>) {
    match j {
        Json::Array(items) => items.iter().for_each(|x| tensor_refs(x, out)),
        Json::Object(m) => {
            if let (Some(Json::String(name)), 1) = (m.get("$tensor"), m.len()) {
                out.push(name.clone());
            } else {
                m.values().for_each(|x| tensor_refs(x, out));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Elements;

    #[test]
    fn every_kind_of_value_round_trips() {
        let t = AnyTensor::new(vec![2], Elements::F32(vec![1.0, 2.0])).unwrap();
        let o = Object::List(vec![
            Object::Float(1.0),
            Object::Int(1),
            Object::Float(f64::NAN),
            Object::Float(-f64::NAN),
            Object::Float(f64::from_bits(0xfff0_0000_dead_beef)),
            Object::Float(f64::from_bits(0x7ff0_0000_0000_0001)),
            Object::Float(f64::NEG_INFINITY),
            Object::Float(-0.0),
            Object::Float(1e-8),
            Object::Str("$tuple".into()),
            Object::Bytes(vec![0, 255]),
            Object::Tuple(vec![]),
            Object::Set(vec![Object::Int(1)]),
            Object::FrozenSet(vec![]),
            Object::str_dict([("$weird", Object::None)]),
            Object::Dict(vec![(Object::Int(0), Object::Bool(true))]),
            Object::Dict(vec![
                (Object::Str("a".into()), Object::Int(1)),
                (Object::Str("a".into()), Object::Int(2)),
            ]),
            Object::Counter(vec![(Object::Int(5), Object::Int(1))]),
            Object::OrderedDict {
                entries: vec![(Object::Str("w".into()), Object::Tensor(t))],
                attrs: vec![("_metadata".into(), Object::str_dict([("", Object::Int(1))]))],
            },
        ]);
        let mut enc = Encoder::new(Vec::new());
        let j = enc.encode(&o, "", 0).unwrap();
        let text = serde_json::to_string(&j).unwrap();
        let mut tensors: HashMap<_, _> = enc
            .tensors
            .iter()
            .map(|n| match n.tensor {
                TensorView::Any(t) => (n.name.clone(), t.clone()),
                TensorView::Data(d) => (n.name.clone(), AnyTensor::from(d)),
            })
            .collect();
        assert_eq!(tensors.keys().collect::<Vec<_>>(), ["18/w"]);
        let back = decode(&serde_json::from_str(&text).unwrap(), &mut tensors, 0).unwrap();
        // Bit for bit: NaN signs and payloads, and the sign of zero.
        assert_eq!(back.first_difference(&o), None);
        assert!(text.contains(r#""-nan""#) && text.contains(r#""nan:0xfff00000deadbeef""#));
        assert!(tensors.is_empty());
        let Object::List(items) = back else { panic!() };
        assert!(matches!(items[3], Object::Float(z) if z.to_bits() == (-f64::NAN).to_bits()));
        assert_eq!(DType::F32.size(), 4);
    }

    #[test]
    fn unknown_tags_and_missing_tensors_are_errors() {
        let mut none = HashMap::new();
        for text in [
            r#"{"$eval": "x"}"#,
            r#"{"$tensor": "w"}"#,
            r#"{"$tuple": 1}"#,
            r#"{"$bytes": "abc"}"#,
            r#"{"$float": "nan:0x3ff0000000000000"}"#,
            r#"{"$float": "nan:0x7ff8"}"#,
            r#"{"$float": "NaN"}"#,
            "18446744073709551615",
        ] {
            let j: Json = serde_json::from_str(text).unwrap();
            assert!(decode(&j, &mut none, 0).is_err(), "{text}");
        }
    }
}
