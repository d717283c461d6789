//! tempo values as burn record scalars.
//!
//! burn's records (burnpack) hold tensors and named scalars (ints, unsigned ints,
//! floats, bools), while tempo's scheduler state and optimizer-state layout are
//! PyTorch-style values: dicts in key order, lists, tuples, strings, `None`. A value is
//! written as a token stream of scalars under `{prefix}.len` and `{prefix}.0`,
//! `{prefix}.1`, ...: every float is an `f64` scalar, so a round trip is exact, and
//! the key order of every dict is kept.
//!
//! The stream is a pre-order walk: a tag (`Int`), then the payload: `None` nothing;
//! a bool, int or float one scalar; a string its byte length then its bytes packed
//! eight to a `UInt` (little-endian); a list, tuple, dict or map its length then its
//! items (a dict's keys as strings).

use burn_pack::Scalar;
use tempo_param_groups::{Dict, Value};

const NONE: i64 = 0;
const BOOL: i64 = 1;
const INT: i64 = 2;
const FLOAT: i64 = 3;
const STR: i64 = 4;
const LIST: i64 = 5;
const TUPLE: i64 = 6;
const DICT: i64 = 7;
const MAP: i64 = 8;

/// Appends `v`'s token stream to `out`.
pub(crate) fn encode(v: &Value, out: &mut Vec<Scalar>) {
    match v {
        Value::None => out.push(Scalar::Int(NONE)),
        Value::Bool(b) => out.extend([Scalar::Int(BOOL), Scalar::Bool(*b)]),
        Value::Int(i) => out.extend([Scalar::Int(INT), Scalar::Int(*i)]),
        Value::Float(f) => out.extend([Scalar::Int(FLOAT), Scalar::Float(*f)]),
        Value::Str(s) => {
            out.push(Scalar::Int(STR));
            encode_str(s, out);
        }
        Value::List(items) | Value::Tuple(items) => {
            let tag = if matches!(v, Value::List(_)) {
                LIST
            } else {
                TUPLE
            };
            out.extend([Scalar::Int(tag), Scalar::UInt(items.len() as u64)]);
            for item in items {
                encode(item, out);
            }
        }
        Value::Dict(d) => {
            out.extend([Scalar::Int(DICT), Scalar::UInt(d.len() as u64)]);
            for (k, item) in d.iter() {
                encode_str(k, out);
                encode(item, out);
            }
        }
        Value::Map(pairs) => {
            out.extend([Scalar::Int(MAP), Scalar::UInt(pairs.len() as u64)]);
            for (k, item) in pairs {
                encode(k, out);
                encode(item, out);
            }
        }
    }
}

fn encode_str(s: &str, out: &mut Vec<Scalar>) {
    out.push(Scalar::UInt(s.len() as u64));
    for chunk in s.as_bytes().chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        out.push(Scalar::UInt(u64::from_le_bytes(word)));
    }
}

/// Reads one value back from a whole token stream; every token must be used.
pub(crate) fn decode(tokens: &[Scalar]) -> Result<Value, String> {
    let mut r = Reader { tokens, at: 0 };
    let v = r.value(0)?;
    if r.at != tokens.len() {
        return Err(format!(
            "{} tokens left over after the value",
            tokens.len() - r.at
        ));
    }
    Ok(v)
}

/// Nesting deeper than this is refused (tempo's states nest three levels).
const MAX_DEPTH: usize = 32;

struct Reader<'a> {
    tokens: &'a [Scalar],
    at: usize,
}

impl Reader<'_> {
    fn next(&mut self) -> Result<Scalar, String> {
        let t = self
            .tokens
            .get(self.at)
            .copied()
            .ok_or_else(|| format!("the token stream ends early, at token {}", self.at))?;
        self.at += 1;
        Ok(t)
    }

    fn uint(&mut self) -> Result<u64, String> {
        match self.next()? {
            Scalar::UInt(n) => Ok(n),
            other => Err(format!(
                "expected a length at token {}, found {other:?}",
                self.at - 1
            )),
        }
    }

    /// A length, which cannot exceed the tokens left (each item takes at least one).
    fn len(&mut self) -> Result<usize, String> {
        let n = self.uint()?;
        let left = (self.tokens.len() - self.at) as u64;
        if n > left {
            return Err(format!(
                "a length of {n} at token {} exceeds the {left} tokens left",
                self.at - 1
            ));
        }
        Ok(n as usize)
    }

    fn string(&mut self) -> Result<String, String> {
        let n = self.uint()?;
        let words = n.div_ceil(8);
        if words > (self.tokens.len() - self.at) as u64 {
            return Err(format!("a string of {n} bytes runs past the end"));
        }
        let mut bytes = Vec::with_capacity(n as usize);
        for _ in 0..words {
            bytes.extend_from_slice(&self.uint()?.to_le_bytes());
        }
        bytes.truncate(n as usize);
        String::from_utf8(bytes).map_err(|e| format!("a string is not UTF-8: {e}"))
    }

    fn value(&mut self, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err(format!("values nest deeper than {MAX_DEPTH} levels"));
        }
        let at = self.at;
        let tag = match self.next()? {
            Scalar::Int(t) => t,
            other => return Err(format!("expected a tag at token {at}, found {other:?}")),
        };
        let bad = |what: &str, found: Scalar| {
            format!("expected {what} at token {}, found {found:?}", at + 1)
        };
        Ok(match tag {
            NONE => Value::None,
            BOOL => match self.next()? {
                Scalar::Bool(b) => Value::Bool(b),
                other => return Err(bad("a bool", other)),
            },
            INT => match self.next()? {
                Scalar::Int(i) => Value::Int(i),
                other => return Err(bad("an int", other)),
            },
            FLOAT => match self.next()? {
                Scalar::Float(f) => Value::Float(f),
                other => return Err(bad("a float", other)),
            },
            STR => Value::Str(self.string()?),
            LIST | TUPLE => {
                let n = self.len()?;
                let items = (0..n)
                    .map(|_| self.value(depth + 1))
                    .collect::<Result<Vec<_>, _>>()?;
                if tag == LIST {
                    Value::List(items)
                } else {
                    Value::Tuple(items)
                }
            }
            DICT => {
                let n = self.len()?;
                let mut d = Dict::new();
                for _ in 0..n {
                    let k = self.string()?;
                    let v = self.value(depth + 1)?;
                    d.insert(k, v);
                }
                Value::Dict(d)
            }
            MAP => {
                let n = self.len()?;
                let pairs = (0..n)
                    .map(|_| Ok((self.value(depth + 1)?, self.value(depth + 1)?)))
                    .collect::<Result<Vec<_>, String>>()?;
                Value::Map(pairs)
            }
            other => return Err(format!("unknown tag {other} at token {at}")),
        })
    }
}

/// The key of the token count under `prefix`.
pub(crate) fn len_key(prefix: &str) -> String {
    join(prefix, "len")
}

/// The key of token `i` under `prefix`.
pub(crate) fn token_key(prefix: &str, i: usize) -> String {
    join(prefix, &i.to_string())
}

fn join(prefix: &str, leaf: &str) -> String {
    if prefix.is_empty() {
        leaf.to_string()
    } else {
        format!("{prefix}.{leaf}")
    }
}

/// Reads a token stream through `get` (a record's or a state source's scalar lookup).
pub(crate) fn read_tokens(
    prefix: &str,
    mut get: impl FnMut(&str) -> Option<Scalar>,
) -> Result<Vec<Scalar>, String> {
    let n = match get(&len_key(prefix)) {
        Some(Scalar::UInt(n)) => n,
        Some(other) => {
            return Err(format!(
                "`{}` should be an unsigned int, found {other:?}",
                len_key(prefix)
            ))
        }
        None => {
            return Err(format!(
                "no `{}` (not written by tempo-burn)",
                len_key(prefix)
            ))
        }
    };
    (0..n as usize)
        .map(|i| {
            get(&token_key(prefix, i))
                .ok_or_else(|| format!("`{}` is missing", token_key(prefix, i)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(v: &Value) -> Value {
        let mut tokens = Vec::new();
        encode(v, &mut tokens);
        decode(&tokens).unwrap()
    }

    fn sample() -> Value {
        let mut inner = Dict::new();
        inner.insert("mode", "triangular2");
        inner.insert("base_lrs", Value::float_list([0.1, 1.0 / 3.0]));
        inner.insert("none", Value::None);
        inner.insert("flag", true);
        inner.insert("epoch", -3i64);
        inner.insert(
            "betas",
            Value::Tuple(vec![Value::Float(0.95), Value::Float(0.999)]),
        );
        inner.insert("ms", Value::Map(vec![(Value::Int(3), Value::Int(1))]));
        inner.insert("", "ünïcödé, longer than eight bytes");
        Value::Dict(inner)
    }

    #[test]
    fn every_value_kind_round_trips_exactly_in_key_order() {
        let v = sample();
        assert_eq!(round_trip(&v), v);
        let keys: Vec<String> = match round_trip(&v) {
            Value::Dict(d) => d.keys().map(str::to_string).collect(),
            _ => vec![],
        };
        assert_eq!(
            keys,
            ["mode", "base_lrs", "none", "flag", "epoch", "betas", "ms", ""]
        );
    }

    #[test]
    fn truncated_or_corrupt_streams_are_errors() {
        let mut tokens = Vec::new();
        encode(&sample(), &mut tokens);
        for cut in 0..tokens.len() {
            assert!(decode(&tokens[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = tokens.clone();
        extra.push(Scalar::Int(0));
        assert!(decode(&extra).unwrap_err().contains("left over"));
        let mut huge = vec![Scalar::Int(LIST), Scalar::UInt(u64::MAX)];
        huge.push(Scalar::Int(NONE));
        assert!(decode(&huge).unwrap_err().contains("exceeds"));
        assert!(decode(&[Scalar::Int(99)])
            .unwrap_err()
            .contains("unknown tag 99"));
        assert!(decode(&[Scalar::Int(FLOAT), Scalar::Bool(true)])
            .unwrap_err()
            .contains("expected a float"));
    }
}
