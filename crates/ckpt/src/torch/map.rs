//! Maps PyTorch's state-dict layouts onto tempo's state types and back.

use tempo_param_groups::{Dict, Value};

use crate::object::key_repr;
use crate::state::{ModuleStateDict, OptimizerStateDict, ParamState, StateValue};
use tempo_tensor::TensorData;

use crate::{AnyTensor, CkptError, Object};

fn float_tensor(o: Object, path: &str) -> Result<tempo_tensor::TensorData, CkptError> {
    match o {
        Object::Tensor(t) => {
            let dtype = t.dtype();
            t.into_tensor_data().map_err(|_| {
                CkptError::schema(
                    path,
                    "a float32 or float64 tensor",
                    format!("a {dtype} tensor"),
                )
            })
        }
        other => Err(CkptError::schema(path, "a tensor", other.type_name())),
    }
}

/// The items of a dict-like object, by value.
fn into_entries(o: Object, path: &str) -> Result<Vec<(Object, Object)>, CkptError> {
    match o {
        Object::Dict(e) | Object::Counter(e) | Object::OrderedDict { entries: e, .. } => Ok(e),
        other => Err(CkptError::schema(path, "a dict", other.type_name())),
    }
}

/// Removes the value under the string key `key`.
pub(crate) fn take(entries: &mut Vec<(Object, Object)>, key: &str) -> Option<Object> {
    let i = entries.iter().position(|(k, _)| k.as_str() == Some(key))?;
    Some(entries.remove(i).1)
}

/// Reads a module's state dict (`model.state_dict()`: an `OrderedDict` of name →
/// tensor) in order. Every value must be a float32 or float64 tensor.
pub fn module_state_from_object(o: &Object) -> Result<ModuleStateDict, CkptError> {
    module_state_from_owned(o.clone())
}

/// [`module_state_from_object`] without copying the tensors.
pub(crate) fn module_state_from_owned(o: Object) -> Result<ModuleStateDict, CkptError> {
    let mut out = Vec::new();
    for (k, v) in into_entries(o, "state_dict")? {
        let Object::Str(name) = k else {
            return Err(CkptError::schema(
                "state_dict",
                "string keys",
                k.type_name(),
            ));
        };
        let t = float_tensor(v, &name)?;
        out.push((name, t));
    }
    Ok(out)
}

/// A module's state dict as PyTorch saves it: an `OrderedDict` of name → tensor.
pub fn module_state_to_object(state: &ModuleStateDict) -> Object {
    module_state_to_object_with(state, &mut |t| Object::Tensor(AnyTensor::from(t)))
}

/// [`module_state_to_object`] with `tensor` making each tensor's object, in order.
pub(crate) fn module_state_to_object_with<'a>(
    state: &'a ModuleStateDict,
    tensor: &mut dyn FnMut(&'a TensorData) -> Object,
) -> Object {
    Object::OrderedDict {
        entries: state
            .iter()
            .map(|(k, v)| (Object::Str(k.clone()), tensor(v)))
            .collect(),
        attrs: Vec::new(),
    }
}

fn state_value(o: Object, path: &str) -> Result<StateValue, CkptError> {
    Ok(match o {
        Object::Tensor(_) => StateValue::Tensor(float_tensor(o, path)?),
        Object::Int(i) => StateValue::Int(i),
        Object::Float(f) => StateValue::Float(f),
        Object::Bool(b) => StateValue::Bool(b),
        Object::None => StateValue::None,
        Object::List(items) | Object::Tuple(items) => StateValue::List(
            items
                .into_iter()
                .enumerate()
                .map(|(i, x)| state_value(x, &format!("{path}.{i}")))
                .collect::<Result<_, _>>()?,
        ),
        other => {
            return Err(CkptError::schema(
                path,
                "a tensor, a number, a bool, None or a list",
                other.type_name(),
            ))
        }
    })
}

fn state_value_to_object<'a>(
    v: &'a StateValue,
    tensor: &mut dyn FnMut(&'a TensorData) -> Object,
) -> Object {
    match v {
        StateValue::Tensor(t) => tensor(t),
        StateValue::Int(i) => Object::Int(*i),
        StateValue::Float(f) => Object::Float(*f),
        StateValue::Bool(b) => Object::Bool(*b),
        StateValue::None => Object::None,
        StateValue::List(items) => Object::List(
            items
                .iter()
                .map(|i| state_value_to_object(i, tensor))
                .collect(),
        ),
    }
}

/// Reads an optimizer's state dict in PyTorch's layout: `{"state": {id: {key: value}},
/// "param_groups": [{..., "params": [ids]}]}`. `step` stays the 0-d tensor PyTorch
/// saves; `betas` stays a tuple; ints stay ints.
pub fn optimizer_state_from_object(o: &Object) -> Result<OptimizerStateDict, CkptError> {
    optimizer_state_from_owned(o.clone())
}

/// [`optimizer_state_from_object`] without copying the tensors.
pub(crate) fn optimizer_state_from_owned(o: Object) -> Result<OptimizerStateDict, CkptError> {
    let type_name = o.type_name();
    let mut top = into_entries(o, "optimizer")?;
    let state_obj = take(&mut top, "state")
        .ok_or_else(|| CkptError::schema("optimizer", "a dict with `state`", type_name))?;
    let groups_obj = take(&mut top, "param_groups")
        .ok_or_else(|| CkptError::schema("optimizer", "a dict with `param_groups`", type_name))?;
    let mut state = Vec::new();
    for (k, v) in into_entries(state_obj, "optimizer.state")? {
        let id = k
            .as_i64()
            .and_then(|i| usize::try_from(i).ok())
            .ok_or_else(|| {
                CkptError::schema("optimizer.state", "non-negative int keys", key_repr(&k))
            })?;
        let mut ps = ParamState::default();
        for (name, value) in into_entries(v, &format!("optimizer.state.{id}"))? {
            let Object::Str(name) = name else {
                return Err(CkptError::schema(
                    format!("optimizer.state.{id}"),
                    "string keys",
                    name.type_name(),
                ));
            };
            let path = format!("optimizer.state.{id}.{name}");
            let value = state_value(value, &path)?;
            ps.entries.push((name, value));
        }
        state.push((id, ps));
    }
    let groups = groups_obj.items().ok_or_else(|| {
        CkptError::schema("optimizer.param_groups", "a list", groups_obj.type_name())
    })?;
    let mut param_groups = Vec::with_capacity(groups.len());
    for (i, g) in groups.iter().enumerate() {
        let path = format!("optimizer.param_groups.{i}");
        match g.to_value(&path)? {
            Value::Dict(d) => {
                if !matches!(d.get("params"), Some(Value::List(_))) {
                    return Err(CkptError::schema(path, "a `params` list of ids", "none"));
                }
                param_groups.push(d);
            }
            other => {
                return Err(CkptError::schema(
                    path,
                    "a dict with string keys",
                    other.type_name(),
                ))
            }
        }
    }
    Ok(OptimizerStateDict {
        state,
        param_groups,
    })
}

/// An optimizer's state dict as PyTorch saves it.
pub fn optimizer_state_to_object(sd: &OptimizerStateDict) -> Object {
    optimizer_state_to_object_with(sd, &mut |t| Object::Tensor(AnyTensor::from(t)))
}

/// [`optimizer_state_to_object`] with `tensor` making each tensor's object, in order.
pub(crate) fn optimizer_state_to_object_with<'a>(
    sd: &'a OptimizerStateDict,
    tensor: &mut dyn FnMut(&'a TensorData) -> Object,
) -> Object {
    let state = sd
        .state
        .iter()
        .map(|(id, ps)| {
            let inner = ps
                .entries
                .iter()
                .map(|(k, v)| (Object::Str(k.clone()), state_value_to_object(v, tensor)))
                .collect();
            (
                Object::Int(i64::try_from(*id).unwrap_or(i64::MAX)),
                Object::Dict(inner),
            )
        })
        .collect();
    let groups = sd.param_groups.iter().map(Object::from).collect();
    Object::str_dict([
        ("state", Object::Dict(state)),
        ("param_groups", Object::List(groups)),
    ])
}

/// Reads a scheduler's state dict (a dict with PyTorch's keys, in its order).
pub fn scheduler_state_from_object(o: &Object) -> Result<Dict, CkptError> {
    match o.to_value("scheduler")? {
        Value::Dict(d) => Ok(d),
        other => Err(CkptError::schema(
            "scheduler",
            "a dict with string keys",
            other.type_name(),
        )),
    }
}

/// A scheduler's state dict as PyTorch saves it. `milestones` maps (MultiStepLR's)
/// become `collections.Counter`, as PyTorch keeps them.
pub fn scheduler_state_to_object(d: &Dict) -> Object {
    fn convert(key: Option<&str>, v: &Value) -> Object {
        match v {
            Value::Map(e) if key == Some("milestones") => Object::Counter(
                e.iter()
                    .map(|(k, v)| (Object::from(k), Object::from(v)))
                    .collect(),
            ),
            Value::Dict(d) => Object::Dict(
                d.iter()
                    .map(|(k, v)| (Object::Str(k.to_string()), convert(Some(k), v)))
                    .collect(),
            ),
            Value::List(items) => Object::List(items.iter().map(|i| convert(None, i)).collect()),
            Value::Tuple(items) => Object::Tuple(items.iter().map(|i| convert(None, i)).collect()),
            other => Object::from(other),
        }
    }
    convert(None, &Value::Dict(d.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milestones_become_a_counter() {
        let mut d = Dict::new();
        d.insert(
            "milestones",
            Value::Map(vec![(Value::Int(2), Value::Int(1))]),
        );
        d.insert("gamma", 0.1);
        let o = scheduler_state_to_object(&d);
        assert!(matches!(o.get("milestones"), Some(Object::Counter(_))));
        assert_eq!(scheduler_state_from_object(&o).unwrap(), d);
    }

    #[test]
    fn optimizer_state_round_trips() {
        let step =
            tempo_tensor::TensorData::F32(ndarray::ArrayD::from_elem(ndarray::IxDyn(&[]), 3.0));
        let mut group = Dict::new();
        group.insert("lr", 0.01);
        group.insert("params", Value::List(vec![Value::Int(0)]));
        let sd = OptimizerStateDict {
            state: vec![(
                0,
                ParamState {
                    entries: vec![
                        ("step".into(), StateValue::Tensor(step)),
                        ("momentum_buffer".into(), StateValue::None),
                    ],
                },
            )],
            param_groups: vec![group],
        };
        let o = optimizer_state_to_object(&sd);
        assert_eq!(optimizer_state_from_object(&o).unwrap(), sd);
        let bad = Object::str_dict([
            ("state", Object::Dict(vec![])),
            ("param_groups", Object::Int(1)),
        ]);
        assert!(matches!(
            optimizer_state_from_object(&bad),
            Err(CkptError::Schema { .. })
        ));
    }
}
