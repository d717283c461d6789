//! Invalid hyperparameters, mismatched state dicts and duplicate parameters are errors
//! that say what was expected and what was found.

use ndarray::ArrayD;
use serde_json::json;
use tempo_optim::{
    build_optimizer, Adam, AdamConfig, OptimError, Optimizer, OptimizerSpec, ParamGroup, StateValue,
};
use tempo_param_groups::Value;
use tempo_tensor::Tensor;

fn params(n: usize) -> Vec<Tensor<f64>> {
    (0..n)
        .map(|i| Tensor::parameter(ArrayD::from_elem(vec![i + 2], 1.0)))
        .collect()
}

fn build(kind: &str, kwargs: serde_json::Value) -> Result<Box<dyn Optimizer<f64>>, OptimError> {
    let spec: OptimizerSpec =
        serde_json::from_value(json!({"type": kind, "kwargs": kwargs})).expect("spec");
    build_optimizer(&spec, &params(2))
}

/// `kind(kwargs)` fails with `InvalidHyperparameter` naming `name` and showing `value`.
fn check_invalid(kind: &str, kwargs: serde_json::Value, name: &str, value: &str) {
    match build(kind, kwargs.clone()) {
        Err(e @ OptimError::InvalidHyperparameter { .. }) => {
            let OptimError::InvalidHyperparameter {
                name: ref n,
                value: ref v,
                ..
            } = e
            else {
                unreachable!()
            };
            assert_eq!(
                (n.as_str(), v.as_str()),
                (name, value),
                "{kind} {kwargs}: {e}"
            );
            let msg = e.to_string();
            assert!(
                msg.contains(name) && msg.contains(value),
                "message names the value: {msg}"
            );
        }
        Err(e) => panic!("{kind} {kwargs}: expected InvalidHyperparameter, got {e}"),
        Ok(_) => panic!("{kind} {kwargs}: accepted"),
    }
}

#[test]
fn invalid_hyperparameters_are_named_with_their_value() {
    let cases = [
        ("SGD", json!({"lr": -0.1}), "lr", "-0.1"),
        ("SGD", json!({"momentum": -1.0}), "momentum", "-1.0"),
        ("SGD", json!({"weight_decay": -0.5}), "weight_decay", "-0.5"),
        ("Adam", json!({"lr": -1.0}), "lr", "-1.0"),
        ("Adam", json!({"eps": -1e-8}), "eps", "-1e-08"),
        ("Adam", json!({"betas": [1.0, 0.999]}), "betas[0]", "1.0"),
        ("Adam", json!({"betas": [0.9, -0.1]}), "betas[1]", "-0.1"),
        (
            "Adam",
            json!({"weight_decay": -0.1}),
            "weight_decay",
            "-0.1",
        ),
        ("Adam", json!({"betas": [0, 0.99]}), "betas", "[0,0.99]"),
        ("AdamW", json!({"betas": [0.9, 1.5]}), "betas[1]", "1.5"),
        ("Adagrad", json!({"lr_decay": -0.1}), "lr_decay", "-0.1"),
        (
            "Adagrad",
            json!({"initial_accumulator_value": -1.0}),
            "initial_accumulator_value",
            "-1.0",
        ),
        ("Adagrad", json!({"eps": -1.0}), "eps", "-1.0"),
        ("Adadelta", json!({"rho": 1.5}), "rho", "1.5"),
        ("Adamax", json!({"betas": [0.9, 1.0]}), "betas[1]", "1.0"),
        (
            "NAdam",
            json!({"momentum_decay": -0.1}),
            "momentum_decay",
            "-0.1",
        ),
        ("RAdam", json!({"eps": -0.1}), "eps", "-0.1"),
        ("RMSprop", json!({"alpha": -0.1}), "alpha", "-0.1"),
        ("RMSprop", json!({"momentum": -0.1}), "momentum", "-0.1"),
        ("Rprop", json!({"etas": [1.5, 1.2]}), "etas", "(1.5, 1.2)"),
        ("Rprop", json!({"lr": -0.1}), "lr", "-0.1"),
        ("ASGD", json!({"lambd": -0.1}), "lambd", "-0.1"),
        ("ASGD", json!({"alpha": -0.1}), "alpha", "-0.1"),
        ("LBFGS", json!({"lr": -1.0}), "lr", "-1.0"),
    ];
    for (kind, kwargs, name, value) in cases {
        check_invalid(kind, kwargs, name, value);
    }
    // Nesterov needs momentum > 0 and zero dampening.
    check_invalid(
        "SGD",
        json!({"nesterov": true, "momentum": 0.9, "dampening": 0.1}),
        "nesterov",
        "True with momentum=0.9 and dampening=0.1",
    );
}

#[test]
fn nan_is_rejected_except_by_sgd() {
    let nan = Adam::new(
        params(1),
        AdamConfig {
            lr: f64::NAN,
            ..AdamConfig::default()
        },
    );
    assert!(matches!(nan, Err(OptimError::InvalidHyperparameter { ref name, .. }) if name == "lr"));
    let sgd = tempo_optim::SGD::new(
        params(1),
        tempo_optim::SGDConfig {
            lr: f64::NAN,
            ..Default::default()
        },
    );
    assert!(sgd.is_ok());
}

#[test]
fn unknown_names_are_errors() {
    let e = build("Adam", json!({"lr": 0.1, "momentum": 0.9}))
        .err()
        .expect("unknown kwarg");
    assert!(
        matches!(e, OptimError::UnknownArgument { ref name, .. } if name == "momentum"),
        "{e}"
    );
    let e = build("Adamm", json!({})).err().expect("unknown class");
    assert!(
        matches!(e, OptimError::UnknownOptimizer { ref name, .. } if name == "Adamm"),
        "{e}"
    );
    // foreach is accepted and stored.
    let opt = build("SGD", json!({"foreach": false})).expect("foreach is accepted");
    assert_eq!(opt.get(0, "foreach"), Some(&Value::Bool(false)));
    let e = build("Adam", json!({"fused": true}))
        .err()
        .expect("fused is not implemented");
    assert!(matches!(e, OptimError::Unsupported { .. }), "{e}");
    let e = build("AdamW", json!({"decoupled_weight_decay": false}))
        .err()
        .expect("AdamW has no such argument");
    assert!(matches!(e, OptimError::UnknownArgument { .. }), "{e}");
}

#[test]
fn a_parameter_in_two_groups_is_an_error() {
    let ps = params(2);
    let mut opt = Adam::with_groups(
        vec![ParamGroup::new(vec![ps[0].clone()])],
        AdamConfig::default(),
    )
    .expect("build");
    let e = opt
        .add_param_group(ParamGroup::new(vec![ps[1].clone(), ps[0].clone()]))
        .unwrap_err();
    assert_eq!(e, OptimError::ParamInTwoGroups { group: 1, other: 0 });
    let spec: OptimizerSpec = serde_json::from_value(
        json!({"type": "SGD", "groups": [{"params": [0, 1]}, {"params": [1]}]}),
    )
    .expect("spec");
    let e = build_optimizer(&spec, &ps).err().expect("duplicate");
    assert_eq!(e, OptimError::ParamInTwoGroups { group: 1, other: 0 });
    let spec: OptimizerSpec =
        serde_json::from_value(json!({"type": "SGD", "groups": [{"params": [0, 5]}]}))
            .expect("spec");
    let e = build_optimizer(&spec, &ps).err().expect("out of range");
    assert_eq!(
        e,
        OptimError::ParamIndexOutOfRange {
            group: 0,
            index: 5,
            len: 2
        }
    );
    // LBFGS takes a single group.
    let spec: OptimizerSpec = serde_json::from_value(
        json!({"type": "LBFGS", "groups": [{"params": [0]}, {"params": [1]}]}),
    )
    .expect("spec");
    assert!(matches!(
        build_optimizer(&spec, &ps),
        Err(OptimError::SingleGroupOnly { found: 2, .. })
    ));
}

/// An Adam over two groups ([p0], [p1]) after one step.
fn stepped_adam() -> Box<dyn Optimizer<f64>> {
    let spec: OptimizerSpec = serde_json::from_value(json!({
        "type": "Adam", "kwargs": {"lr": 0.1}, "groups": [{"params": [0]}, {"params": [1], "lr": 0.01}]
    }))
    .expect("spec");
    let ps = params(2);
    let mut opt = build_optimizer(&spec, &ps).expect("build");
    for p in &ps {
        p.set_grad(Some(ArrayD::from_elem(p.shape(), 0.5)))
            .expect("grad");
    }
    opt.step().expect("step");
    opt
}

#[test]
fn load_state_dict_checks_groups_and_shapes_before_changing_anything() {
    let mut opt = stepped_adam();
    let good = opt.state_dict();

    let mut sd = good.clone();
    sd.param_groups.pop();
    assert_eq!(
        opt.load_state_dict(&sd),
        Err(OptimError::GroupCountMismatch {
            expected: 2,
            got: 1
        })
    );

    let mut sd = good.clone();
    sd.param_groups[1].insert("params", Value::List(vec![Value::Int(1), Value::Int(2)]));
    assert_eq!(
        opt.load_state_dict(&sd),
        Err(OptimError::GroupSizeMismatch {
            group: 1,
            expected: 1,
            got: 2
        })
    );

    // A wrong-shaped exp_avg for the second parameter, and a changed lr for the first
    // group: nothing may change.
    let mut sd = good.clone();
    sd.param_groups[0].insert("lr", 123.0);
    sd.state[1]
        .1
        .insert("exp_avg", StateValue::tensor(&[7], &[0.0f64; 7]));
    let e = opt.load_state_dict(&sd).unwrap_err();
    assert_eq!(
        e,
        OptimError::StateShapeMismatch {
            param: 1,
            key: "exp_avg".into(),
            expected: vec![3],
            got: vec![7]
        }
    );
    assert!(
        e.to_string().contains("exp_avg") && e.to_string().contains("[7]"),
        "{e}"
    );
    assert_eq!(
        opt.state_dict(),
        good,
        "a failed load changed the optimizer"
    );

    let mut sd = good.clone();
    sd.state[0].1.entries.retain(|(k, _)| k != "exp_avg_sq");
    assert_eq!(
        opt.load_state_dict(&sd),
        Err(OptimError::MissingState {
            param: 0,
            key: "exp_avg_sq".into()
        })
    );

    // Loaded group values replace the current ones.
    let mut sd = good.clone();
    sd.param_groups[0].insert("lr", 0.5);
    sd.param_groups[0].insert("initial_lr", 0.25);
    opt.load_state_dict(&sd).expect("load");
    assert_eq!(opt.get(0, "lr"), Some(&Value::Float(0.5)));
    assert_eq!(opt.get(0, "initial_lr"), Some(&Value::Float(0.25)));
}

#[test]
fn state_dict_layout_is_pytorchs() {
    // First-touch order: param 1 steps before param 0.
    let ps = params(2);
    let mut opt = build_optimizer(
        &serde_json::from_value::<OptimizerSpec>(json!({"type": "Adam"})).expect("spec"),
        &ps,
    )
    .expect("build");
    ps[1]
        .set_grad(Some(ArrayD::from_elem(vec![3], 1.0)))
        .expect("grad");
    opt.step().expect("step");
    ps[0]
        .set_grad(Some(ArrayD::from_elem(vec![2], 1.0)))
        .expect("grad");
    opt.step().expect("step");
    let sd = opt.state_dict();
    let ids: Vec<usize> = sd.state.iter().map(|(i, _)| *i).collect();
    assert_eq!(ids, [1, 0]);
    let step = sd
        .state_of(1)
        .and_then(|s| s.get("step"))
        .and_then(StateValue::as_f64);
    assert_eq!(step, Some(2.0));
    let step0 = sd
        .state_of(0)
        .and_then(|s| s.get("step"))
        .and_then(StateValue::as_tensor)
        .expect("step tensor");
    assert!(step0.shape().is_empty(), "step is a 0-d tensor");
    assert_eq!(
        sd.param_groups[0].get("params"),
        Some(&Value::List(vec![Value::Int(0), Value::Int(1)]))
    );
    assert_eq!(sd.param_groups[0].keys().last(), Some("params"));
    // A scheduler's key persists through the state dict.
    opt.set(0, "initial_lr", Value::Float(0.001)).expect("set");
    assert_eq!(
        opt.state_dict().param_groups[0].get("initial_lr"),
        Some(&Value::Float(0.001))
    );
}

#[test]
fn a_boxed_optimizer_is_a_param_groups_seam() {
    let mut opt = stepped_adam();
    let groups: &mut dyn tempo_param_groups::OptimizerParamGroups = opt.as_mut();
    groups
        .set_momentum(1, 0.8)
        .expect("betas[0] is the momentum");
    groups.set_lr(0, 0.05).expect("lr");
    assert_eq!(
        opt.get(1, "betas"),
        Some(&Value::Tuple(vec![Value::Float(0.8), Value::Float(0.999)]))
    );
    assert_eq!(opt.get(0, "lr"), Some(&Value::Float(0.05)));
    assert_eq!(opt.name(), "Adam");
}

/// A scheduler writes a group's values in place, unchecked; the next step reads the group
/// and refuses a value it cannot use, before changing anything.
#[test]
fn a_value_written_in_place_is_checked_at_the_next_step() {
    for &name in tempo_optim::OPTIMIZER_NAMES {
        let p = Tensor::parameter(ArrayD::from_elem(vec![3, 2], 1.0));
        p.set_grad(Some(ArrayD::from_elem(vec![3, 2], 0.5)))
            .expect("grad");
        let spec: OptimizerSpec = serde_json::from_value(json!({"type": name})).expect("spec");
        let mut opt = build_optimizer(&spec, std::slice::from_ref(&p)).expect(name);
        let lr = opt.get_mut(0, "lr").expect("every group has an lr");
        *lr = Value::Str("fast".into());
        let before = opt.state_dict();
        let e = if name == "LBFGS" {
            opt.step_with_closure(&mut || Ok(1.0)).map(|_| true)
        } else {
            opt.step()
        }
        .expect_err(name);
        assert!(
            matches!(&e, OptimError::WrongHyperparameterType { group: 0, key, .. } if key == "lr"),
            "{name}: {e}"
        );
        let data: Vec<f64> = p.data().iter().copied().collect();
        assert_eq!(data, [1.0; 6], "{name}: the parameter is unchanged");
        assert_eq!(opt.state_dict(), before, "{name}: the state is unchanged");
    }
}

#[test]
fn lbfgs_needs_a_closure() {
    let mut opt = build("LBFGS", json!({})).expect("build");
    assert_eq!(
        opt.step(),
        Err(OptimError::ClosureRequired { optimizer: "LBFGS" })
    );
}

/// Every optimizer of the registry builds at its defaults, its groups hold exactly its
/// registry defaults (PyTorch's keys, order and kinds) then `params`, and it refuses an
/// argument it does not have, naming its arguments.
#[test]
fn every_registered_optimizer_builds_at_its_defaults() {
    assert_eq!(
        tempo_optim::OPTIMIZERS.len(),
        tempo_optim::OPTIMIZER_NAMES.len()
    );
    for info in tempo_optim::OPTIMIZERS {
        let matrix = vec![Tensor::<f64>::parameter(ArrayD::from_elem(vec![2, 2], 1.0))];
        let spec: OptimizerSpec = serde_json::from_value(json!({"type": info.name})).expect("spec");
        let opt = build_optimizer(&spec, &matrix).unwrap_or_else(|e| panic!("{}: {e}", info.name));
        assert_eq!(opt.name(), info.name);
        let mut group = opt.state_dict().param_groups.remove(0);
        assert!(group.remove("params").is_some(), "{}", info.name);
        assert_eq!(group, (info.defaults)(), "{}", info.name);
        let spec: OptimizerSpec =
            serde_json::from_value(json!({"type": info.name, "kwargs": {"no_such_argument": 1}}))
                .expect("spec");
        match build_optimizer(&spec, &matrix) {
            Err(OptimError::UnknownArgument { name, accepted, .. }) => {
                assert_eq!(name, "no_such_argument");
                assert!(accepted.contains("lr"), "{}: {accepted}", info.name);
            }
            Err(e) => panic!("{}: expected UnknownArgument, got {e}", info.name),
            Ok(_) => panic!("{}: an unknown argument was accepted", info.name),
        }
    }
}
