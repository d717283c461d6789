//! PyTorch's default initialisation, reproduced from the same seed.

use serde_json::Value;
use tempo_nn::Module;
use tempo_tensor::{Float, Generator};

use crate::cases::build_model;
use crate::{f64s, load_case};

/// `torch.manual_seed(seed)` then constructing the case's model must give its `init`
/// weights bit for bit.
fn check_init_bits<T: Float>(case: &Value, seed: u64) {
    let mut rng = Generator::new(seed);
    let model = build_model::<T>(case, &mut rng);
    let init = case["init"].as_object().expect("init");
    let params = model.named_parameters();
    assert_eq!(params.len(), init.len());
    for (name, p) in params {
        let want = f64s(&init[&name]["data"]);
        let got: Vec<f64> = p.to_vec().into_iter().map(Float::to_f64).collect();
        assert_eq!(got.len(), want.len(), "{name}");
        let mismatches = got
            .iter()
            .zip(&want)
            .filter(|(g, w)| g.to_bits() != w.to_bits())
            .count();
        assert_eq!(
            mismatches,
            0,
            "{name}: {mismatches} of {} elements differ",
            want.len()
        );
    }
}

#[test]
fn seed_net_x_init_f32_bit_exact() {
    check_init_bits::<f32>(&load_case("training__seed_net_x_float32.json"), 0);
}

#[test]
fn seed_net_x_init_f64_bit_exact() {
    check_init_bits::<f64>(&load_case("training__seed_net_x_float64.json"), 0);
}

#[test]
fn mlp_init_f32_bit_exact() {
    check_init_bits::<f32>(&load_case("training__mlp_relu_tanh_mse_float32.json"), 1);
}

#[test]
fn mlp_init_f64_bit_exact() {
    check_init_bits::<f64>(&load_case("training__mlp_relu_tanh_mse_float64.json"), 1);
}

/// After the model, the seed case drew its targets with `torch.randint(0, 10, (4,))`
/// once per epoch from the same generator.
fn check_seed_targets<T: Float>(file: &str) {
    let case = load_case(file);
    let mut rng = Generator::new(0);
    let _model = build_model::<T>(&case, &mut rng);
    for (e, t) in case["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .enumerate()
    {
        let want: Vec<i64> = t
            .as_array()
            .expect("row")
            .iter()
            .map(|v| v.as_i64().expect("int"))
            .collect();
        assert_eq!(rng.randint(0, 10, 4).expect("range"), want, "epoch {e}");
    }
}

#[test]
fn seed_targets_follow_init_f32() {
    check_seed_targets::<f32>("training__seed_net_x_float32.json");
}

#[test]
fn seed_targets_follow_init_f64() {
    check_seed_targets::<f64>("training__seed_net_x_float64.json");
}
