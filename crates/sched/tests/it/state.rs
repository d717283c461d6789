//! PyTorch's state dict shapes, and SEMANTICS' verified edge cases.

use tempo_param_groups::{Dict, OptimizerParamGroups, Value};
use tempo_sched::{build_scheduler, LRScheduler, SchedulerSpec};

use crate::common::{check_lr_sequence, FakeOptimizer};

const TAIL: &[&str] = &[
    "base_lrs",
    "last_epoch",
    "_step_count",
    "_is_initial",
    "_get_lr_called_within_step",
    "_last_lr",
];

fn build(s: &str, opt: &mut FakeOptimizer) -> Box<dyn LRScheduler> {
    let spec: SchedulerSpec = s.parse().unwrap_or_else(|e| panic!("{s}: {e}"));
    build_scheduler(&spec, opt).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn steps(s: &mut dyn LRScheduler, opt: &mut FakeOptimizer, n: usize) -> Vec<f64> {
    let mut out = vec![opt.lrs()[0]];
    for _ in 0..n {
        s.step(opt).expect("step");
        out.push(opt.lrs()[0]);
    }
    out
}

fn same_bits(got: f64, want: f64, what: &str) {
    assert_eq!(
        got.to_bits(),
        want.to_bits(),
        "{what}: got {got:e}, expected exactly {want:e}"
    );
}

#[test]
fn state_dict_keys_are_pytorchs_in_pytorchs_order() {
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "LambdaLR(lr_lambda={'fn': 'pow', 'base': 0.9})",
            &[],
            &["lr_lambdas"],
        ),
        (
            "MultiplicativeLR(lr_lambda={'fn': 'const', 'factor': 0.9})",
            &[],
            &["lr_lambdas"],
        ),
        ("StepLR(step_size=2)", &["step_size", "gamma"], &[]),
        (
            "MultiStepLR(milestones=[2, 4])",
            &["milestones", "gamma"],
            &[],
        ),
        ("ConstantLR()", &["factor", "total_iters"], &[]),
        (
            "LinearLR()",
            &["start_factor", "end_factor", "total_iters"],
            &[],
        ),
        ("ExponentialLR(gamma=0.9)", &["gamma"], &[]),
        ("PolynomialLR()", &["total_iters", "power"], &[]),
        ("CosineAnnealingLR(T_max=4)", &["T_max", "eta_min"], &[]),
        (
            "CosineAnnealingWarmRestarts(T_0=4)",
            &["T_0", "T_i", "T_mult", "eta_min", "T_cur"],
            &[],
        ),
        (
            "CyclicLR(base_lr=0.01, max_lr=0.1)",
            &[
                "max_lrs",
                "total_size",
                "step_ratio",
                "mode",
                "gamma",
                "scale_mode",
                "cycle_momentum",
                "use_beta1",
                "base_momentums",
                "max_momentums",
            ],
            &["_scale_fn_custom"],
        ),
        (
            "OneCycleLR(max_lr=0.1, total_steps=10)",
            &[
                "total_steps",
                "_schedule_phases",
                "_anneal_func_type",
                "cycle_momentum",
                "use_beta1",
            ],
            &[],
        ),
        (
            "SWALR(swa_lr=0.05)",
            &["_anneal_strategy", "anneal_epochs"],
            &[],
        ),
    ];
    for (s, head, trailing) in cases {
        let mut opt = FakeOptimizer::sgd(&[0.1, 0.01], 0.9);
        let sd = build(s, &mut opt).state_dict();
        let want: Vec<&str> = head
            .iter()
            .chain(TAIL)
            .chain(trailing.iter())
            .copied()
            .collect();
        assert_eq!(sd.keys().collect::<Vec<_>>(), want, "{s}");
        assert_eq!(sd.get("last_epoch"), Some(&Value::Int(0)), "{s}");
        assert_eq!(sd.get("_is_initial"), Some(&Value::Bool(false)), "{s}");
    }
    let mut opt = FakeOptimizer::sgd(&[0.1], 0.9);
    let sd = build("ReduceLROnPlateau(min_lr=0.01)", &mut opt).state_dict();
    assert_eq!(
        Value::Dict(sd).to_string(),
        "{'factor': 0.1, 'default_min_lr': 0.01, 'min_lrs': [0.01], 'patience': 10, 'cooldown': 0, 'eps': 1e-08, \
         'last_epoch': 0, '_last_lr': [0.1], 'mode_worse': inf, 'mode': 'min', 'threshold': 0.0001, \
         'threshold_mode': 'rel', 'best': inf, 'cooldown_counter': 0, 'num_bad_epochs': 0}"
    );
    assert_eq!(
        opt.initial_lr(0),
        None,
        "ReduceLROnPlateau writes no initial_lr"
    );
    let mut opt = FakeOptimizer::sgd(&[0.1], 0.9);
    let sd = build("MultiStepLR(milestones=[2, 5, 5, 9], gamma=0.3)", &mut opt).state_dict();
    assert_eq!(
        sd.get("milestones").map(ToString::to_string).as_deref(),
        Some("{2: 1, 5: 2, 9: 1}")
    );
    let mut opt = FakeOptimizer::sgd(&[0.1], 0.9);
    let sd = build("OneCycleLR(max_lr=0.1, total_steps=10)", &mut opt).state_dict();
    assert_eq!(
        sd.get("_schedule_phases").map(ToString::to_string).as_deref(),
        Some(
            "[{'end_step': 2.0, 'start_lr': 'initial_lr', 'end_lr': 'max_lr', 'start_momentum': 'max_momentum', \
             'end_momentum': 'base_momentum'}, {'end_step': 9, 'start_lr': 'max_lr', 'end_lr': 'min_lr', \
             'start_momentum': 'base_momentum', 'end_momentum': 'max_momentum'}]"
        )
    );
}

/// A PyTorch `CyclicLR.state_dict()` (SEMANTICS §5 item 8), as the checkpoint reader
/// delivers it, loads into tempo's CyclicLR, even on groups without `initial_lr`.
#[test]
fn a_pytorch_cyclic_state_loads_and_continues() {
    let torch_state: Dict = [
        ("max_lrs", Value::float_list([0.1])),
        ("total_size", Value::Float(2.0)),
        ("step_ratio", Value::Float(0.5)),
        ("mode", Value::from("triangular2")),
        ("gamma", Value::Float(1.0)),
        ("scale_mode", Value::from("cycle")),
        ("cycle_momentum", Value::Bool(false)),
        ("base_lrs", Value::float_list([0.001])),
        ("last_epoch", Value::Int(10)),
        ("_step_count", Value::Int(11)),
        ("_is_initial", Value::Bool(false)),
        ("_get_lr_called_within_step", Value::Bool(false)),
        ("_last_lr", Value::float_list([0.001])),
        ("_scale_fn_custom", Value::None),
    ]
    .into_iter()
    .collect();
    let mut opt = FakeOptimizer::adam(&[0.1], (0.9, 0.999));
    let mut s = build(
        "CyclicLR(base_lr=1e-3, max_lr=0.1, step_size_up=1, mode='triangular2', cycle_momentum=False)",
        &mut opt,
    );
    // The optimizer's saved groups: lr 0.001, and here no initial_lr at all.
    let mut opt = FakeOptimizer::adam(&[0.001], (0.9, 0.999));
    s.load_state_dict(&torch_state)
        .expect("PyTorch's state loads");
    assert_eq!(s.state_dict(), torch_state, "and round-trips unchanged");
    let got = steps(s.as_mut(), &mut opt, 2);
    // Epoch 11: cycle 6, x = 0.5, lr = base + (max - base) / 2**5.
    check_lr_sequence(
        "after loading",
        &[got],
        &[vec![0.001, 0.001 + 0.099 / 32.0, 0.001]],
        1e-15,
        0.0,
    );
}

#[test]
fn construction_writes_what_pytorch_writes() {
    // LambdaLR is not guarded by _is_initial: lambda e: e/10 sets lr 0 at construction.
    let mut opt = FakeOptimizer::sgd(&[0.5], 0.0);
    let mut lam = build("LambdaLR(lr_lambda={'fn': 'pow', 'base': 0.0})", &mut opt);
    same_bits(opt.lrs()[0], 0.5, "0.0 ** 0 == 1");
    lam.step(&mut opt).expect("step");
    same_bits(opt.lrs()[0], 0.0, "0.0 ** 1");
    // A second scheduler keeps the first's initial_lr (setdefault) and so its base_lrs.
    let mut opt = FakeOptimizer::sgd(&[1.0], 0.0);
    let _first = build("ConstantLR(factor=0.5, total_iters=2)", &mut opt);
    let second = build("ExponentialLR(gamma=0.9)", &mut opt);
    assert_eq!(
        second.state_dict().get("base_lrs"),
        Some(&Value::float_list([1.0]))
    );
    same_bits(
        opt.lrs()[0],
        0.5,
        "ExponentialLR's initial step leaves the lr",
    );
    // CyclicLR with a pre-existing initial_lr uses it for the initial step only.
    let mut opt = FakeOptimizer::sgd(&[1.0], 0.0);
    opt.set_initial_lr(0, 5.0).expect("set");
    let mut c = build(
        "CyclicLR(base_lr=0.1, max_lr=1.0, step_size_up=2, cycle_momentum=False)",
        &mut opt,
    );
    check_lr_sequence(
        "cyclic, initial_lr 5.0",
        &[steps(c.as_mut(), &mut opt, 1)],
        &[vec![5.0, 0.55]],
        1e-15,
        0.0,
    );
    // CyclicLR with momentum: betas[0] and the two group keys; SGD momentum 0 becomes 0.9.
    let mut opt = FakeOptimizer::adam(&[0.1], (0.99, 0.999));
    let _c = build("CyclicLR(base_lr=0.01, max_lr=0.1)", &mut opt);
    assert_eq!(
        opt.get(0, "betas"),
        Some(&Value::Tuple(vec![0.9.into(), 0.999.into()]))
    );
    assert_eq!(opt.get(0, "max_momentum"), Some(&Value::Float(0.9)));
    assert_eq!(opt.get(0, "base_momentum"), Some(&Value::Float(0.8)));
    let mut opt = FakeOptimizer::sgd(&[0.1], 0.0);
    let _c = build("CyclicLR(base_lr=0.01, max_lr=0.1)", &mut opt);
    assert_eq!(opt.momenta(), [Some(0.9)]);
    // OneCycleLR overwrites initial_lr and adds max_lr and min_lr.
    let mut opt = FakeOptimizer::sgd(&[1.0], 0.9);
    opt.set_initial_lr(0, 7.0).expect("set");
    let _o = build("OneCycleLR(max_lr=0.1, total_steps=10)", &mut opt);
    assert_eq!(opt.initial_lr(0), Some(0.1 / 25.0));
    assert_eq!(opt.get(0, "min_lr"), Some(&Value::Float(0.1 / 25.0 / 1e4)));
    // Step 0's lr is max + (initial - max), not exactly initial_lr.
    same_bits(opt.lrs()[0], 0.0040000000000000036, "OneCycleLR step 0");
}

#[test]
fn one_cycle_extrapolates_at_total_steps() {
    let mut opt = FakeOptimizer::sgd(&[0.1], 0.9);
    let mut s = build("OneCycleLR(max_lr=0.1, total_steps=5)", &mut opt);
    let lrs = steps(s.as_mut(), &mut opt, 5);
    assert!(
        (lrs[5] - 0.01883).abs() < 1e-5 && lrs[5] > lrs[4],
        "the 5th step goes back up: {lrs:?}"
    );
    let mut opt = FakeOptimizer::sgd(&[0.1], 0.9);
    let mut s = build(
        "OneCycleLR(max_lr=0.1, total_steps=5, three_phase=True, anneal_strategy='linear')",
        &mut opt,
    );
    let lrs = steps(s.as_mut(), &mut opt, 5);
    assert!(
        (lrs[5] + 0.00133).abs() < 1e-5,
        "3-phase linear goes negative: {lrs:?}"
    );
}

#[test]
fn cosine_recursive_and_closed_forms_differ_in_the_last_bits_as_in_pytorch() {
    let mut opt = FakeOptimizer::sgd(&[0.1], 0.0);
    let mut s = build("CosineAnnealingLR(T_max=3, eta_min=0.01)", &mut opt);
    let lrs = steps(s.as_mut(), &mut opt, 4);
    same_bits(lrs[4], 0.0325, "recursive e=4");
    same_bits(
        s.lr_at(4).expect("closed form")[0],
        0.03249999999999998,
        "closed e=4",
    );
    let mut opt = FakeOptimizer::sgd(&[0.1], 0.0);
    let mut s = build("CosineAnnealingLR(T_max=3, eta_min=0.01)", &mut opt);
    s.step_to_epoch(&mut opt, 4.0).expect("step(4)");
    same_bits(
        opt.lrs()[0],
        0.03249999999999998,
        "step(epoch) uses the closed form",
    );
}

#[test]
fn warm_restarts_sequences() {
    let mut opt = FakeOptimizer::sgd(&[0.1], 0.0);
    let mut s = build("CosineAnnealingWarmRestarts(T_0=2, T_mult=2)", &mut opt);
    let lrs = steps(s.as_mut(), &mut opt, 6);
    check_lr_sequence(
        "T_0=2, T_mult=2",
        &[lrs],
        &[vec![0.1, 0.05, 0.1, 0.0854, 0.05, 0.0146, 0.1]],
        0.0,
        1e-4,
    );
    let mut opt = FakeOptimizer::sgd(&[0.1], 0.0);
    let mut s = build("CosineAnnealingWarmRestarts(T_0=2, T_mult=2)", &mut opt);
    s.step_to_epoch(&mut opt, 13.9).expect("step(13.9)");
    s.step(&mut opt).expect("step()");
    let sd = s.state_dict();
    same_bits(
        sd.get("T_cur").and_then(Value::as_f64).expect("T_cur"),
        0.9000000000000004,
        "T_cur",
    );
    assert_eq!(sd.get("T_i"), Some(&Value::Int(16)));
    assert_eq!(sd.get("_step_count"), Some(&Value::Int(0)));
    assert_eq!(sd.get("last_epoch"), Some(&Value::Int(14)));
}

#[test]
fn swalr_sequences() {
    for (spec, want) in [
        (
            "SWALR(swa_lr=0.1, anneal_epochs=3)",
            vec![1.0, 0.775, 0.3250000000000001, 0.1, 0.1],
        ),
        (
            "SWALR(swa_lr=0.1, anneal_epochs=3, anneal_strategy='linear')",
            vec![1.0, 0.7000000000000001, 0.4, 0.1, 0.1],
        ),
        ("SWALR(swa_lr=0.1, anneal_epochs=0)", vec![0.1, 0.1, 0.1]),
    ] {
        let mut opt = FakeOptimizer::sgd(&[1.0], 0.0);
        let mut s = build(spec, &mut opt);
        let got = steps(s.as_mut(), &mut opt, want.len() - 1);
        check_lr_sequence(spec, &[got], &[want], 1e-15, 0.0);
        assert_eq!(opt.get(0, "swa_lr").and_then(|v| v.as_f64()), Some(0.1));
    }
}

#[test]
fn plateau_cooldown_patience_eps_and_nan() {
    let mut opt = FakeOptimizer::sgd(&[0.1], 0.0);
    let mut s = build(
        "ReduceLROnPlateau(patience=1, cooldown=2, factor=0.5, min_lr=0.02)",
        &mut opt,
    );
    let mut lrs = vec![];
    for _ in 0..12 {
        s.step_with_metric(&mut opt, 1.0).expect("step");
        lrs.push(opt.lrs()[0]);
    }
    let want = [
        0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025, 0.025, 0.02, 0.02,
    ];
    check_lr_sequence(
        "drops at calls 3, 7, 11",
        &[lrs],
        &[want.to_vec()],
        1e-15,
        0.0,
    );
    // eps blocks a reduction smaller than itself.
    let mut opt = FakeOptimizer::sgd(&[0.1], 0.0);
    let mut s = build(
        "ReduceLROnPlateau(patience=0, factor=0.5, eps=0.06)",
        &mut opt,
    );
    for m in [1.0, 1.0, 1.0] {
        s.step_with_metric(&mut opt, m).expect("step");
    }
    same_bits(opt.lrs()[0], 0.1, "eps blocks");
    // NaN is never better; max mode with abs threshold.
    let mut opt = FakeOptimizer::sgd(&[0.1], 0.0);
    let mut s = build(
        "ReduceLROnPlateau(mode='max', threshold_mode='abs', threshold=0.1, patience=0)",
        &mut opt,
    );
    s.step_with_metric(&mut opt, 0.5).expect("step");
    s.step_with_metric(&mut opt, f64::NAN).expect("step");
    same_bits(opt.lrs()[0], 0.1 * 0.1, "NaN counts as bad");
    s.step_with_metric(&mut opt, 0.55).expect("step");
    assert!(
        (opt.lrs()[0] - 0.001).abs() < 1e-15,
        "0.55 is not 0.1 better than 0.5"
    );
}

#[test]
fn preset_values() {
    let cases: &[(&str, &[f64])] = &[
        (
            "WarmupCosineLR(warmup_steps=2, total_steps=6)",
            &[
                0.0,
                0.5,
                1.0,
                0.853_553_390_593_273_7,
                0.5,
                0.146_446_609_406_726_24,
                0.0,
                0.0,
            ],
        ),
        (
            "WarmupStableDecayLR(warmup_steps=1, stable_steps=2, decay_steps=2, min_lr=0.1)",
            &[0.0, 1.0, 1.0, 1.0, 0.55, 0.1, 0.1],
        ),
        (
            "WarmupStableDecayLR(warmup_steps=0, stable_steps=0, decay_steps=4, decay='1-sqrt')",
            &[1.0, 0.5, 1.0 - 0.5f64.sqrt(), 1.0 - 0.75f64.sqrt(), 0.0],
        ),
        (
            "InverseSqrtLR(warmup_steps=4)",
            &[0.25, 0.5, 0.75, 1.0, 0.894_427_190_999_915_9],
        ),
    ];
    for (spec, want) in cases {
        let mut opt = FakeOptimizer::sgd(&[1.0], 0.0);
        let mut s = build(spec, &mut opt);
        let got = steps(s.as_mut(), &mut opt, want.len() - 1);
        check_lr_sequence(spec, &[got], &[want.to_vec()], 1e-14, 1e-16);
    }
}

#[test]
fn cyclic_custom_scale_function() {
    // scale_fn = 0.5 ** x of the iteration: the user's scale_mode is kept with a custom fn.
    let mut opt = FakeOptimizer::sgd(&[1.0], 0.0);
    let mut s = build(
        "CyclicLR(base_lr=0.1, max_lr=1.0, step_size_up=1, scale_fn={'fn': 'pow', 'base': 0.5}, \
         scale_mode='iterations', cycle_momentum=False)",
        &mut opt,
    );
    let got = steps(s.as_mut(), &mut opt, 3);
    check_lr_sequence(
        "custom scale",
        &[got],
        &[vec![0.1, 0.55, 0.1, 0.2125]],
        1e-15,
        0.0,
    );
    assert_eq!(
        s.state_dict().get("scale_mode"),
        Some(&Value::from("iterations"))
    );
}
