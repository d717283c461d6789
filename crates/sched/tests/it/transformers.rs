//! transformers' named schedules through specs: transformers' documented numbers, its
//! state dict, and every argument it refuses.

use tempo_param_groups::{Dict, Value};
use tempo_sched::{build_scheduler, LRScheduler, SchedError, SchedulerSpec};

use crate::common::{build_spec, check_lr_sequence, check_resume, Drive, FakeOptimizer};

fn spec(s: &str) -> SchedulerSpec {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn build(s: &str, opt: &mut FakeOptimizer) -> Result<Box<dyn LRScheduler>, SchedError> {
    build_scheduler(&spec(s), opt)
}

/// SEMANTICS' verified values: the cosine rises again after `num_training_steps`, the
/// lr is an f64 product (`0.1 * 0.2`), `cosine_warmup_with_min_lr` is shifted by one
/// step, and polynomial ends at `group_lr * lr_end / default_lr`.
#[test]
fn transformers_documented_numbers() {
    let mut opt = FakeOptimizer::adam(&[0.1], (0.9, 0.999));
    let s = build(
        "transformers:cosine(num_warmup_steps=3, num_training_steps=10)",
        &mut opt,
    )
    .expect("build");
    let after: Vec<Vec<f64>> = (11..=13)
        .map(|t| s.lr_at(t).expect("closed form"))
        .collect();
    check_lr_sequence(
        "cosine after T",
        &after,
        &[vec![0.004952], vec![0.018826], vec![0.038874]],
        0.0,
        5e-7,
    );
    let mut opt = FakeOptimizer::adam(&[0.1], (0.9, 0.999));
    let mut s = build(
        "transformers:linear(num_warmup_steps=5, num_training_steps=10)",
        &mut opt,
    )
    .expect("build");
    s.step(&mut opt).expect("step");
    assert_eq!(opt.lrs()[0].to_bits(), 0.020000000000000004f64.to_bits());
    // cosine_warmup_with_min_lr: base / W at step 0, the minimum at T - 1.
    let mut opt = FakeOptimizer::adam(&[0.1], (0.9, 0.999));
    let s = build(
        "transformers:cosine_warmup_with_min_lr(num_warmup_steps=4, num_training_steps=10, \
         scheduler_specific_kwargs={'min_lr_rate': 0.1})",
        &mut opt,
    )
    .expect("build");
    check_lr_sequence("row 0", &[opt.lrs()], &[vec![0.025]], 1e-15, 0.0);
    check_lr_sequence(
        "minimum",
        &[s.lr_at(9).expect("closed form")],
        &[vec![0.01]],
        1e-12,
        0.0,
    );
    // polynomial: the optimizer's default lr 0.1, a group at 0.01 ends at 1e-4.
    let mut opt = FakeOptimizer::sgd(&[0.1, 0.01], 0.0);
    let s = build(
        "transformers:polynomial(num_warmup_steps=1, num_training_steps=5, \
         scheduler_specific_kwargs={'lr_end': 0.001}, optimizer_lr=0.1)",
        &mut opt,
    )
    .expect("build");
    check_lr_sequence(
        "polynomial end",
        &[s.lr_at(9).expect("closed form")],
        &[vec![0.001, 0.0001]],
        1e-12,
        0.0,
    );
}

/// The state dict is LambdaLR's, as transformers' (a partial is `{}`, `constant`'s
/// plain function `None`), and resuming through it is exact.
#[test]
fn transformers_state_dict_is_lambdalrs() {
    let mut opt = FakeOptimizer::sgd(&[0.1], 0.0);
    let s = build(
        "transformers:linear(num_warmup_steps=2, num_training_steps=8)",
        &mut opt,
    )
    .expect("build");
    let sd = s.state_dict();
    assert_eq!(
        sd.keys().collect::<Vec<_>>(),
        [
            "base_lrs",
            "last_epoch",
            "_step_count",
            "_is_initial",
            "_get_lr_called_within_step",
            "_last_lr",
            "lr_lambdas"
        ]
    );
    assert_eq!(
        sd.get("lr_lambdas"),
        Some(&Value::List(vec![Value::Dict(Dict::new())]))
    );
    let constant = build(
        "transformers:constant()",
        &mut FakeOptimizer::sgd(&[0.1], 0.0),
    )
    .expect("build")
    .state_dict();
    assert_eq!(
        constant.get("lr_lambdas"),
        Some(&Value::List(vec![Value::None]))
    );
    for s in [
        "transformers:cosine_with_restarts(num_warmup_steps=2, num_training_steps=14, num_cycles=3)",
        "transformers:warmup_stable_decay(num_warmup_steps=2, num_decay_steps=5, num_stable_steps=3, \
         warmup_type='cosine', decay_type='1-sqrt', min_lr_ratio=0.1)",
        "transformers:inverse_sqrt(num_warmup_steps=3, timescale=5)",
    ] {
        let s = spec(s);
        check_resume(
            &s.r#type,
            &build_spec(&s),
            &FakeOptimizer::adam(&[0.1, 0.02], (0.9, 0.999)),
            16,
            &Drive::Plain,
        );
    }
}

/// What transformers refuses (an unknown name, a missing length, an argument the
/// schedule does not take, polynomial's `lr_end`, the min-lr rule, `num_decay_steps`)
/// is an `Err` naming it; what it ignores is ignored.
#[test]
fn transformers_refusals_are_errs() {
    let refused = [
        ("transformers:cosinus(num_warmup_steps=1, num_training_steps=5)", "cosine_with_restarts"),
        ("transformers:linear(num_training_steps=5)", "num_warmup_steps"),
        ("transformers:cosine(num_warmup_steps=1)", "num_training_steps"),
        ("transformers:linear(num_warmup_steps=1, num_training_steps=5, power=2.0)", "power"),
        ("transformers:polynomial(num_warmup_steps=1, num_training_steps=5, lr_end=0.1)", "lr_end"),
        (
            "transformers:cosine_with_min_lr(num_warmup_steps=1, num_training_steps=5, min_lr=0.01, min_lr_rate=0.1)",
            "only one of min_lr",
        ),
        ("transformers:cosine_with_min_lr(num_warmup_steps=1, num_training_steps=5)", "one of min_lr"),
        ("transformers:warmup_stable_decay(num_warmup_steps=1, num_training_steps=5)", "num_decay_steps"),
        ("transformers:warmup_stable_decay(num_warmup_steps=1, num_decay_steps=5)", "num_stable_steps"),
        (
            "transformers:warmup_stable_decay(num_warmup_steps=1, num_decay_steps=2, num_training_steps=5, decay_type='exp')",
            "exp",
        ),
        (
            "transformers:cosine(num_warmup_steps=1, num_training_steps=5, num_cycles=1.0, \
             scheduler_specific_kwargs={'num_cycles': 2.0})",
            "twice",
        ),
        ("transformers:inverse_sqrt(num_warmup_steps=1, timescale=0)", "timescale"),
        ("transformers:greedy(num_warmup_steps=1)", "not one of"),
    ];
    for (call, what) in refused {
        let mut opt = FakeOptimizer::sgd(&[0.1], 0.0);
        let err = match build(call, &mut opt) {
            Ok(_) => panic!("{call}: built"),
            Err(e) => e,
        };
        assert!(err.to_string().contains(what), "{call}: {err}");
        assert_eq!(
            opt,
            FakeOptimizer::sgd(&[0.1], 0.0),
            "{call}: nothing written"
        );
    }
    // constant ignores everything; constant_with_warmup ignores its kwargs.
    let mut opt = FakeOptimizer::sgd(&[0.1], 0.0);
    build(
        "transformers:constant(num_warmup_steps=3, num_training_steps=9, \
         scheduler_specific_kwargs={'anything': 1})",
        &mut opt,
    )
    .expect("constant");
    check_lr_sequence("constant", &[opt.lrs()], &[vec![0.1]], 0.0, 0.0);
    let mut opt = FakeOptimizer::sgd(&[0.1], 0.0);
    build(
        "transformers:constant_with_warmup(num_warmup_steps=4, \
         scheduler_specific_kwargs={'anything': 1})",
        &mut opt,
    )
    .expect("constant_with_warmup");
    check_lr_sequence("warmup", &[opt.lrs()], &[vec![0.0]], 0.0, 0.0);
    // reduce_lr_on_plateau is ReduceLROnPlateau with the specific kwargs.
    let mut opt = FakeOptimizer::sgd(&[0.1], 0.0);
    let s = build(
        "transformers:reduce_lr_on_plateau(scheduler_specific_kwargs={'patience': 1})",
        &mut opt,
    )
    .expect("plateau");
    assert_eq!(s.name(), "ReduceLROnPlateau");
}
