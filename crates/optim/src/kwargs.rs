//! Reading a spec's `kwargs` (PyTorch's constructor arguments) into a config.

use serde_json::{Map, Value as Json};
use tempo_param_groups::{Dict, Value};

use crate::OptimError;

/// Converts a JSON value to a group value: ints stay ints, arrays under `betas`, `etas`
/// and `step_sizes` become tuples (as PyTorch's constructors store them).
pub(crate) fn json_to_value(key: &str, v: &Json) -> Value {
    match v {
        Json::Null => Value::None,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::Str(s.clone()),
        Json::Array(items) => {
            let items: Vec<Value> = items.iter().map(|x| json_to_value("", x)).collect();
            if matches!(key, "betas" | "etas" | "step_sizes") {
                Value::Tuple(items)
            } else {
                Value::List(items)
            }
        }
        Json::Object(m) => Value::Dict(
            m.iter()
                .map(|(k, v)| (k.clone(), json_to_value(k, v)))
                .collect(),
        ),
    }
}

/// A spec's kwargs, for one optimizer: the JSON as written (for checks of the written
/// form) and as group values (read by the same reader as a param group).
pub(crate) struct Kwargs<'a> {
    pub(crate) optimizer: &'static str,
    pub(crate) map: &'a Map<String, Json>,
    pub(crate) dict: Dict,
}

fn json_type(v: &Json) -> String {
    match v {
        Json::Null => "null".into(),
        Json::Bool(b) => format!("bool {b}"),
        Json::Number(n) => format!("number {n}"),
        Json::String(s) => format!("string {s:?}"),
        Json::Array(_) => "a list".into(),
        Json::Object(_) => "an object".into(),
    }
}

impl<'a> Kwargs<'a> {
    pub(crate) fn new(optimizer: &'static str, map: &'a Map<String, Json>) -> Self {
        let dict = map
            .iter()
            .map(|(k, v)| (k.clone(), json_to_value(k, v)))
            .collect();
        Self {
            optimizer,
            map,
            dict,
        }
    }

    /// Errs on any key outside `accepted` (`foreach` is always accepted: it only names a
    /// PyTorch code path and does not change tempo's numbers).
    pub(crate) fn check_known(&self, accepted: &[&str]) -> Result<(), OptimError> {
        for k in self.map.keys() {
            if k != "foreach" && !accepted.contains(&k.as_str()) {
                let mut all: Vec<&str> = accepted.to_vec();
                if !all.contains(&"foreach") {
                    all.push("foreach");
                }
                return Err(OptimError::UnknownArgument {
                    optimizer: self.optimizer,
                    name: k.clone(),
                    accepted: all.join(", "),
                });
            }
        }
        Ok(())
    }

    /// Accepts PyTorch's default for a code-path flag tempo does not implement
    /// (`capturable`, `differentiable`, `fused`), refuses `true`.
    pub(crate) fn unsupported_flag(
        &self,
        key: &str,
        reason: &'static str,
    ) -> Result<(), OptimError> {
        match self.map.get(key) {
            None | Some(Json::Null) | Some(Json::Bool(false)) => Ok(()),
            Some(Json::Bool(true)) => Err(OptimError::Unsupported {
                optimizer: self.optimizer,
                option: format!("{key}=True"),
                reason,
            }),
            Some(v) => Err(OptimError::WrongArgumentType {
                optimizer: self.optimizer,
                name: key.into(),
                expected: "a bool",
                found: json_type(v),
            }),
        }
    }
}

/// PyTorch's Adam checks that both betas are floats: JSON ints (`[0, 0.99]`) are refused.
pub(crate) fn float_betas(kw: &Kwargs<'_>) -> Result<(), OptimError> {
    if let Some(v @ Json::Array(items)) = kw.map.get("betas") {
        if items.iter().any(|x| x.is_i64() || x.is_u64()) {
            return Err(OptimError::InvalidHyperparameter {
                optimizer: kw.optimizer,
                name: "betas".into(),
                value: v.to_string(),
                expected: "betas that are both floats (or both tensors)",
            });
        }
    }
    Ok(())
}

/// The reason given when a code-path flag is set.
pub(crate) const SINGLE_TENSOR_ONLY: &str =
    "tempo implements PyTorch's default single-tensor CPU path only; leave it unset or false";
