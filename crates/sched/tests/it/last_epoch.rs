//! Schedulers built with `last_epoch`: PyTorch 2.15's verified numbers, the `Err` for a
//! group without `initial_lr`, and resuming through `last_epoch` where PyTorch's own
//! recipe continues the straight run.

use tempo_param_groups::OptimizerParamGroups;
use tempo_sched::{build_scheduler, SchedError, SchedulerSpec};

use crate::common::{check_lr_sequence, FakeOptimizer};

fn spec(s: &str) -> SchedulerSpec {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// SGD groups holding `lr` and `initial_lr`, as a resumed PyTorch run's do.
fn resumed(lrs: &[f64], initial: &[f64], momentum: f64) -> FakeOptimizer {
    let mut opt = FakeOptimizer::sgd(lrs, momentum);
    for (g, &v) in initial.iter().enumerate() {
        opt.set_initial_lr(g, v).expect("a group");
    }
    opt
}

/// The lr after construction, then after each of `steps` steps.
fn rows(s: &str, opt: &mut FakeOptimizer, steps: usize) -> Vec<Vec<f64>> {
    let mut sched = build_scheduler(&spec(s), opt).unwrap_or_else(|e| panic!("{s}: {e}"));
    let mut out = vec![opt.lrs()];
    for _ in 0..steps {
        sched.step(opt).unwrap_or_else(|e| panic!("{s}: {e}"));
        out.push(opt.lrs());
    }
    out
}

/// The `Err` building `s` gives.
fn build_err(s: &SchedulerSpec, opt: &mut FakeOptimizer, what: &str) -> SchedError {
    match build_scheduler(s, opt) {
        Ok(_) => panic!("{what}: built"),
        Err(e) => e,
    }
}

fn column(values: &[f64]) -> Vec<Vec<f64>> {
    values.iter().map(|&v| vec![v]).collect()
}

/// SEMANTICS' verified constructions with `last_epoch = k`: the base is `initial_lr`,
/// the constructor steps to `k + 1`; recursive rules apply once more, guarded ones
/// keep the group's lr.
#[test]
fn the_constructor_steps_once_from_last_epoch() {
    let cases: [(&str, f64, &[f64]); 7] = [
        // A recursive rule at a boundary multiplies again (0.001, not 0.01).
        (
            "StepLR(step_size=2, gamma=0.1, last_epoch=3)",
            0.01,
            &[0.001, 0.001, 0.0001],
        ),
        (
            "StepLR(step_size=2, gamma=0.1, last_epoch=4)",
            0.01,
            &[0.01, 0.001, 0.001],
        ),
        // Guarded by _is_initial: the group's lr stays, then the rule goes on from it.
        (
            "ExponentialLR(gamma=0.5, last_epoch=4)",
            0.3,
            &[0.3, 0.15, 0.075],
        ),
        (
            "LinearLR(start_factor=0.5, total_iters=4, last_epoch=1)",
            0.7,
            &[
                0.7,
                0.7 * (1.0 + 0.5 / (4.0 * 0.5 + 2.0 * 0.5)),
                0.7 * (1.0 + 0.5 / (4.0 * 0.5 + 2.0 * 0.5)) * (1.0 + 0.5 / (4.0 * 0.5 + 3.0 * 0.5)),
            ],
        ),
        // LambdaLR is not guarded: base * f(k + 1).
        (
            "LambdaLR(lr_lambda={'fn': 'pow', 'base': 0.5}, last_epoch=2)",
            0.3,
            &[0.125, 0.0625, 0.03125],
        ),
        // ConstantLR lifts its factor when k + 1 == total_iters.
        (
            "ConstantLR(factor=0.5, total_iters=3, last_epoch=2)",
            0.5,
            &[1.0, 1.0, 1.0],
        ),
        // CosineAnnealingWarmRestarts counts T_cur from k: T_cur 2 of T_i 6, lr 0.75,
        // where the straight run would be at T_cur 2 of 12 (PyTorch's numbers).
        (
            "CosineAnnealingWarmRestarts(T_0=3, T_mult=2, last_epoch=10)",
            0.2,
            &[0.75, 0.5, 0.25],
        ),
    ];
    for (s, lr, want) in cases {
        let mut opt = resumed(&[lr], &[1.0], 0.0);
        let got = rows(s, &mut opt, want.len() - 1);
        check_lr_sequence(s, &got, &column(want), 1e-14, 0.0);
    }
}

/// CyclicLR resumed writes neither lr nor momentum keys; its first value uses
/// `initial_lr` as the base, the next ones `base_lr` (PyTorch's verified numbers).
#[test]
fn cyclic_lr_resumed() {
    let mut opt = resumed(&[0.05], &[0.05], 0.9);
    let s = "CyclicLR(base_lr=0.001, max_lr=0.1, step_size_up=2, last_epoch=2)";
    let mut sched = build_scheduler(&spec(s), &mut opt).expect("build");
    check_lr_sequence(s, &[opt.lrs()], &[vec![0.07500000000000001]], 1e-15, 0.0);
    let m = opt.momentum(0).expect("momentum");
    assert!((m - 0.8500000000000001).abs() < 1e-15, "{m}");
    assert_eq!(opt.get(0, "max_momentum"), None, "no keys written");
    sched.step(&mut opt).expect("step");
    check_lr_sequence(s, &[opt.lrs()], &[vec![0.001]], 1e-15, 0.0);
}

/// OneCycleLR resumed reads its phase ends from the groups: built with `last_epoch = 3`
/// on the groups of a fresh run, it gives that run's fourth step, lr and momentum.
#[test]
fn one_cycle_resumed_reads_its_group_keys() {
    let s = "OneCycleLR(max_lr=0.1, total_steps=10)";
    let mut fresh = FakeOptimizer::sgd(&[0.5], 0.9);
    let mut straight = build_scheduler(&spec(s), &mut fresh).expect("fresh");
    let groups_after_build = fresh.clone();
    for _ in 0..4 {
        straight.step(&mut fresh).expect("step");
    }
    let mut opt = groups_after_build.clone();
    build_scheduler(
        &spec("OneCycleLR(max_lr=0.1, total_steps=10, last_epoch=3)"),
        &mut opt,
    )
    .expect("resumed");
    check_lr_sequence(s, &[opt.lrs()], &[vec![0.0811745653949763]], 1e-14, 0.0);
    check_lr_sequence(s, &[opt.lrs()], &[fresh.lrs()], 0.0, 0.0);
    let m = opt.momentum(0).expect("momentum");
    assert!((m - 0.8688255099070633).abs() < 1e-14, "{m}");
    // Past total_steps at construction, as PyTorch's ValueError.
    let mut opt = groups_after_build.clone();
    let err = build_err(
        &spec("OneCycleLR(max_lr=0.1, total_steps=10, last_epoch=10)"),
        &mut opt,
        "step 11 of 10",
    );
    assert!(
        matches!(err, SchedError::PastTotalSteps { step: 11, .. }),
        "{err}"
    );
    // A group without max_lr names it.
    let mut opt = resumed(&[0.1], &[0.004], 0.9);
    let err = build_err(
        &spec("OneCycleLR(max_lr=0.1, total_steps=10, last_epoch=3)"),
        &mut opt,
        "no max_lr",
    );
    assert!(
        matches!(
            err,
            SchedError::MissingGroupKey {
                key: "max_lr",
                group: 0,
                ..
            }
        ),
        "{err}"
    );
}

/// SequentialLR(last_epoch = k) starts counting at k + 1, so its milestones come early
/// (PyTorch's verified 0.1, 1.0, 0.5, 0.25).
#[test]
fn sequential_lr_resumed_fires_its_milestones_early() {
    let s = "SequentialLR(schedulers=[ConstantLR(factor=0.1, total_iters=2), ExponentialLR(gamma=0.5)], \
             milestones=[3], last_epoch=1)";
    let mut opt = FakeOptimizer::sgd(&[1.0], 0.0);
    let got = rows(s, &mut opt, 3);
    check_lr_sequence(s, &got, &column(&[0.1, 1.0, 0.5, 0.25]), 1e-15, 0.0);
}

/// Every scheduler with `last_epoch` refuses groups without `initial_lr`, naming the
/// group and the fix, and changes nothing.
#[test]
fn a_group_without_initial_lr_is_an_err_naming_it() {
    let calls = [
        "LambdaLR(lr_lambda={'fn': 'pow', 'base': 0.9}, last_epoch=3)",
        "MultiplicativeLR(lr_lambda={'fn': 'const', 'factor': 0.9}, last_epoch=3)",
        "StepLR(step_size=2, last_epoch=3)",
        "MultiStepLR(milestones=[2], last_epoch=3)",
        "ConstantLR(last_epoch=3)",
        "LinearLR(last_epoch=3)",
        "ExponentialLR(gamma=0.9, last_epoch=3)",
        "PolynomialLR(last_epoch=3)",
        "CosineAnnealingLR(T_max=5, last_epoch=3)",
        "CosineAnnealingWarmRestarts(T_0=5, last_epoch=3)",
        "CyclicLR(base_lr=0.01, max_lr=0.1, last_epoch=3)",
        "OneCycleLR(max_lr=0.1, total_steps=10, last_epoch=3)",
        "SWALR(swa_lr=0.05, last_epoch=3)",
        "WarmupCosineLR(warmup_steps=2, total_steps=10, last_epoch=3)",
        "WarmupStableDecayLR(warmup_steps=2, stable_steps=2, decay_steps=2, last_epoch=3)",
        "InverseSqrtLR(warmup_steps=2, last_epoch=3)",
        "transformers:linear(num_warmup_steps=2, num_training_steps=10, last_epoch=3)",
        "transformers:cosine(num_warmup_steps=2, num_training_steps=10, scheduler_specific_kwargs={'last_epoch': 3})",
    ];
    for call in calls {
        // Group 0 has initial_lr, group 1 does not.
        let mut opt = resumed(&[0.1, 0.2], &[0.1], 0.9);
        let before = opt.clone();
        let err = build_err(&spec(call), &mut opt, call);
        assert!(
            matches!(
                err,
                SchedError::MissingGroupKey {
                    group: 1,
                    key: "initial_lr",
                    last_epoch: 3,
                    ..
                }
            ),
            "{call}: {err}"
        );
        let message = err.to_string();
        assert!(
            message.contains("param group 1") && message.contains("state dict"),
            "{message}"
        );
        // SWALR writes swa_lr before its base class looks, as PyTorch's does.
        if !call.starts_with("SWALR") {
            assert_eq!(opt, before, "{call}: nothing written");
        }
    }
    // last_epoch below -1, and on the schedulers that have none, is refused.
    for call in [
        "StepLR(step_size=2, last_epoch=-2)",
        "SequentialLR(schedulers=[StepLR(step_size=2)], milestones=[], last_epoch=-3)",
    ] {
        let mut opt = FakeOptimizer::sgd(&[0.1], 0.9);
        let err = build_err(&spec(call), &mut opt, call);
        assert!(
            matches!(
                err,
                SchedError::InvalidArgument {
                    arg: "last_epoch",
                    ..
                }
            ),
            "{call}: {err}"
        );
    }
    for call in [
        "ReduceLROnPlateau(last_epoch=3)",
        "ChainedScheduler(schedulers=[StepLR(step_size=2)], last_epoch=3)",
    ] {
        let mut opt = resumed(&[0.1], &[0.1], 0.9);
        let err = build_err(&spec(call), &mut opt, call);
        assert!(
            matches!(err, SchedError::InvalidSpec { .. }),
            "{call}: {err}"
        );
    }
}

/// PyTorch's resume recipe (load the optimizer state, build with `last_epoch = saved - 1`)
/// continues the straight run for closed-form schedulers whose constructor keeps the
/// lr: here bit for bit, after every k.
#[test]
fn resuming_through_last_epoch_continues_the_straight_run() {
    for s in [
        "ExponentialLR(gamma=0.9)",
        "CosineAnnealingLR(T_max=7, eta_min=0.001)",
        "PolynomialLR(total_iters=9, power=2.0)",
        "LambdaLR(lr_lambda={'fn': 'warmup_linear', 'warmup': 4})",
        "transformers:cosine(num_warmup_steps=3, num_training_steps=12)",
        "transformers:warmup_stable_decay(num_warmup_steps=2, num_decay_steps=5, num_training_steps=12, decay_type='1-sqrt')",
        "WarmupCosineLR(warmup_steps=3, total_steps=12)",
    ] {
        let fresh = FakeOptimizer::sgd(&[0.1, 0.02], 0.9);
        let mut opt = fresh.clone();
        let straight = rows(s, &mut opt, 15);
        for k in 1..15 {
            // The groups after k steps (lr and initial_lr), then last_epoch = k - 1.
            let mut opt = fresh.clone();
            let mut sched = build_scheduler(&spec(s), &mut opt).expect("build");
            for _ in 0..k {
                sched.step(&mut opt).expect("step");
            }
            let mut with_k = spec(s);
            with_k.kwargs.insert("last_epoch".into(), (k as i64 - 1).into());
            let mut resumed = build_scheduler(&with_k, &mut opt).expect("resumed");
            let mut got = vec![opt.lrs()];
            for _ in k..15 {
                resumed.step(&mut opt).expect("step");
                got.push(opt.lrs());
            }
            let bits = |r: &[Vec<f64>]| -> Vec<Vec<u64>> {
                r.iter().map(|v| v.iter().map(|x| x.to_bits()).collect()).collect()
            };
            assert_eq!(bits(&got), bits(&straight[k..]), "{s}: resumed at {k}");
        }
    }
}
