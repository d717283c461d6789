//! The whole training state of a candle model (variables by name, optimizer,
//! scheduler, counters) in tempo's format or as a PyTorch `.pt`, and its restore, all
//! or nothing.

use std::path::Path;

use candle_core::{DType, Tensor};
use ndarray::ArrayD;
use tempo_ckpt::{
    detect_format, module_state_from_object, optimizer_state_from_object, read_pt,
    scheduler_state_from_object, write_pt, Format, Object, TrainingState,
};
use tempo_sched::LRScheduler;
use tempo_tensor::TensorData;

use crate::param::CandleFloat;
use crate::{CandleError, CandleOptimizer, NamedVars};

/// The keys of a PyTorch checkpoint dict that hold the model's, the optimizer's and the
/// scheduler's state dicts. The default is tempo's layout, `torch.save({"model":
/// model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler":
/// scheduler.state_dict(), "epoch": ..., "step": ...})`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PtKeys {
    /// The model's state dict (`"model"`).
    pub model: String,
    /// The optimizer's (`"optimizer"`).
    pub optimizer: String,
    /// The scheduler's (`"scheduler"`).
    pub scheduler: String,
}

impl Default for PtKeys {
    fn default() -> Self {
        Self {
            model: "model".into(),
            optimizer: "optimizer".into(),
            scheduler: "scheduler".into(),
        }
    }
}

/// A candle variable's values as tempo's tensor data (f32 or f64).
fn tensor_data(name: &str, t: &Tensor) -> Result<TensorData, CandleError> {
    let shape = t.dims().to_vec();
    let flat = t.flatten_all()?;
    let unsupported = || CandleError::Unsupported {
        name: name.into(),
        reason: format!(
            "dtype {:?}: tempo checkpoints hold f32 and f64 variables",
            t.dtype()
        ),
    };
    Ok(match t.dtype() {
        DType::F32 => TensorData::F32(
            ArrayD::from_shape_vec(shape, flat.to_vec1::<f32>()?).map_err(|_| unsupported())?,
        ),
        DType::F64 => TensorData::F64(
            ArrayD::from_shape_vec(shape, flat.to_vec1::<f64>()?).map_err(|_| unsupported())?,
        ),
        _ => return Err(unsupported()),
    })
}

/// The training state of a candle model now: its variables by name (in `vars`'
/// order), the optimizer's and the scheduler's state dicts, and the counters.
pub fn capture<T: CandleFloat>(
    vars: &NamedVars,
    optimizer: Option<&CandleOptimizer<T>>,
    scheduler: Option<&dyn LRScheduler>,
    epoch: i64,
    step: i64,
) -> Result<TrainingState, CandleError> {
    let model = vars
        .iter()
        .map(|(n, v)| Ok((n.to_string(), tensor_data(n, v.as_tensor())?)))
        .collect::<Result<_, CandleError>>()?;
    Ok(TrainingState {
        epoch,
        step,
        model,
        optimizer: optimizer.map(CandleOptimizer::state_dict),
        scheduler: scheduler.map(LRScheduler::state_dict),
        ..TrainingState::default()
    })
}

/// Writes `state` to `path`, atomically: a PyTorch `.pt` (laid out like
/// `torch.save({"model": ..., "optimizer": ..., "scheduler": ...})`) if the name ends
/// in `.pt` or `.pth`, else tempo's format.
pub fn save(path: impl AsRef<Path>, state: &TrainingState) -> Result<(), CandleError> {
    let path = path.as_ref();
    let pt = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("pt" | "pth")
    );
    if pt {
        write_pt(path, &state.to_object())?;
    } else {
        tempo_ckpt::save(path, state)?;
    }
    Ok(())
}

/// Reads a training state from a tempo checkpoint or a `.pt` (told apart by their
/// contents). A `.pt` that tempo wrote is read whole; any other PyTorch dict is read
/// through `keys` (its `epoch` and `step`, if present, are kept).
pub fn load(path: impl AsRef<Path>, keys: &PtKeys) -> Result<TrainingState, CandleError> {
    let path = path.as_ref();
    if detect_format(path)? == Format::Tempo {
        return Ok(tempo_ckpt::load(path)?);
    }
    let object = read_pt(path)?;
    if object.get("kind").is_some() {
        return Ok(TrainingState::try_from(object)?);
    }
    let part = |key: &str| {
        object.get(key).ok_or_else(|| CandleError::ModelMismatch {
            reason: format!("the checkpoint has no `{key}`"),
        })
    };
    let int = |key: &str| match object.get(key) {
        Some(Object::Int(i)) => *i,
        _ => 0,
    };
    let scheduler = match object.get(&keys.scheduler) {
        None | Some(Object::None) => None,
        Some(s) => Some(scheduler_state_from_object(s)?),
    };
    let optimizer = match object.get(&keys.optimizer) {
        None | Some(Object::None) => None,
        Some(o) => Some(optimizer_state_from_object(o)?),
    };
    Ok(TrainingState {
        epoch: int("epoch"),
        step: int("step"),
        model: module_state_from_object(part(&keys.model)?)?,
        optimizer,
        scheduler,
        ..TrainingState::default()
    })
}

/// Puts `state` into a live candle model (its variables `vars`), optimizer and
/// scheduler, **all or nothing**: every variable must be in the state with its shape
/// and dtype, and the state must hold nothing else; the optimizer's and scheduler's
/// states must load. Otherwise the error names what differs (expected and found) and
/// nothing changes. Pass `None` for a part the run does not have.
///
/// PyTorch's order: build the optimizer and the scheduler first, then restore.
pub fn restore<T: CandleFloat>(
    state: &TrainingState,
    vars: &NamedVars,
    optimizer: Option<&mut CandleOptimizer<T>>,
    scheduler: Option<&mut dyn LRScheduler>,
) -> Result<(), CandleError> {
    // The model: checked whole before anything changes.
    let mut values: Vec<Tensor> = Vec::with_capacity(vars.len());
    for (name, var) in vars.iter() {
        let data = state
            .model
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d)
            .ok_or_else(|| CandleError::ModelMismatch {
                reason: format!("missing key `{name}`"),
            })?;
        let (shape, dtype) = match data {
            TensorData::F32(a) => (a.shape().to_vec(), DType::F32),
            TensorData::F64(a) => (a.shape().to_vec(), DType::F64),
        };
        if shape != var.dims() {
            return Err(CandleError::ModelMismatch {
                reason: format!(
                    "`{name}` has shape {shape:?} in the checkpoint, {:?} in the model",
                    var.dims()
                ),
            });
        }
        if dtype != var.dtype() {
            return Err(CandleError::ModelMismatch {
                reason: format!(
                    "`{name}` has dtype {dtype:?} in the checkpoint, {:?} in the model",
                    var.dtype()
                ),
            });
        }
        let t = match data {
            TensorData::F32(a) => {
                Tensor::from_iter(a.iter().copied(), var.device())?.reshape(var.dims())?
            }
            TensorData::F64(a) => {
                Tensor::from_iter(a.iter().copied(), var.device())?.reshape(var.dims())?
            }
        };
        values.push(t);
    }
    if let Some((name, _)) = state.model.iter().find(|(n, _)| vars.get(n).is_none()) {
        return Err(CandleError::ModelMismatch {
            reason: format!("unexpected key `{name}`"),
        });
    }
    let optimizer_state = match (&optimizer, &state.optimizer) {
        (Some(_), None) => {
            return Err(CandleError::ModelMismatch {
                reason: "the checkpoint has no optimizer state".into(),
            })
        }
        (_, sd) => sd.as_ref(),
    };
    let scheduler_state = match (&scheduler, &state.scheduler) {
        (Some(_), None) => {
            return Err(CandleError::ModelMismatch {
                reason: "the checkpoint has no scheduler state".into(),
            })
        }
        (_, sd) => sd.as_ref(),
    };
    // The optimizer and the scheduler check their parts before changing anything; a
    // refused scheduler puts the optimizer back.
    let mut optimizer = optimizer;
    let before = optimizer.as_ref().map(|o| o.state_dict());
    if let (Some(opt), Some(sd)) = (optimizer.as_mut(), optimizer_state) {
        opt.load_state_dict(sd)?;
    }
    if let (Some(sched), Some(sd)) = (scheduler, scheduler_state) {
        if let Err(e) = sched.load_state_dict(sd) {
            if let (Some(opt), Some(b)) = (optimizer.as_mut(), before.as_ref()) {
                // A snapshot of an optimizer always loads back into it.
                let _ = opt.load_state_dict(b);
            }
            return Err(e.into());
        }
    }
    for ((_, var), value) in vars.iter().zip(&values) {
        var.set(value)?;
    }
    Ok(())
}
