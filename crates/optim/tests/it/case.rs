//! tempo's side of the PyTorch reference cases (read by tempo-testkit): the case's
//! optimizer and parameters as tempo values, and comparing numbers.

use ndarray::ArrayD;
use tempo_optim::OptimizerSpec;
use tempo_tensor::{Float, Tensor};
use tempo_testkit::{first_mismatch, Case, Tolerance};

/// Every case whose file name starts with `prefix`, sorted by name.
pub(crate) fn load_cases(prefix: &str) -> Vec<Case> {
    tempo_testkit::load_cases(prefix).unwrap_or_else(|e| panic!("{e}"))
}

/// The case's optimizer spec.
pub(crate) fn optimizer_spec(case: &Case) -> Result<OptimizerSpec, String> {
    let spec = case.optimizer.clone().ok_or("case has no optimizer")?;
    serde_json::from_value(spec).map_err(|e| format!("optimizer spec: {e}"))
}

pub(crate) fn array<T: Float>(shape: &[usize], data: &[f64]) -> ArrayD<T> {
    let data = data.iter().map(|&x| <T as Float>::from_f64(x)).collect();
    ArrayD::from_shape_vec(shape.to_vec(), data).expect("case data fills its shape")
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

/// `Err(message)` naming `what` and the first element outside
/// `|got - want| <= atol + rtol*|want|`.
pub(crate) fn check_close(
    what: &str,
    got: &[f64],
    want: &[f64],
    tol: Tolerance,
) -> Result<(), String> {
    match first_mismatch(got, want, tol) {
        None => Ok(()),
        Some(m) => Err(format!("{what}: {m}")),
    }
}
