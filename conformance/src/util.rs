//! Small pieces shared by the case runners.

use ndarray::ArrayD;
use serde_json::Value as Json;
use tempo::optim::{OptimizerStateDict, StateValue};
use tempo::tensor::{Float, Tensor, TensorData};
use tempo_testkit::{first_mismatch, Tolerance};

/// A tensor of the case's dtype from a shape and f64 data.
pub(crate) fn array<T: Float>(shape: &[usize], data: &[f64]) -> Result<ArrayD<T>, String> {
    ArrayD::from_shape_vec(
        shape.to_vec(),
        data.iter().map(|&v| <T as Float>::from_f64(v)).collect(),
    )
    .map_err(|e| format!("shape {shape:?} with {} elements: {e}", data.len()))
}

/// The case's `params` as fresh parameters.
pub(crate) fn params<T: Float>(case: &tempo_testkit::Case) -> Result<Vec<Tensor<T>>, String> {
    case.params
        .iter()
        .map(|p| array::<T>(&p.shape, &p.data).map(Tensor::parameter))
        .collect()
}

/// A tensor's elements, row-major, as f64.
pub(crate) fn flat<T: Float>(t: &Tensor<T>) -> Vec<f64> {
    t.data().iter().map(|&v| Float::to_f64(v)).collect()
}

/// `Err` naming `what` and the first mismatch.
pub(crate) fn compare(what: &str, got: &[f64], want: &[f64], tol: Tolerance) -> Result<(), String> {
    match first_mismatch(got, want, tol) {
        None => Ok(()),
        Some(m) => Err(format!("{what}: {m}")),
    }
}

/// A state value as numbers (a 0-d tensor or a scalar as one number).
fn state_numbers(v: &StateValue) -> Option<Vec<f64>> {
    match v {
        StateValue::Tensor(t) => Some(t.to_f64_vec()),
        StateValue::Int(i) => Some(vec![*i as f64]),
        StateValue::Float(f) => Some(vec![*f]),
        _ => None,
    }
}

/// Compares an optimizer's state with `expect.final_state`.
pub(crate) fn compare_final_state(
    sd: &OptimizerStateDict,
    want: &serde_json::Map<String, Json>,
    tol: Tolerance,
) -> Result<(), String> {
    if sd.state.len() != want.len() {
        return Err(format!(
            "final_state: {} params with state, want {}",
            sd.state.len(),
            want.len()
        ));
    }
    for (id, entries) in want {
        let got = sd
            .state
            .iter()
            .find(|(i, _)| i.to_string() == *id)
            .ok_or_else(|| format!("final_state: no state for param {id}"))?;
        let entries = entries
            .as_object()
            .ok_or_else(|| format!("final_state[{id}]: not an object"))?;
        for (name, value) in entries {
            let got_value = got
                .1
                .entries
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v)
                .ok_or_else(|| format!("final_state[{id}]: no `{name}`"))?;
            let want_numbers: Vec<f64> = match value {
                Json::Number(n) => vec![n.as_f64().unwrap_or(f64::NAN)],
                Json::Array(a) => a.iter().map(|x| x.as_f64().unwrap_or(f64::NAN)).collect(),
                other => return Err(format!("final_state[{id}][{name}]: unexpected {other}")),
            };
            let got_numbers = state_numbers(got_value)
                .ok_or_else(|| format!("final_state[{id}][{name}]: not a number or tensor"))?;
            compare(
                &format!("final_state[{id}][{name}]"),
                &got_numbers,
                &want_numbers,
                tol,
            )?;
        }
    }
    Ok(())
}

/// A tensor value's elements as f64 (for state-dict data).
#[allow(dead_code)]
pub(crate) fn data_numbers(t: &TensorData) -> Vec<f64> {
    t.to_f64_vec()
}
