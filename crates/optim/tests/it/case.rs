//! Loading PyTorch reference cases and comparing numbers.

use std::path::{Path, PathBuf};

use ndarray::ArrayD;
use serde::Deserialize;
use serde_json::{Map, Value as Json};
use tempo_optim::OptimizerSpec;
use tempo_tensor::{Float, Tensor};

#[derive(Debug, Deserialize)]
pub(crate) struct ParamSpec {
    pub(crate) shape: Vec<usize>,
    pub(crate) data: Vec<f64>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Tolerance {
    pub(crate) rtol: f64,
    pub(crate) atol: f64,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Expect {
    #[serde(default)]
    pub(crate) lr: Option<Vec<Vec<f64>>>,
    #[serde(default)]
    pub(crate) params: Option<Vec<Vec<Vec<f64>>>>,
    #[serde(default)]
    pub(crate) final_state: Option<Map<String, Json>>,
    #[serde(default)]
    pub(crate) returned_loss: Option<Vec<f64>>,
    #[serde(default)]
    pub(crate) func_evals: Option<Vec<i64>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Case {
    pub(crate) name: String,
    pub(crate) dtype: String,
    pub(crate) params: Vec<ParamSpec>,
    pub(crate) optimizer: OptimizerSpec,
    pub(crate) steps: usize,
    #[serde(default)]
    pub(crate) grads: Option<Vec<Vec<Vec<f64>>>>,
    #[serde(default)]
    pub(crate) resume_at: Option<usize>,
    #[serde(default)]
    pub(crate) objective: Option<Json>,
    pub(crate) expect: Expect,
    pub(crate) tolerance: Tolerance,
}

pub(crate) fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/conformance/cases")
}

/// Every case whose file name starts with one of `prefixes`, sorted by name.
pub(crate) fn load_cases(prefixes: &[&str]) -> Vec<Case> {
    let dir = cases_dir();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".json") && prefixes.iter().any(|p| n.starts_with(p)))
        .collect();
    names.sort();
    names
        .iter()
        .map(|n| {
            let text = std::fs::read_to_string(dir.join(n)).unwrap_or_else(|e| panic!("{n}: {e}"));
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{n}: {e}"))
        })
        .collect()
}

pub(crate) fn to_t<T: Float>(v: &[f64]) -> Vec<T> {
    v.iter().map(|&x| <T as Float>::from_f64(x)).collect()
}

pub(crate) fn array<T: Float>(shape: &[usize], data: &[f64]) -> ArrayD<T> {
    ArrayD::from_shape_vec(shape.to_vec(), to_t(data)).expect("case data fills its shape")
}

pub(crate) fn fresh_params<T: Float>(case: &Case) -> Vec<Tensor<T>> {
    case.params
        .iter()
        .map(|p| Tensor::parameter(array(&p.shape, &p.data)))
        .collect()
}

pub(crate) fn flat<T: Float>(t: &Tensor<T>) -> Vec<f64> {
    t.data().iter().map(|&x| <T as Float>::to_f64(x)).collect()
}

/// `Err(message)` naming the first element outside `|got - want| <= atol + rtol*|want|`.
pub(crate) fn check_close(
    what: &str,
    got: &[f64],
    want: &[f64],
    tol: &Tolerance,
) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!(
            "{what}: length {} != expected {}",
            got.len(),
            want.len()
        ));
    }
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = (g - w).abs() <= tol.atol + tol.rtol * w.abs() || (g.is_nan() && w.is_nan());
        if !ok {
            return Err(format!(
                "{what}, element {i}: got {g:e}, want {w:e} (diff {:e})",
                (g - w).abs()
            ));
        }
    }
    Ok(())
}
