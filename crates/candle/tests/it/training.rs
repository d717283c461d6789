//! PyTorch's training traces with the model built in candle: candle-nn `Linear`s with
//! the case's initial weights, a tempo optimizer over their `Var`s, a tempo scheduler.
//! Losses, lrs, final parameters and param groups match PyTorch's, at the cases' own
//! tolerances (f64: 1e-9/1e-10; f32: 1e-4 or 1e-5). Each case resumes mid-run through
//! a tempo checkpoint and a `.pt` into fresh candle objects; PyTorch's own
//! `seed_epoch5_*.pt` loads into the candle net and continues to PyTorch's numbers.
//!
//! candle's matmul (the gemm crate) may sum a dot product in another order than
//! PyTorch's MKL; these cases' tolerances hold all the same (their layers are at most
//! 20 wide, so a reordered sum moves the last bits only), and none is loosened here.

use candle_core::{DType, Device, Module, Tensor, Var};
use candle_nn::Linear;
use serde_json::Value as Json;
use tempo_candle::{capture, load, restore, save, CandleFloat, CandleOptimizer, NamedVars, PtKeys};
use tempo_optim::OptimizerSpec;
use tempo_param_groups::{OptimizerParamGroups, Value};
use tempo_sched::{build_scheduler, LRScheduler, SchedulerSpec};
use tempo_testkit::{
    cases_dir, checkpoints_dir, close, first_mismatch, load_case, Case, Tolerance,
};

/// The case's model in candle: its variables (in PyTorch's `parameters()` order) and
/// its layers.
pub(crate) struct Net {
    pub(crate) vars: NamedVars,
    layers: Vec<Layer>,
}

enum Layer {
    Linear(Linear),
    Relu,
    Tanh,
}

impl Net {
    pub(crate) fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut h = x.clone();
        for l in &self.layers {
            h = match l {
                Layer::Linear(m) => m.forward(&h)?,
                Layer::Relu => h.relu()?,
                Layer::Tanh => h.tanh()?,
            };
        }
        Ok(h)
    }
}

fn dtype<T: CandleFloat>() -> DType {
    <T as candle_core::WithDType>::DTYPE
}

fn tensor<T: CandleFloat>(shape: &[usize], data: &[f64]) -> Tensor {
    Tensor::from_vec(data.to_vec(), shape, &Device::Cpu)
        .and_then(|t| t.to_dtype(dtype::<T>()))
        .unwrap()
}

pub(crate) fn build_net<T: CandleFloat>(case: &Case) -> Net {
    let model = &case.raw["model"];
    let init = &case.raw["init"];
    let mut vars = NamedVars::new();
    let mut layers = Vec::new();
    let spec = model["layers"].as_array().unwrap();
    let activation = model["activation"].as_str();
    for (i, layer) in spec.iter().enumerate() {
        let name = layer[0].as_str().unwrap();
        match name {
            "relu" => layers.push(Layer::Relu),
            "tanh" => layers.push(Layer::Tanh),
            _ => {
                let var = |key: &str| {
                    let e = &init[format!("{name}.{key}")];
                    let shape: Vec<usize> = serde_json::from_value(e["shape"].clone()).unwrap();
                    let data: Vec<f64> = serde_json::from_value(e["data"].clone()).unwrap();
                    Var::from_tensor(&tensor::<T>(&shape, &data)).unwrap()
                };
                let (w, b) = (var("weight"), var("bias"));
                vars.push(&format!("{name}.weight"), w.clone()).unwrap();
                vars.push(&format!("{name}.bias"), b.clone()).unwrap();
                layers.push(Layer::Linear(Linear::new(
                    w.as_tensor().clone(),
                    Some(b.as_tensor().clone()),
                )));
                if let (Some(act), true) = (activation, i + 1 < spec.len()) {
                    layers.push(if act == "relu" {
                        Layer::Relu
                    } else {
                        Layer::Tanh
                    });
                }
            }
        }
    }
    Net { vars, layers }
}

pub(crate) fn optimizer_spec(case: &Case) -> OptimizerSpec {
    let mut raw = case.optimizer.clone().unwrap();
    if let Some(kw) = raw.get_mut("kwargs").and_then(Json::as_object_mut) {
        kw.entry("foreach").or_insert(Json::Bool(false));
    }
    serde_json::from_value(raw).unwrap()
}

pub(crate) struct Run<T: CandleFloat> {
    pub(crate) net: Net,
    pub(crate) opt: CandleOptimizer<T>,
    pub(crate) sched: Option<Box<dyn LRScheduler>>,
}

pub(crate) fn fresh<T: CandleFloat>(case: &Case) -> Run<T> {
    let net = build_net::<T>(case);
    let mut opt = CandleOptimizer::<T>::new(&optimizer_spec(case), &net.vars, &[]).unwrap();
    let sched = match &case.scheduler {
        None | Some(Json::Null) => None,
        Some(s) => {
            let spec: SchedulerSpec = serde_json::from_value(s.clone()).unwrap();
            Some(build_scheduler(&spec, &mut opt).unwrap())
        }
    };
    Run { net, opt, sched }
}

pub(crate) fn sched_mut(s: &mut Option<Box<dyn LRScheduler>>) -> Option<&mut dyn LRScheduler> {
    match s {
        Some(b) => Some(&mut **b),
        None => None,
    }
}

fn lrs<T: CandleFloat>(opt: &CandleOptimizer<T>) -> Vec<f64> {
    let mut out = Vec::new();
    opt.lrs_into(&mut out).unwrap();
    out
}

fn scalar(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

/// Saves the run (tempo format, then `.pt`), loads it into fresh candle objects.
fn resume<T: CandleFloat>(case: &Case, run: Run<T>, epoch: i64) -> Run<T> {
    let dir = tempfile::tempdir().unwrap();
    let state = capture(
        &run.net.vars,
        Some(&run.opt),
        run.sched.as_deref(),
        epoch,
        0,
    )
    .unwrap();
    save(dir.path().join("a.tempo"), &state).unwrap();
    let back = load(dir.path().join("a.tempo"), &PtKeys::default()).unwrap();
    save(dir.path().join("a.pt"), &back).unwrap();
    let back = load(dir.path().join("a.pt"), &PtKeys::default()).unwrap();
    assert_eq!(back, state);
    let mut next = fresh::<T>(case);
    restore(
        &back,
        &next.net.vars,
        Some(&mut next.opt),
        sched_mut(&mut next.sched),
    )
    .unwrap();
    next
}

/// One epoch of the seed scenario: forward, `sum(target - prediction)`, step.
fn seed_epoch<T: CandleFloat>(run: &mut Run<T>, x: &Tensor, targets: &[f64]) -> f64 {
    let pred = run.net.forward(x).unwrap();
    let target = tensor::<T>(pred.dims(), targets);
    let loss = target.sub(&pred).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    run.opt.step(&grads).unwrap();
    scalar(&loss)
}

fn step_scheduler<T: CandleFloat>(run: &mut Run<T>) {
    if let Some(s) = run.sched.as_mut() {
        s.step(&mut run.opt).unwrap();
    }
}

fn seed_input<T: CandleFloat>(case: &Case) -> (Tensor, Vec<Vec<f64>>) {
    let input: Vec<f64> = serde_json::from_value(case.raw["input"].clone()).unwrap();
    let targets = serde_json::from_value(case.raw["targets"].clone()).unwrap();
    (tensor::<T>(&[1, input.len()], &input), targets)
}

fn check(what: &str, got: &[f64], want: &[f64], tol: Tolerance) {
    if let Some(m) = first_mismatch(got, want, tol) {
        panic!("{what}: {m}");
    }
}

fn value_matches(v: &Value, w: &Json, tol: Tolerance) -> bool {
    match (v, w) {
        (Value::None, Json::Null) => true,
        (Value::Bool(a), Json::Bool(b)) => a == b,
        (Value::Str(a), Json::String(b)) => a == b,
        (Value::Int(a), Json::Number(n)) => n.as_i64() == Some(*a),
        (Value::Float(a), Json::Number(n)) => n.as_f64().is_some_and(|b| close(*a, b, tol)),
        (Value::List(a) | Value::Tuple(a), Json::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| value_matches(x, y, tol))
        }
        _ => false,
    }
}

/// The run's outputs against the case's `expect`, from `from` epochs on.
fn check_expect<T: CandleFloat>(
    case: &Case,
    run: &Run<T>,
    losses: &[f64],
    lr_rows: &[Vec<f64>],
    from: usize,
) {
    let (want, tol) = (&case.expect, case.tolerance);
    let per_epoch = want.loss.len() / case.steps.max(1);
    check(
        &format!("{} loss", case.name),
        losses,
        &want.loss[from * per_epoch..],
        tol,
    );
    if !want.lr.is_empty() {
        let got: Vec<f64> = lr_rows.iter().flatten().copied().collect();
        let w: Vec<f64> = want.lr[from..].iter().flatten().copied().collect();
        check(&format!("{} lr", case.name), &got, &w, tol);
    }
    let fp = want.final_params.as_ref().unwrap();
    assert_eq!(fp.len(), run.net.vars.len());
    for (name, w) in fp {
        let var = run.net.vars.get(name).unwrap();
        let got = var
            .as_tensor()
            .to_dtype(DType::F64)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f64>())
            .unwrap();
        check(&format!("{} final {name}", case.name), &got, w, tol);
    }
    if let Some(groups) = &want.final_param_groups {
        let sd = run.opt.state_dict();
        assert_eq!(sd.param_groups.len(), groups.len());
        for (got, want) in sd.param_groups.iter().zip(groups) {
            assert_eq!(got.len() - 1, want.len(), "{}: group keys", case.name);
            for (k, w) in want {
                let v = got.get(k).cloned().unwrap_or_default();
                assert!(
                    value_matches(&v, w, tol),
                    "{} group {k}: {v} vs {w}",
                    case.name
                );
            }
        }
    }
}

fn run_case<T: CandleFloat>(file: &str) {
    let case = load_case(&cases_dir().join(file)).unwrap();
    let mut run = fresh::<T>(&case);
    let mut losses = Vec::new();
    let mut lr_rows = vec![lrs(&run.opt)];
    if case.raw["model"]["type"] == "net_x" {
        let (x, targets) = seed_input::<T>(&case);
        for (epoch, t) in targets.iter().enumerate().take(case.steps) {
            losses.push(seed_epoch(&mut run, &x, t));
            step_scheduler(&mut run);
            lr_rows.push(lrs(&run.opt));
            if case.resume_at == Some(epoch + 1) {
                run = resume(&case, run, epoch as i64 + 1);
            }
        }
    } else {
        let x: Vec<Vec<f64>> = serde_json::from_value(case.raw["x"].clone()).unwrap();
        let y: Vec<f64> = serde_json::from_value(case.raw["y"].clone()).unwrap();
        let batch = case.raw["batch_size"].as_u64().unwrap() as usize;
        let flat: Vec<f64> = x.iter().flatten().copied().collect();
        let xs = tensor::<T>(&[x.len(), x[0].len()], &flat);
        let ys = tensor::<T>(&[y.len(), 1], &y);
        let resume_at = case.resume_at.unwrap_or(case.steps / 2);
        for epoch in 0..case.steps {
            for start in (0..x.len()).step_by(batch) {
                let n = batch.min(x.len() - start);
                let xb = xs.narrow(0, start, n).unwrap();
                let yb = ys.narrow(0, start, n).unwrap();
                let pred = run.net.forward(&xb).unwrap();
                let loss = pred.sub(&yb).unwrap().sqr().unwrap().mean_all().unwrap();
                let grads = loss.backward().unwrap();
                run.opt.step(&grads).unwrap();
                losses.push(scalar(&loss));
            }
            step_scheduler(&mut run);
            lr_rows.push(lrs(&run.opt));
            if epoch + 1 == resume_at {
                run = resume(&case, run, epoch as i64 + 1);
            }
        }
    }
    check_expect(&case, &run, &losses, &lr_rows, 0);
}

#[test]
fn seed_net_float64() {
    run_case::<f64>("training__seed_net_x_float64.json");
}

#[test]
fn seed_net_float32() {
    run_case::<f32>("training__seed_net_x_float32.json");
}

#[test]
fn mlp_relu_tanh_float64() {
    run_case::<f64>("training__mlp_relu_tanh_mse_float64.json");
}

#[test]
fn mlp_relu_tanh_float32() {
    run_case::<f32>("training__mlp_relu_tanh_mse_float32.json");
}

/// PyTorch's checkpoint of the seed run after epoch 5 loads into the candle net and
/// continues to PyTorch's final numbers.
fn continue_torch_checkpoint<T: CandleFloat>(dtype: &str) {
    let case = load_case(&cases_dir().join(format!("training__seed_net_x_{dtype}.json"))).unwrap();
    let keys = PtKeys {
        model: "net_x_state_dict".into(),
        optimizer: "optimizer_state_dict".into(),
        scheduler: "scheduler".into(),
    };
    let state = load(
        checkpoints_dir().join(format!("seed_epoch5_{dtype}.pt")),
        &keys,
    )
    .unwrap();
    let mut run = fresh::<T>(&case);
    restore(
        &state,
        &run.net.vars,
        Some(&mut run.opt),
        sched_mut(&mut run.sched),
    )
    .unwrap();
    let (x, targets) = seed_input::<T>(&case);
    let mut losses = Vec::new();
    let mut lr_rows = vec![lrs(&run.opt)];
    for t in &targets[5..case.steps] {
        losses.push(seed_epoch(&mut run, &x, t));
        step_scheduler(&mut run);
        lr_rows.push(lrs(&run.opt));
    }
    check_expect(&case, &run, &losses, &lr_rows, 5);
}

#[test]
fn torch_checkpoint_float64_continues() {
    continue_torch_checkpoint::<f64>("float64");
}

#[test]
fn torch_checkpoint_float32_continues() {
    continue_torch_checkpoint::<f32>("float32");
}
