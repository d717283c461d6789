//! Contract: k steps, save to a file (tempo format or `.pt`), load into fresh candle
//! variables, optimizer and scheduler, n - k steps: the same bits as n straight steps
//! (variables and the whole optimizer and scheduler state). And a restore that does not
//! fit changes nothing.

use candle_core::{DType, Device, Tensor, Var};
use proptest::prelude::*;
use serde_json::json;
use tempo_candle::{
    capture, load, restore, save, CandleError, CandleOptimizer, GroupRule, NamedVars, PtKeys,
};
use tempo_optim::OptimizerSpec;
use tempo_sched::{build_scheduler, LRScheduler, SchedulerSpec};

use crate::training::sched_mut;

const KINDS: &[(&str, &str)] = &[
    ("SGD", r#"{"lr": 0.05, "momentum": 0.9, "nesterov": true}"#),
    ("Adam", r#"{"lr": 0.01, "amsgrad": true}"#),
    ("AdamW", r#"{"lr": 0.01, "weight_decay": 0.1}"#),
    (
        "RMSprop",
        r#"{"lr": 0.01, "centered": true, "momentum": 0.5}"#,
    ),
    ("Adagrad", r#"{"lr": 0.1}"#),
    ("NAdam", r#"{"lr": 0.01}"#),
];

/// A two-layer net y = w2 tanh(w1 x + b1) on fixed data; variables from `seed`.
struct Net {
    vars: NamedVars,
    x: Tensor,
    y: Tensor,
}

fn net(seed: u64) -> Net {
    let f = |n: usize, k: u64| -> Vec<f32> {
        (0..n)
            .map(|i| ((i as u64 * 31 + k * 17 + seed) as f32 * 0.13).sin() * 0.5)
            .collect()
    };
    let data = |n: usize, k: u64| -> Vec<f32> {
        (0..n)
            .map(|i| ((i as u64 * 31 + k * 17) as f32 * 0.13).sin() * 0.5)
            .collect()
    };
    let dev = &Device::Cpu;
    let w1 = Var::from_vec(f(12, 1), (4, 3), dev).unwrap();
    let b1 = Var::from_vec(f(4, 2), 4, dev).unwrap();
    let w2 = Var::from_vec(f(8, 3), (2, 4), dev).unwrap();
    let vars = NamedVars::new()
        .with("fc1.weight", w1)
        .unwrap()
        .with("fc1.bias", b1)
        .unwrap()
        .with("fc2.weight", w2)
        .unwrap();
    Net {
        vars,
        // The data does not depend on the seed.
        x: Tensor::from_vec(data(15, 4), (5, 3), dev).unwrap(),
        y: Tensor::from_vec(data(10, 5), (5, 2), dev).unwrap(),
    }
}

struct Run {
    net: Net,
    opt: CandleOptimizer<f32>,
    sched: Option<Box<dyn LRScheduler>>,
}

fn fresh(kind: usize, seed: u64) -> Run {
    let net = net(seed);
    let (name, kwargs) = KINDS[kind];
    let spec: OptimizerSpec = serde_json::from_value(json!({
        "type": name, "kwargs": serde_json::from_str::<serde_json::Value>(kwargs).unwrap()
    }))
    .unwrap();
    let rules = [
        GroupRule::rest(),
        GroupRule::patterns(["*.bias"]).with("lr", 0.02),
    ];
    let mut opt = CandleOptimizer::new(&spec, &net.vars, &rules).unwrap();
    let sched: SchedulerSpec = "CosineAnnealingWarmRestarts(T_0=3, T_mult=2, eta_min=0.001)"
        .parse()
        .unwrap();
    let sched = Some(build_scheduler(&sched, &mut opt).unwrap());
    Run { net, opt, sched }
}

fn step(run: &mut Run) {
    let v: Vec<&Var> = run.net.vars.vars().collect();
    let h = run.net.x.matmul(&v[0].as_tensor().t().unwrap()).unwrap();
    let h = h.broadcast_add(v[1].as_tensor()).unwrap().tanh().unwrap();
    let pred = h.matmul(&v[2].as_tensor().t().unwrap()).unwrap();
    let loss = pred
        .sub(&run.net.y)
        .unwrap()
        .sqr()
        .unwrap()
        .mean_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    run.opt.step(&grads).unwrap();
    if let Some(s) = run.sched.as_mut() {
        s.step(&mut run.opt).unwrap();
    }
}

fn bits(run: &Run) -> Vec<u32> {
    run.net
        .vars
        .vars()
        .flat_map(|v| {
            v.as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        })
        .map(f32::to_bits)
        .collect()
}

fn check_resume(kind: usize, seed: u64, n: usize, k: usize, pt: bool) {
    let mut straight = fresh(kind, seed);
    for _ in 0..n {
        step(&mut straight);
    }
    let mut first = fresh(kind, seed);
    for _ in 0..k {
        step(&mut first);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(if pt { "run.pt" } else { "run.tempo" });
    let state = capture(
        &first.net.vars,
        Some(&first.opt),
        first.sched.as_deref(),
        1,
        k as i64,
    )
    .unwrap();
    save(&path, &state).unwrap();
    drop(first);
    let loaded = load(&path, &PtKeys::default()).unwrap();
    assert_eq!(loaded.step, k as i64);
    // Fresh objects from another seed: everything must come from the file.
    let mut second = fresh(kind, seed + 1);
    restore(
        &loaded,
        &second.net.vars,
        Some(&mut second.opt),
        sched_mut(&mut second.sched),
    )
    .unwrap();
    for _ in k..n {
        step(&mut second);
    }
    assert_eq!(bits(&straight), bits(&second));
    assert_eq!(straight.opt.state_dict(), second.opt.state_dict());
    assert_eq!(
        straight.sched.as_ref().map(|s| s.state_dict()),
        second.sched.as_ref().map(|s| s.state_dict())
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
    #[test]
    fn resume_is_exact(kind in 0..KINDS.len(), seed in 0u64..1000, n in 2usize..9, k in 1usize..8, pt: bool) {
        let k = k.min(n - 1);
        check_resume(kind, seed, n, k, pt);
    }
}

#[test]
fn a_restore_that_does_not_fit_changes_nothing() {
    let mut run = fresh(1, 7);
    for _ in 0..3 {
        step(&mut run);
    }
    let state = capture(&run.net.vars, Some(&run.opt), run.sched.as_deref(), 0, 3).unwrap();
    let mut other = fresh(1, 8);
    step(&mut other);
    let before = (
        bits(&other),
        other.opt.state_dict(),
        other.sched.as_ref().map(|s| s.state_dict()),
    );
    let unchanged = |o: &mut Run| {
        assert_eq!(bits(o), before.0);
        assert_eq!(o.opt.state_dict(), before.1);
        assert_eq!(o.sched.as_ref().map(|s| s.state_dict()), before.2);
    };

    let mut missing = state.clone();
    missing.model.retain(|(n, _)| n != "fc1.bias");
    let r = restore(
        &missing,
        &other.net.vars,
        Some(&mut other.opt),
        sched_mut(&mut other.sched),
    );
    assert!(
        matches!(&r, Err(CandleError::ModelMismatch { reason }) if reason.contains("missing key `fc1.bias`")),
        "{r:?}"
    );
    unchanged(&mut other);

    let mut extra = state.clone();
    extra
        .model
        .push(("fc3.weight".into(), extra.model[0].1.clone()));
    let r = restore(
        &extra,
        &other.net.vars,
        Some(&mut other.opt),
        sched_mut(&mut other.sched),
    );
    assert!(
        matches!(&r, Err(CandleError::ModelMismatch { reason }) if reason.contains("unexpected key `fc3.weight`")),
        "{r:?}"
    );
    unchanged(&mut other);

    let mut shape = state.clone();
    shape.model[2].1 = state.model[0].1.clone();
    let r = restore(
        &shape,
        &other.net.vars,
        Some(&mut other.opt),
        sched_mut(&mut other.sched),
    );
    assert!(
        matches!(&r, Err(CandleError::ModelMismatch { reason }) if reason.contains("`fc2.weight` has shape [4, 3] in the checkpoint, [2, 4]")),
        "{r:?}"
    );
    unchanged(&mut other);

    let mut groups = state.clone();
    if let Some(o) = groups.optimizer.as_mut() {
        o.param_groups.pop();
    }
    let r = restore(
        &groups,
        &other.net.vars,
        Some(&mut other.opt),
        sched_mut(&mut other.sched),
    );
    assert!(
        matches!(
            &r,
            Err(CandleError::Optim(
                tempo_optim::OptimError::GroupCountMismatch {
                    expected: 2,
                    got: 1
                }
            ))
        ),
        "{r:?}"
    );
    unchanged(&mut other);

    // A scheduler state that is refused puts the optimizer back.
    let mut sched = state.clone();
    sched.scheduler = Some(tempo_param_groups::Dict::new());
    let r = restore(
        &sched,
        &other.net.vars,
        Some(&mut other.opt),
        sched_mut(&mut other.sched),
    );
    assert!(matches!(&r, Err(CandleError::Sched(_))), "{r:?}");
    unchanged(&mut other);

    // f16 variables are refused when captured.
    let half = NamedVars::new()
        .with("h", Var::ones(2, DType::F16, &Device::Cpu).unwrap())
        .unwrap();
    let r = capture::<f32>(&half, None, None, 0, 0);
    assert!(
        matches!(&r, Err(CandleError::Unsupported { name, .. }) if name == "h"),
        "{r:?}"
    );
}
