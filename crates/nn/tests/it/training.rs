//! Forward and backward passes of the training cases' models against PyTorch's losses.

use serde_json::Value;
use tempo_nn::{mse_loss, Module, Reduction};
use tempo_tensor::{Float, Tensor};

use crate::cases::model_with_init;
use crate::{assert_close, f64s, load_case};

fn tolerance(case: &Value) -> (f64, f64) {
    let t = &case["tolerance"];
    (
        t["rtol"].as_f64().expect("rtol"),
        t["atol"].as_f64().expect("atol"),
    )
}

fn tensor<T: Float>(shape: &[usize], data: &[f64]) -> Tensor<T> {
    Tensor::from_vec(
        shape,
        data.iter().map(|&v| <T as Float>::from_f64(v)).collect(),
    )
    .expect("shape fits data")
}

/// The seed's first loss `sum(target - prediction)` with input [1, 2] and `targets[0]`.
fn check_seed_first_loss<T: Float>(file: &str, rtol: f64, atol: f64) {
    let case = load_case(file);
    let model = model_with_init::<T>(&case);
    let x = tensor::<T>(&[2], &f64s(&case["input"]));
    let target = tensor::<T>(&[4], &f64s(&case["targets"][0]));
    let pred = model.forward(&x).expect("forward");
    assert_eq!(pred.shape(), vec![4]);
    let loss = target.sub(&pred).expect("same shape").sum();
    let want = case["expect"]["loss"][0].as_f64().expect("loss");
    assert_close(
        file,
        Float::to_f64(loss.item().expect("scalar")),
        want,
        rtol,
        atol,
    );

    // d loss / d out.bias = -1 for each output; every parameter gets a gradient.
    loss.backward().expect("backward");
    for (name, p) in model.named_parameters() {
        let g = p.grad().clone();
        let g = g.unwrap_or_else(|| panic!("{name} has no grad"));
        assert_eq!(g.shape(), p.shape().as_slice(), "{name}");
        if name == "out.bias" {
            for &v in g.iter() {
                assert_close("out.bias grad", Float::to_f64(v), -1.0, 0.0, 1e-12);
            }
        }
    }
}

#[test]
fn seed_net_x_first_loss_f64() {
    check_seed_first_loss::<f64>("training__seed_net_x_float64.json", 0.0, 1e-12);
}

#[test]
fn seed_net_x_first_loss_f32() {
    let case = load_case("training__seed_net_x_float32.json");
    let (rtol, atol) = tolerance(&case);
    check_seed_first_loss::<f32>("training__seed_net_x_float32.json", rtol, atol);
}

/// The MLP case's first mini-batch: `mse_loss(model(x[0..b]), y[0..b])` = expect.loss[0],
/// then a backward pass that reaches every parameter.
fn check_mlp_first_batch<T: Float>(file: &str) {
    let case = load_case(file);
    let (rtol, atol) = tolerance(&case);
    let model = model_with_init::<T>(&case);
    let rows: Vec<Vec<f64>> = case["x"].as_array().expect("x").iter().map(f64s).collect();
    let n = rows.len();
    let d = rows[0].len();
    let flat: Vec<f64> = rows.concat();
    let x = tensor::<T>(&[n, d], &flat);
    let y = tensor::<T>(&[n, 1], &f64s(&case["y"]));
    let b = case["batch_size"].as_u64().expect("batch_size") as usize;
    let xb = x.rows(0..b).expect("batch");
    let yb = y.rows(0..b).expect("batch");
    let loss = mse_loss(&model.forward(&xb).expect("forward"), &yb, Reduction::Mean).expect("loss");
    let want = case["expect"]["loss"][0].as_f64().expect("loss");
    assert_close(
        file,
        Float::to_f64(loss.item().expect("scalar")),
        want,
        rtol,
        atol,
    );
    loss.backward().expect("backward");
    for (name, p) in model.named_parameters() {
        assert!(p.grad().is_some(), "{name} has no grad");
    }
}

#[test]
fn mlp_relu_tanh_mse_first_batch_f64() {
    check_mlp_first_batch::<f64>("training__mlp_relu_tanh_mse_float64.json");
}

#[test]
fn mlp_relu_tanh_mse_first_batch_f32() {
    check_mlp_first_batch::<f32>("training__mlp_relu_tanh_mse_float32.json");
}
