//! Every tempo scheduler as a burn `LrScheduler`: tempo's numbers, burn's records.

use burn_core::module::{ParamGroup, ParamId};
use burn_optim::lr_scheduler::{LrScheduler, LrSchedulerRecord};
use tempo_burn::{BurnError, SchedGroup, TempoLRScheduler, TempoOptimizer};
use tempo_optim::OptimizerSpec;
use tempo_sched::{
    simulate, simulate_with_metrics, OneCycleLR, OneCycleLRConfig, SchedulerSpec, SimulatedGroups,
    SCHEDULER_NAMES,
};

/// One row per scheduler: a spec, and whether it cycles momentum (then it drives a
/// tempo Adam; otherwise one of burn's own optimizers at lr 0.1).
const TABLE: &[(&str, bool)] = &[
    ("LambdaLR(lr_lambda={'fn': 'pow', 'base': 0.9})", false),
    ("MultiplicativeLR(lr_lambda={'fn': 'pow', 'base': 0.95})", false),
    ("StepLR(step_size=3, gamma=0.5)", false),
    ("MultiStepLR(milestones=[2, 5, 6], gamma=0.3)", false),
    ("ConstantLR(factor=0.25, total_iters=4)", false),
    ("LinearLR(start_factor=0.1, end_factor=0.9, total_iters=7)", false),
    ("ExponentialLR(gamma=0.9)", false),
    ("PolynomialLR(total_iters=8, power=2.0)", false),
    ("CosineAnnealingLR(T_max=6, eta_min=0.001)", false),
    ("CosineAnnealingWarmRestarts(T_0=3, T_mult=2, eta_min=0.01)", false),
    ("CyclicLR(base_lr=0.01, max_lr=0.1, step_size_up=3, mode='triangular2', cycle_momentum=False)", false),
    ("CyclicLR(base_lr=0.01, max_lr=0.1, step_size_up=2, base_momentum=0.8, max_momentum=0.9)", true),
    ("OneCycleLR(max_lr=0.1, total_steps=12, cycle_momentum=False)", false),
    ("OneCycleLR(max_lr=0.1, total_steps=12, three_phase=True)", true),
    ("ReduceLROnPlateau(factor=0.5, patience=1)", false),
    ("SWALR(swa_lr=0.05, anneal_epochs=3)", false),
    ("WarmupCosineLR(warmup_steps=3, total_steps=12)", false),
    ("WarmupStableDecayLR(warmup_steps=2, stable_steps=3, decay_steps=4)", false),
    ("InverseSqrtLR(warmup_steps=4)", false),
    ("transformers:linear(num_warmup_steps=2, num_training_steps=10)", false),
    ("transformers:cosine(num_warmup_steps=3, num_training_steps=10)", false),
    ("transformers:cosine_with_restarts(num_warmup_steps=2, num_training_steps=11, num_cycles=3)", false),
    ("transformers:polynomial(num_warmup_steps=1, num_training_steps=9, lr_end=1e-3, power=2.0)", false),
    ("transformers:constant()", false),
    ("transformers:constant_with_warmup(num_warmup_steps=3)", false),
    ("transformers:inverse_sqrt(num_warmup_steps=3, timescale=5)", false),
    ("transformers:cosine_with_min_lr(num_warmup_steps=2, num_training_steps=10, min_lr_rate=0.1)", false),
    ("transformers:cosine_warmup_with_min_lr(num_warmup_steps=2, num_training_steps=10, min_lr=0.01)", false),
    ("transformers:warmup_stable_decay(num_warmup_steps=2, num_decay_steps=5, num_stable_steps=3, decay_type='1-sqrt')", false),
    ("transformers:reduce_lr_on_plateau(scheduler_specific_kwargs={'patience': 1})", false),
];

/// Composites, which `SchedulerSpec`'s call syntax does not spell: JSON.
const COMPOSITES: &[&str] = &[
    r#"{"type": "SequentialLR", "kwargs": {"milestones": [3]}, "schedulers": [
        {"type": "LinearLR", "kwargs": {"start_factor": 0.2, "total_iters": 3}},
        {"type": "ExponentialLR", "kwargs": {"gamma": 0.8}}]}"#,
    r#"{"type": "ChainedScheduler", "schedulers": [
        {"type": "ConstantLR", "kwargs": {"factor": 0.5, "total_iters": 2}},
        {"type": "ExponentialLR", "kwargs": {"gamma": 0.9}}]}"#,
];

const STEPS: usize = 12;
const METRICS: [f64; STEPS] = [
    1.0, 0.9, 0.95, 0.97, 0.96, 0.5, 0.6, 0.7, 0.8, 0.4, 0.41, 0.42,
];

fn specs() -> Vec<(SchedulerSpec, bool)> {
    let mut out: Vec<(SchedulerSpec, bool)> = TABLE
        .iter()
        .map(|(s, m)| (s.parse().unwrap(), *m))
        .collect();
    out.extend(
        COMPOSITES
            .iter()
            .map(|j| (serde_json::from_str(j).unwrap(), false)),
    );
    out
}

fn adam() -> TempoOptimizer {
    TempoOptimizer::new(
        &OptimizerSpec::from_json(r#"{"type": "Adam", "kwargs": {"lr": 0.1}}"#).unwrap(),
    )
    .unwrap()
}

fn scheduler(spec: &SchedulerSpec, momentum: bool) -> (TempoLRScheduler, Option<TempoOptimizer>) {
    if momentum {
        let opt = adam();
        (
            TempoLRScheduler::for_optimizer(spec, &opt).unwrap(),
            Some(opt),
        )
    } else {
        (TempoLRScheduler::new(spec, 0.1).unwrap(), None)
    }
}

fn plateau(spec: &SchedulerSpec) -> bool {
    matches!(
        spec.r#type.as_str(),
        "ReduceLROnPlateau" | "transformers:reduce_lr_on_plateau"
    )
}

/// burn's step `k` (the lr of optimizer step `k`), with the metric reported before it.
fn burn_step(s: &mut TempoLRScheduler, k: usize, metric: bool) -> f64 {
    if metric && k > 0 {
        s.metric_feed().report(METRICS[k - 1]);
    }
    s.step()
}

fn beta1(opt: &TempoOptimizer) -> f64 {
    opt.hyperparameters()
        .get("betas")
        .unwrap()
        .as_slice()
        .unwrap()[0]
        .as_f64()
        .unwrap()
}

fn check_same(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.to_bits(), w.to_bits(), "{what}: step {i}: {g} vs {w}");
    }
}

#[test]
fn the_table_covers_every_tempo_scheduler() {
    let names: Vec<String> = specs().into_iter().map(|(s, _)| s.r#type).collect();
    for name in SCHEDULER_NAMES {
        assert!(
            names.iter().any(|n| n == name),
            "{name} has no row in TABLE"
        );
    }
}

#[test]
fn every_scheduler_steps_tempos_numbers() {
    for (spec, momentum) in specs() {
        let groups = if momentum {
            SimulatedGroups::adam(&[0.1], (0.9, 0.999))
        } else {
            SimulatedGroups::with_lrs(&[0.1])
        };
        let want = if plateau(&spec) {
            simulate_with_metrics(&spec, &groups, &METRICS[..STEPS - 1]).unwrap()
        } else {
            simulate(&spec, &groups, STEPS - 1).unwrap()
        };
        let (mut s, opt) = scheduler(&spec, momentum);
        let mut lrs = Vec::new();
        let mut betas = Vec::new();
        for k in 0..STEPS {
            lrs.push(burn_step(&mut s, k, plateau(&spec)));
            if let Some(o) = &opt {
                betas.push(beta1(o));
            }
            assert!(s.take_error().is_none(), "{}: step {k}", spec.r#type);
        }
        let want_lrs: Vec<f64> = want.lr.iter().map(|row| row[0]).collect();
        check_same(&lrs, &want_lrs, &spec.r#type);
        if momentum {
            let want_m: Vec<f64> = want.momentum.iter().map(|row| row[0].unwrap()).collect();
            check_same(&betas, &want_m, &format!("{} momentum", spec.r#type));
        }
    }
}

#[test]
fn every_scheduler_resumes_exactly_through_a_burn_record() {
    for (spec, momentum) in specs() {
        for k in [0, 1, 4, 7] {
            let (mut straight, _) = scheduler(&spec, momentum);
            let (mut first, _) = scheduler(&spec, momentum);
            let mut want = Vec::new();
            for i in 0..STEPS {
                want.push(burn_step(&mut straight, i, plateau(&spec)));
            }
            let mut got = Vec::new();
            for i in 0..k {
                got.push(burn_step(&mut first, i, plateau(&spec)));
            }
            let bytes = first.to_record().into_bytes().unwrap();
            let record = LrSchedulerRecord::from_bytes(bytes).unwrap();
            let (mut resumed, _) = scheduler(&spec, momentum);
            resumed.load_record(record);
            assert!(resumed.take_error().is_none(), "{} at {k}", spec.r#type);
            for i in k..STEPS {
                got.push(burn_step(&mut resumed, i, plateau(&spec)));
            }
            check_same(&got, &want, &format!("{} resumed at {k}", spec.r#type));
        }
    }
}

#[test]
fn a_record_file_restores_the_scheduler() {
    let spec: SchedulerSpec = "CosineAnnealingWarmRestarts(T_0=2, T_mult=2)"
        .parse()
        .unwrap();
    let mut s = TempoLRScheduler::new(&spec, 0.5).unwrap();
    for _ in 0..5 {
        s.step();
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sched.bpk");
    s.to_record().save(&path).unwrap();
    let mut r = TempoLRScheduler::new(&spec, 0.5).unwrap();
    r.try_load_record(&LrSchedulerRecord::load(&path).unwrap())
        .unwrap();
    for _ in 0..6 {
        assert_eq!(r.step().to_bits(), s.step().to_bits());
    }
}

#[test]
fn momentum_cycling_on_burns_own_optimizers_is_refused() {
    for text in [
        "OneCycleLR(max_lr=0.1, total_steps=10)",
        "CyclicLR(base_lr=0.01, max_lr=0.1)",
    ] {
        let spec: SchedulerSpec = text.parse().unwrap();
        let e = TempoLRScheduler::new(&spec, 0.1).unwrap_err();
        assert!(
            matches!(e, BurnError::MomentumNotReachable { group: 0, .. }),
            "{text}: {e:?}"
        );
        assert!(e.to_string().contains("cycle_momentum=False"), "{e}");
        // Mixed groups: the burn group is named.
        let e = TempoLRScheduler::from_spec(
            &spec,
            vec![SchedGroup::from(&adam()), SchedGroup::Lr(0.1)],
        )
        .unwrap_err();
        assert!(
            matches!(e, BurnError::MomentumNotReachable { group: 1, .. }),
            "{e:?}"
        );
    }
}

#[test]
fn bad_records_are_errors_that_change_nothing() {
    let step: SchedulerSpec = "StepLR(step_size=2)".parse().unwrap();
    let exp: SchedulerSpec = "ExponentialLR(gamma=0.5)".parse().unwrap();
    let mut s = TempoLRScheduler::new(&step, 1.0).unwrap();
    s.step();
    s.step();
    let before = s.record();
    let other = TempoLRScheduler::new(&exp, 1.0).unwrap().record();
    let e = s.try_load_record(&other).unwrap_err();
    assert!(e.to_string().contains("ExponentialLR"), "{e}");
    let e = s.try_load_record(&LrSchedulerRecord::new()).unwrap_err();
    assert!(matches!(e, BurnError::BadRecord { .. }), "{e:?}");
    let two = TempoLRScheduler::from_spec(&step, vec![SchedGroup::Lr(1.0), SchedGroup::Lr(2.0)])
        .unwrap()
        .record();
    let e = s.try_load_record(&two).unwrap_err();
    assert!(
        matches!(
            e,
            BurnError::CountMismatch {
                expected: 1,
                found: 2,
                ..
            }
        ),
        "{e:?}"
    );
    // burn's infallible load keeps the error and the state.
    s.load_record(other);
    assert!(matches!(s.take_error(), Some(BurnError::BadRecord { .. })));
    assert_eq!(format!("{:?}", s.record()), format!("{before:?}"));
}

#[test]
fn bad_arguments_are_errors_naming_them() {
    let spec: SchedulerSpec = "StepLR(step_size=0)".parse().unwrap();
    let e = TempoLRScheduler::new(&spec, 0.1).unwrap_err();
    assert!(matches!(e, BurnError::Sched(_)), "{e:?}");
    assert!(e.to_string().contains("step_size"), "{e}");
    let e = TempoLRScheduler::from_spec(&spec, vec![]).unwrap_err();
    assert!(matches!(e, BurnError::CountMismatch { .. }), "{e:?}");
}

#[test]
fn plateau_moves_once_per_reported_metric() {
    let spec: SchedulerSpec = "ReduceLROnPlateau(factor=0.5, patience=0)".parse().unwrap();
    let mut s = TempoLRScheduler::new(&spec, 1.0).unwrap();
    let feed = s.metric_feed();
    assert_eq!(s.step().to_bits(), 1.0_f64.to_bits());
    for _ in 0..5 {
        assert_eq!(
            s.step().to_bits(),
            1.0_f64.to_bits(),
            "no metric: the lr stays"
        );
    }
    feed.report(2.0);
    assert_eq!(
        s.step().to_bits(),
        1.0_f64.to_bits(),
        "the first metric is the best so far"
    );
    assert_eq!(s.step().to_bits(), 1.0_f64.to_bits());
    feed.report(3.0);
    assert_eq!(s.step().to_bits(), 0.5_f64.to_bits(), "worse: reduced once");
    assert_eq!(s.step().to_bits(), 0.5_f64.to_bits(), "and only once");
    assert!(s.take_error().is_none());
}

#[test]
fn one_cycle_past_its_total_steps_keeps_the_error() {
    let spec: SchedulerSpec = "OneCycleLR(max_lr=0.1, total_steps=3, cycle_momentum=False)"
        .parse()
        .unwrap();
    let mut s = TempoLRScheduler::new(&spec, 0.1).unwrap();
    // burn's first step is the construction lr, then PyTorch's steps 1 to 3; PyTorch
    // refuses a step past `total_steps`.
    for _ in 0..4 {
        s.try_step().unwrap();
    }
    let last = s.lrs().unwrap()[0];
    assert!(matches!(s.try_step(), Err(BurnError::Sched(_))));
    assert_eq!(s.step().to_bits(), last.to_bits());
    assert!(matches!(s.take_error(), Some(BurnError::Sched(_))));
}

#[test]
fn per_group_schedules_become_burns_module_scheduler() {
    let head = ParamId::new();
    let body = ParamId::new();
    let build = || {
        TempoLRScheduler::build(vec![SchedGroup::Lr(0.1), SchedGroup::Lr(0.1)], |g| {
            let mut c = OneCycleLRConfig::new(vec![0.1, 0.01], 10);
            c.cycle_momentum = false;
            Ok(Box::new(OneCycleLR::new(g, c)?))
        })
        .unwrap()
    };
    let mut tempo = build();
    let mut module = build()
        .into_module_scheduler(vec![ParamGroup::from_ids(vec![head])])
        .unwrap();
    for _ in 0..10 {
        let policy = module.step();
        tempo.try_step().unwrap();
        let lrs = tempo.lrs().unwrap();
        assert_eq!(policy.lr_from_param(body, None).to_bits(), lrs[0].to_bits());
        assert_eq!(policy.lr_from_param(head, None).to_bits(), lrs[1].to_bits());
    }
    let e = build().into_module_scheduler(vec![]).err().unwrap();
    assert!(
        matches!(
            e,
            BurnError::CountMismatch {
                expected: 1,
                found: 0,
                ..
            }
        ),
        "{e:?}"
    );
}
