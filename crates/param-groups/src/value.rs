//! `Value` and `Dict`: hyperparameters and scheduler state as PyTorch's Python dicts hold them.

use std::fmt;

/// A hyperparameter or a piece of scheduler state, as PyTorch keeps it in a Python dict.
///
/// Ints and floats are distinct (PyTorch saves `weight_decay: 0` as an int and
/// `total_size: 2.0` as a float), and so are tuples (`betas`) and lists (`base_lrs`),
/// so that a state written by tempo reads back in PyTorch as PyTorch wrote it.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    /// Python's `None`.
    #[default]
    None,
    /// A bool.
    Bool(bool),
    /// An int.
    Int(i64),
    /// A float (an f64, as Python's).
    Float(f64),
    /// A string.
    Str(String),
    /// A list.
    List(Vec<Value>),
    /// A tuple (`betas`, `etas`, `step_sizes`).
    Tuple(Vec<Value>),
    /// A dict with string keys, in insertion order.
    Dict(Dict),
    /// A dict whose keys are not all strings (MultiStepLR's `milestones` Counter maps
    /// int epochs to counts), in insertion order.
    Map(Vec<(Value, Value)>),
}

impl Value {
    /// The value as an f64, if it is a number (a bool is not a number here).
    #[inline]
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Float(v) => Some(v),
            Value::Int(v) => Some(v as f64),
            _ => None,
        }
    }

    /// The value as an i64, if it is an int, or a float with an integral value.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::Int(v) => Some(v),
            Value::Float(v) if v.fract() == 0.0 && v.abs() < 9.0e15 => Some(v as i64),
            _ => None,
        }
    }

    /// The value as a bool, if it is one.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The value as a string slice, if it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The items of a list or a tuple.
    pub fn as_slice(&self) -> Option<&[Value]> {
        match self {
            Value::List(v) | Value::Tuple(v) => Some(v),
            _ => None,
        }
    }

    /// The dict, if the value is one.
    pub fn as_dict(&self) -> Option<&Dict> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// Whether the value is `None`.
    pub fn is_none(&self) -> bool {
        matches!(self, Value::None)
    }

    /// The Python name of the value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Dict(_) | Value::Map(_) => "dict",
        }
    }

    /// A list of floats.
    pub fn float_list(values: impl IntoIterator<Item = f64>) -> Value {
        Value::List(values.into_iter().map(Value::Float).collect())
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Str(v.to_string())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Str(v)
    }
}
impl From<Dict> for Value {
    fn from(v: Dict) -> Self {
        Value::Dict(v)
    }
}

/// Formats a value the way Python's `repr` does: `1e-08`, `0.001`, `True`, `None`,
/// `(0.9, 0.999)`, `'cos'`, `{'a': 1}`.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::None => f.write_str("None"),
            Value::Bool(true) => f.write_str("True"),
            Value::Bool(false) => f.write_str("False"),
            Value::Int(v) => write!(f, "{v}"),
            Value::Float(v) => f.write_str(&python_float_repr(*v)),
            Value::Str(s) => write!(f, "'{s}'"),
            Value::List(items) => {
                f.write_str("[")?;
                write_items(f, items)?;
                f.write_str("]")
            }
            Value::Tuple(items) => {
                f.write_str("(")?;
                write_items(f, items)?;
                if items.len() == 1 {
                    f.write_str(",")?;
                }
                f.write_str(")")
            }
            Value::Dict(d) => {
                f.write_str("{")?;
                for (i, (k, v)) in d.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "'{k}': {v}")?;
                }
                f.write_str("}")
            }
            Value::Map(entries) => {
                f.write_str("{")?;
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}: {v}")?;
                }
                f.write_str("}")
            }
        }
    }
}

fn write_items(f: &mut fmt::Formatter<'_>, items: &[Value]) -> fmt::Result {
    for (i, v) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{v}")?;
    }
    Ok(())
}

/// Python's `repr(float)`: the shortest string that round-trips, in scientific notation
/// when the exponent is below -4 or at least 16 (`1e-08`, `1e+16`, `0.0001`, `2.0`).
pub(crate) fn python_float_repr(v: f64) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if v == 0.0 {
        return if v.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    // Rust's `{:e}` is the shortest round-trip digits in scientific form: "1.5e-8".
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..16).contains(&exp) {
        let s = format!("{v}");
        if s.contains('.') {
            s
        } else {
            format!("{s}.0")
        }
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    }
}

/// An insertion-ordered dict with string keys, like a Python dict of hyperparameters.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Dict {
    entries: Vec<(String, Value)>,
}

impl Dict {
    /// An empty dict.
    pub fn new() -> Self {
        Self::default()
    }

    /// The position of `key`. Keys are short: compared inline rather than through a
    /// `memcmp` call per entry (a scheduler looks up `lr` every step). Inlined, with
    /// `get` and `get_mut`, into the optimizers that lend their dicts through the seam.
    #[inline]
    fn position(&self, key: &str) -> Option<usize> {
        let key = key.as_bytes();
        self.entries.iter().position(|(k, _)| {
            let k = k.as_bytes();
            k.len() == key.len() && k.iter().zip(key).all(|(a, b)| a == b)
        })
    }

    /// The value under `key`.
    #[inline]
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.position(key).map(|i| &self.entries[i].1)
    }

    /// A mutable reference to the value under `key`.
    #[inline]
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.position(key).map(|i| &mut self.entries[i].1)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Sets `key` to `value`: in place if present (keeping its position), else appended,
    /// like assigning to a Python dict. Returns the old value.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<Value>) -> Option<Value> {
        let key = key.into();
        let value = value.into();
        match self.get_mut(&key) {
            Some(slot) => Some(std::mem::replace(slot, value)),
            None => {
                self.entries.push((key, value));
                None
            }
        }
    }

    /// Python's `dict.setdefault`: inserts `value` only if `key` is absent; returns the
    /// value now under `key`.
    pub fn setdefault(&mut self, key: impl Into<String>, value: impl Into<Value>) -> &Value {
        let key = key.into();
        let pos = match self.position(&key) {
            Some(p) => p,
            None => {
                self.entries.push((key, value.into()));
                self.entries.len() - 1
            }
        };
        &self.entries[pos].1
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let pos = self.position(key)?;
        Some(self.entries.remove(pos).1)
    }

    /// The entries in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The keys in insertion order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_str())
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the dict is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<K: Into<String>, V: Into<Value>> FromIterator<(K, V)> for Dict {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut d = Dict::new();
        for (k, v) in iter {
            d.insert(k, v);
        }
        d
    }
}

impl IntoIterator for Dict {
    type Item = (String, Value);
    type IntoIter = std::vec::IntoIter<(String, Value)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_repr_matches_python() {
        let cases = [
            (1e-8, "1e-08"),
            (0.001, "0.001"),
            (0.1, "0.1"),
            (2.0, "2.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1e16, "1e+16"),
            (123456789.0, "123456789.0"),
            (0.025750000000000002, "0.025750000000000002"),
            (1.5e-7, "1.5e-07"),
            (-3.25, "-3.25"),
        ];
        for (v, want) in cases {
            assert_eq!(python_float_repr(v), want, "repr of {v:e}");
        }
    }

    #[test]
    fn display_is_python_repr() {
        let t = Value::Tuple(vec![Value::Float(0.9), Value::Float(0.999)]);
        assert_eq!(t.to_string(), "(0.9, 0.999)");
        assert_eq!(Value::Bool(false).to_string(), "False");
        assert_eq!(Value::None.to_string(), "None");
        assert_eq!(Value::Int(0).to_string(), "0");
        let d: Dict = [("mode", Value::from("cos"))].into_iter().collect();
        assert_eq!(Value::Dict(d).to_string(), "{'mode': 'cos'}");
    }

    #[test]
    fn dict_keeps_insertion_order_and_setdefault_does_not_overwrite() {
        let mut d = Dict::new();
        d.insert("lr", 0.1);
        d.insert("betas", Value::Tuple(vec![0.9.into(), 0.999.into()]));
        d.setdefault("initial_lr", 0.001);
        d.setdefault("lr", 5.0);
        d.insert("lr", 0.2);
        let keys: Vec<_> = d.keys().collect();
        assert_eq!(keys, ["lr", "betas", "initial_lr"]);
        assert_eq!(d.get("lr").and_then(Value::as_f64), Some(0.2));
        assert_eq!(d.remove("betas").map(|v| v.type_name()), Some("tuple"));
        assert_eq!(d.len(), 2);
    }
}
