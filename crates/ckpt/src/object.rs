//! `Object`: the Python-like value tree every checkpoint reader returns.

use tempo_param_groups::{Dict, Value};

use crate::{AnyTensor, CkptError, QuantizedTensor, SparseTensor};

/// The deepest nesting of containers tempo reads or writes. Real state dicts nest about
/// five levels; the limit keeps malicious files from exhausting the stack.
pub const MAX_DEPTH: usize = 48;

/// A value as a checkpoint holds it: what `torch.load(weights_only=True)` can return,
/// and what a tempo checkpoint stores.
///
/// Containers keep their insertion order. Dicts are lists of pairs because Python dict
/// keys need not be strings (an optimizer's `state` is keyed by ints).
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    /// `None`.
    None,
    /// A bool.
    Bool(bool),
    /// An int (Python ints beyond 64 bits are rejected when read).
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// A `bytes` value.
    Bytes(Vec<u8>),
    /// A list.
    List(Vec<Object>),
    /// A tuple.
    Tuple(Vec<Object>),
    /// A set, in the order it was written.
    Set(Vec<Object>),
    /// A frozenset.
    FrozenSet(Vec<Object>),
    /// A dict.
    Dict(Vec<(Object, Object)>),
    /// A `collections.OrderedDict`, with the attributes pickled with it (a module's
    /// state dict carries `_metadata`).
    OrderedDict {
        /// The items.
        entries: Vec<(Object, Object)>,
        /// Instance attributes (`_metadata`), in order.
        attrs: Vec<(String, Object)>,
    },
    /// A `collections.Counter` (MultiStepLR's `milestones`).
    Counter(Vec<(Object, Object)>),
    /// A tensor.
    Tensor(AnyTensor),
    /// A sparse tensor (COO, CSR, CSC, BSR or BSC): its layout, size and parts.
    Sparse(Box<SparseTensor>),
    /// A quantized tensor: its integers and the quantizer's parameters.
    Quantized(Box<QuantizedTensor>),
    /// An instance of a class that is not plain data (a pickled dataclass such as
    /// transformers' `TrainingArguments`, an enum member), as data: its class path, the
    /// arguments it was created with and its state. Only [`crate::read_pt_inert`] makes
    /// one, for inspection; it is never imported or constructed, and no writer takes it.
    /// A bare class reference is a record without arguments or state.
    Record {
        /// The class path (`transformers.trainer_utils.SchedulerType`).
        class: String,
        /// The arguments of its creation (an enum member's value).
        args: Vec<Object>,
        /// Its state (a dataclass's attribute dict), if the pickle sets one.
        state: Option<Box<Object>>,
    },
    /// A tensor on PyTorch's `meta` device: a dtype and a shape, no data.
    MetaTensor {
        /// The element type.
        dtype: crate::DType,
        /// The shape.
        shape: Vec<usize>,
    },
}

impl Object {
    /// The Python type name, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Object::None => "None",
            Object::Bool(_) => "bool",
            Object::Int(_) => "int",
            Object::Float(_) => "float",
            Object::Str(_) => "str",
            Object::Bytes(_) => "bytes",
            Object::List(_) => "list",
            Object::Tuple(_) => "tuple",
            Object::Set(_) => "set",
            Object::FrozenSet(_) => "frozenset",
            Object::Dict(_) => "dict",
            Object::OrderedDict { .. } => "OrderedDict",
            Object::Counter(_) => "Counter",
            Object::Tensor(_) => "Tensor",
            Object::MetaTensor { .. } => "Tensor (meta)",
            Object::Sparse(_) => "Tensor (sparse)",
            Object::Quantized(_) => "Tensor (quantized)",
            Object::Record { .. } => "object (an inert record)",
        }
    }

    /// A dict with string keys, in order.
    pub fn str_dict<K: Into<String>>(entries: impl IntoIterator<Item = (K, Object)>) -> Object {
        Object::Dict(
            entries
                .into_iter()
                .map(|(k, v)| (Object::Str(k.into()), v))
                .collect(),
        )
    }

    /// The items of a dict, an OrderedDict or a Counter.
    pub fn entries(&self) -> Option<&[(Object, Object)]> {
        match self {
            Object::Dict(e) | Object::Counter(e) | Object::OrderedDict { entries: e, .. } => {
                Some(e)
            }
            _ => None,
        }
    }

    /// The items of a list or a tuple.
    pub fn items(&self) -> Option<&[Object]> {
        match self {
            Object::List(v) | Object::Tuple(v) => Some(v),
            _ => None,
        }
    }

    /// The value under the string key `key` of a dict-like object.
    pub fn get(&self, key: &str) -> Option<&Object> {
        self.entries()?
            .iter()
            .find(|(k, _)| matches!(k, Object::Str(s) if s == key))
            .map(|(_, v)| v)
    }

    /// The tensor, if this is one.
    pub fn as_tensor(&self) -> Option<&AnyTensor> {
        match self {
            Object::Tensor(t) => Some(t),
            _ => None,
        }
    }

    /// The int, if this is one.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Object::Int(v) => Some(v),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Object::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The depth of the deepest container (a scalar has depth 0).
    pub fn depth(&self) -> usize {
        let pairs = |e: &[(Object, Object)]| {
            e.iter()
                .map(|(k, v)| k.depth().max(v.depth()))
                .max()
                .unwrap_or(0)
        };
        match self {
            Object::List(v) | Object::Tuple(v) | Object::Set(v) | Object::FrozenSet(v) => {
                1 + v.iter().map(Object::depth).max().unwrap_or(0)
            }
            Object::Dict(e) | Object::Counter(e) => 1 + pairs(e),
            Object::OrderedDict { entries, attrs } => {
                let a = attrs.iter().map(|(_, v)| v.depth()).max().unwrap_or(0);
                1 + pairs(entries).max(a)
            }
            _ => 0,
        }
    }

    /// Converts to a hyperparameter [`Value`]: dicts with string keys become
    /// `Value::Dict`, other dicts and Counters `Value::Map`; `path` names the place
    /// for errors. Tensors, bytes and sets have no `Value` form.
    pub fn to_value(&self, path: &str) -> Result<Value, CkptError> {
        let pairs = |e: &[(Object, Object)]| -> Result<Value, CkptError> {
            if e.iter().all(|(k, _)| matches!(k, Object::Str(_))) {
                let mut d = Dict::new();
                for (k, v) in e {
                    let k = k.as_str().unwrap_or_default();
                    d.insert(k, v.to_value(&format!("{path}.{k}"))?);
                }
                Ok(Value::Dict(d))
            } else {
                let mut m = Vec::with_capacity(e.len());
                for (k, v) in e {
                    m.push((
                        k.to_value(path)?,
                        v.to_value(&format!("{path}.{}", key_repr(k)))?,
                    ));
                }
                Ok(Value::Map(m))
            }
        };
        let list = |v: &[Object]| -> Result<Vec<Value>, CkptError> {
            v.iter()
                .enumerate()
                .map(|(i, x)| x.to_value(&format!("{path}.{i}")))
                .collect()
        };
        Ok(match self {
            Object::None => Value::None,
            Object::Bool(b) => Value::Bool(*b),
            Object::Int(i) => Value::Int(*i),
            Object::Float(f) => Value::Float(*f),
            Object::Str(s) => Value::Str(s.clone()),
            Object::List(v) => Value::List(list(v)?),
            Object::Tuple(v) => Value::Tuple(list(v)?),
            Object::Dict(e) | Object::OrderedDict { entries: e, .. } => pairs(e)?,
            Object::Counter(e) => {
                let mut m = Vec::with_capacity(e.len());
                for (k, v) in e {
                    m.push((k.to_value(path)?, v.to_value(path)?));
                }
                Value::Map(m)
            }
            other => {
                return Err(CkptError::schema(
                    path,
                    "a plain value (None, bool, int, float, str, list, tuple or dict)",
                    other.type_name(),
                ))
            }
        })
    }
}

impl Object {
    /// Where `self` and `other` first differ, bit for bit, as a key path (`optimizer.state.0.exp_avg`)
    /// and what differs there; `None` if they are identical.
    ///
    /// Unlike `==`, floats compare by their bits: a NaN equals a NaN with the same payload
    /// and sign, and `0.0` differs from `-0.0`. Tensors compare by dtype, shape and bytes.
    pub fn first_difference(&self, other: &Object) -> Option<String> {
        difference(self, other, "")
    }

    /// Whether `self` and `other` are identical bit for bit (see [`Object::first_difference`]).
    pub fn bitwise_eq(&self, other: &Object) -> bool {
        self.first_difference(other).is_none()
    }
}

fn at(path: &str) -> &str {
    if path.is_empty() {
        "the root"
    } else {
        path
    }
}

fn child(path: &str, segment: &str) -> String {
    if path.is_empty() {
        segment.to_string()
    } else {
        format!("{path}.{segment}")
    }
}

fn difference(a: &Object, b: &Object, path: &str) -> Option<String> {
    let lists = |x: &[Object], y: &[Object]| -> Option<String> {
        if x.len() != y.len() {
            return Some(format!("{}: {} items, then {}", at(path), x.len(), y.len()));
        }
        x.iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (p, q))| difference(p, q, &child(path, &i.to_string())))
    };
    let pairs = |x: &[(Object, Object)], y: &[(Object, Object)]| -> Option<String> {
        if x.len() != y.len() {
            return Some(format!(
                "{}: {} entries, then {}",
                at(path),
                x.len(),
                y.len()
            ));
        }
        x.iter().zip(y).find_map(|((k1, v1), (k2, v2))| {
            let here = child(path, &key_repr(k1));
            difference(k1, k2, &format!("{here} (key)")).or_else(|| difference(v1, v2, &here))
        })
    };
    match (a, b) {
        (Object::None, Object::None) => None,
        (Object::Bool(x), Object::Bool(y)) if x == y => None,
        (Object::Int(x), Object::Int(y)) if x == y => None,
        (Object::Float(x), Object::Float(y)) if x.to_bits() == y.to_bits() => None,
        (Object::Str(x), Object::Str(y)) if x == y => None,
        (Object::Bytes(x), Object::Bytes(y)) if x == y => None,
        (Object::List(x), Object::List(y))
        | (Object::Tuple(x), Object::Tuple(y))
        | (Object::Set(x), Object::Set(y))
        | (Object::FrozenSet(x), Object::FrozenSet(y)) => lists(x, y),
        (Object::Dict(x), Object::Dict(y)) | (Object::Counter(x), Object::Counter(y)) => {
            pairs(x, y)
        }
        (
            Object::OrderedDict {
                entries: x,
                attrs: ax,
            },
            Object::OrderedDict {
                entries: y,
                attrs: ay,
            },
        ) => pairs(x, y).or_else(|| {
            if ax.len() != ay.len() {
                return Some(format!(
                    "{}: {} attributes, then {}",
                    at(path),
                    ax.len(),
                    ay.len()
                ));
            }
            ax.iter().zip(ay).find_map(|((n1, v1), (n2, v2))| {
                if n1 != n2 {
                    Some(format!("{}: attribute `{n1}`, then `{n2}`", at(path)))
                } else {
                    difference(v1, v2, &child(path, n1))
                }
            })
        }),
        (
            Object::MetaTensor { dtype, shape },
            Object::MetaTensor {
                dtype: d2,
                shape: s2,
            },
        ) if dtype == d2 && shape == s2 => None,
        (
            Object::Record { class, args, state },
            Object::Record {
                class: c2,
                args: a2,
                state: s2,
            },
        ) if class == c2 => lists(args, a2).or_else(|| match (state, s2) {
            (None, None) => None,
            (Some(x), Some(y)) => difference(x, y, &child(path, "(state)")),
            _ => Some(format!(
                "{}: a state, then none (or none, then one)",
                at(path)
            )),
        }),
        (Object::Quantized(x), Object::Quantized(y)) => {
            x.first_difference(y).map(|d| format!("{}: {d}", at(path)))
        }
        (Object::Sparse(x), Object::Sparse(y)) => {
            x.first_difference(y).map(|d| format!("{}: {d}", at(path)))
        }
        (Object::Tensor(x), Object::Tensor(y)) => {
            x.first_difference(y).map(|d| format!("{}: {d}", at(path)))
        }
        (Object::Float(x), Object::Float(y)) => Some(format!(
            "{}: the float {x:?} (bits {:#018x}), then {y:?} (bits {:#018x})",
            at(path),
            x.to_bits(),
            y.to_bits()
        )),
        (x, y) if x.type_name() == y.type_name() => {
            Some(format!("{}: {x:?}, then {y:?}", at(path)))
        }
        (x, y) => Some(format!(
            "{}: a {}, then a {}",
            at(path),
            x.type_name(),
            y.type_name()
        )),
    }
}

/// A dict key as text, for paths in error messages.
pub(crate) fn key_repr(k: &Object) -> String {
    match k {
        Object::Str(s) => s.clone(),
        Object::Int(i) => i.to_string(),
        other => other.type_name().to_string(),
    }
}

impl From<&Value> for Object {
    fn from(v: &Value) -> Object {
        match v {
            Value::None => Object::None,
            Value::Bool(b) => Object::Bool(*b),
            Value::Int(i) => Object::Int(*i),
            Value::Float(f) => Object::Float(*f),
            Value::Str(s) => Object::Str(s.clone()),
            Value::List(items) => Object::List(items.iter().map(Object::from).collect()),
            Value::Tuple(items) => Object::Tuple(items.iter().map(Object::from).collect()),
            Value::Dict(d) => Object::from(d),
            Value::Map(entries) => Object::Dict(
                entries
                    .iter()
                    .map(|(k, v)| (Object::from(k), Object::from(v)))
                    .collect(),
            ),
        }
    }
}

impl From<&Dict> for Object {
    fn from(d: &Dict) -> Object {
        Object::Dict(
            d.iter()
                .map(|(k, v)| (Object::Str(k.to_string()), Object::from(v)))
                .collect(),
        )
    }
}

impl From<AnyTensor> for Object {
    fn from(t: AnyTensor) -> Object {
        Object::Tensor(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_through_objects() {
        let mut d = Dict::new();
        d.insert("lr", 0.1);
        d.insert("betas", Value::Tuple(vec![0.9.into(), 0.999.into()]));
        d.insert("weight_decay", 0i64);
        d.insert("foreach", Value::None);
        d.insert(
            "milestones",
            Value::Map(vec![(Value::Int(3), Value::Int(1))]),
        );
        let v = Value::Dict(d);
        assert_eq!(Object::from(&v).to_value("group").unwrap(), v);
    }

    #[test]
    fn tensors_are_not_values() {
        let t = Object::str_dict([(
            "x",
            Object::Tensor(AnyTensor::from_le_bytes(crate::DType::U8, vec![1], &[7]).unwrap()),
        )]);
        let err = t.to_value("root").unwrap_err();
        assert!(
            matches!(err, CkptError::Schema { ref path, .. } if path == "root.x"),
            "{err}"
        );
        assert_eq!(t.depth(), 1);
        assert!(t.get("x").and_then(Object::as_tensor).is_some());
    }
}
