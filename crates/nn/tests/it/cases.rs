//! Builders for the conformance cases' models.

use serde_json::Value;
use tempo_nn::{Linear, Module, ReLU, Sequential, Tanh};
use tempo_tensor::{Float, Generator};

use crate::usizes;

/// The model a training case describes (`net_x` or `sequential`), with PyTorch's
/// default initialisation drawn from `rng` (layers in order).
pub(crate) fn build_model<T: Float>(case: &Value, rng: &mut Generator) -> Sequential<T> {
    let mut model = Sequential::new();
    for layer in case["model"]["layers"].as_array().expect("layers") {
        let parts = layer.as_array().expect("layer");
        let name = parts[0].as_str().expect("layer name");
        match name {
            "relu" => {
                model.push(ReLU).expect("push");
            }
            "tanh" => {
                model.push(Tanh).expect("push");
            }
            _ => {
                let dims = usizes(&Value::Array(parts[1..].to_vec()));
                model
                    .push_named(name, Linear::new(dims[0], dims[1], true, rng))
                    .expect("push");
            }
        }
    }
    model
}

/// The model with the case's `init` weights loaded.
pub(crate) fn model_with_init<T: Float>(case: &Value) -> Sequential<T> {
    let model = build_model(case, &mut Generator::new(12345));
    model
        .load_state_dict(&crate::init_state_dict(case))
        .expect("init matches the model");
    model
}
