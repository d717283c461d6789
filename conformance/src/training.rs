//! `training` cases: a model, a loss, an optimizer and a scheduler, end to end through
//! autograd.

use serde_json::Value as Json;
use tempo::nn::{mse_loss, Linear, Module, ReLU, Reduction, Sequential, Tanh};
use tempo::optim::{build_optimizer, Optimizer, OptimizerSpec};
use tempo::param_groups::{OptimizerParamGroups, Value};
use tempo::sched::{build_scheduler, LRScheduler, SchedulerSpec};
use tempo::tensor::{Float, Tensor};
use tempo_testkit::{close, Case, Tolerance};

use crate::util::{array, compare};

/// The model of a training case, built from its `model` and `init` fields.
pub(crate) fn build_model<T: Float>(case: &Case) -> Result<Sequential<T>, String> {
    let model = &case.raw["model"];
    let init = &case.raw["init"];
    let mut seq = Sequential::new();
    let layers = model["layers"]
        .as_array()
        .ok_or("model.layers is missing")?;
    let activation = model["activation"].as_str();
    for (i, layer) in layers.iter().enumerate() {
        let parts = layer.as_array().ok_or("a layer is not a list")?;
        let kind = parts
            .first()
            .and_then(Json::as_str)
            .ok_or("a layer has no name")?;
        match kind {
            "relu" => {
                seq.push(ReLU).map_err(|e| e.to_string())?;
            }
            "tanh" => {
                seq.push(Tanh).map_err(|e| e.to_string())?;
            }
            name => {
                let weight = tensor_field::<T>(init, &format!("{name}.weight"))?;
                let bias = tensor_field::<T>(init, &format!("{name}.bias"))?;
                let linear = Linear::from_weights(weight, Some(bias)).map_err(|e| e.to_string())?;
                seq.push_named(name, linear).map_err(|e| e.to_string())?;
                if let Some(act) = activation {
                    if i + 1 < layers.len() {
                        match act {
                            "relu" => seq.push(ReLU).map_err(|e| e.to_string())?,
                            "tanh" => seq.push(Tanh).map_err(|e| e.to_string())?,
                            other => return Err(format!("unsupported activation `{other}`")),
                        };
                    }
                }
            }
        }
    }
    Ok(seq)
}

fn tensor_field<T: Float>(init: &Json, key: &str) -> Result<ndarray::ArrayD<T>, String> {
    let entry = &init[key];
    let shape: Vec<usize> = entry["shape"]
        .as_array()
        .ok_or_else(|| format!("init.{key}.shape is missing"))?
        .iter()
        .map(|v| {
            v.as_u64()
                .map(|v| v as usize)
                .ok_or("a shape entry is not a number")
        })
        .collect::<Result<_, _>>()?;
    let data: Vec<f64> = entry["data"]
        .as_array()
        .ok_or_else(|| format!("init.{key}.data is missing"))?
        .iter()
        .map(|v| v.as_f64().ok_or("a data entry is not a number"))
        .collect::<Result<_, _>>()?;
    array::<T>(&shape, &data)
}

/// The optimizer spec as the case was recorded: PyTorch ran with `foreach=False`.
pub(crate) fn optimizer_spec(case: &Case) -> Result<OptimizerSpec, String> {
    let mut raw = case.optimizer.clone().ok_or("the case has no optimizer")?;
    if let Some(kwargs) = raw.get_mut("kwargs").and_then(Json::as_object_mut) {
        kwargs.entry("foreach").or_insert(Json::Bool(false));
    }
    serde_json::from_value(raw).map_err(|e| format!("optimizer spec: {e}"))
}

pub(crate) struct Run<T: Float> {
    pub(crate) model: Sequential<T>,
    pub(crate) opt: Box<dyn Optimizer<T>>,
    pub(crate) sched: Option<Box<dyn LRScheduler>>,
}

pub(crate) fn fresh<T: Float>(case: &Case) -> Result<Run<T>, String> {
    let model = build_model::<T>(case)?;
    let mut opt = build_optimizer(&optimizer_spec(case)?, &model.parameters())
        .map_err(|e| format!("building the optimizer: {e}"))?;
    let sched = match &case.scheduler {
        None | Some(Json::Null) => None,
        Some(s) => {
            let spec: SchedulerSpec =
                serde_json::from_value(s.clone()).map_err(|e| format!("scheduler spec: {e}"))?;
            let groups: &mut dyn OptimizerParamGroups = &mut *opt;
            Some(
                build_scheduler(&spec, groups)
                    .map_err(|e| format!("building the scheduler: {e}"))?,
            )
        }
    };
    Ok(Run { model, opt, sched })
}

fn resume<T: Float>(case: &Case, run: Run<T>) -> Result<Run<T>, String> {
    let saved = crate::torch_ckpt::round_trip_training(
        run.model.state_dict(),
        run.opt.state_dict(),
        run.sched.as_ref().map(|s| s.state_dict()),
    )?;
    let mut next = fresh::<T>(case)?;
    next.model
        .load_state_dict(&saved.model)
        .map_err(|e| format!("loading the model: {e}"))?;
    saved.load_states(next.opt.as_mut(), next.sched.as_mut())?;
    Ok(next)
}

pub(crate) fn step_scheduler<T: Float>(run: &mut Run<T>, epoch: usize) -> Result<(), String> {
    if let Some(s) = run.sched.as_mut() {
        let groups: &mut dyn OptimizerParamGroups = &mut *run.opt;
        s.step(groups)
            .map_err(|e| format!("scheduler step after epoch {epoch}: {e}"))?;
    }
    Ok(())
}

pub(crate) fn lrs<T: Float>(opt: &dyn Optimizer<T>) -> Result<Vec<f64>, String> {
    (0..opt.num_groups())
        .map(|g| opt.lr(g).map_err(|e| e.to_string()))
        .collect()
}

/// One epoch of the seed scenario: zero_grad, forward, `sum(target - prediction)`,
/// backward, optimizer step. Returns the loss.
pub(crate) fn seed_epoch<T: Float>(
    run: &mut Run<T>,
    input: &Tensor<T>,
    targets: &[f64],
) -> Result<f64, String> {
    run.opt.zero_grad();
    let pred = run.model.forward(input).map_err(|e| e.to_string())?;
    let target = Tensor::from_array(array::<T>(&pred.shape(), targets)?);
    let loss = target.sub(&pred).map_err(|e| e.to_string())?.sum();
    loss.backward().map_err(|e| e.to_string())?;
    run.opt.step().map_err(|e| e.to_string())?;
    Ok(Float::to_f64(loss.item().map_err(|e| e.to_string())?))
}

/// The seed scenario's inputs: the input row and each epoch's targets.
pub(crate) fn seed_inputs<T: Float>(case: &Case) -> Result<(Tensor<T>, Vec<Vec<f64>>), String> {
    let input: Vec<f64> = case.raw["input"]
        .as_array()
        .ok_or("the case has no input")?
        .iter()
        .map(|v| v.as_f64().ok_or("an input is not a number"))
        .collect::<Result<_, _>>()?;
    let targets: Vec<Vec<f64>> =
        serde_json::from_value(case.raw["targets"].clone()).map_err(|e| format!("targets: {e}"))?;
    let x = Tensor::from_array(array::<T>(&[1, input.len()], &input)?);
    Ok((x, targets))
}

pub(crate) fn run<T: Float>(case: &Case) -> Result<(), String> {
    let tol = case.tolerance;
    let mut run = fresh::<T>(case)?;
    let mut losses = Vec::new();
    let mut lr_rows = vec![lrs(&*run.opt)?];
    match case.raw["model"]["type"].as_str() {
        Some("net_x") => {
            let (x, targets) = seed_inputs::<T>(case)?;
            for epoch in 0..case.steps {
                let t = targets
                    .get(epoch)
                    .ok_or_else(|| format!("no targets for epoch {epoch}"))?;
                losses.push(seed_epoch(&mut run, &x, t)?);
                step_scheduler(&mut run, epoch)?;
                lr_rows.push(lrs(&*run.opt)?);
                if case.resume_at == Some(epoch + 1) {
                    run = resume(case, run)?;
                }
            }
        }
        Some("sequential") => {
            let x: Vec<Vec<f64>> =
                serde_json::from_value(case.raw["x"].clone()).map_err(|e| format!("x: {e}"))?;
            let y: Vec<f64> =
                serde_json::from_value(case.raw["y"].clone()).map_err(|e| format!("y: {e}"))?;
            let batch = case.raw["batch_size"]
                .as_u64()
                .ok_or("batch_size is missing")? as usize;
            let n_in = x.first().map_or(0, Vec::len);
            let flat: Vec<f64> = x.iter().flatten().copied().collect();
            let xs = Tensor::from_array(array::<T>(&[x.len(), n_in], &flat)?);
            let ys = Tensor::from_array(array::<T>(&[y.len(), 1], &y)?);
            for epoch in 0..case.steps {
                for start in (0..x.len()).step_by(batch.max(1)) {
                    let end = (start + batch).min(x.len());
                    run.opt.zero_grad();
                    let xb = xs.rows(start..end).map_err(|e| e.to_string())?;
                    let yb = ys.rows(start..end).map_err(|e| e.to_string())?;
                    let pred = run.model.forward(&xb).map_err(|e| e.to_string())?;
                    let loss = mse_loss(&pred, &yb, Reduction::Mean).map_err(|e| e.to_string())?;
                    loss.backward().map_err(|e| e.to_string())?;
                    run.opt.step().map_err(|e| e.to_string())?;
                    losses.push(Float::to_f64(loss.item().map_err(|e| e.to_string())?));
                }
                step_scheduler(&mut run, epoch)?;
                lr_rows.push(lrs(&*run.opt)?);
                if case.resume_at == Some(epoch + 1) {
                    run = resume(case, run)?;
                }
            }
        }
        other => return Err(format!("unsupported model type {other:?}")),
    }
    check_training_expect(case, &losses, &lr_rows, &run.model, &*run.opt, 0, tol)
}

/// Compares a training run's outputs with the case's `expect`, starting at `from_epoch`
/// (a continuation from a checkpoint covers only the later epochs).
pub(crate) fn check_training_expect<T: Float>(
    case: &Case,
    losses: &[f64],
    lr_rows: &[Vec<f64>],
    model: &Sequential<T>,
    opt: &dyn Optimizer<T>,
    from_epoch: usize,
    tol: Tolerance,
) -> Result<(), String> {
    let want = &case.expect;
    let per_epoch = want.loss.len() / case.steps.max(1);
    compare(
        "loss",
        losses,
        &want.loss[(from_epoch * per_epoch).min(want.loss.len())..],
        tol,
    )?;
    if !want.lr.is_empty() {
        let got: Vec<f64> = lr_rows.iter().flatten().copied().collect();
        let w: Vec<f64> = want.lr[from_epoch.min(want.lr.len())..]
            .iter()
            .flatten()
            .copied()
            .collect();
        compare("lr", &got, &w, tol)?;
    }
    if let Some(fp) = &want.final_params {
        let sd = model.state_dict();
        for (name, w) in fp {
            let got = sd
                .get(name)
                .ok_or_else(|| format!("final_params: no parameter `{name}`"))?;
            let got: Vec<f64> = got.iter().map(|&v| Float::to_f64(v)).collect();
            compare(&format!("final_params[{name}]"), &got, w, tol)?;
        }
        if sd.len() != fp.len() {
            return Err(format!(
                "final_params: {} parameters, want {}",
                sd.len(),
                fp.len()
            ));
        }
    }
    if let Some(groups) = &want.final_param_groups {
        let sd = opt.state_dict();
        if sd.param_groups.len() != groups.len() {
            return Err(format!(
                "final_param_groups: {} groups, want {}",
                sd.param_groups.len(),
                groups.len()
            ));
        }
        for (g, (got, want)) in sd.param_groups.iter().zip(groups).enumerate() {
            let got_keys: Vec<&str> = got.keys().filter(|k| *k != "params").collect();
            let want_keys: Vec<&str> = want.keys().map(String::as_str).collect();
            let mut a = got_keys.clone();
            let mut b = want_keys.clone();
            a.sort_unstable();
            b.sort_unstable();
            if a != b {
                return Err(format!(
                    "final_param_groups[{g}]: keys {got_keys:?}, want {want_keys:?}"
                ));
            }
            for (k, w) in want {
                let v = got.get(k).cloned().unwrap_or_default();
                if !value_matches(&v, w, tol) {
                    return Err(format!("final_param_groups[{g}][{k}]: got {v}, want {w}"));
                }
            }
        }
    }
    Ok(())
}

/// A group value against its JSON record (tuples recorded as lists, None as null).
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
