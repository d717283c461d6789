//! PyTorch's training conformance cases (an MLP, a loss, an optimizer, a scheduler,
//! end to end) through burn: burn's autodiff on the ndarray backend computes the
//! gradients, a `TempoOptimizer` inside burn's `ModuleOptimizer` steps, a
//! `TempoLRScheduler` gives the lr, and the resume goes through burn's records.
//!
//! Tolerance: the case's own (f64 `rtol 1e-9`, f32 `1e-5`). burn's forward and backward
//! passes are not PyTorch's (its matmul and its mean sum in another order), so the
//! gradients differ from PyTorch's in the last bits; the optimizer and scheduler add
//! nothing to that (the optimizer cases match PyTorch from the same gradients).

use burn_core as burn;

use burn::module::{Module, Param};
use burn::tensor::{DType, Device, Tensor, TensorCreationOptions, TensorData};
use burn_nn::Linear;
use burn_optim::lr_scheduler::LrScheduler;
use burn_optim::{GradientsParams, ModuleOptimizer};
use serde_json::Value as Json;
use tempo_burn::{TempoLRScheduler, TempoOptimizer};
use tempo_optim::OptimizerSpec;
use tempo_sched::SchedulerSpec;
use tempo_testkit::{close, load_cases, Case};

#[derive(Module, Debug)]
struct Net {
    layers: Vec<Linear>,
}

struct Model {
    net: Net,
    names: Vec<String>,
    /// The activation after each layer, if any.
    acts: Vec<Option<String>>,
}

fn opts(device: &Device, dtype: DType) -> TensorCreationOptions {
    TensorCreationOptions::new(device.clone()).with_dtype(dtype)
}

fn floats(v: &Json) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn tensor_data(shape: &[usize], v: &[f64], dtype: DType) -> TensorData {
    match dtype {
        DType::F32 => TensorData::new(
            v.iter().map(|&x| x as f32).collect::<Vec<f32>>(),
            shape.to_vec(),
        ),
        _ => TensorData::new(v.to_vec(), shape.to_vec()),
    }
}

fn values(t: TensorData) -> Vec<f64> {
    match t.dtype() {
        DType::F32 => t
            .try_to_vec::<f32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect(),
        _ => t.try_to_vec::<f64>().unwrap(),
    }
}

fn build(case: &Case, device: &Device, dtype: DType) -> Model {
    let layers = case.raw["model"]["layers"].as_array().unwrap();
    let default_act = case.raw["model"]["activation"].as_str().map(str::to_string);
    let mut net = Vec::new();
    let mut names = Vec::new();
    let mut acts: Vec<Option<String>> = Vec::new();
    for layer in layers {
        let parts = layer.as_array().unwrap();
        let name = parts[0].as_str().unwrap();
        if name == "relu" || name == "tanh" {
            *acts.last_mut().unwrap() = Some(name.to_string());
            continue;
        }
        let (n_in, n_out) = (
            parts[1].as_u64().unwrap() as usize,
            parts[2].as_u64().unwrap() as usize,
        );
        let init = &case.raw["init"];
        // PyTorch's weight is [out, in]; burn's Linear keeps [in, out].
        let w = Tensor::<2>::from_data(
            tensor_data(
                &[n_out, n_in],
                &floats(&init[format!("{name}.weight")]["data"]),
                dtype,
            ),
            opts(device, dtype),
        )
        .transpose();
        let b = Tensor::<1>::from_data(
            tensor_data(
                &[n_out],
                &floats(&init[format!("{name}.bias")]["data"]),
                dtype,
            ),
            opts(device, dtype),
        );
        net.push(Linear {
            weight: Param::from_tensor(w),
            bias: Some(Param::from_tensor(b)),
        });
        names.push(name.to_string());
        acts.push(default_act.clone());
    }
    if let Some(last) = acts.last_mut() {
        if default_act.is_some() {
            *last = None;
        }
    }
    Model {
        net: Net { layers: net },
        names,
        acts,
    }
}

fn forward(m: &Model, mut x: Tensor<2>) -> Tensor<2> {
    for (layer, act) in m.net.layers.iter().zip(&m.acts) {
        x = layer.forward(x);
        x = match act.as_deref() {
            Some("relu") => burn::tensor::activation::relu(x),
            Some("tanh") => x.tanh(),
            _ => x,
        };
    }
    x
}

fn optimizer(case: &Case) -> TempoOptimizer {
    let raw = case.optimizer.as_ref().unwrap();
    let mut kwargs = raw["kwargs"].as_object().cloned().unwrap_or_default();
    kwargs.entry("foreach").or_insert(Json::Bool(false));
    let spec = serde_json::json!({"type": raw["type"], "kwargs": kwargs});
    TempoOptimizer::new(&OptimizerSpec::from_json(&spec.to_string()).unwrap()).unwrap()
}

fn scheduler(case: &Case, opt: &TempoOptimizer) -> Option<TempoLRScheduler> {
    let raw = case.scheduler.as_ref().filter(|s| !s.is_null())?;
    let mut raw = raw.clone();
    raw.as_object_mut().unwrap().remove("step_every");
    let spec: SchedulerSpec = serde_json::from_value(raw).unwrap();
    Some(TempoLRScheduler::for_optimizer(&spec, opt).unwrap())
}

fn check(case: &Case, what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{}: {what}", case.name);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            close(*g, *w, case.tolerance),
            "{}: {what}[{i}]: burn {g}, PyTorch {w}",
            case.name
        );
    }
}

fn run(case: &Case) {
    let dtype = if case.dtype == "float32" {
        DType::F32
    } else {
        DType::F64
    };
    let device = Device::default().autodiff();
    let mut model = build(case, &device, dtype);
    let opt = optimizer(case);
    let mut optim: ModuleOptimizer = opt.init();
    let mut sched = scheduler(case, &opt);
    let base_lr = opt.hyperparameters().get("lr").unwrap().as_f64().unwrap();
    let mut losses = Vec::new();
    let mut lr_rows = Vec::new();
    // The seed scenario: one input row, new targets each epoch; the sequential one:
    // mini-batches of (x, y).
    let batches: Vec<(Tensor<2>, Tensor<2>)> = match case.raw["model"]["type"].as_str() {
        Some("net_x") => {
            let input = floats(&case.raw["input"]);
            vec![(
                Tensor::from_data(
                    tensor_data(&[1, input.len()], &input, dtype),
                    opts(&device, dtype),
                ),
                Tensor::from_data(tensor_data(&[1, 1], &[0.0], dtype), opts(&device, dtype)),
            )]
        }
        _ => {
            let x: Vec<Vec<f64>> = serde_json::from_value(case.raw["x"].clone()).unwrap();
            let y = floats(&case.raw["y"]);
            let bs = case.raw["batch_size"].as_u64().unwrap() as usize;
            (0..x.len())
                .step_by(bs)
                .map(|s| {
                    let e = (s + bs).min(x.len());
                    let flat: Vec<f64> = x[s..e].iter().flatten().copied().collect();
                    (
                        Tensor::from_data(
                            tensor_data(&[e - s, x[0].len()], &flat, dtype),
                            opts(&device, dtype),
                        ),
                        Tensor::from_data(
                            tensor_data(&[e - s, 1], &y[s..e], dtype),
                            opts(&device, dtype),
                        ),
                    )
                })
                .collect()
        }
    };
    let targets: Option<Vec<Vec<f64>>> = case
        .raw
        .get("targets")
        .map(|t| serde_json::from_value(t.clone()).unwrap());
    for epoch in 0..case.steps {
        if case.resume_at == Some(epoch) {
            let bytes = optim.into_bytes().unwrap();
            let fresh = optimizer(case);
            optim = fresh.init().from_bytes(bytes).unwrap();
            if let Some(s) = sched.as_mut() {
                let record = s.to_record();
                let mut r = scheduler(case, &fresh).unwrap();
                r.try_load_record(&record).unwrap();
                *s = r;
            }
        }
        let lr = sched.as_mut().map_or(base_lr, |s| s.step());
        lr_rows.push(lr);
        for (x, y) in &batches {
            let pred = forward(&model, x.clone());
            let loss = match &targets {
                Some(t) => {
                    let target = Tensor::<2>::from_data(
                        tensor_data(&pred.dims(), &t[epoch], dtype),
                        opts(&device, dtype),
                    );
                    (target - pred).sum()
                }
                None => (pred - y.clone()).powi_scalar(2).mean(),
            };
            losses.push(values(loss.to_data())[0]);
            let grads = GradientsParams::from_grads(loss.backward(), &model.net);
            model.net = optim.step(lr, model.net, grads);
        }
    }
    if let Some(s) = sched.as_mut() {
        assert!(s.take_error().is_none(), "{}", case.name);
    }
    check(case, "loss", &losses, &case.expect.loss);
    if !case.expect.lr.is_empty() {
        let want: Vec<f64> = case
            .expect
            .lr
            .iter()
            .take(case.steps)
            .map(|r| r[0])
            .collect();
        check(case, "lr", &lr_rows, &want);
    }
    let finals = case.expect.final_params.as_ref().unwrap();
    for (layer, name) in model.net.layers.iter().zip(&model.names) {
        let w = values(layer.weight.val().transpose().to_data());
        check(
            case,
            &format!("{name}.weight"),
            &w,
            &finals[&format!("{name}.weight")],
        );
        let b = values(layer.bias.as_ref().unwrap().val().to_data());
        check(
            case,
            &format!("{name}.bias"),
            &b,
            &finals[&format!("{name}.bias")],
        );
    }
}

#[test]
fn the_training_cases_match_pytorch_through_burn() {
    let cases = load_cases("training__").unwrap();
    for case in &cases {
        run(case);
    }
    assert!(cases.len() >= 4, "only {} training cases", cases.len());
}
