//! Contract: a tempo optimizer over candle variables gives the same bits and state dict
//! as over tempo's own tensors, in place or through host copies, over more parameters
//! than one in-place run holds; bad input is an `Err` that changes nothing.

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use ndarray::ArrayD;
use serde_json::json;
use tempo_candle::{
    CandleError, CandleNnGroups, CandleOptimizer, GroupRule, NamedVars, StorageMode, IN_PLACE_RUN,
};
use tempo_optim::{build_optimizer, OptimError, OptimizerSpec};
use tempo_param_groups::OptimizerParamGroups;
use tempo_tensor::Tensor as TempoTensor;

pub(crate) fn value(k: usize, i: usize, s: usize) -> f64 {
    ((k * 7 + i * 3 + s) as f64 * 0.37).sin()
}

fn sizes() -> Vec<usize> {
    (0..IN_PLACE_RUN + 9).map(|k| 1 + (k * 5) % 11).collect()
}

/// Parameters `l{k}.weight` (even k) and `l{k}.bias` (odd k).
fn vars_f64(sizes: &[usize]) -> NamedVars {
    let mut v = NamedVars::new();
    for (k, &n) in sizes.iter().enumerate() {
        let data: Vec<f64> = (0..n).map(|i| value(k, i, 0)).collect();
        let var = Var::from_vec(data, n, &Device::Cpu).unwrap();
        let kind = if k % 2 == 0 { "weight" } else { "bias" };
        v.push(&format!("l{k}.{kind}"), var).unwrap();
    }
    v
}

/// A `GradStore` holding exactly `grads[k]` for the variables that have one: the
/// gradients of `sum_k sum(var_k * g_k)` (each is `1 * g_k`, exactly).
pub(crate) fn grad_store(vars: &[&Var], grads: &[Option<Tensor>]) -> GradStore {
    let mut loss: Option<Tensor> = None;
    for (v, g) in vars.iter().zip(grads) {
        let Some(g) = g else { continue };
        let term = v.as_tensor().mul(g).unwrap().sum_all().unwrap();
        loss = Some(match loss {
            Some(l) => (l + term).unwrap(),
            None => term,
        });
    }
    let loss = loss.unwrap_or_else(|| Tensor::new(0f64, &Device::Cpu).unwrap());
    let store = loss.backward().unwrap();
    for (v, g) in vars.iter().zip(grads) {
        if let Some(g) = g {
            let got = store.get(v.as_tensor()).unwrap();
            assert_eq!(got.to_vec1::<f64>().unwrap(), g.to_vec1::<f64>().unwrap());
        }
    }
    store
}

/// Five steps of `spec` over candle variables (stepped as `mode` says) and over tempo
/// tensors (spec `tspec`); parameter `k` has no gradient at the steps `s` with
/// `(s + k) % 3 == 2`. Compares every parameter's bits and the state dicts.
fn check_same_as_tensors(
    spec: &OptimizerSpec,
    rules: &[GroupRule],
    tspec: &OptimizerSpec,
    mode: StorageMode,
) {
    let sizes = sizes();
    let vars = vars_f64(&sizes);
    let mut copt = CandleOptimizer::<f64>::with_mode(spec, &vars, rules, mode).unwrap();
    let tensors: Vec<TempoTensor<f64>> = sizes
        .iter()
        .enumerate()
        .map(|(k, &n)| {
            TempoTensor::parameter(ArrayD::from_shape_fn(vec![n], |i| value(k, i[0], 0)))
        })
        .collect();
    let mut topt = build_optimizer(tspec, &tensors).unwrap();
    let var_list: Vec<&Var> = vars.vars().collect();
    for s in 1..=5 {
        let mut grads = Vec::new();
        for (k, &n) in sizes.iter().enumerate() {
            let g: Option<Vec<f64>> =
                ((s + k) % 3 != 2).then(|| (0..n).map(|i| value(k, i, s)).collect());
            tensors[k]
                .set_grad(
                    g.clone()
                        .map(|g| ArrayD::from_shape_vec(vec![n], g).unwrap()),
                )
                .unwrap();
            grads.push(g.map(|g| Tensor::from_vec(g, n, &Device::Cpu).unwrap()));
        }
        let store = grad_store(&var_list, &grads);
        assert_eq!(copt.step(&store).unwrap(), topt.step().unwrap());
    }
    for (k, (name, var)) in vars.iter().enumerate() {
        let bits = |v: Vec<f64>| -> Vec<u64> { v.iter().map(|x| x.to_bits()).collect() };
        assert_eq!(
            bits(var.as_tensor().to_vec1::<f64>().unwrap()),
            bits(tensors[k].to_vec()),
            "{name} ({mode:?})"
        );
    }
    assert_eq!(copt.state_dict(), topt.state_dict(), "{mode:?}");
}

#[test]
fn candle_variables_step_to_the_same_bits_as_tensors() {
    for kind in ["SGD", "Adam", "AdamW", "RMSprop", "NAdam"] {
        let spec: OptimizerSpec = serde_json::from_value(
            json!({"type": kind, "kwargs": {"lr": 0.05, "weight_decay": 0.01}}),
        )
        .unwrap();
        for mode in [StorageMode::Auto, StorageMode::HostCopy] {
            check_same_as_tensors(&spec, &[], &spec, mode);
        }
    }
}

#[test]
fn groups_by_name_match_groups_by_index() {
    let spec: OptimizerSpec =
        serde_json::from_value(json!({"type": "AdamW", "kwargs": {"lr": 0.01}})).unwrap();
    let rules = [
        GroupRule::rest(),
        GroupRule::patterns(["*.bias"])
            .with("weight_decay", 0.0)
            .with("lr", 0.02),
    ];
    let n = sizes().len();
    let tspec: OptimizerSpec = serde_json::from_value(json!({
        "type": "AdamW", "kwargs": {"lr": 0.01},
        "groups": [
            {"params": (0..n).step_by(2).collect::<Vec<_>>()},
            {"params": (1..n).step_by(2).collect::<Vec<_>>(), "weight_decay": 0.0, "lr": 0.02},
        ]
    }))
    .unwrap();
    // Both number their parameters group by group: the same state dicts.
    for mode in [StorageMode::Auto, StorageMode::HostCopy] {
        check_same_as_tensors(&spec, &rules, &tspec, mode);
    }
    let vars = vars_f64(&sizes());
    let copt = CandleOptimizer::<f64>::new(&spec, &vars, &rules).unwrap();
    let order: Vec<&str> = copt.params().iter().map(|p| p.name()).collect();
    assert!(order[..n.div_ceil(2)]
        .iter()
        .all(|n| n.ends_with(".weight")));
    assert!(order[n.div_ceil(2)..].iter().all(|n| n.ends_with(".bias")));
}

#[test]
fn group_rules_that_match_nothing_or_twice_are_errors() {
    let vars = vars_f64(&[2, 3, 4]);
    let spec = OptimizerSpec::from_json(r#"{"type": "SGD", "kwargs": {"lr": 0.1}}"#).unwrap();
    let r = CandleOptimizer::<f64>::new(
        &spec,
        &vars,
        &[GroupRule::rest(), GroupRule::patterns(["*.norm"])],
    );
    assert!(
        matches!(&r, Err(CandleError::MatchesNothing { group: 1, pattern }) if pattern == "*.norm"),
        "{r:?}"
    );
    let r = CandleOptimizer::<f64>::new(
        &spec,
        &vars,
        &[
            GroupRule::patterns(["l0.*"]),
            GroupRule::predicate(|n| n.ends_with("weight")),
            GroupRule::rest(),
        ],
    );
    assert!(
        matches!(&r, Err(CandleError::MatchedTwice { name, first: 0, second: 1 }) if name == "l0.weight"),
        "{r:?}"
    );
    let r = CandleOptimizer::<f64>::new(&spec, &vars, &[GroupRule::patterns(["*.weight"])]);
    assert!(
        matches!(&r, Err(CandleError::Unassigned { name }) if name == "l1.bias"),
        "{r:?}"
    );
}

#[test]
fn unknown_and_unlisted_names_are_errors() {
    let varmap = candle_nn::VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let _fc = candle_nn::linear(2, 3, vb.pp("fc")).unwrap();
    let r = NamedVars::from_varmap(&varmap, &["fc.weight", "fc.bais"]);
    assert!(
        matches!(&r, Err(CandleError::UnknownName { name, known }) if name == "fc.bais" && known == "fc.bias, fc.weight"),
        "{r:?}"
    );
    let r = NamedVars::from_varmap(&varmap, &["fc.weight"]);
    assert!(
        matches!(&r, Err(CandleError::Unlisted { name }) if name == "fc.bias"),
        "{r:?}"
    );
    let r = NamedVars::from_varmap(&varmap, &["fc.weight", "fc.bias", "fc.weight"]);
    assert!(
        matches!(
            &r,
            Err(CandleError::DuplicateName {
                first: 0,
                second: 2,
                ..
            })
        ),
        "{r:?}"
    );
    assert_eq!(NamedVars::select(&varmap, &["fc.bias"]).unwrap().len(), 1);
}

#[test]
fn half_precision_and_wrong_dtypes_are_refused_and_change_nothing() {
    for dtype in [DType::F16, DType::BF16, DType::F64] {
        let w = Var::ones(4, dtype, &Device::Cpu).unwrap();
        let vars = NamedVars::new().with("w", w.clone()).unwrap();
        let spec = OptimizerSpec::from_json(r#"{"type": "Adam", "kwargs": {"lr": 0.1}}"#).unwrap();
        let mut opt = CandleOptimizer::<f32>::new(&spec, &vars, &[]).unwrap();
        let loss = w.as_tensor().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let before = w
            .as_tensor()
            .to_dtype(DType::F64)
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let r = opt.step(&grads);
        assert!(
            matches!(&r, Err(CandleError::Optim(OptimError::Storage { param: 0, reason })) if reason.contains(&format!("{dtype:?}")) && reason.contains("f32 and f64")),
            "{r:?}"
        );
        let after = w
            .as_tensor()
            .to_dtype(DType::F64)
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        assert_eq!(before, after);
        assert!(opt.state_dict().state.is_empty());
    }
}

#[test]
fn a_wrong_gradient_shape_changes_nothing() {
    let a = Var::ones(3, DType::F32, &Device::Cpu).unwrap();
    let b = Var::ones((2, 2), DType::F32, &Device::Cpu).unwrap();
    let vars = NamedVars::new()
        .with("a", a.clone())
        .unwrap()
        .with("b", b.clone())
        .unwrap();
    let spec = OptimizerSpec::from_json(r#"{"type": "SGD", "kwargs": {"lr": 0.1}}"#).unwrap();
    let mut opt = CandleOptimizer::<f32>::new(&spec, &vars, &[]).unwrap();
    opt.params()[0].set_grad(Some(Tensor::ones(3, DType::F32, &Device::Cpu).unwrap()));
    opt.params()[1].set_grad(Some(Tensor::ones(4, DType::F32, &Device::Cpu).unwrap()));
    let r = opt.inner_mut().step();
    assert_eq!(
        r,
        Err(OptimError::GradShapeMismatch {
            param: 1,
            expected: vec![2, 2],
            got: vec![4]
        })
    );
    assert_eq!(a.as_tensor().to_vec1::<f32>().unwrap(), [1.0; 3]);
}

#[test]
fn a_gradient_sharing_memory_with_a_parameter_is_refused_and_changes_nothing() {
    // Many parameters, so the storage search runs over more than a handful; the
    // gradient of `p{late}` is the storage of `p{early}` (stepping it in place would
    // write what is being read, and candle's locks would deadlock).
    let vars: Vec<Var> = (0..40)
        .map(|k| Var::from_vec(vec![k as f32; 3], 3, &Device::Cpu).unwrap())
        .collect();
    let mut named = NamedVars::new();
    for (k, v) in vars.iter().enumerate() {
        named.push(&format!("p{k}"), v.clone()).unwrap();
    }
    let spec = OptimizerSpec::from_json(r#"{"type": "Adam", "kwargs": {"lr": 0.1}}"#).unwrap();
    let mut opt = CandleOptimizer::<f32>::new(&spec, &named, &[]).unwrap();
    for (early, late) in [(7, 31), (31, 7), (12, 12)] {
        for (k, p) in opt.params().iter().enumerate() {
            let g = if k == late {
                vars[early].as_tensor().clone()
            } else {
                Tensor::ones(3, DType::F32, &Device::Cpu).unwrap()
            };
            p.set_grad(Some(g));
        }
        match opt.inner_mut().step() {
            Err(OptimError::Storage { param, reason }) => {
                assert_eq!(param, late);
                assert!(
                    reason.contains(&format!("`p{late}`"))
                        && reason.ends_with(&format!("shares memory with parameter {early}")),
                    "{reason}"
                );
            }
            other => panic!("expected a storage error, got {other:?}"),
        }
        for (k, v) in vars.iter().enumerate() {
            assert_eq!(v.as_tensor().to_vec1::<f32>().unwrap(), [k as f32; 3]);
        }
    }
    assert!(opt.state_dict().state.is_empty());
}

#[test]
fn candle_nn_optimizer_api_and_a_scheduler_drive_it() {
    use candle_nn::Optimizer as _;
    use tempo_sched::{LRScheduler, StepLR, StepLRConfig};
    let w = Var::from_vec(vec![1f32, -2.0], 2, &Device::Cpu).unwrap();
    let spec = OptimizerSpec::from_json(r#"{"type": "SGD", "kwargs": {"lr": 0.5}}"#).unwrap();
    let mut opt =
        <CandleOptimizer<f32> as candle_nn::Optimizer>::new(vec![w.clone()], spec).unwrap();
    let mut sched = StepLR::new(
        &mut opt,
        StepLRConfig {
            step_size: 1,
            gamma: 0.5,
            ..StepLRConfig::new(1)
        },
    )
    .unwrap();
    // loss = sum(w^2) / 2: gradient w.
    let loss = (w.as_tensor().sqr().unwrap().sum_all().unwrap() * 0.5).unwrap();
    opt.backward_step(&loss).unwrap(); // w -= 0.5 w
    assert_eq!(w.as_tensor().to_vec1::<f32>().unwrap(), [0.5, -1.0]);
    sched.step(&mut opt).unwrap();
    assert!((opt.learning_rate() - 0.25).abs() < 1e-15);
    opt.set_learning_rate(0.125);
    let mut lrs = Vec::new();
    opt.lrs_into(&mut lrs).unwrap();
    assert_eq!(lrs, [0.125]);

    // candle-nn's own AdamW, scheduled by tempo.
    let v = Var::zeros(2, DType::F32, &Device::Cpu).unwrap();
    let adamw = candle_nn::AdamW::new(
        vec![v.clone()],
        candle_nn::ParamsAdamW {
            lr: 0.1,
            ..Default::default()
        },
    )
    .unwrap();
    let mut nn = CandleNnGroups::new(adamw);
    let mut sched = StepLR::new(&mut nn, StepLRConfig::new(2)).unwrap();
    for _ in 0..2 {
        sched.step(&mut nn).unwrap();
    }
    // The scheduled lr reaches AdamW when it steps, and the step uses it: AdamW's first
    // step moves each element by lr (the gradient is 1, the weights 0).
    let loss = v.as_tensor().sum_all().unwrap();
    nn.backward_step(&loss).unwrap();
    assert!((nn.inner().learning_rate() - 0.01).abs() < 1e-12);
    for x in v.as_tensor().to_vec1::<f32>().unwrap() {
        assert!((x + 0.01).abs() < 1e-6, "{x}");
    }
    assert_eq!(nn.initial_lr(0), Some(0.1));
    assert!(nn.set_momentum(0, 0.9).is_err());
    // An lr that is not a number is an `Err` of the next step, which changes nothing.
    let before = v.as_tensor().to_vec1::<f32>().unwrap();
    nn.set(0, "lr", tempo_param_groups::Value::Str("fast".into()))
        .unwrap();
    let e = nn.backward_step(&loss).expect_err("lr is a string");
    assert!(e.to_string().contains("`lr` must be a number"), "{e}");
    assert_eq!(v.as_tensor().to_vec1::<f32>().unwrap(), before);
    assert!((nn.inner().learning_rate() - 0.01).abs() < 1e-12);
    assert!(nn.inner_mut().is_err());
}
