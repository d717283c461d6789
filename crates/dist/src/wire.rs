//! The encoding of optimizer state sent between ranks when a checkpoint is consolidated.
//! It lives only in memory, for one message; files are tempo-ckpt's business.

use ndarray::{ArrayD, IxDyn};
use tempo_optim::{ParamState, StateValue};
use tempo_tensor::TensorData;

use crate::DistError;

const TENSOR_F32: u8 = 0;
const TENSOR_F64: u8 = 1;
const INT: u8 = 2;
const FLOAT: u8 = 3;
const BOOL: u8 = 4;
const NONE: u8 = 5;
const LIST: u8 = 6;

/// Encodes `(state-dict id, state)` pairs.
pub(crate) fn encode(states: &[(usize, ParamState)]) -> Vec<u8> {
    let mut out = Vec::new();
    put_u64(&mut out, states.len() as u64);
    for (id, state) in states {
        put_u64(&mut out, *id as u64);
        put_u64(&mut out, state.entries.len() as u64);
        for (key, value) in &state.entries {
            put_u64(&mut out, key.len() as u64);
            out.extend_from_slice(key.as_bytes());
            put_value(&mut out, value);
        }
    }
    out
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_shape(out: &mut Vec<u8>, shape: &[usize]) {
    put_u64(out, shape.len() as u64);
    for &d in shape {
        put_u64(out, d as u64);
    }
}

fn put_value(out: &mut Vec<u8>, v: &StateValue) {
    match v {
        StateValue::Tensor(TensorData::F32(a)) => {
            out.push(TENSOR_F32);
            put_shape(out, a.shape());
            for x in a.iter() {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        StateValue::Tensor(TensorData::F64(a)) => {
            out.push(TENSOR_F64);
            put_shape(out, a.shape());
            for x in a.iter() {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        StateValue::Int(i) => {
            out.push(INT);
            out.extend_from_slice(&i.to_le_bytes());
        }
        StateValue::Float(f) => {
            out.push(FLOAT);
            out.extend_from_slice(&f.to_le_bytes());
        }
        StateValue::Bool(b) => {
            out.push(BOOL);
            out.push(u8::from(*b));
        }
        StateValue::None => out.push(NONE),
        StateValue::List(items) => {
            out.push(LIST);
            put_u64(out, items.len() as u64);
            for item in items {
                put_value(out, item);
            }
        }
    }
}

/// Decodes what [`encode`] wrote; `rank` names the sender in errors.
pub(crate) fn decode(bytes: &[u8], rank: usize) -> Result<Vec<(usize, ParamState)>, DistError> {
    let mut r = Reader { bytes, at: 0, rank };
    let n = r.len()?;
    let mut states = Vec::with_capacity(n.min(1 << 16));
    for _ in 0..n {
        let id = r.len()?;
        let entries = r.len()?;
        let mut state = ParamState::new();
        for _ in 0..entries {
            let key_len = r.len()?;
            let key = String::from_utf8(r.take(key_len)?.to_vec())
                .map_err(|_| r.malformed("a state name is not UTF-8"))?;
            let value = r.value(0)?;
            state.entries.push((key, value));
        }
        states.push((id, state));
    }
    if r.at != bytes.len() {
        return Err(r.malformed("trailing bytes"));
    }
    Ok(states)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    rank: usize,
}

impl<'a> Reader<'a> {
    fn malformed(&self, reason: &str) -> DistError {
        DistError::Malformed {
            rank: self.rank,
            reason: format!("{reason} (at byte {})", self.at),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DistError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| self.malformed("truncated"))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DistError> {
        let mut b = [0u8; N];
        b.copy_from_slice(self.take(N)?);
        Ok(b)
    }

    fn len(&mut self) -> Result<usize, DistError> {
        let v = u64::from_le_bytes(self.array()?);
        usize::try_from(v).map_err(|_| self.malformed("a length does not fit in memory"))
    }

    fn shape(&mut self) -> Result<(Vec<usize>, usize), DistError> {
        let ndim = self.len()?;
        if ndim > 64 {
            return Err(self.malformed("more than 64 dimensions"));
        }
        let shape = (0..ndim)
            .map(|_| self.len())
            .collect::<Result<Vec<_>, _>>()?;
        let numel = shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| self.malformed("a shape overflows"))?;
        Ok((shape, numel))
    }

    fn tensor<const N: usize, X>(
        &mut self,
        from: fn([u8; N]) -> X,
    ) -> Result<ArrayD<X>, DistError> {
        let (shape, numel) = self.shape()?;
        let bytes = numel
            .checked_mul(N)
            .ok_or_else(|| self.malformed("a shape overflows"))?;
        let data = self
            .take(bytes)?
            .chunks_exact(N)
            .map(|c| {
                let mut b = [0u8; N];
                b.copy_from_slice(c);
                from(b)
            })
            .collect();
        ArrayD::from_shape_vec(IxDyn(&shape), data)
            .map_err(|_| self.malformed("a tensor does not fill its shape"))
    }

    fn value(&mut self, depth: usize) -> Result<StateValue, DistError> {
        if depth > 16 {
            return Err(self.malformed("lists nested too deeply"));
        }
        let [tag] = self.array::<1>()?;
        Ok(match tag {
            TENSOR_F32 => StateValue::Tensor(TensorData::F32(self.tensor(f32::from_le_bytes)?)),
            TENSOR_F64 => StateValue::Tensor(TensorData::F64(self.tensor(f64::from_le_bytes)?)),
            INT => StateValue::Int(i64::from_le_bytes(self.array()?)),
            FLOAT => StateValue::Float(f64::from_le_bytes(self.array()?)),
            BOOL => StateValue::Bool(self.array::<1>()?[0] != 0),
            NONE => StateValue::None,
            LIST => {
                let n = self.len()?;
                let mut items = Vec::with_capacity(n.min(1 << 16));
                for _ in 0..n {
                    items.push(self.value(depth + 1)?);
                }
                StateValue::List(items)
            }
            other => return Err(self.malformed(&format!("unknown value tag {other}"))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<(usize, ParamState)> {
        let mut a = ParamState::new();
        a.insert("step", StateValue::scalar(3.0f32));
        a.insert(
            "exp_avg",
            StateValue::tensor(&[2, 2], &[1.0f32, -2.0, 3.5, 0.0]),
        );
        a.insert("n", StateValue::Int(-7));
        let mut b = ParamState::new();
        b.insert("t", StateValue::Float(0.25));
        b.insert("flag", StateValue::Bool(true));
        b.insert(
            "list",
            StateValue::List(vec![
                StateValue::None,
                StateValue::tensor(&[1], &[f64::MIN_POSITIVE]),
            ]),
        );
        vec![(4, a), (0, b)]
    }

    #[test]
    fn decode_inverts_encode() {
        let s = sample();
        assert_eq!(decode(&encode(&s), 1).unwrap(), s);
        assert_eq!(decode(&encode(&[]), 0).unwrap(), vec![]);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = encode(&sample());
        for n in 0..bytes.len() {
            assert!(
                matches!(
                    decode(&bytes[..n], 3),
                    Err(DistError::Malformed { rank: 3, .. })
                ),
                "prefix of {n} bytes"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            decode(&longer, 3),
            Err(DistError::Malformed { .. })
        ));
    }
}
