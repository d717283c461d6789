//! Adafactor and Muon: their constructor checks, Muon's 2-D rule, their state dicts in
//! PyTorch's layout, and a step checked against the formula written out by hand.

use ndarray::ArrayD;
use serde_json::json;
use tempo_optim::{
    build_optimizer, Adafactor, AdafactorConfig, Muon, MuonConfig, OptimError, Optimizer,
    OptimizerSpec, ParamGroup, StateValue,
};
use tempo_param_groups::{OptimizerParamGroups, Value};
use tempo_tensor::{Float, Tensor};

fn tensor<T: Float>(shape: &[usize], f: impl Fn(usize) -> f64) -> Tensor<T> {
    let n: usize = shape.iter().product();
    Tensor::parameter(
        ArrayD::from_shape_vec(
            shape.to_vec(),
            (0..n).map(|i| <T as Float>::from_f64(f(i))).collect(),
        )
        .expect("shape"),
    )
}

fn grad<T: Float>(p: &Tensor<T>, f: impl Fn(usize) -> f64) {
    let shape = p.shape();
    let n: usize = shape.iter().product();
    p.set_grad(Some(
        ArrayD::from_shape_vec(
            shape,
            (0..n).map(|i| <T as Float>::from_f64(f(i))).collect(),
        )
        .expect("shape"),
    ))
    .expect("grad");
}

fn spec(kind: &str, kwargs: serde_json::Value) -> OptimizerSpec {
    serde_json::from_value(json!({"type": kind, "kwargs": kwargs})).expect("spec")
}

#[test]
fn invalid_hyperparameters_are_named_with_their_value() {
    let cases = [
        ("Adafactor", json!({"lr": -0.1}), "lr"),
        ("Adafactor", json!({"beta2_decay": 0.5}), "beta2_decay"),
        (
            "Adafactor",
            json!({"eps": [-1e-30, 1e-3]}),
            "eps[0] (epsilon1)",
        ),
        (
            "Adafactor",
            json!({"eps": [null, -1.0]}),
            "eps[1] (epsilon2)",
        ),
        ("Adafactor", json!({"d": 0.5}), "d"),
        ("Adafactor", json!({"weight_decay": -1.0}), "weight_decay"),
        ("Muon", json!({"lr": -1.0}), "lr"),
        ("Muon", json!({"momentum": -0.5}), "momentum"),
        ("Muon", json!({"weight_decay": -0.1}), "weight_decay"),
        ("Muon", json!({"adjust_lr_fn": "foo"}), "adjust_lr_fn"),
    ];
    let ps = vec![tensor::<f64>(&[2, 3], |i| i as f64)];
    for (kind, kwargs, name) in cases {
        match build_optimizer(&spec(kind, kwargs.clone()), &ps) {
            Err(OptimError::InvalidHyperparameter { name: n, .. }) => {
                assert_eq!(n, name, "{kind} {kwargs}")
            }
            Err(e) => panic!("{kind} {kwargs}: expected InvalidHyperparameter, got {e}"),
            Ok(_) => panic!("{kind} {kwargs}: accepted"),
        }
    }
    // `eps` must be a pair whose first item may be null (or "None", from TOML).
    let o = build_optimizer(&spec("Adafactor", json!({"eps": ["None", 1e-2]})), &ps).expect("None");
    assert_eq!(
        o.state_dict().param_groups[0].get("eps"),
        Some(&Value::Tuple(vec![Value::None, Value::Float(1e-2)]))
    );
    for bad in [json!(1e-3), json!([1e-3]), json!(["x", 1e-3])] {
        assert!(matches!(
            build_optimizer(&spec("Adafactor", json!({"eps": bad})), &ps),
            Err(OptimError::WrongArgumentType { .. })
        ));
    }
    assert!(matches!(
        build_optimizer(&spec("Muon", json!({"ns_coefficients": [1.0, 2.0]})), &ps),
        Err(OptimError::WrongArgumentType { .. })
    ));
    assert!(matches!(
        build_optimizer(&spec("Muon", json!({"maximize": true})), &ps),
        Err(OptimError::UnknownArgument { .. })
    ));
}

#[test]
fn muon_takes_matrices_only() {
    let ps = vec![
        tensor::<f32>(&[2, 3], |_| 1.0),
        tensor::<f32>(&[4], |_| 1.0),
    ];
    let err = Muon::new(ps, MuonConfig::default()).expect_err("a vector is refused");
    match &err {
        OptimError::UnsupportedParamShape { param, shape, .. } => {
            assert_eq!((*param, shape.as_slice()), (1, &[4][..]))
        }
        e => panic!("expected UnsupportedParamShape, got {e}"),
    }
    assert!(err.to_string().contains("2D"), "{err}");
    // add_param_group is checked too (PyTorch fails only at the step, after changing the
    // momentum buffer).
    let mut opt = Muon::new(vec![tensor::<f32>(&[2, 3], |_| 1.0)], MuonConfig::default())
        .expect("a matrix is fine");
    assert!(matches!(
        opt.add_param_group(ParamGroup::new(vec![tensor::<f32>(&[1, 2, 3], |_| 1.0)])),
        Err(OptimError::UnsupportedParamShape { param: 1, .. })
    ));
    assert_eq!(opt.num_groups(), 1);
}

#[test]
fn muon_checks_its_group_at_the_step_before_changing_anything() {
    let p = tensor::<f64>(&[3, 2], |i| i as f64 * 0.1);
    let mut opt = build_optimizer(&spec("Muon", json!({"lr": 0.1})), std::slice::from_ref(&p))
        .expect("build");
    grad(&p, |i| 1.0 - i as f64 * 0.3);
    opt.set(0, "ns_steps", Value::Int(100)).expect("set");
    assert!(matches!(
        opt.step(),
        Err(OptimError::InvalidHyperparameter { .. })
    ));
    opt.set(0, "ns_steps", Value::Int(5)).expect("set");
    opt.set(0, "ns_coefficients", Value::Tuple(vec![Value::Float(1.0)]))
        .expect("set");
    assert!(matches!(
        opt.step(),
        Err(OptimError::WrongHyperparameterType { .. })
    ));
    assert!(opt.state_dict().state.is_empty(), "no state was created");
    let before: Vec<f64> = p.data().iter().copied().collect();
    assert_eq!(before, (0..6).map(|i| i as f64 * 0.1).collect::<Vec<_>>());
}

#[test]
fn state_dicts_have_pytorchs_names_and_shapes() {
    let ps = vec![
        tensor::<f64>(&[2, 3, 4], |i| (i as f64).sin()),
        tensor::<f64>(&[5], |i| (i as f64).cos()),
        tensor::<f64>(&[3, 2], |i| i as f64),
    ];
    let mut opt = Adafactor::new(ps.clone(), AdafactorConfig::default()).expect("build");
    grad(&ps[1], |i| i as f64 - 2.0);
    grad(&ps[0], |i| (i as f64 * 0.3).cos());
    opt.step().expect("step");
    let sd = opt.state_dict();
    let ids: Vec<usize> = sd.state.iter().map(|(i, _)| *i).collect();
    assert_eq!(ids, [0, 1], "no gradient, no state (param 2)");
    let shape = |id: usize, key: &str| -> Vec<usize> {
        sd.state_of(id)
            .and_then(|s| s.get(key))
            .and_then(StateValue::as_tensor)
            .map(|t| t.shape().to_vec())
            .unwrap_or_else(|| panic!("param {id} has no tensor {key}"))
    };
    assert_eq!(
        sd.state_of(0).expect("state").keys().collect::<Vec<_>>(),
        ["step", "row_var", "col_var"]
    );
    assert_eq!(shape(0, "row_var"), [2, 3, 1]);
    assert_eq!(shape(0, "col_var"), [2, 1, 4]);
    assert_eq!(
        sd.state_of(1).expect("state").keys().collect::<Vec<_>>(),
        ["step", "variance"]
    );
    assert_eq!(shape(1, "variance"), [5]);
    assert!(shape(0, "step").is_empty());
    let g = &sd.param_groups[0];
    assert_eq!(
        g.keys().collect::<Vec<_>>(),
        [
            "lr",
            "beta2_decay",
            "eps",
            "d",
            "weight_decay",
            "foreach",
            "maximize",
            "params"
        ]
    );
    assert_eq!(
        g.get("eps"),
        Some(&Value::Tuple(vec![Value::None, Value::Float(1e-3)]))
    );

    let m = vec![tensor::<f32>(&[2, 3], |i| i as f64)];
    let opt = build_optimizer(
        &spec("Muon", json!({"ns_coefficients": [3.0, -4.0, 2.0]})),
        &m,
    )
    .expect("build");
    let g = &opt.state_dict().param_groups[0];
    assert_eq!(
        g.keys().collect::<Vec<_>>(),
        [
            "lr",
            "weight_decay",
            "momentum",
            "nesterov",
            "ns_coefficients",
            "eps",
            "ns_steps",
            "adjust_lr_fn",
            "params"
        ]
    );
    assert!(matches!(g.get("ns_coefficients"), Some(Value::Tuple(v)) if v.len() == 3));
}

#[test]
fn a_state_dict_with_the_wrong_factors_is_refused() {
    let a = vec![tensor::<f64>(&[3, 4], |i| i as f64)];
    let mut opt = Adafactor::new(a.clone(), AdafactorConfig::default()).expect("build");
    grad(&a[0], |i| i as f64);
    opt.step().expect("step");
    let sd = opt.state_dict();
    // The same layout over a parameter of another shape.
    let b = vec![tensor::<f64>(&[4, 3], |i| i as f64)];
    let mut other = Adafactor::new(b, AdafactorConfig::default()).expect("build");
    assert!(matches!(
        other.load_state_dict(&sd),
        Err(OptimError::StateShapeMismatch { param: 0, .. })
    ));
    assert!(other.state_dict().state.is_empty(), "nothing was loaded");
}

/// Adafactor on a vector, one step in f64, against PyTorch's formula written out here.
#[test]
fn adafactor_steps_a_vector_by_the_formula() {
    let (lr, beta2_decay, eps2, d, wd) = (0.05, -0.8, 1e-3, 1.0, 0.1);
    let p0 = [0.5, -1.5, 2.0, 0.25];
    let g = [0.3, -0.2, 1.0, -4.0];
    let p = tensor::<f64>(&[4], |i| p0[i]);
    let cfg = AdafactorConfig {
        lr,
        beta2_decay,
        eps: (None, eps2),
        d,
        weight_decay: wd,
        ..AdafactorConfig::default()
    };
    let mut opt = Adafactor::new(vec![p.clone()], cfg).expect("build");
    let mut want = p0;
    let mut variance = [0.0f64; 4];
    for t in 1..=3 {
        grad(&p, |i| g[i] * t as f64);
        opt.step().expect("step");
        let step = t as f64;
        let w = step.powf(beta2_decay);
        let rho = lr.min(1.0 / step.sqrt());
        let rms = (want.iter().map(|x| x * x).sum::<f64>()).sqrt() / 2.0;
        let alpha = eps2.max(rms) * rho;
        for x in &mut want {
            *x *= 1.0 - lr * wd;
        }
        let mut u = [0.0; 4];
        for i in 0..4 {
            let gi = g[i] * t as f64;
            variance[i] += w * (gi * gi - variance[i]);
            u[i] = gi / variance[i].max(f64::EPSILON * f64::EPSILON).sqrt();
        }
        let rms_u = (u.iter().map(|x| x * x).sum::<f64>()).sqrt() / 2.0;
        let denom = (rms_u / d).max(1.0);
        for i in 0..4 {
            want[i] -= alpha / denom * u[i];
        }
        for (i, (&got, &w)) in p.data().iter().zip(&want).enumerate() {
            assert!(
                (got - w).abs() <= 1e-12 * w.abs(),
                "step {t} element {i}: {got} vs {w}"
            );
        }
    }
}

/// `eps1 = None` is the parameters' machine epsilon, f32's for f32 and f64's for f64.
#[test]
fn adafactor_eps1_none_is_the_dtype_epsilon() {
    fn run<T: Float>(eps1: Option<f64>) -> Vec<f64> {
        let p = tensor::<T>(&[2, 3], |i| i as f64 * 0.1);
        let cfg = AdafactorConfig {
            eps: (eps1, 1e-3),
            ..AdafactorConfig::default()
        };
        let mut opt = Adafactor::new(vec![p.clone()], cfg).expect("build");
        // Tiny gradients, so that eps1 bounds the variance estimate.
        grad(&p, |i| if i == 0 { 1e-12 } else { 0.0 });
        opt.step().expect("step");
        let out = p.data().iter().map(|&x| <T as Float>::to_f64(x)).collect();
        out
    }
    assert_eq!(run::<f32>(None), run::<f32>(Some(f64::from(f32::EPSILON))));
    assert_eq!(run::<f64>(None), run::<f64>(Some(f64::EPSILON)));
    assert_ne!(run::<f64>(None), run::<f64>(Some(f64::from(f32::EPSILON))));
}

/// Muon's update does not depend on the gradient's scale: scaling by a power of two
/// commutes with every bfloat16 rounding, so the step is the same to the bit.
#[test]
fn muon_updates_are_scale_free() {
    let run = |scale: f64| -> Vec<f64> {
        let p = tensor::<f64>(&[4, 6], |_| 0.0);
        let cfg = MuonConfig {
            lr: 0.1,
            weight_decay: 0.0,
            ..MuonConfig::default()
        };
        let mut opt = Muon::new(vec![p.clone()], cfg).expect("build");
        grad(&p, |i| {
            scale * ((i * 5 % 7) as f64 - 3.0 + if i % 7 == 0 { 2.0 } else { 0.0 })
        });
        opt.step().expect("step");
        let out = p.data().iter().copied().collect();
        out
    };
    let (a, b) = (run(1.0), run(1024.0));
    assert!(a.iter().any(|x| x.abs() > 1e-3));
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a), bits(&b));
}
