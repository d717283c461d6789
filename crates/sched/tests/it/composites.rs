//! SequentialLR and ChainedScheduler: PyTorch's examples, plateau children, nesting.

use tempo_param_groups::{OptimizerParamGroups, ParamGroupError, Value};
use tempo_sched::{build_scheduler, SchedError, SchedulerSpec};

use crate::common::{build_spec, check_lr_sequence, check_resume, run, Drive, FakeOptimizer};

fn spec(s: &str) -> SchedulerSpec {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn lrs_of(spec: &SchedulerSpec, lr: f64, drive: &Drive, steps: usize) -> Vec<Vec<f64>> {
    let build = build_spec(spec);
    run(
        &build,
        &FakeOptimizer::sgd(&[lr], 0.0),
        steps,
        drive,
        None,
        false,
    )
    .expect("run")
    .0
}

fn column(values: &[f64]) -> Vec<Vec<f64>> {
    values.iter().map(|&v| vec![v]).collect()
}

#[test]
fn sequential_switches_through_the_closed_form() {
    // SEMANTICS §4.8's verified example.
    let s = spec("SequentialLR(schedulers=[ConstantLR(factor=0.1, total_iters=2), ExponentialLR(gamma=0.5)], milestones=[3])");
    let got = lrs_of(&s, 1.0, &Drive::Plain, 6);
    check_lr_sequence(
        "sequential",
        &got,
        &column(&[0.1, 0.1, 1.0, 1.0, 0.5, 0.25, 0.125]),
        1e-15,
        0.0,
    );
    check_resume(
        "sequential",
        &build_spec(&s),
        &FakeOptimizer::sgd(&[1.0, 0.1], 0.0),
        8,
        &Drive::Plain,
    );
}

#[test]
fn chained_composes_its_children() {
    // SEMANTICS §4.11's verified example.
    let s = spec("ChainedScheduler(schedulers=[ConstantLR(factor=0.1, total_iters=2), ExponentialLR(gamma=0.5)])");
    let got = lrs_of(&s, 1.0, &Drive::Plain, 5);
    check_lr_sequence(
        "chained",
        &got,
        &column(&[0.1, 0.05, 0.25, 0.125, 0.0625, 0.03125]),
        1e-15,
        0.0,
    );
}

#[test]
fn warmup_then_plateau() {
    let s = spec(
        "SequentialLR(schedulers=[LinearLR(start_factor=0.25, total_iters=2), \
         ReduceLROnPlateau(patience=0, factor=0.5)], milestones=[2])",
    );
    let drive = Drive::Metrics(vec![9.0, 9.0, 1.0, 1.0, 0.5, 0.6, 0.4, 0.4]);
    let got = lrs_of(&s, 1.0, &drive, 6);
    // Warmup 0.25 -> 0.625, the milestone restarts at the base lr 1.0, then the plateau
    // logic: improvement, no improvement (halve), improvement, no improvement (halve).
    check_lr_sequence(
        "warmup+plateau",
        &got,
        &column(&[0.25, 0.625, 1.0, 1.0, 0.5, 0.5, 0.25]),
        1e-15,
        0.0,
    );
    check_resume(
        "warmup+plateau",
        &build_spec(&s),
        &FakeOptimizer::adam(&[1.0, 0.3], (0.9, 0.99)),
        8,
        &drive,
    );
}

#[test]
fn chained_with_a_plateau_child() {
    let s = spec("ChainedScheduler(schedulers=[ExponentialLR(gamma=0.5), ReduceLROnPlateau(patience=0, factor=0.1)])");
    let drive = Drive::Metrics(vec![1.0, 1.0, 0.5, 0.7, 0.2]);
    let got = lrs_of(&s, 1.0, &drive, 3);
    check_lr_sequence(
        "chained+plateau",
        &got,
        &column(&[1.0, 0.5, 0.025, 0.0125]),
        1e-15,
        0.0,
    );
    check_resume(
        "chained+plateau",
        &build_spec(&s),
        &FakeOptimizer::sgd(&[1.0], 0.9),
        5,
        &drive,
    );
}

#[test]
fn a_plateau_child_needs_a_metric_and_nothing_changes_without_one() {
    let mut opt = FakeOptimizer::sgd(&[1.0], 0.0);
    let mut seq = build_scheduler(
        &spec("SequentialLR(schedulers=[ConstantLR(factor=0.5, total_iters=1), ReduceLROnPlateau()], milestones=[1])"),
        &mut opt,
    )
    .expect("build");
    // The milestone step itself needs no metric.
    seq.step(&mut opt).expect("milestone step");
    let (state, groups) = (seq.state_dict(), opt.clone());
    assert_eq!(
        seq.step(&mut opt),
        Err(SchedError::MetricRequired {
            scheduler: "ReduceLROnPlateau"
        })
    );
    assert_eq!((seq.state_dict(), &opt), (state, &groups));

    let mut opt = FakeOptimizer::sgd(&[1.0], 0.0);
    let mut chained = build_scheduler(
        &spec("ChainedScheduler(schedulers=[ExponentialLR(gamma=0.5), ReduceLROnPlateau()])"),
        &mut opt,
    )
    .expect("build");
    let (state, groups) = (chained.state_dict(), opt.clone());
    assert_eq!(
        chained.step(&mut opt),
        Err(SchedError::MetricRequired {
            scheduler: "ChainedScheduler"
        })
    );
    assert_eq!((chained.state_dict(), &opt), (state, &groups));
}

#[test]
fn a_failing_child_leaves_the_chain_unchanged() {
    // OneCycleLR errs past total_steps; the ExponentialLR before it must not have stepped.
    let mut opt = FakeOptimizer::sgd(&[1.0], 0.9);
    let mut s = build_scheduler(
        &spec("ChainedScheduler(schedulers=[ExponentialLR(gamma=0.5), OneCycleLR(max_lr=1.0, total_steps=2)])"),
        &mut opt,
    )
    .expect("build");
    s.step(&mut opt).expect("step 1");
    s.step(&mut opt)
        .expect("step 2 (== total_steps, extrapolates)");
    let (state, groups) = (s.state_dict(), opt.clone());
    assert_eq!(
        s.step(&mut opt),
        Err(SchedError::PastTotalSteps {
            step: 3,
            total_steps: 2
        })
    );
    assert_eq!((s.state_dict(), &opt), (state, &groups));
}

/// PyTorch 2.15's numbers for composites inside composites (SGD, lr 1.0; the lr after
/// construction, then after each step), and exact resume at every step.
#[test]
fn nested_composites_give_pytorchs_numbers_and_resume_exactly() {
    let cases: [(&str, &[f64]); 3] = [
        (
            "SequentialLR(schedulers=[SequentialLR(schedulers=[ConstantLR(factor=0.1, total_iters=2), \
             ExponentialLR(gamma=0.5)], milestones=[3]), StepLR(step_size=2, gamma=0.1)], milestones=[6])",
            &[0.1, 0.1, 1.0, 0.5, 0.25, 0.125, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01, 0.001],
        ),
        (
            "SequentialLR(schedulers=[ChainedScheduler(schedulers=[ConstantLR(factor=0.1, total_iters=2), \
             ExponentialLR(gamma=0.5)]), StepLR(step_size=2, gamma=0.1)], milestones=[4])",
            &[0.05, 0.025, 0.125, 0.0625, 1.0, 1.0, 0.1, 0.1, 0.01],
        ),
        (
            "ChainedScheduler(schedulers=[SequentialLR(schedulers=[ConstantLR(factor=0.1, total_iters=2), \
             ExponentialLR(gamma=0.5)], milestones=[3]), MultiplicativeLR(lr_lambda={'fn': 'const', 'factor': 0.9})])",
            &[0.1, 0.09, 0.81, 0.9, 0.405, 0.18225, 0.0820125, 0.036905625],
        ),
    ];
    for (s, want) in cases {
        let s = spec(s);
        let steps = want.len() - 1;
        let got = lrs_of(&s, 1.0, &Drive::Plain, steps);
        check_lr_sequence(&s.r#type, &got, &column(want), 1e-14, 0.0);
        check_resume(
            "nested",
            &build_spec(&s),
            &FakeOptimizer::sgd(&[1.0, 0.1], 0.0),
            steps,
            &Drive::Plain,
        );
    }
}

/// A nested composite's state after the outer constructor, key for key as PyTorch's.
#[test]
fn a_nested_sequential_has_pytorchs_state_shape() {
    let s = spec(
        "SequentialLR(schedulers=[SequentialLR(schedulers=[ConstantLR(factor=0.1, total_iters=2), \
         ExponentialLR(gamma=0.5)], milestones=[3]), StepLR(step_size=2, gamma=0.1)], milestones=[6])",
    );
    let mut opt = FakeOptimizer::sgd(&[1.0], 0.0);
    let sched = build_scheduler(&s, &mut opt).expect("build");
    let sd = sched.state_dict();
    assert_eq!(
        sd.keys().collect::<Vec<_>>(),
        ["_milestones", "last_epoch", "_last_lr", "_schedulers"]
    );
    let children = sd
        .get("_schedulers")
        .and_then(|v| v.as_slice())
        .expect("a list of child dicts");
    let inner = children[0].as_dict().expect("a dict");
    assert_eq!(
        inner.keys().collect::<Vec<_>>(),
        [
            "_milestones",
            "last_epoch",
            "_last_lr",
            "_step_count",
            "_is_initial",
            "_schedulers"
        ]
    );
    assert_eq!(inner.get("last_epoch"), Some(&Value::Int(1)));
    assert_eq!(inner.get("_step_count"), Some(&Value::Int(0)));
    let leaves = inner
        .get("_schedulers")
        .and_then(|v| v.as_slice())
        .expect("the inner children");
    let counters = |i: usize| {
        let d = leaves[i].as_dict().expect("a dict");
        (d.get("last_epoch").cloned(), d.get("_step_count").cloned())
    };
    assert_eq!(counters(0), (Some(Value::Int(0)), Some(Value::Int(2))));
    assert_eq!(counters(1), (Some(Value::Int(-2)), Some(Value::Int(1))));
    // The first step of the outer one does not add the keys to the chain's state again.
    let chained = spec(
        "SequentialLR(schedulers=[ChainedScheduler(schedulers=[ConstantLR(factor=0.1, total_iters=2), \
         ExponentialLR(gamma=0.5)]), StepLR(step_size=2)], milestones=[4])",
    );
    let mut opt = FakeOptimizer::sgd(&[1.0], 0.0);
    let sched = build_scheduler(&chained, &mut opt).expect("build");
    let sd = sched.state_dict();
    let children = sd
        .get("_schedulers")
        .and_then(|v| v.as_slice())
        .expect("a list of child dicts");
    assert_eq!(
        children[0]
            .as_dict()
            .expect("a dict")
            .keys()
            .collect::<Vec<_>>(),
        ["_last_lr", "_step_count", "_is_initial", "_schedulers"]
    );
}

/// PyTorch cannot restart a composite at a milestone (`NotImplementedError`): tempo says
/// so with an `Err`, and the failed step changes nothing.
#[test]
fn a_composite_after_a_milestone_is_refused_there() {
    for inner in [
        "ChainedScheduler(schedulers=[ConstantLR(factor=0.1, total_iters=2), ExponentialLR(gamma=0.5)])",
        "SequentialLR(schedulers=[ConstantLR(factor=0.1, total_iters=2), ExponentialLR(gamma=0.5)], milestones=[3])",
    ] {
        let s = spec(&format!(
            "SequentialLR(schedulers=[StepLR(step_size=2, gamma=0.1), {inner}], milestones=[3])"
        ));
        let mut opt = FakeOptimizer::sgd(&[1.0], 0.0);
        let mut sched = build_scheduler(&s, &mut opt).expect("build");
        let mut got = vec![opt.lrs()[0]];
        for _ in 0..2 {
            sched.step(&mut opt).expect("before the milestone");
            got.push(opt.lrs()[0]);
        }
        check_lr_sequence(inner, &column(&got), &column(&[1.0, 1.0, 0.1]), 1e-15, 0.0);
        let before = (sched.state_dict(), opt.clone());
        let err = sched.step(&mut opt).expect_err("the milestone");
        assert!(
            matches!(err, SchedError::CompositeAtMilestone { milestone: 3, .. }),
            "{err}"
        );
        assert_eq!(sched.state_dict(), before.0, "{inner}: state unchanged");
        assert_eq!(opt.lrs(), before.1.lrs(), "{inner}: lrs unchanged");
    }
}

/// Groups that refuse one write of an lr (the `fail_at`-th, counting every lr write):
/// that write's `lr` is not lent, and inserting an `lr` (which every group has, so
/// only a refused write gets there) is refused.
struct Flaky {
    inner: FakeOptimizer,
    lr_writes: usize,
    fail_at: Option<usize>,
}

impl OptimizerParamGroups for Flaky {
    fn num_groups(&self) -> usize {
        self.inner.num_groups()
    }
    fn get(&self, group: usize, key: &str) -> Option<&Value> {
        self.inner.get(group, key)
    }
    fn get_mut(&mut self, group: usize, key: &str) -> Option<&mut Value> {
        if key == "lr" {
            let i = self.lr_writes;
            self.lr_writes += 1;
            if self.fail_at == Some(i) {
                return None;
            }
        }
        self.inner.get_mut(group, key)
    }
    fn insert(&mut self, group: usize, key: &str, value: Value) -> Result<(), ParamGroupError> {
        if key == "lr" {
            return Err(ParamGroupError::UnknownKey {
                group,
                key: key.into(),
            });
        }
        self.inner.insert(group, key, value)
    }
}

#[test]
fn a_chain_step_that_fails_anywhere_is_taken_back_exactly() {
    // Every kind of child state: Core leaves (with momentum), warm restarts, a plateau,
    // a SequentialLR across its milestone and a nested chain.
    let s = spec(
        "ChainedScheduler(schedulers=[CyclicLR(base_lr=1e-3, max_lr=0.1, step_size_up=3), \
         SequentialLR(schedulers=[LinearLR(start_factor=0.5, total_iters=2), \
         CosineAnnealingWarmRestarts(T_0=3, T_mult=2)], milestones=[4]), \
         ChainedScheduler(schedulers=[ExponentialLR(gamma=0.9), ReduceLROnPlateau(patience=1)]), \
         MultiStepLR(milestones=[2, 5], gamma=0.5)])",
    );
    let metrics = [3.0, 3.0, 3.0, 2.0, 2.0, 2.0, 2.0, 1.0];
    let fresh = FakeOptimizer::adam(&[0.1, 0.02], (0.9, 0.999));
    let reference = run(
        &build_spec(&s),
        &fresh,
        metrics.len(),
        &Drive::Metrics(metrics.to_vec()),
        None,
        false,
    )
    .expect("the straight run");
    let mut failures_seen = 0;
    for fail_step in 1..=metrics.len() {
        // Fail each lr write of that step in turn, until the step writes no more.
        for nth in 0.. {
            let mut opt = Flaky {
                inner: fresh.clone(),
                lr_writes: 0,
                fail_at: None,
            };
            let mut sched = build_scheduler(&s, &mut opt).expect("build");
            let (mut lrs, mut moms) = (vec![opt.inner.lrs()], vec![opt.inner.momenta()]);
            let mut failed = false;
            for (t, &m) in metrics.iter().enumerate().map(|(i, m)| (i + 1, m)) {
                if t == fail_step {
                    opt.fail_at = Some(opt.lr_writes + nth);
                    let (state, groups) = (sched.state_dict(), opt.inner.clone());
                    if let Err(e) = sched.step_with_metric(&mut opt, m) {
                        assert!(
                            matches!(e, SchedError::ParamGroup(_)),
                            "step {t}, write {nth}: {e}"
                        );
                        assert_eq!(sched.state_dict(), state, "step {t}, write {nth}");
                        assert_eq!(opt.inner, groups, "step {t}, write {nth}");
                        failed = true;
                        failures_seen += 1;
                        opt.fail_at = None;
                    } else {
                        // The step wrote fewer lrs than `nth`: nothing failed.
                        opt.fail_at = None;
                        lrs.push(opt.inner.lrs());
                        moms.push(opt.inner.momenta());
                        continue;
                    }
                }
                // After a failure, the same step again: the run goes on as if nothing
                // had happened.
                sched.step_with_metric(&mut opt, m).expect("a step");
                lrs.push(opt.inner.lrs());
                moms.push(opt.inner.momenta());
            }
            assert_eq!(
                (&lrs, &moms),
                (&reference.0, &reference.1),
                "after a failure at step {fail_step}, write {nth}"
            );
            if !failed {
                break;
            }
        }
    }
    assert!(
        failures_seen > 4 * metrics.len(),
        "{failures_seen} failures"
    );
}
