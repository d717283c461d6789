//! Optimizer state in PyTorch's `state_dict()` layout.

use ndarray::{ArrayD, IxDyn};
use tempo_param_groups::Dict;
use tempo_tensor::{DType, Float, TensorData};

use crate::OptimError;

/// One value of a parameter's optimizer state, as PyTorch keeps it in a Python dict.
#[derive(Debug, Clone, PartialEq)]
pub enum StateValue {
    /// A tensor (0-d for scalars such as `step`, `mu_product`, `eta`).
    Tensor(TensorData),
    /// A Python int (LBFGS's `func_evals`, `n_iter`, the legacy `H_diag = 1`).
    Int(i64),
    /// A Python float (LBFGS's `t` and `prev_loss`).
    Float(f64),
    /// A bool.
    Bool(bool),
    /// Python's `None` (unused slots of LBFGS's `al`).
    None,
    /// A list (LBFGS's `old_dirs`, `old_stps`, `ro`, `al`).
    List(Vec<StateValue>),
}

impl StateValue {
    /// A 0-d tensor of `T`'s dtype holding `v`.
    pub fn scalar<T: Float>(v: T) -> Self {
        StateValue::Tensor(tensor_data(&[], &[v]))
    }

    /// A tensor of `T`'s dtype with the given shape and row-major data.
    ///
    /// `data.len()` must be the product of `shape` (checked by a debug assertion; a
    /// mismatch yields an empty 1-d tensor in release builds rather than a panic).
    pub fn tensor<T: Float>(shape: &[usize], data: &[T]) -> Self {
        StateValue::Tensor(tensor_data(shape, data))
    }

    /// The Python-ish type name, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            StateValue::Tensor(_) => "tensor",
            StateValue::Int(_) => "int",
            StateValue::Float(_) => "float",
            StateValue::Bool(_) => "bool",
            StateValue::None => "None",
            StateValue::List(_) => "list",
        }
    }

    /// The value as an f64 if it is a number or a one-element tensor.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            StateValue::Int(v) => Some(*v as f64),
            StateValue::Float(v) => Some(*v),
            StateValue::Tensor(t) if t.len() == 1 => t.to_f64_vec().first().copied(),
            _ => None,
        }
    }

    /// The tensor, if the value is one.
    pub fn as_tensor(&self) -> Option<&TensorData> {
        match self {
            StateValue::Tensor(t) => Some(t),
            _ => None,
        }
    }
}

/// The state of one parameter: named values in insertion order (PyTorch's per-param dict).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ParamState {
    /// `(name, value)` pairs in insertion order.
    pub entries: Vec<(String, StateValue)>,
}

impl ParamState {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<&StateValue> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Sets `key` (in place if present, else appended).
    pub fn insert(&mut self, key: impl Into<String>, value: StateValue) {
        let key = key.into();
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some((_, slot)) => *slot = value,
            None => self.entries.push((key, value)),
        }
    }

    /// The names in insertion order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_str())
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// An optimizer's state dict, laid out as PyTorch's `optimizer.state_dict()`.
///
/// Invariants (as produced by tempo): `state` is in first-touch order and keyed by the
/// parameter's index across groups (group 0's params are 0..n0, group 1 continues);
/// every group dict holds every hyperparameter in PyTorch's key order and ends with
/// `"params"`: a `Value::List` of `Value::Int` ids.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OptimizerStateDict {
    /// Per-parameter state, in first-touch order.
    pub state: Vec<(usize, ParamState)>,
    /// The param groups, each ending with `"params"`.
    pub param_groups: Vec<Dict>,
}

impl OptimizerStateDict {
    /// The state of parameter `id`.
    pub fn state_of(&self, id: usize) -> Option<&ParamState> {
        self.state.iter().find(|(i, _)| *i == id).map(|(_, s)| s)
    }
}

/// The `state` of a state dict: each parameter's that has any, in first-touch `order`.
pub(crate) fn save_states<S>(
    order: &[usize],
    states: &[Option<S>],
    mut save: impl FnMut(usize, &S) -> ParamState,
) -> Vec<(usize, ParamState)> {
    order
        .iter()
        .filter_map(|&id| Some((id, save(id, states.get(id)?.as_ref()?))))
        .collect()
}

/// A state dict's `state` read onto `n` parameters (`map` takes a saved id to ours;
/// `load` reads one parameter's state, given our id and the saved one), with the
/// first-touch order it was saved in. The caller's state changes only if all of it
/// reads.
#[allow(clippy::type_complexity)]
pub(crate) fn load_states<S>(
    n: usize,
    map: &[(i64, usize)],
    saved: &[(usize, ParamState)],
    mut load: impl FnMut(usize, &ParamState, usize) -> Result<S, OptimError>,
) -> Result<(Vec<Option<S>>, Vec<usize>), OptimError> {
    let mut states: Vec<Option<S>> = (0..n).map(|_| None).collect();
    let mut order = Vec::new();
    for (saved_id, ps) in saved {
        let id = map
            .iter()
            .find(|(s, _)| *s == *saved_id as i64)
            .map(|&(_, k)| k)
            .ok_or(OptimError::UnknownStateId { param: *saved_id })?;
        let st = load(id, ps, *saved_id)?;
        if states[id].is_none() {
            order.push(id);
        }
        states[id] = Some(st);
    }
    Ok((states, order))
}

pub(crate) fn tensor_data<T: Float>(shape: &[usize], data: &[T]) -> TensorData {
    let numel: usize = shape.iter().product();
    debug_assert_eq!(
        numel,
        data.len(),
        "state tensor data does not fill its shape"
    );
    let (shape, n) = if numel == data.len() {
        (shape.to_vec(), numel)
    } else {
        (vec![0], 0)
    };
    // `T` is f32 or f64: the only [`Float`] types.
    if T::DTYPE == DType::F32 {
        let v: Vec<f32> = data[..n]
            .iter()
            .map(|x| <T as Float>::to_f64(*x) as f32)
            .collect();
        TensorData::F32(ArrayD::from_shape_vec(IxDyn(&shape), v).unwrap_or_else(|_| empty()))
    } else {
        let v: Vec<f64> = data[..n].iter().map(|x| <T as Float>::to_f64(*x)).collect();
        TensorData::F64(ArrayD::from_shape_vec(IxDyn(&shape), v).unwrap_or_else(|_| empty()))
    }
}

fn empty<X: Default>() -> ArrayD<X> {
    ArrayD::default(IxDyn(&[0]))
}

/// Converts a state tensor's elements to `T` (PyTorch's `.to(param.dtype)`), row-major.
pub(crate) fn tensor_to_vec<T: Float>(t: &TensorData) -> Vec<T> {
    match t {
        TensorData::F32(a) => a
            .iter()
            .map(|&x| <T as Float>::from_f64(x as f64))
            .collect(),
        TensorData::F64(a) => a.iter().map(|&x| <T as Float>::from_f64(x)).collect(),
    }
}

/// Builds a [`ParamState`] from typed state, in PyTorch's insertion order.
pub(crate) struct StateWriter<'a> {
    shape: &'a [usize],
    out: ParamState,
}

impl<'a> StateWriter<'a> {
    pub(crate) fn new(shape: &'a [usize]) -> Self {
        Self {
            shape,
            out: ParamState::new(),
        }
    }
    pub(crate) fn scalar<T: Float>(mut self, key: &str, v: T) -> Self {
        self.out.insert(key, StateValue::scalar(v));
        self
    }
    pub(crate) fn tensor<T: Float>(mut self, key: &str, v: &[T]) -> Self {
        self.out.insert(key, StateValue::tensor(self.shape, v));
        self
    }
    pub(crate) fn opt_tensor<T: Float>(self, key: &str, v: Option<&Vec<T>>) -> Self {
        match v {
            Some(v) => self.tensor(key, v),
            None => self,
        }
    }
    pub(crate) fn finish(self) -> ParamState {
        self.out
    }
}

/// Reads typed state out of a [`ParamState`], checking names, types and shapes.
pub(crate) struct StateReader<'a> {
    pub(crate) state: &'a ParamState,
    pub(crate) shape: &'a [usize],
    pub(crate) param: usize,
}

impl StateReader<'_> {
    /// A scalar: a one-element tensor (kept as is, cast to `T`) or a legacy Python number.
    pub(crate) fn scalar<T: Float>(&self, key: &str) -> Result<T, OptimError> {
        let v = self
            .state
            .get(key)
            .ok_or_else(|| OptimError::MissingState {
                param: self.param,
                key: key.into(),
            })?;
        match v {
            StateValue::Tensor(t) if t.len() != 1 => Err(OptimError::StateShapeMismatch {
                param: self.param,
                key: key.into(),
                expected: vec![],
                got: t.shape().to_vec(),
            }),
            _ => v
                .as_f64()
                .map(<T as Float>::from_f64)
                .ok_or(OptimError::WrongStateType {
                    param: self.param,
                    key: key.into(),
                    expected: "a number or a 0-d tensor",
                    found: v.type_name(),
                }),
        }
    }

    pub(crate) fn tensor<T: Float>(&self, key: &str) -> Result<Vec<T>, OptimError> {
        self.opt_tensor(key)?
            .ok_or_else(|| OptimError::MissingState {
                param: self.param,
                key: key.into(),
            })
    }

    pub(crate) fn opt_tensor<T: Float>(&self, key: &str) -> Result<Option<Vec<T>>, OptimError> {
        let Some(v) = self.state.get(key) else {
            return Ok(None);
        };
        let t = v.as_tensor().ok_or(OptimError::WrongStateType {
            param: self.param,
            key: key.into(),
            expected: "a tensor",
            found: v.type_name(),
        })?;
        if t.shape() != self.shape {
            return Err(OptimError::StateShapeMismatch {
                param: self.param,
                key: key.into(),
                expected: self.shape.to_vec(),
                got: t.shape().to_vec(),
            });
        }
        Ok(Some(tensor_to_vec(t)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalar_state_is_a_0d_tensor_of_the_param_dtype() {
        let s = StateValue::scalar(3.0f32);
        let t = s.as_tensor().unwrap();
        assert_eq!(t.dtype(), DType::F32);
        assert!(t.shape().is_empty());
        assert_eq!(s.as_f64(), Some(3.0));
    }

    #[test]
    fn reader_checks_shapes_and_names() {
        let ps = StateWriter::new(&[2])
            .scalar("step", 1.0f64)
            .tensor("m", &[1.0f64, 2.0])
            .finish();
        let r = StateReader {
            state: &ps,
            shape: &[2],
            param: 4,
        };
        assert_eq!(r.tensor::<f32>("m").unwrap(), vec![1.0f32, 2.0]);
        assert!(matches!(
            r.tensor::<f64>("v"),
            Err(OptimError::MissingState { param: 4, .. })
        ));
        let r3 = StateReader {
            state: &ps,
            shape: &[3],
            param: 4,
        };
        assert!(matches!(
            r3.tensor::<f64>("m"),
            Err(OptimError::StateShapeMismatch { param: 4, ref expected, ref got, .. })
                if expected == &vec![3] && got == &vec![2]
        ));
        assert!(matches!(
            r.scalar::<f64>("m"),
            Err(OptimError::StateShapeMismatch { .. })
        ));
        let keys: Vec<_> = ps.keys().collect();
        assert_eq!(keys, ["step", "m"]);
    }
}
