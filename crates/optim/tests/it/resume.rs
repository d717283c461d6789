//! Contract: for any hyperparameters, k steps, a state-dict round trip into a fresh
//! optimizer over fresh parameters, then n-k steps gives the same bits as n straight
//! steps (parameters and the whole final state dict).

use ndarray::ArrayD;
use proptest::prelude::*;
use serde_json::{json, Value as Json};
use tempo_optim::{
    build_optimizer, OptimError, Optimizer, OptimizerSpec, OptimizerStateDict, OPTIMIZERS,
};
use tempo_tensor::{Float, Tensor};

/// A small deterministic generator (xorshift64*), so a failing seed reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
    fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }
    fn normal(&mut self) -> f64 {
        // Box-Muller; good enough for test data.
        let u = self.unit().max(1e-12);
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * self.unit()).cos()
    }
    fn maybe_zero(&mut self, hi: f64) -> f64 {
        if self.coin() {
            0.0
        } else {
            self.range(0.0, hi)
        }
    }
}

/// How an optimizer of the registry can be stepped in these tests.
struct Probe {
    name: &'static str,
    /// It steps without a closure (all but LBFGS).
    stepped: bool,
    /// It takes vectors (Muon takes matrices only).
    vectors: bool,
}

/// Every optimizer of the registry, probed with its defaults: a new entry is tested
/// without editing a list.
fn probes() -> Vec<Probe> {
    OPTIMIZERS
        .iter()
        .map(|o| {
            let spec: OptimizerSpec =
                serde_json::from_value(json!({"type": o.name})).expect("spec");
            let m = Tensor::<f64>::parameter(ArrayD::from_elem(vec![2, 2], 0.5));
            m.set_grad(Some(ArrayD::from_elem(vec![2, 2], 0.1)))
                .expect("grad");
            let mut opt = build_optimizer(&spec, std::slice::from_ref(&m)).expect("build");
            let stepped = !matches!(opt.step(), Err(OptimError::ClosureRequired { .. }));
            let v = Tensor::<f64>::parameter(ArrayD::from_elem(vec![3], 0.5));
            let vectors = !matches!(
                build_optimizer(&spec, &[v]),
                Err(OptimError::UnsupportedParamShape { .. })
            );
            Probe {
                name: o.name,
                stepped,
                vectors,
            }
        })
        .collect()
}

/// Every optimizer stepped without a closure.
pub(crate) fn all_stepped() -> Vec<&'static str> {
    probes()
        .into_iter()
        .filter(|p| p.stepped)
        .map(|p| p.name)
        .collect()
}

/// Every optimizer stepped without a closure over parameters of any shape.
pub(crate) fn stepped_over_vectors() -> Vec<&'static str> {
    probes()
        .into_iter()
        .filter(|p| p.stepped && p.vectors)
        .map(|p| p.name)
        .collect()
}

/// Random valid kwargs for `kind`.
fn kwargs(kind: &str, r: &mut Rng) -> Json {
    let lr = r.range(1e-3, 0.2);
    let betas = json!([r.range(0.0, 0.99), r.range(0.9, 0.9999)]);
    match kind {
        "SGD" => {
            let nesterov = r.coin();
            let momentum = if nesterov {
                r.range(0.1, 0.99)
            } else {
                r.maybe_zero(0.99)
            };
            let dampening = if nesterov { 0.0 } else { r.maybe_zero(0.5) };
            json!({"lr": lr, "momentum": momentum, "dampening": dampening, "weight_decay": r.maybe_zero(0.1),
                   "nesterov": nesterov, "maximize": r.coin()})
        }
        "Adam" => {
            json!({"lr": lr, "betas": betas, "eps": r.range(1e-10, 1e-4), "weight_decay": r.maybe_zero(0.1),
                         "amsgrad": r.coin(), "maximize": r.coin(), "decoupled_weight_decay": r.coin()})
        }
        "AdamW" => {
            json!({"lr": lr, "betas": betas, "eps": r.range(1e-10, 1e-4), "weight_decay": r.maybe_zero(0.1),
                          "amsgrad": r.coin(), "maximize": r.coin()})
        }
        "Adagrad" => {
            json!({"lr": lr, "lr_decay": r.maybe_zero(0.1), "weight_decay": r.maybe_zero(0.1),
                            "initial_accumulator_value": r.maybe_zero(0.5), "eps": r.range(1e-12, 1e-6), "maximize": r.coin()})
        }
        "Adadelta" => {
            json!({"lr": r.range(0.1, 1.0), "rho": r.range(0.0, 1.0), "eps": r.range(1e-8, 1e-4),
                             "weight_decay": r.maybe_zero(0.1), "maximize": r.coin()})
        }
        "Adamax" => {
            json!({"lr": lr, "betas": betas, "eps": r.range(1e-10, 1e-4), "weight_decay": r.maybe_zero(0.1),
                           "maximize": r.coin()})
        }
        "NAdam" => {
            json!({"lr": lr, "betas": betas, "eps": r.range(1e-10, 1e-4), "weight_decay": r.maybe_zero(0.1),
                          "momentum_decay": r.range(0.0, 0.01), "decoupled_weight_decay": r.coin(), "maximize": r.coin()})
        }
        "RAdam" => {
            json!({"lr": lr, "betas": json!([r.range(0.0, 0.99), r.range(0.5, 0.9)]), "eps": r.range(1e-10, 1e-4),
                          "weight_decay": r.maybe_zero(0.1), "decoupled_weight_decay": r.coin(), "maximize": r.coin()})
        }
        "RMSprop" => {
            json!({"lr": lr, "alpha": r.range(0.5, 0.999), "eps": r.range(1e-10, 1e-4), "weight_decay": r.maybe_zero(0.1),
                            "momentum": r.maybe_zero(0.9), "centered": r.coin(), "maximize": r.coin()})
        }
        "Rprop" => json!({"lr": lr, "etas": [r.range(0.1, 0.9), r.range(1.1, 2.0)],
                          "step_sizes": [r.range(1e-7, 1e-3), r.range(0.1, 50.0)], "maximize": r.coin()}),
        "ASGD" => {
            json!({"lr": lr, "lambd": r.maybe_zero(1e-2), "alpha": r.range(0.0, 1.0), "t0": r.range(0.0, 5.0),
                         "weight_decay": r.maybe_zero(0.1), "maximize": r.coin()})
        }
        "Adafactor" => {
            let eps1 = if r.coin() {
                Json::Null
            } else {
                json!(r.range(0.0, 1e-6))
            };
            json!({"lr": lr, "beta2_decay": r.range(-1.0, 0.0), "eps": [eps1, r.range(0.0, 1e-2)],
                   "d": r.range(1.0, 3.0), "weight_decay": r.maybe_zero(0.1), "maximize": r.coin()})
        }
        "Muon" => {
            let adjust = [
                Json::Null,
                json!("original"),
                json!("match_rms_adamw"),
                json!("spectral_unclamped"),
            ][(r.next() % 4) as usize]
                .clone();
            json!({"lr": lr, "weight_decay": r.maybe_zero(0.2), "momentum": r.range(0.0, 0.99),
                   "nesterov": r.coin(), "ns_steps": (r.next() % 7) as i64, "eps": r.range(1e-9, 1e-6),
                   "adjust_lr_fn": adjust})
        }
        // A new optimizer is tested at its defaults until it has a generator.
        _ => json!({}),
    }
}

/// Per step, per parameter: its gradient, or `None` (no gradient this step).
type Plan = Vec<Vec<Option<Vec<f64>>>>;

pub(crate) const SHAPES: &[&[usize]] = &[&[3, 2], &[4], &[1]];

/// The parameters' shapes for `kind`: Adafactor gets a 3-D parameter too (factored
/// over its last two dims); an optimizer of matrices only (Muon) gets tall, wide and
/// square ones.
fn shapes(kind: &str) -> &'static [&'static [usize]] {
    match kind {
        "Adafactor" => &[&[3, 2], &[2, 3, 2], &[1]],
        _ if stepped_over_vectors().contains(&kind) => SHAPES,
        _ => &[&[3, 2], &[2, 5], &[4, 4]],
    }
}

fn fresh<T: Float>(kind: &str, init: &[Vec<f64>]) -> Vec<Tensor<T>> {
    init.iter()
        .zip(shapes(kind))
        .map(|(d, s)| {
            Tensor::parameter(
                ArrayD::from_shape_vec(
                    s.to_vec(),
                    d.iter().map(|&x| <T as Float>::from_f64(x)).collect(),
                )
                .expect("data fills the shape"),
            )
        })
        .collect()
}

fn bits<T: Float>(t: &Tensor<T>) -> Vec<u64> {
    t.data()
        .iter()
        .map(|&x| <T as Float>::to_f64(x).to_bits())
        .collect()
}

/// Sets grads (`None` where the plan says so) and steps.
fn step<T: Float>(
    opt: &mut dyn Optimizer<T>,
    params: &[Tensor<T>],
    grads: &[Option<Vec<f64>>],
) -> Result<(), OptimError> {
    for (p, g) in params.iter().zip(grads) {
        let s = p.shape();
        let g = g.as_ref().map(|g| {
            ArrayD::from_shape_vec(
                s.to_vec(),
                g.iter().map(|&x| <T as Float>::from_f64(x)).collect(),
            )
            .expect("grad fills the shape")
        });
        p.set_grad(g)?;
    }
    opt.step()?;
    Ok(())
}

/// Runs `plan` straight, and with a round trip after step `k`; returns both outcomes.
pub(crate) fn check_resume<T: Float>(
    spec: &OptimizerSpec,
    init: &[Vec<f64>],
    plan: &Plan,
    k: usize,
) -> Result<(), String> {
    let e = |e: OptimError| e.to_string();
    let kind = spec.kind.as_str();
    let straight_params = fresh::<T>(kind, init);
    let mut straight = build_optimizer(spec, &straight_params).map_err(e)?;
    for g in plan {
        step(straight.as_mut(), &straight_params, g).map_err(e)?;
    }
    let mut params = fresh::<T>(kind, init);
    let mut opt = build_optimizer(spec, &params).map_err(e)?;
    for g in &plan[..k] {
        step(opt.as_mut(), &params, g).map_err(e)?;
    }
    let sd: OptimizerStateDict = opt.state_dict();
    let saved: Vec<Vec<T>> = params
        .iter()
        .map(|p| p.data().iter().copied().collect())
        .collect();
    params = fresh::<T>(kind, init);
    for (p, v) in params.iter().zip(&saved) {
        for (x, &y) in p.data_mut().iter_mut().zip(v) {
            *x = y;
        }
    }
    let mut opt = build_optimizer(spec, &params).map_err(e)?;
    opt.load_state_dict(&sd).map_err(e)?;
    for g in &plan[k..] {
        step(opt.as_mut(), &params, g).map_err(e)?;
    }
    for (i, (a, b)) in straight_params.iter().zip(&params).enumerate() {
        if bits(a) != bits(b) {
            return Err(format!(
                "param {i} differs after resume at {k}: {:?} vs {:?}",
                a.data(),
                b.data()
            ));
        }
    }
    if straight.state_dict() != opt.state_dict() {
        return Err(format!("state dicts differ after resume at {k}"));
    }
    Ok(())
}

fn scenario(kind: &str, seed: u64, n: usize) -> (OptimizerSpec, Vec<Vec<f64>>, Plan) {
    let mut r = Rng(seed | 1);
    let kw = kwargs(kind, &mut r);
    let lr2 = kw.get("lr").and_then(Json::as_f64).unwrap_or(0.01) * 0.5;
    let spec = serde_json::from_value(json!({
        "type": kind, "kwargs": kw,
        "groups": [{"params": [0, 2]}, {"params": [1], "lr": lr2}]
    }))
    .expect("a valid spec");
    let sizes: Vec<usize> = shapes(kind).iter().map(|s| s.iter().product()).collect();
    let init = sizes
        .iter()
        .map(|&m| (0..m).map(|_| r.normal()).collect())
        .collect();
    let plan = (0..n)
        .map(|_| {
            sizes
                .iter()
                .map(|&m| (r.unit() < 0.8).then(|| (0..m).map(|_| r.normal()).collect()))
                .collect()
        })
        .collect();
    (spec, init, plan)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn resume_after_any_step_is_exact(which in 0..all_stepped().len(), seed in any::<u64>(), n in 1usize..8, k_frac in 0.0f64..=1.0, f32_params in any::<bool>()) {
        let kind = all_stepped()[which];
        let k = ((n as f64) * k_frac).floor() as usize;
        let (spec, init, plan) = scenario(kind, seed, n);
        let r = if f32_params { check_resume::<f32>(&spec, &init, &plan, k) } else { check_resume::<f64>(&spec, &init, &plan, k) };
        prop_assert!(r.is_ok(), "{kind} (seed {seed}, n {n}, k {k}): {}", r.err().unwrap_or_default());
    }
}

#[test]
fn every_stepped_optimizer_resumes_exactly() {
    // A deterministic sweep, so every optimizer is covered on every run.
    for (i, kind) in all_stepped().iter().enumerate() {
        for k in 0..=4 {
            let (spec, init, plan) = scenario(kind, 1000 + i as u64 * 7 + k as u64, 4);
            check_resume::<f32>(&spec, &init, &plan, k)
                .unwrap_or_else(|e| panic!("{kind} f32: {e}"));
            check_resume::<f64>(&spec, &init, &plan, k)
                .unwrap_or_else(|e| panic!("{kind} f64: {e}"));
        }
    }
}

/// LBFGS: k closure calls, round trip, the rest == straight (quadratic objective).
#[test]
fn lbfgs_resumes_exactly() {
    fn closure(x: Tensor<f64>) -> impl FnMut() -> Result<f64, OptimError> {
        move || {
            let v: Vec<f64> = x.data().iter().copied().collect();
            // f = sum_i (i+1) (x_i - 1)^2 + x_0 x_1
            let loss = v
                .iter()
                .enumerate()
                .map(|(i, &xi)| (i as f64 + 1.0) * (xi - 1.0).powi(2))
                .sum::<f64>()
                + v[0] * v[1];
            let mut g: Vec<f64> = v
                .iter()
                .enumerate()
                .map(|(i, &xi)| 2.0 * (i as f64 + 1.0) * (xi - 1.0))
                .collect();
            g[0] += v[1];
            g[1] += v[0];
            x.set_grad(Some(
                ArrayD::from_shape_vec(vec![v.len()], g).expect("shape"),
            ))?;
            Ok(loss)
        }
    }
    for line_search in [Json::Null, json!("strong_wolfe")] {
        let spec: OptimizerSpec = serde_json::from_value(json!({
            "type": "LBFGS", "kwargs": {"lr": 0.5, "max_iter": 3, "history_size": 2, "line_search_fn": line_search}
        }))
        .expect("spec");
        let init = || {
            Tensor::parameter(ArrayD::from_shape_vec(vec![3], vec![3.0, -2.0, 0.5]).expect("shape"))
        };
        let xs = init();
        let mut straight = build_optimizer(&spec, std::slice::from_ref(&xs)).expect("build");
        let mut c = closure(xs.clone());
        for _ in 0..5 {
            straight.step_with_closure(&mut c).expect("step");
        }
        let x = init();
        let mut opt = build_optimizer(&spec, std::slice::from_ref(&x)).expect("build");
        let mut c = closure(x.clone());
        for _ in 0..2 {
            opt.step_with_closure(&mut c).expect("step");
        }
        let sd = opt.state_dict();
        let x2 = init();
        for (a, &b) in x2.data_mut().iter_mut().zip(x.data().iter()) {
            *a = b;
        }
        let mut opt = build_optimizer(&spec, std::slice::from_ref(&x2)).expect("build");
        opt.load_state_dict(&sd).expect("load");
        let mut c = closure(x2.clone());
        for _ in 0..3 {
            opt.step_with_closure(&mut c).expect("step");
        }
        assert_eq!(
            bits(&xs),
            bits(&x2),
            "LBFGS ({line_search}) resumed run differs"
        );
        assert_eq!(straight.state_dict(), opt.state_dict());
    }
}
