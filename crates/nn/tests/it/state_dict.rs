//! Strict state-dict loading and PyTorch's parameter names.

use ndarray::ArrayD;
use tempo_nn::{Linear, Module, NnError, ReLU, Sequential, StateDict};
use tempo_tensor::Generator;

fn net() -> Sequential<f64> {
    let mut rng = Generator::new(3);
    Sequential::new()
        .with(Linear::new(3, 4, true, &mut rng))
        .and_then(|s| s.with(ReLU))
        .and_then(|s| s.with(Linear::new(4, 2, false, &mut rng)))
        .expect("distinct names")
}

#[test]
fn sequential_names_children_by_position() {
    let names: Vec<String> = net()
        .named_parameters()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["0.weight", "0.bias", "2.weight"]);
}

#[test]
fn custom_names_and_duplicates() {
    let mut rng = Generator::new(0);
    let mut s = Sequential::<f32>::new();
    s.push_named("fc1", Linear::new(2, 3, true, &mut rng))
        .expect("fresh name");
    let dup = s.push_named("fc1", Linear::new(3, 3, true, &mut rng));
    assert!(matches!(dup, Err(NnError::DuplicateName { name }) if name == "fc1"));
    assert!(matches!(
        s.push_named("a.b", ReLU),
        Err(NnError::InvalidName { .. })
    ));
    let names: Vec<String> = s.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["fc1.weight", "fc1.bias"]);
}

#[test]
fn load_round_trip_restores_values() {
    let a = net();
    let b = {
        let mut rng = Generator::new(99);
        Sequential::new()
            .with(Linear::new(3, 4, true, &mut rng))
            .and_then(|s| s.with(ReLU))
            .and_then(|s| s.with(Linear::new(4, 2, false, &mut rng)))
            .expect("distinct names")
    };
    b.load_state_dict(&a.state_dict()).expect("same structure");
    assert_eq!(a.state_dict(), b.state_dict());
}

#[test]
fn load_refuses_missing_and_unexpected_keys_without_changing_anything() {
    let m = net();
    let before = m.state_dict();
    let mut entries = before.clone().into_entries();
    entries.remove(1); // 0.bias
    entries.push(("extra".to_string(), ArrayD::zeros(vec![1])));
    entries[0].1.fill(7.0);
    let sd = StateDict::from_entries(entries).expect("unique keys");
    match m.load_state_dict(&sd) {
        Err(NnError::KeyMismatch {
            missing,
            unexpected,
        }) => {
            assert_eq!(missing, ["0.bias"]);
            assert_eq!(unexpected, ["extra"]);
        }
        other => panic!("expected KeyMismatch, got {other:?}"),
    }
    assert_eq!(m.state_dict(), before);
}

#[test]
fn load_refuses_wrong_shape_naming_key_and_shapes() {
    let m = net();
    let before = m.state_dict();
    let mut entries = before.clone().into_entries();
    entries[0].1.fill(5.0); // a valid change that must not be applied
    entries[2].1 = ArrayD::zeros(vec![2, 5]);
    let sd = StateDict::from_entries(entries).expect("unique keys");
    let err = m.load_state_dict(&sd).expect_err("shape mismatch");
    assert_eq!(
        err,
        NnError::ShapeMismatch {
            key: "2.weight".into(),
            expected: vec![2, 4],
            found: vec![2, 5]
        }
    );
    let msg = err.to_string();
    assert!(
        msg.contains("2.weight") && msg.contains("[2, 4]") && msg.contains("[2, 5]"),
        "{msg}"
    );
    assert_eq!(m.state_dict(), before);
}

#[test]
fn tensor_data_round_trip_checks_dtype() {
    let m = net();
    let data = m.state_dict().to_tensor_data();
    let back = StateDict::<f64>::from_tensor_data(data.clone()).expect("same dtype");
    assert_eq!(back, m.state_dict());
    assert!(matches!(
        StateDict::<f32>::from_tensor_data(data),
        Err(NnError::Tensor(_))
    ));
}

fn mlp(dims: &[usize], bias: bool, seed: u64) -> Sequential<f32> {
    let mut rng = Generator::new(seed);
    let mut s = Sequential::new();
    for w in dims.windows(2) {
        s.push(Linear::new(w[0], w[1], bias, &mut rng))
            .expect("positional names");
        s.push(ReLU).expect("positional names");
    }
    s
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(16))]

    /// Loading a model's state dict into a same-shaped model makes their state dicts
    /// equal, and loading it back into the source changes nothing.
    #[test]
    fn save_then_load_is_identity(
        dims in proptest::collection::vec(1usize..6, 2..5),
        bias in proptest::bool::ANY,
        s1 in 0u64..1000,
        s2 in 0u64..1000,
    ) {
        let a = mlp(&dims, bias, s1);
        let b = mlp(&dims, bias, s2);
        let sd = a.state_dict();
        b.load_state_dict(&sd).expect("same structure");
        proptest::prop_assert_eq!(b.state_dict(), sd.clone());
        a.load_state_dict(&b.state_dict()).expect("same structure");
        proptest::prop_assert_eq!(a.state_dict(), sd);
    }
}
