//! Steady-state steps allocate nothing: every scheduler kind, stepped on
//! [`SimulatedGroups`] (whose reads and writes allocate nothing themselves), under a
//! counting global allocator.
//!
//! The one exception is a ChainedScheduler with a child that cycles `betas[0]`: to put
//! the groups back if a later child fails, the chain keeps its own copy of each group's
//! `betas` from before the step, a tuple (one allocation per group per step). With
//! SGD-like groups (`momentum`, a number) the same chain allocates nothing.

use serde_json::json;
use tempo_param_groups::OptimizerParamGroups;
use tempo_sched::{build_scheduler, LRScheduler, SchedulerSpec, SimulatedGroups, SCHEDULERS};
use tempo_testkit::CountingAllocator;

/// Counts the allocations (and reallocations) each thread makes, so tests running in
/// parallel do not see each other's.
#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// The allocations `f` makes on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    tempo_testkit::allocations_in(f).0
}

fn spec(s: &str) -> SchedulerSpec {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn lambda(kind: &str, f: serde_json::Value) -> SchedulerSpec {
    SchedulerSpec::new(kind).kwarg("lr_lambda", f)
}

/// Every scheduler kind, with arguments that make the measured steps cross their
/// interesting points (milestones, restarts, phase changes, plateaus).
fn specs() -> Vec<(&'static str, SchedulerSpec)> {
    vec![
        (
            "LambdaLR",
            lambda("LambdaLR", json!({"fn": "warmup_linear", "warmup": 10})),
        ),
        (
            "LambdaLR per group",
            lambda(
                "LambdaLR",
                json!([{"fn": "pow", "base": 0.9}, {"fn": "inv_sqrt"}]),
            ),
        ),
        (
            "MultiplicativeLR",
            lambda("MultiplicativeLR", json!({"fn": "const", "factor": 0.95})),
        ),
        ("StepLR", spec("StepLR(step_size=3, gamma=0.5)")),
        (
            "MultiStepLR",
            spec("MultiStepLR(milestones=[5, 12, 12], gamma=0.5)"),
        ),
        ("ConstantLR", spec("ConstantLR(factor=0.5, total_iters=10)")),
        (
            "LinearLR",
            spec("LinearLR(start_factor=0.1, end_factor=1.0, total_iters=10)"),
        ),
        ("ExponentialLR", spec("ExponentialLR(gamma=0.95)")),
        ("PolynomialLR", spec("PolynomialLR(total_iters=20, power=2.0)")),
        (
            "CosineAnnealingLR",
            spec("CosineAnnealingLR(T_max=7, eta_min=1e-5)"),
        ),
        (
            "CosineAnnealingWarmRestarts",
            spec("CosineAnnealingWarmRestarts(T_0=3, T_mult=2, eta_min=1e-5)"),
        ),
        (
            "CyclicLR",
            spec("CyclicLR(base_lr=1e-3, max_lr=0.1, step_size_up=4, mode='triangular2')"),
        ),
        (
            "CyclicLR without momentum",
            spec("CyclicLR(base_lr=1e-3, max_lr=0.1, step_size_up=4, cycle_momentum=False)"),
        ),
        (
            "OneCycleLR",
            spec("OneCycleLR(max_lr=0.1, total_steps=100, three_phase=True)"),
        ),
        (
            "OneCycleLR without momentum",
            spec("OneCycleLR(max_lr=0.1, total_steps=100, anneal_strategy='linear', cycle_momentum=False)"),
        ),
        (
            "ReduceLROnPlateau",
            spec("ReduceLROnPlateau(factor=0.5, patience=2, cooldown=1)"),
        ),
        ("SWALR", spec("SWALR(swa_lr=0.05, anneal_epochs=10)")),
        (
            "SequentialLR",
            spec("SequentialLR(schedulers=[LinearLR(start_factor=0.1, total_iters=5), CosineAnnealingLR(T_max=20)], milestones=[12])"),
        ),
        (
            "SequentialLR with a plateau",
            spec("SequentialLR(schedulers=[ConstantLR(factor=0.5, total_iters=3), ReduceLROnPlateau(patience=1)], milestones=[4])"),
        ),
        (
            "SequentialLR after a chain",
            spec("SequentialLR(schedulers=[ChainedScheduler(schedulers=[ExponentialLR(gamma=0.9), \
                  StepLR(step_size=3)]), ConstantLR(factor=0.5, total_iters=2)], milestones=[10])"),
        ),
        (
            "ChainedScheduler",
            spec("ChainedScheduler(schedulers=[ConstantLR(factor=0.5, total_iters=10), ExponentialLR(gamma=0.95)])"),
        ),
        (
            "ChainedScheduler of composites",
            spec("ChainedScheduler(schedulers=[SequentialLR(schedulers=[ConstantLR(factor=0.5, total_iters=2), \
                  StepLR(step_size=2)], milestones=[6]), ChainedScheduler(schedulers=[ExponentialLR(gamma=0.9), \
                  CosineAnnealingWarmRestarts(T_0=4)]), ReduceLROnPlateau(patience=1)])"),
        ),
        (
            "WarmupCosineLR",
            spec("WarmupCosineLR(warmup_steps=5, total_steps=30)"),
        ),
        (
            "WarmupStableDecayLR",
            spec("WarmupStableDecayLR(warmup_steps=5, stable_steps=5, decay_steps=10, decay='1-sqrt')"),
        ),
        ("InverseSqrtLR", spec("InverseSqrtLR(warmup_steps=5)")),
    ]
}

/// Steps that size the buffers before counting.
const WARMUP: usize = 3;
/// Steps counted.
const STEPS: usize = 40;
/// Steps counted at the registry's example arguments: the shortest example schedule
/// (OneCycleLR's `total_steps=20`) ends after `WARMUP` and these.
const EXAMPLE_STEPS: usize = 15;

/// One step, with a metric (a plateau, then improvements) when the scheduler needs one.
fn step(s: &mut dyn LRScheduler, opt: &mut SimulatedGroups, t: usize) {
    let metric = if t % 10 < 6 { 1.0 } else { 1.0 / t as f64 };
    let r = if s.needs_metric() {
        s.step_with_metric(opt, metric)
    } else {
        s.step(opt)
    };
    if let Err(e) = r {
        panic!("{} at step {t}: {e}", s.name());
    }
}

/// The allocations of `STEPS` steps after `WARMUP` ones, on fresh `groups`; the steps
/// must move the lr.
fn steady_state_allocations(name: &str, spec: &SchedulerSpec, groups: &SimulatedGroups) -> u64 {
    let (n, lrs) = allocations_and_lrs(name, spec, groups, STEPS);
    // The steps did move the lr (so the measured steps were real ones).
    assert!(
        lrs.windows(2).any(|w| (w[0] - w[1]).abs() > 1e-12),
        "{name}: the lr never changed: {lrs:?}"
    );
    n
}

/// The allocations of `steps` steps after `WARMUP` ones, on fresh `groups`, and the lrs
/// of group 0 after each counted step.
fn allocations_and_lrs(
    name: &str,
    spec: &SchedulerSpec,
    groups: &SimulatedGroups,
    steps: usize,
) -> (u64, Vec<f64>) {
    let mut opt = groups.clone();
    let mut s = build_scheduler(spec, &mut opt).unwrap_or_else(|e| panic!("{name}: {e}"));
    for t in 1..=WARMUP {
        step(s.as_mut(), &mut opt, t);
    }
    let mut lrs = Vec::with_capacity(steps);
    let n = allocations(|| {
        for t in WARMUP + 1..=WARMUP + steps {
            step(s.as_mut(), &mut opt, t);
            lrs.push(opt.lr(0).unwrap_or(f64::NAN));
        }
    });
    (n, lrs)
}

#[test]
fn the_counting_allocator_sees_allocations() {
    assert_eq!(allocations(|| drop(std::hint::black_box(vec![1u8; 3]))), 1);
    assert_eq!(allocations(|| ()), 0);
}

#[test]
fn steady_state_steps_allocate_nothing() {
    let groups = [
        (
            "Adam-like",
            SimulatedGroups::adam(&[0.1, 0.01], (0.9, 0.999)),
        ),
        ("SGD-like", SimulatedGroups::sgd(&[0.1, 0.01], 0.9)),
    ];
    let mut failures = Vec::new();
    for (kind, g) in &groups {
        for (name, spec) in specs() {
            let n = steady_state_allocations(name, &spec, g);
            if n != 0 {
                failures.push(format!(
                    "{name} on {kind} groups: {n} allocations in {STEPS} steps"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The list above is tuned to cross each scheduler's interesting points; every entry of
/// the registry is also stepped at its example's arguments, so a new scheduler is
/// covered without editing a list here.
#[test]
fn every_registered_scheduler_steps_without_allocating() {
    let mut failures = Vec::new();
    for info in SCHEDULERS {
        let spec = spec(info.example);
        let groups = SimulatedGroups::sgd(&[0.1, 0.01], 0.9);
        let (n, _) = allocations_and_lrs(info.name, &spec, &groups, EXAMPLE_STEPS);
        if n != 0 {
            failures.push(format!(
                "{}: {n} allocations in {EXAMPLE_STEPS} steps",
                info.name
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_chain_keeps_betas_for_its_rollback_and_only_that_allocates() {
    let chain = spec(
        "ChainedScheduler(schedulers=[CyclicLR(base_lr=1e-3, max_lr=0.1, step_size_up=4), \
         ExponentialLR(gamma=0.95)])",
    );
    let lrs = [0.1, 0.01];
    // One copy of `betas` per group per step, kept by the chain.
    let adam = steady_state_allocations(
        "chain on Adam-like groups",
        &chain,
        &SimulatedGroups::adam(&lrs, (0.9, 0.999)),
    );
    assert_eq!(adam, (STEPS * lrs.len()) as u64);
    let sgd = steady_state_allocations(
        "chain on SGD-like groups",
        &chain,
        &SimulatedGroups::sgd(&lrs, 0.9),
    );
    assert_eq!(sgd, 0);
}
