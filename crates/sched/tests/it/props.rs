//! Mathematical contracts over random schedulers and compositions: resume after any k
//! steps equals the straight run; stepping equals the closed form; simulate equals
//! stepping a real set of groups.

use proptest::prelude::*;
use serde_json::json;
use tempo_param_groups::OptimizerParamGroups;
use tempo_sched::{build_scheduler, simulate_with_metrics, SchedulerSpec, SimulatedGroups};

use crate::common::{build_spec, run, Drive, FakeOptimizer};

fn leaf(name: &str, kwargs: serde_json::Value) -> SchedulerSpec {
    let mut s = SchedulerSpec::new(name);
    if let serde_json::Value::Object(m) = kwargs {
        s.kwargs = m;
    }
    s
}

/// Schedulers with a closed form that PyTorch's recursive form agrees with.
fn closed_form_leaf() -> impl Strategy<Value = SchedulerSpec> {
    prop_oneof![
        (1u64..5, 0.1f64..1.0).prop_map(|(s, g)| leaf("StepLR", json!({"step_size": s, "gamma": g}))),
        (proptest::collection::vec(0i64..15, 0..4), 0.1f64..1.0)
            .prop_map(|(m, g)| leaf("MultiStepLR", json!({"milestones": m, "gamma": g}))),
        (0.05f64..1.0, 0u64..8).prop_map(|(f, t)| leaf("ConstantLR", json!({"factor": f, "total_iters": t}))),
        (0.05f64..1.0, 0.0f64..1.0, 0u64..8)
            .prop_map(|(s, e, t)| leaf("LinearLR", json!({"start_factor": s, "end_factor": e, "total_iters": t}))),
        (0.5f64..1.0).prop_map(|g| leaf("ExponentialLR", json!({"gamma": g}))),
        (1u64..10, 0.5f64..3.0).prop_map(|(t, p)| leaf("PolynomialLR", json!({"total_iters": t, "power": p}))),
        (1u64..10, 0.0f64..0.01).prop_map(|(t, e)| leaf("CosineAnnealingLR", json!({"T_max": t, "eta_min": e}))),
        (1u64..5, 1u64..4, 0.0f64..0.01)
            .prop_map(|(t, m, e)| leaf("CosineAnnealingWarmRestarts", json!({"T_0": t, "T_mult": m, "eta_min": e}))),
        (0.001f64..0.01, 0.05f64..0.2, 1u64..5, 0u64..5, 0usize..3, any::<bool>(), 0.9f64..1.0).prop_map(
            |(b, m, up, down, mode, cm, g)| leaf(
                "CyclicLR",
                json!({"base_lr": b, "max_lr": m, "step_size_up": up, "step_size_down": down,
                       "mode": (["triangular", "triangular2", "exp_range"][mode]), "cycle_momentum": cm, "gamma": g})
            )
        ),
        (0.05f64..0.5, 0.2f64..0.45, any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(m, p, three, cos, cm)| leaf(
            "OneCycleLR",
            json!({"max_lr": m, "total_steps": 40, "pct_start": p, "three_phase": three,
                   "anneal_strategy": if cos { "cos" } else { "linear" }, "cycle_momentum": cm})
        )),
        (0.8f64..1.05).prop_map(|b| leaf("LambdaLR", json!({"lr_lambda": {"fn": "pow", "base": b}}))),
        (1u64..6).prop_map(|w| leaf("LambdaLR", json!({"lr_lambda": [{"fn": "warmup_linear", "warmup": w}, {"fn": "inv_sqrt"}]}))),
        (0.8f64..1.0).prop_map(|f| leaf("MultiplicativeLR", json!({"lr_lambda": {"fn": "const", "factor": f}}))),
        (0u64..5, 6u64..20, 0.0f64..0.001)
            .prop_map(|(w, t, m)| leaf("WarmupCosineLR", json!({"warmup_steps": w, "total_steps": t, "min_lr": m}))),
        (0u64..5, 0u64..5, 1u64..10, 0usize..3).prop_map(|(w, s, d, shape)| leaf(
            "WarmupStableDecayLR",
            json!({"warmup_steps": w, "stable_steps": s, "decay_steps": d, "decay": (["linear", "cosine", "1-sqrt"][shape])})
        )),
        (1u64..8).prop_map(|w| leaf("InverseSqrtLR", json!({"warmup_steps": w}))),
        transformers_leaf(),
    ]
}

/// transformers' named schedules, with random arguments (get_scheduler's kwargs).
fn transformers_leaf() -> impl Strategy<Value = SchedulerSpec> {
    let shape = || prop_oneof![Just("linear"), Just("cosine"), Just("1-sqrt")];
    let t = |name: &str, w: i64, t: Option<i64>, specific: serde_json::Value| {
        let mut kw = json!({"num_warmup_steps": w, "scheduler_specific_kwargs": specific});
        if let Some(t) = t {
            kw["num_training_steps"] = json!(t);
        }
        leaf(&format!("transformers:{name}"), kw)
    };
    prop_oneof![
        (0i64..5, 0i64..20).prop_map(move |(w, d)| t("linear", w, Some(w + d), json!({}))),
        (0i64..5, 0i64..20, 0.25f64..2.0)
            .prop_map(move |(w, d, nc)| t("cosine", w, Some(w + d), json!({"num_cycles": nc}))),
        (0i64..5, 0i64..20, 1i64..4).prop_map(move |(w, d, nc)| {
            t("cosine_with_restarts", w, Some(w + d), json!({"num_cycles": nc}))
        }),
        (0i64..5, 1i64..20, 0.5f64..3.0, 1e-6f64..1e-3).prop_map(move |(w, d, p, e)| {
            t("polynomial", w, Some(w + d), json!({"power": p, "lr_end": e}))
        }),
        Just(leaf("transformers:constant", json!({}))),
        (0i64..6).prop_map(move |w| t("constant_with_warmup", w, None, json!({}))),
        (0i64..6, proptest::option::of(1i64..12))
            .prop_map(move |(w, ts)| t("inverse_sqrt", w, None, json!({"timescale": ts}))),
        (0i64..5, 0i64..20, 0.0f64..0.3).prop_map(move |(w, d, r)| {
            t("cosine_with_min_lr", w, Some(w + d), json!({"min_lr_rate": r}))
        }),
        (0i64..5, 0i64..20, 0.0f64..0.3, proptest::option::of(0.0f64..0.5)).prop_map(
            move |(w, d, r, wr)| {
                t("cosine_warmup_with_min_lr", w, Some(w + d), json!({"min_lr_rate": r, "warmup_lr_rate": wr}))
            }
        ),
        (0i64..5, 1i64..8, 0i64..8, shape(), shape(), 0.0f64..0.2).prop_map(
            move |(w, d, s, up, down, m)| {
                t("warmup_stable_decay", w, Some(w + s + d), json!({
                    "num_decay_steps": d, "warmup_type": up, "decay_type": down, "min_lr_ratio": m
                }))
            }
        ),
    ]
}

/// A leaf built with `last_epoch` (the groups then need `initial_lr`, which
/// [`groups`] gives half the time).
fn resumed_leaf() -> impl Strategy<Value = SchedulerSpec> {
    (closed_form_leaf(), 0i64..12).prop_map(|(mut s, k)| {
        if s.r#type.starts_with("transformers:") {
            s.kwargs.insert("last_epoch".into(), k.into());
        } else {
            s = s.kwarg("last_epoch", k);
        }
        s
    })
}

/// Every leaf, including those without a closed form.
fn any_leaf() -> impl Strategy<Value = SchedulerSpec> {
    prop_oneof![
        4 => closed_form_leaf(),
        1 => resumed_leaf(),
        1 => (0.01f64..0.05, 0u64..5, any::<bool>()).prop_map(|(s, a, cos)| leaf(
            "SWALR",
            json!({"swa_lr": s, "anneal_epochs": a, "anneal_strategy": if cos { "cos" } else { "linear" }})
        )),
        1 => (0u64..3, 0u64..3, 0.1f64..0.9, any::<bool>()).prop_map(|(p, c, f, max)| leaf(
            "ReduceLROnPlateau",
            json!({"patience": p, "cooldown": c, "factor": f, "mode": if max { "max" } else { "min" }})
        )),
    ]
}

fn sequential(children: Vec<SchedulerSpec>, gaps: Vec<i64>) -> SchedulerSpec {
    let mut at = 0;
    let milestones: Vec<i64> = gaps
        .iter()
        .take(children.len() - 1)
        .map(|g| {
            at += g;
            at
        })
        .collect();
    leaf("SequentialLR", json!({"milestones": milestones})).children(children)
}

fn seq() -> BoxedStrategy<SchedulerSpec> {
    (
        proptest::collection::vec(any_leaf(), 1..4),
        proptest::collection::vec(1i64..8, 3),
    )
        .prop_map(|(c, g)| sequential(c, g))
        .boxed()
}

fn chained() -> BoxedStrategy<SchedulerSpec> {
    proptest::collection::vec(any_leaf(), 1..3)
        .prop_map(|c| SchedulerSpec::new("ChainedScheduler").children(c))
        .boxed()
}

/// Leaves, SequentialLR, ChainedScheduler, and composites nested in a SequentialLR.
fn composition() -> impl Strategy<Value = SchedulerSpec> {
    prop_oneof![
        3 => any_leaf(),
        2 => seq(),
        1 => chained(),
        1 => (prop_oneof![seq(), chained()], any_leaf(), chained(), proptest::collection::vec(1i64..8, 3))
            .prop_map(|(a, b, c, g)| sequential(vec![a, b, c], g)),
    ]
}

/// Two fresh groups, SGD-like or Adam-like.
fn fresh_groups() -> impl Strategy<Value = FakeOptimizer> {
    (proptest::collection::vec(0.01f64..1.0, 2), any::<bool>()).prop_map(|(lrs, adam)| {
        if adam {
            FakeOptimizer::adam(&lrs, (0.9, 0.999))
        } else {
            FakeOptimizer::sgd(&lrs, 0.9)
        }
    })
}

/// Two groups, SGD-like or Adam-like, half the time holding `initial_lr` (as a resumed
/// run's do).
fn groups() -> impl Strategy<Value = FakeOptimizer> {
    (
        proptest::collection::vec(0.01f64..1.0, 2),
        any::<bool>(),
        proptest::option::of(proptest::collection::vec(0.01f64..1.0, 2)),
    )
        .prop_map(|(lrs, adam, initial)| {
            let mut opt = if adam {
                FakeOptimizer::adam(&lrs, (0.9, 0.999))
            } else {
                FakeOptimizer::sgd(&lrs, 0.9)
            };
            for (g, &v) in initial.iter().flatten().enumerate() {
                opt.set_initial_lr(g, v).expect("a group");
            }
            opt
        })
}

fn bits(rows: &[Vec<f64>]) -> Vec<Vec<u64>> {
    rows.iter()
        .map(|r| r.iter().map(|x| x.to_bits()).collect())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// k steps, save, fresh objects (with or without initial_lr in the restored groups),
    /// load, the rest == the straight run, bit for bit, lr and momentum.
    #[test]
    fn resume_after_any_k_is_the_straight_run(
        spec in composition(),
        fresh in groups(),
        metrics in proptest::collection::vec(0.0f64..1.0, 30),
        k in 1usize..30,
        drop_initial_lr in any::<bool>(),
    ) {
        let build = build_spec(&spec);
        let drive = Drive::Metrics(metrics);
        let straight = run(&build, &fresh, 30, &drive, None, false);
        let resumed = run(&build, &fresh, 30, &drive, Some(k), drop_initial_lr);
        match (straight, resumed) {
            (Ok((l1, m1)), Ok((l2, m2))) => {
                prop_assert_eq!(bits(&l1), bits(&l2), "{:?}", spec);
                prop_assert_eq!(m1, m2);
            }
            (Err(e1), Err(e2)) => prop_assert_eq!(e1, e2),
            (a, b) => prop_assert!(false, "{:?}: straight {:?}, resumed {:?}", spec, a.map(|_| ()), b.map(|_| ())),
        }
    }

    /// Stepping equals the closed form `lr_at` to 1e-12 relative.
    #[test]
    fn stepping_equals_the_closed_form(spec in closed_form_leaf(), fresh in fresh_groups()) {
        let mut opt = fresh.clone();
        let mut s = build_scheduler(&spec, &mut opt).expect("valid spec");
        for t in 0..30u64 {
            if t > 0 {
                s.step(&mut opt).expect("step");
            }
            let closed = s.lr_at(t).expect("a closed form");
            for (g, (a, b)) in opt.lrs().iter().zip(&closed).enumerate() {
                prop_assert!((a - b).abs() <= 1e-12 * b.abs() + 1e-17, "{:?} step {} group {}: stepped {:e}, closed {:e}", spec, t, g, a, b);
            }
        }
    }

    /// SequentialLR's closed form: each child's, from its milestone on.
    #[test]
    fn sequential_closed_form(first in closed_form_leaf(), second in closed_form_leaf(), m in 1i64..12) {
        // A restart multiplies MultiplicativeLR's current lr; OneCycleLR rewrites the
        // initial_lr the first child starts from (both as in PyTorch).
        prop_assume!(second.r#type != "MultiplicativeLR" && second.r#type != "OneCycleLR");
        // ConstantLR(total_iters=0): PyTorch's closed form (used at the switch) says base,
        // its steps say base * factor.
        prop_assume!(!(second.r#type == "ConstantLR" && second.kwargs["total_iters"] == 0));
        let spec = sequential(vec![first, second], vec![m]);
        let mut opt = FakeOptimizer::sgd(&[0.5, 0.05], 0.9);
        let mut s = build_scheduler(&spec, &mut opt).expect("valid spec");
        for t in 0..25u64 {
            if t > 0 {
                s.step(&mut opt).expect("step");
            }
            let closed = s.lr_at(t).expect("a closed form");
            for (a, b) in opt.lrs().iter().zip(&closed) {
                prop_assert!((a - b).abs() <= 1e-12 * b.abs() + 1e-17, "{:?} step {}: stepped {:e}, closed {:e}", spec, t, a, b);
            }
        }
    }

    /// simulate() on SimulatedGroups is the run on an optimizer's groups.
    #[test]
    fn simulate_is_stepping(spec in composition(), lrs in proptest::collection::vec(0.01f64..1.0, 2), metrics in proptest::collection::vec(0.0f64..1.0, 12)) {
        let fresh = FakeOptimizer::sgd(&lrs, 0.9);
        let build = build_spec(&spec);
        let stepped = run(&build, &fresh, 12, &Drive::Metrics(metrics.clone()), None, false);
        let simulated = simulate_with_metrics(&spec, &SimulatedGroups::sgd(&lrs, 0.9), &metrics);
        match (stepped, simulated) {
            (Ok((l, m)), Ok(t)) => {
                prop_assert_eq!(bits(&l), bits(&t.lr));
                prop_assert_eq!(m, t.momentum);
            }
            (Err(e1), Err(e2)) => prop_assert_eq!(e1, e2),
            (a, b) => prop_assert!(false, "stepped {:?}, simulated {:?}", a.map(|_| ()), b.map(|_| ())),
        }
    }
}

/// PyTorch's triangular2 raises OverflowError after ~1000 cycles (`2.0 ** x`); tempo's
/// scale reaches 0 and the lr is base_lr.
#[test]
fn triangular2_never_overflows() {
    let spec: SchedulerSpec =
        "CyclicLR(base_lr=0.001, max_lr=0.1, step_size_up=1, mode='triangular2', cycle_momentum=False)"
            .parse()
            .expect("spec");
    let mut opt = FakeOptimizer::adam(&[0.1], (0.9, 0.999));
    let mut s = build_scheduler(&spec, &mut opt).expect("build");
    for t in 1..=2600u64 {
        s.step(&mut opt).expect("no overflow");
        let lr = opt.lrs()[0];
        assert!(lr.is_finite() && lr >= 0.001, "step {t}: {lr}");
        if t > 2 * 1100 {
            assert_eq!(
                lr.to_bits(),
                0.001f64.to_bits(),
                "step {t}: past 1100 cycles the lr is base_lr"
            );
        }
    }
    assert_eq!(
        s.lr_at(1_000_001).map(|v| v[0].to_bits()),
        Some(0.001f64.to_bits())
    );
}
