//! [`TempoState`]: one parameter's tempo optimizer state, as a burn record state.

use std::sync::{Mutex, PoisonError};

use burn_core::tensor::{Device, TensorData as BurnData};
use burn_optim::{RecordState, StateSink, StateSource};
use burn_pack::Scalar;
use ndarray::{ArrayD, IxDyn};
use tempo_optim::{Optimizer, ParamState, StateValue};
use tempo_param_groups::Value;
use tempo_tensor::{Float, TensorData};

use crate::host::HostParam;
use crate::record::{decode, encode, len_key, read_tokens, token_key};

/// A one-parameter tempo optimizer kept between burn's steps, with the host storage it
/// steps.
pub(crate) struct Live<T: Float> {
    pub(crate) param: HostParam<T>,
    pub(crate) opt: Box<dyn Optimizer<T, HostParam<T>>>,
}

impl<T: Float> Live<T> {
    /// The parameter's state, PyTorch's per-parameter state dict (empty before the
    /// first step).
    fn param_state(&self) -> ParamState {
        self.opt
            .state_dict()
            .state
            .into_iter()
            .find(|(id, _)| *id == 0)
            .map(|(_, s)| s)
            .unwrap_or_default()
    }
}

/// Where a [`TempoState`] keeps the state: as saved (from a record, a clone), or inside
/// the live optimizer of the parameter's dtype, so that a step neither rebuilds the
/// optimizer nor copies its buffers.
pub(crate) enum Inner {
    Saved(ParamState),
    F32(Live<f32>),
    F64(Live<f64>),
}

impl Inner {
    /// The state, wherever it is kept.
    pub(crate) fn param_state(&self) -> ParamState {
        match self {
            Inner::Saved(s) => s.clone(),
            Inner::F32(l) => l.param_state(),
            Inner::F64(l) => l.param_state(),
        }
    }
}

/// A float type a [`TempoState`] can hold a live optimizer of.
pub(crate) trait HostFloat: Float {
    /// `live` as the state of this dtype.
    fn wrap(live: Live<Self>) -> Inner;
    /// The live optimizer of this dtype, if `inner` holds one.
    fn live(inner: &mut Inner) -> Option<&mut Live<Self>>;
}

impl HostFloat for f32 {
    fn wrap(live: Live<f32>) -> Inner {
        Inner::F32(live)
    }
    fn live(inner: &mut Inner) -> Option<&mut Live<f32>> {
        match inner {
            Inner::F32(l) => Some(l),
            _ => None,
        }
    }
}

impl HostFloat for f64 {
    fn wrap(live: Live<f64>) -> Inner {
        Inner::F64(live)
    }
    fn live(inner: &mut Inner) -> Option<&mut Live<f64>> {
        match inner {
            Inner::F64(l) => Some(l),
            _ => None,
        }
    }
}

/// The state of one parameter under a [`TempoOptimizer`](crate::TempoOptimizer):
/// tempo's per-parameter state in PyTorch's layout (`exp_avg`, `exp_avg_sq`, `step`,
/// ...), in host memory.
///
/// Between steps it holds the parameter's tempo optimizer itself, so a step costs the
/// update and the copies between burn's device and host memory, nothing more. A clone
/// is a deep copy (the state as of the clone).
///
/// In burn's optimizer record, each state tensor is a record tensor named
/// `{param}.{key}` in its own dtype (a 0-d tensor such as `step` is stored with shape
/// `[1]`), and the layout (keys in order, dtypes, shapes, plain numbers) is a token
/// stream of scalars under `{param}.tempo`, so a resume is exact.
pub struct TempoState<const D: usize> {
    inner: Mutex<Inner>,
}

impl<const D: usize> TempoState<D> {
    pub(crate) fn from_inner(inner: Inner) -> Self {
        Self {
            inner: Mutex::new(inner),
        }
    }

    pub(crate) fn inner_mut(&mut self) -> &mut Inner {
        self.inner.get_mut().unwrap_or_else(PoisonError::into_inner)
    }

    /// tempo's state of the parameter, PyTorch's per-parameter state dict.
    pub fn param_state(&self) -> ParamState {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .param_state()
    }
}

impl<const D: usize> Clone for TempoState<D> {
    fn clone(&self) -> Self {
        Self::from_inner(Inner::Saved(self.param_state()))
    }
}

impl<const D: usize> PartialEq for TempoState<D> {
    fn eq(&self, other: &Self) -> bool {
        self.param_state() == other.param_state()
    }
}

impl<const D: usize> std::fmt::Debug for TempoState<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TempoState")
            .field("state", &self.param_state())
            .finish()
    }
}

fn join(prefix: &str, leaf: &str) -> String {
    if prefix.is_empty() {
        leaf.to_string()
    } else {
        format!("{prefix}.{leaf}")
    }
}

fn plain(v: &StateValue) -> Option<Value> {
    Some(match v {
        StateValue::Int(i) => Value::Int(*i),
        StateValue::Float(f) => Value::Float(*f),
        StateValue::Bool(b) => Value::Bool(*b),
        StateValue::None => Value::None,
        StateValue::List(items) => Value::List(items.iter().map(plain).collect::<Option<_>>()?),
        StateValue::Tensor(_) => return None,
    })
}

fn unplain(v: &Value) -> Option<StateValue> {
    Some(match v {
        Value::Int(i) => StateValue::Int(*i),
        Value::Float(f) => StateValue::Float(*f),
        Value::Bool(b) => StateValue::Bool(*b),
        Value::None => StateValue::None,
        Value::List(items) => StateValue::List(items.iter().map(unplain).collect::<Option<_>>()?),
        _ => return None,
    })
}

impl<const D: usize> RecordState for TempoState<D> {
    fn state_flatten(&self, prefix: &str, out: &mut StateSink) {
        let state = self.param_state();
        let mut layout = Vec::with_capacity(state.len());
        for (key, v) in &state.entries {
            let entry = match v {
                StateValue::Tensor(t) => {
                    let shape: Vec<usize> = t.shape().to_vec();
                    let stored = if shape.is_empty() {
                        vec![1]
                    } else {
                        shape.clone()
                    };
                    let (dtype, data) = match t {
                        TensorData::F32(a) => (
                            "f32",
                            BurnData::new(a.iter().copied().collect::<Vec<f32>>(), stored),
                        ),
                        TensorData::F64(a) => (
                            "f64",
                            BurnData::new(a.iter().copied().collect::<Vec<f64>>(), stored),
                        ),
                    };
                    out.push_tensor(prefix, key, data);
                    Value::Tuple(vec![
                        Value::Str(key.clone()),
                        Value::Str(dtype.into()),
                        Value::List(shape.iter().map(|&n| Value::Int(n as i64)).collect()),
                    ])
                }
                // tempo's elementwise optimizers keep only tensors; plain values (LBFGS's)
                // are written as they are.
                other => Value::Tuple(vec![
                    Value::Str(key.clone()),
                    Value::Str("value".into()),
                    plain(other).unwrap_or(Value::None),
                ]),
            };
            layout.push(entry);
        }
        let mut tokens = Vec::new();
        encode(&Value::List(layout), &mut tokens);
        let at = join(prefix, "tempo");
        out.scalars
            .push((len_key(&at), Scalar::UInt(tokens.len() as u64)));
        for (i, t) in tokens.into_iter().enumerate() {
            out.scalars.push((token_key(&at, i), t));
        }
    }

    /// `None` (burn then starts the parameter afresh) for a state not written by
    /// tempo-burn, or whose tensors disagree with its layout.
    fn state_unflatten(prefix: &str, src: &mut StateSource, _device: &Device) -> Option<Self> {
        let at = join(prefix, "tempo");
        let tokens = read_tokens(&at, |k| src.take_scalar("", k)).ok()?;
        let layout = decode(&tokens).ok()?;
        let mut state = ParamState::new();
        for entry in layout.as_slice()? {
            let [key, kind, v] = entry.as_slice()? else {
                return None;
            };
            let key = key.as_str()?;
            let value = match kind.as_str()? {
                "value" => unplain(v)?,
                dtype => {
                    let shape = v
                        .as_slice()?
                        .iter()
                        .map(|n| usize::try_from(n.as_i64()?).ok())
                        .collect::<Option<Vec<usize>>>()?;
                    let data = src.take_tensor(prefix, key)?;
                    let t = match dtype {
                        "f32" => TensorData::F32(
                            ArrayD::from_shape_vec(IxDyn(&shape), data.try_to_vec::<f32>().ok()?)
                                .ok()?,
                        ),
                        "f64" => TensorData::F64(
                            ArrayD::from_shape_vec(IxDyn(&shape), data.try_to_vec::<f64>().ok()?)
                                .ok()?,
                        ),
                        _ => return None,
                    };
                    StateValue::Tensor(t)
                }
            };
            state.insert(key, value);
        }
        Some(Self::from_inner(Inner::Saved(state)))
    }
}
