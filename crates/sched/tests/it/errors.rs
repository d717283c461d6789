//! Misuse is an `Err` naming the argument and the value, never a panic or a warning.

use tempo_param_groups::{Dict, ParamGroupError, Value};
use tempo_sched::{
    build_scheduler, parse_scheduler_call, ConstantLR, ConstantLRConfig, CyclicLR, CyclicLRConfig,
    ExponentialLR, ExponentialLRConfig, LRScheduler, OneCycleLR, OneCycleLRConfig, SchedError,
    SchedulerSpec, StepLR, StepLRConfig,
};

use crate::common::FakeOptimizer;

fn build(s: &str, opt: &mut FakeOptimizer) -> Result<Box<dyn LRScheduler>, SchedError> {
    build_scheduler(&s.parse::<SchedulerSpec>()?, opt)
}

fn invalid_arg(s: &str) -> (&'static str, String) {
    match build(s, &mut FakeOptimizer::sgd(&[0.1, 0.01], 0.9)) {
        Err(SchedError::InvalidArgument { arg, found, .. }) => (arg, found),
        other => panic!(
            "{s}: expected InvalidArgument, got {:?}",
            other.map(|s| s.name())
        ),
    }
}

#[test]
fn bad_arguments_are_named_with_their_values() {
    assert_eq!(
        invalid_arg("ConstantLR(factor=1.5)"),
        ("factor", "1.5".into())
    );
    assert_eq!(
        invalid_arg("ConstantLR(factor=0.0, total_iters=3)"),
        ("factor", "0".into())
    );
    assert_eq!(
        invalid_arg("LinearLR(start_factor=0.0)"),
        ("start_factor", "0".into())
    );
    assert_eq!(
        invalid_arg("LinearLR(end_factor=1.5)"),
        ("end_factor", "1.5".into())
    );
    assert_eq!(
        invalid_arg("StepLR(step_size=0)"),
        ("step_size", "0".into())
    );
    assert_eq!(
        invalid_arg("PolynomialLR(total_iters=0)"),
        ("total_iters", "0".into())
    );
    assert_eq!(
        invalid_arg("CosineAnnealingLR(T_max=0)"),
        ("T_max", "0".into())
    );
    assert_eq!(
        invalid_arg("CosineAnnealingWarmRestarts(T_0=0)"),
        ("T_0", "0".into())
    );
    assert_eq!(
        invalid_arg("CosineAnnealingWarmRestarts(T_0=2, T_mult=0)"),
        ("T_mult", "0".into())
    );
    assert_eq!(
        invalid_arg("CyclicLR(base_lr=0.1, max_lr=1.0, step_size_up=0)"),
        ("step_size_up", "0".into())
    );
    assert_eq!(invalid_arg("OneCycleLR(max_lr=0.1)").0, "total_steps");
    assert_eq!(
        invalid_arg("OneCycleLR(max_lr=0.1, total_steps=0)"),
        ("total_steps", "0".into())
    );
    assert_eq!(
        invalid_arg("OneCycleLR(max_lr=0.1, epochs=2, steps_per_epoch=0)"),
        ("steps_per_epoch", "0".into())
    );
    assert_eq!(
        invalid_arg("OneCycleLR(max_lr=0.1, total_steps=10, pct_start=1.5)"),
        ("pct_start", "1.5".into())
    );
    assert_eq!(
        invalid_arg("ReduceLROnPlateau(factor=1.0)"),
        ("factor", "1".into())
    );
    assert_eq!(
        invalid_arg("SequentialLR(schedulers=[StepLR(step_size=2)], milestones=[3])").0,
        "milestones"
    );
    assert_eq!(
        invalid_arg("WarmupCosineLR(warmup_steps=5, total_steps=5)"),
        ("total_steps", "5".into())
    );
    assert_eq!(
        invalid_arg("InverseSqrtLR(warmup_steps=0)"),
        ("warmup_steps", "0".into())
    );
    let msg = build(
        "ConstantLR(factor=1.5)",
        &mut FakeOptimizer::sgd(&[0.1], 0.0),
    )
    .err()
    .map(|e| e.to_string());
    assert_eq!(
        msg.as_deref(),
        Some("ConstantLR: `factor` must be between 0 and 1, found 1.5")
    );
}

#[test]
fn per_group_lists_must_match_the_groups() {
    let mut opt = FakeOptimizer::sgd(&[0.1, 0.01], 0.9);
    let got = CyclicLR::new(&mut opt, CyclicLRConfig::new(vec![0.1, 0.2, 0.3], 1.0)).map(|_| ());
    assert_eq!(
        got,
        Err(SchedError::GroupCountMismatch {
            arg: "base_lr".into(),
            expected: 2,
            got: 3
        })
    );
    assert_eq!(
        opt,
        FakeOptimizer::sgd(&[0.1, 0.01], 0.9),
        "a refused constructor writes nothing"
    );
    let got = build("ReduceLROnPlateau(min_lr=[0.1])", &mut opt).map(|_| ());
    assert_eq!(
        got,
        Err(SchedError::GroupCountMismatch {
            arg: "min_lr".into(),
            expected: 2,
            got: 1
        })
    );
    let got = build("LambdaLR(lr_lambda=[{'fn': 'inv_sqrt'}])", &mut opt).map(|_| ());
    assert_eq!(
        got,
        Err(SchedError::GroupCountMismatch {
            arg: "lr_lambda".into(),
            expected: 2,
            got: 1
        })
    );
}

#[test]
fn cycling_momentum_needs_momentum() {
    let mut opt = FakeOptimizer {
        groups: vec![[("lr", Value::Float(0.1))].into_iter().collect::<Dict>()],
    };
    let got = build("CyclicLR(base_lr=0.01, max_lr=0.1)", &mut opt).map(|_| ());
    assert_eq!(
        got,
        Err(SchedError::ParamGroup(ParamGroupError::NoMomentum {
            group: 0
        }))
    );
    let got = build("OneCycleLR(max_lr=0.1, total_steps=10)", &mut opt).map(|_| ());
    assert_eq!(
        got,
        Err(SchedError::ParamGroup(ParamGroupError::NoMomentum {
            group: 0
        }))
    );
    assert!(build(
        "CyclicLR(base_lr=0.01, max_lr=0.1, cycle_momentum=False)",
        &mut opt
    )
    .is_ok());
}

#[test]
fn one_cycle_past_total_steps_is_an_error_naming_both_numbers() {
    let mut opt = FakeOptimizer::sgd(&[0.1], 0.9);
    let mut s = OneCycleLR::new(&mut opt, OneCycleLRConfig::new(0.1, 5)).expect("build");
    for _ in 0..5 {
        s.step(&mut opt)
            .expect("steps 1..=5 (5 extrapolates, as in PyTorch)");
    }
    let (state, groups) = (s.state_dict(), opt.clone());
    let err = s.step(&mut opt).expect_err("step 6");
    assert_eq!(
        err,
        SchedError::PastTotalSteps {
            step: 6,
            total_steps: 5
        }
    );
    assert_eq!(
        err.to_string(),
        "OneCycleLR: tried to step 6 times, but total_steps is 5"
    );
    assert_eq!(
        (s.state_dict(), opt),
        (state, groups),
        "a refused step changes nothing"
    );
    // pct_start * total_steps == 1: the first phase has length 0 (PyTorch: ZeroDivisionError).
    let mut cfg = OneCycleLRConfig::new(0.1, 10);
    cfg.pct_start = 0.1;
    assert!(matches!(
        OneCycleLR::new(&mut FakeOptimizer::sgd(&[0.1], 0.9), cfg),
        Err(SchedError::DivisionByZero {
            scheduler: "OneCycleLR",
            ..
        })
    ));
}

#[test]
fn specs_name_what_is_wrong() {
    let mut opt = FakeOptimizer::sgd(&[0.1], 0.0);
    assert_eq!(
        build("NoSuchLR()", &mut opt).map(|_| ()),
        Err(SchedError::UnknownScheduler {
            name: "NoSuchLR".into()
        })
    );
    match build("StepLR(step_size=2, gama=0.5)", &mut opt) {
        Err(SchedError::InvalidSpec { scheduler, reason }) => {
            assert_eq!(scheduler, "StepLR");
            assert!(reason.contains("gama"), "{reason}");
        }
        other => panic!("expected InvalidSpec, got {:?}", other.map(|s| s.name())),
    }
    assert!(matches!(
        build("StepLR()", &mut opt),
        Err(SchedError::InvalidSpec { .. })
    ));
    assert!(matches!(
        build(
            "CyclicLR(base_lr=0.1, max_lr=1.0, mode='sawtooth')",
            &mut opt
        ),
        Err(SchedError::InvalidSpec { .. })
    ));
    assert!(matches!(
        build("LambdaLR(lr_lambda={'fn': 'nope'})", &mut opt),
        Err(SchedError::InvalidSpec { .. })
    ));
    let mut s = SchedulerSpec::new("StepLR").kwarg("step_size", 2);
    s.schedulers = Some(vec![]);
    assert!(matches!(
        build_scheduler(&s, &mut opt),
        Err(SchedError::InvalidSpec { .. })
    ));
}

#[test]
fn the_call_parser_reports_where() {
    for (text, position) in [
        ("StepLR(step_size=)", 17),
        ("StepLR(3)", 7),
        ("StepLR(step_size=3", 18),
        ("(x=1)", 0),
    ] {
        match parse_scheduler_call(text) {
            Err(SchedError::Parse { position: p, .. }) => assert_eq!(p, position, "{text}"),
            other => panic!("{text}: expected a parse error, got {other:?}"),
        }
    }
    let spec = parse_scheduler_call(
        "SequentialLR(schedulers=[LinearLR(start_factor=0.1, total_iters=5), CosineAnnealingLR(T_max=10, eta_min=1e-5)], \
         milestones=[5])",
    )
    .expect("parse");
    let want: SchedulerSpec = serde_json::from_str(
        r#"{"type":"SequentialLR","kwargs":{"milestones":[5]},"schedulers":[
            {"type":"LinearLR","kwargs":{"start_factor":0.1,"total_iters":5}},
            {"type":"CosineAnnealingLR","kwargs":{"T_max":10,"eta_min":1e-5}}]}"#,
    )
    .expect("json");
    assert_eq!(spec, want);
    let spec = parse_scheduler_call(
        "X(a=(0.9, 0.99), b=None, c=True, d=\"s'q\", e=-3, f=[], g={'fn': 'inv_sqrt'},)",
    )
    .expect("parse");
    assert_eq!(
        serde_json::Value::Object(spec.kwargs).to_string(),
        r#"{"a":[0.9,0.99],"b":null,"c":true,"d":"s'q","e":-3,"f":[],"g":{"fn":"inv_sqrt"}}"#
    );
}

#[test]
fn loading_another_schedulers_state_is_refused_and_changes_nothing() {
    let mut opt = FakeOptimizer::sgd(&[0.1, 0.01], 0.0);
    let mut step = StepLR::new(&mut opt, StepLRConfig::new(3)).expect("build");
    let mut exp = ExponentialLR::new(
        &mut opt,
        ExponentialLRConfig {
            gamma: 0.9,
            last_epoch: -1,
        },
    )
    .expect("build");
    step.step(&mut opt).expect("step");
    let before = exp.state_dict();
    assert_eq!(
        exp.load_state_dict(&step.state_dict()),
        Err(SchedError::StateUnexpectedKey {
            scheduler: "ExponentialLR",
            key: "step_size".into()
        })
    );
    assert_eq!(exp.state_dict(), before);

    let mut missing = step.state_dict();
    missing.remove("gamma");
    assert_eq!(
        step.load_state_dict(&missing),
        Err(SchedError::StateMissingKey {
            scheduler: "StepLR",
            key: "gamma".into()
        })
    );
    let mut wrong = step.state_dict();
    wrong.insert("last_epoch", "three");
    assert!(
        matches!(step.load_state_dict(&wrong), Err(SchedError::StateWrongType { key, .. }) if key == "last_epoch")
    );
    let mut short = step.state_dict();
    short.insert("base_lrs", Value::float_list([0.1]));
    assert_eq!(
        step.load_state_dict(&short),
        Err(SchedError::GroupCountMismatch {
            arg: "base_lrs".into(),
            expected: 2,
            got: 1
        })
    );
    let mut opt1 = FakeOptimizer::sgd(&[0.1], 0.0);
    let mut c = ConstantLR::new(&mut opt1, ConstantLRConfig::default()).expect("build");
    let before = c.state_dict();
    assert!(c.load_state_dict(&step.state_dict()).is_err());
    assert_eq!(c.state_dict(), before);
}

#[test]
fn plain_steps_and_epochs_where_they_do_not_apply() {
    let mut opt = FakeOptimizer::sgd(&[0.1], 0.0);
    let mut p = build("ReduceLROnPlateau()", &mut opt).expect("build");
    assert_eq!(
        p.step(&mut opt),
        Err(SchedError::MetricRequired {
            scheduler: "ReduceLROnPlateau"
        })
    );
    assert!(matches!(
        p.step_to_epoch(&mut opt, 3.0),
        Err(SchedError::InvalidEpoch { .. })
    ));
    let mut s = build("StepLR(step_size=2)", &mut opt).expect("build");
    assert!(matches!(
        s.step_to_epoch(&mut opt, 2.5),
        Err(SchedError::InvalidEpoch { .. })
    ));
    let mut w = build("CosineAnnealingWarmRestarts(T_0=2)", &mut opt).expect("build");
    assert!(matches!(
        w.step_to_epoch(&mut opt, -1.0),
        Err(SchedError::InvalidEpoch { .. })
    ));
    // Non-plateau schedulers ignore a metric.
    s.step_with_metric(&mut opt, 1.0)
        .expect("StepLR ignores the metric");
    assert_eq!(s.state_dict().get("last_epoch"), Some(&Value::Int(1)));
}
