//! tempo-nn integration tests: PyTorch reference cases for initialisation, forward and
//! backward passes, and state dict behaviour.

mod cases;
mod init;
mod loss;
mod state_dict;
mod training;

use ndarray::ArrayD;
use serde_json::Value;
use tempo_nn::StateDict;
use tempo_tensor::Float;
use tempo_testkit::{cases_dir, close, Tolerance};

/// A conformance case by file name, as JSON (the model cases' fields are their own).
pub(crate) fn load_case(file: &str) -> Value {
    tempo_testkit::load_case(&cases_dir().join(file))
        .unwrap_or_else(|e| panic!("{e}"))
        .raw
}

/// A JSON array of numbers as f64s.
pub(crate) fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_f64().expect("a number"))
        .collect()
}

/// A JSON array of shape entries.
pub(crate) fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_u64().expect("an integer") as usize)
        .collect()
}

/// The case's `init` weights as a state dict of element type `T`, in file order.
pub(crate) fn init_state_dict<T: Float>(case: &Value) -> StateDict<T> {
    let init = case["init"].as_object().expect("init object");
    let entries = init
        .iter()
        .map(|(k, v)| {
            let shape = usizes(&v["shape"]);
            let data = f64s(&v["data"])
                .into_iter()
                .map(<T as Float>::from_f64)
                .collect();
            (
                k.clone(),
                ArrayD::from_shape_vec(shape, data).expect("shape fits data"),
            )
        })
        .collect();
    StateDict::from_entries(entries).expect("unique keys")
}

/// `|got - want| <= atol + rtol |want|`, the conformance tolerance.
pub(crate) fn assert_close(what: &str, got: f64, want: f64, rtol: f64, atol: f64) {
    assert!(
        close(got, want, Tolerance { rtol, atol }),
        "{what}: got {got:e}, want {want:e} (rtol {rtol:e}, atol {atol:e})"
    );
}
