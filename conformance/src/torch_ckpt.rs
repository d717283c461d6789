//! Resume through checkpoint files, and `torch_checkpoint` cases (a PyTorch `.pt`
//! continued in tempo).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use ndarray::ArrayD;
use tempo::ckpt::{
    load, module_state_from_object, optimizer_state_from_object, read_pt, save,
    scheduler_state_from_object, write_pt, TrainingState,
};
use tempo::nn::{Module, StateDict};
use tempo::optim::{Optimizer, OptimizerStateDict};
use tempo::param_groups::Dict;
use tempo::sched::LRScheduler;
use tempo::tensor::{Float, TensorData};
use tempo_testkit::{load_case, Case};

use crate::training;

/// A fresh path in the temp directory (removed by [`through_files`]).
fn temp_path(ext: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!(
        "tempo-conformance-{}-{n}.{ext}",
        std::process::id()
    ))
}

/// Saves `state` in tempo's format, loads it, writes that as a PyTorch `.pt`, reads it
/// back: a resume crosses both file formats.
fn through_files(state: &TrainingState) -> Result<TrainingState, String> {
    let tempo_path = temp_path("tempo");
    let pt_path = temp_path("pt");
    let result = (|| {
        save(&tempo_path, state).map_err(|e| format!("saving the checkpoint: {e}"))?;
        let loaded = load(&tempo_path).map_err(|e| format!("loading the checkpoint: {e}"))?;
        write_pt(&pt_path, &loaded.to_object()).map_err(|e| format!("writing the .pt: {e}"))?;
        let object = read_pt(&pt_path).map_err(|e| format!("reading the .pt: {e}"))?;
        TrainingState::from_object(&object).map_err(|e| format!("mapping the .pt: {e}"))
    })();
    let _ = std::fs::remove_file(&tempo_path);
    let _ = std::fs::remove_file(&pt_path);
    result
}

/// What a resume carries across: the model (bare parameters, or a model's state dict),
/// the optimizer's state and the scheduler's.
pub(crate) struct Saved<M> {
    pub(crate) model: M,
    pub(crate) optimizer: OptimizerStateDict,
    pub(crate) scheduler: Option<Dict>,
}

impl<M> Saved<M> {
    /// Loads the optimizer's state into `opt` and, when both are there, the scheduler's
    /// into `sched`.
    pub(crate) fn load_states<T: Float>(
        &self,
        opt: &mut dyn Optimizer<T>,
        sched: Option<&mut Box<dyn LRScheduler>>,
    ) -> Result<(), String> {
        opt.load_state_dict(&self.optimizer)
            .map_err(|e| format!("loading the optimizer state: {e}"))?;
        if let (Some(s), Some(state)) = (sched, self.scheduler.as_ref()) {
            s.load_state_dict(state)
                .map_err(|e| format!("loading the scheduler state: {e}"))?;
        }
        Ok(())
    }
}

/// Carries parameters, optimizer and scheduler state across a resume, through files.
pub(crate) fn round_trip_state<T: Float>(
    params: Vec<ArrayD<T>>,
    optimizer: OptimizerStateDict,
    scheduler: Option<Dict>,
) -> Result<Saved<Vec<ArrayD<T>>>, String> {
    let model = params
        .into_iter()
        .enumerate()
        .map(|(i, p)| (format!("params.{i}"), T::into_tensor_data(p)))
        .collect();
    let state = TrainingState {
        model,
        optimizer: Some(optimizer),
        scheduler,
        ..TrainingState::default()
    };
    let back = through_files(&state)?;
    let params = back
        .model
        .into_iter()
        .map(|(_, t)| T::from_tensor_data(t).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    Ok(Saved {
        model: params,
        optimizer: back.optimizer.ok_or("the optimizer state was lost")?,
        scheduler: back.scheduler,
    })
}

/// Carries a training state across a resume, through files.
pub(crate) fn round_trip_training<T: Float>(
    model: StateDict<T>,
    optimizer: OptimizerStateDict,
    scheduler: Option<Dict>,
) -> Result<Saved<StateDict<T>>, String> {
    let state = TrainingState {
        model: model.to_tensor_data(),
        optimizer: Some(optimizer),
        scheduler,
        ..TrainingState::default()
    };
    let back = through_files(&state)?;
    Ok(Saved {
        model: StateDict::from_tensor_data(back.model).map_err(|e| e.to_string())?,
        optimizer: back.optimizer.ok_or("the optimizer state was lost")?,
        scheduler: back.scheduler,
    })
}

/// A `torch_checkpoint` case: load PyTorch's `.pt` of the seed run after some epochs
/// and continue the named training case from there.
pub(crate) fn run<T: Float>(case: &Case, path: &Path) -> Result<(), String> {
    let dir = path.parent().ok_or("the case file has no directory")?;
    let file = case.raw["file"]
        .as_str()
        .ok_or("the case names no `file`")?;
    let training_name = case.raw["case"]
        .as_str()
        .ok_or("the case names no training `case`")?;
    let from = case.raw["resume_from_epoch"]
        .as_u64()
        .ok_or("the case has no `resume_from_epoch`")? as usize;
    let training_path = dir
        .join("../cases")
        .join(format!("{}.json", training_name.replace('/', "__")));
    let training = load_case(&training_path).map_err(|e| e.to_string())?;

    let pt = read_pt(dir.join(file)).map_err(|e| format!("reading {file}: {e}"))?;
    let part = |key: &str| pt.get(key).ok_or_else(|| format!("{file} has no `{key}`"));
    let model_state =
        module_state_from_object(part("net_x_state_dict")?).map_err(|e| e.to_string())?;
    let model_state: Vec<(String, TensorData)> = model_state;
    let optimizer_state =
        optimizer_state_from_object(part("optimizer_state_dict")?).map_err(|e| e.to_string())?;
    let scheduler_state =
        scheduler_state_from_object(part("scheduler")?).map_err(|e| e.to_string())?;

    // PyTorch's documented order: build the model, optimizer and scheduler, then load.
    let mut run = training::fresh::<T>(&training)?;
    run.model
        .load_state_dict(&StateDict::from_tensor_data(model_state).map_err(|e| e.to_string())?)
        .map_err(|e| format!("loading the model: {e}"))?;
    run.opt
        .load_state_dict(&optimizer_state)
        .map_err(|e| format!("loading the optimizer: {e}"))?;
    if let Some(s) = run.sched.as_mut() {
        s.load_state_dict(&scheduler_state)
            .map_err(|e| format!("loading the scheduler: {e}"))?;
    }

    let (x, targets) = training::seed_inputs::<T>(&training)?;
    let mut losses = Vec::new();
    let mut lr_rows = vec![training::lrs(&*run.opt)?];
    for epoch in from..training.steps {
        let t = targets
            .get(epoch)
            .ok_or_else(|| format!("no targets for epoch {epoch}"))?;
        losses.push(training::seed_epoch(&mut run, &x, t)?);
        training::step_scheduler(&mut run, epoch)?;
        lr_rows.push(training::lrs(&*run.opt)?);
    }
    training::check_training_expect(
        &training,
        &losses,
        &lr_rows,
        &run.model,
        &*run.opt,
        from,
        training.tolerance,
    )
}
