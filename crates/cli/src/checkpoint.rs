//! What a `tempo train` checkpoint holds, and where a run keeps its checkpoints.
//!
//! A checkpoint is one tempo checkpoint file (written atomically by `tempo::ckpt`) holding
//! a dict in the shape PyTorch users write by hand:
//!
//! ```text
//! {"model": {name: tensor}, "optimizer": {"state", "param_groups"}, "scheduler": {...} | None,
//!  "epoch": completed epochs, "batch_in_epoch": batches done in the next epoch,
//!  "step": optimizer steps, "rng": {"seed", "mt", "index", ...},
//!  "metrics": JSON text, "config": TOML text}
//! ```
//!
//! `rng` is the generator as it was at the start of the epoch in progress (before that
//! epoch's shuffle), so a resumed run draws the same order and skips the batches done.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use tempo::ckpt::{
    load_object, module_state_from_object, module_state_to_object, optimizer_state_from_object,
    optimizer_state_to_object, save_object, scheduler_state_from_object, scheduler_state_to_object,
    ModuleStateDict, Object, OptimizerStateDict,
};
use tempo::param_groups::Dict;
use tempo::tensor::GeneratorState;

use crate::metrics::Metrics;

/// The file name prefix and extension of a run's checkpoints.
const PREFIX: &str = "ckpt-step-";
const EXTENSION: &str = "tempo";

/// The counters and history of a training run at a batch boundary.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Progress {
    /// Completed epochs.
    pub(crate) epochs_done: u64,
    /// Batches done in the epoch after `epochs_done` (0 at an epoch boundary).
    pub(crate) batches_done: u64,
    /// Optimizer steps so far.
    pub(crate) step: u64,
    /// The generator at the start of the epoch in progress.
    pub(crate) rng: GeneratorState,
    /// Everything measured so far.
    pub(crate) metrics: Metrics,
    /// The run's configuration, as TOML.
    pub(crate) config: String,
}

/// A loaded checkpoint.
pub(crate) struct Checkpoint {
    /// The model's parameters.
    pub(crate) model: ModuleStateDict,
    /// The optimizer's state and param groups.
    pub(crate) optimizer: OptimizerStateDict,
    /// The scheduler's state, if the run has a scheduler.
    pub(crate) scheduler: Option<Dict>,
    /// Counters, generator, metrics, configuration.
    pub(crate) progress: Progress,
}

/// The path of the checkpoint taken after `step` optimizer steps.
pub(crate) fn path_for(dir: &Path, step: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{step:07}.{EXTENSION}"))
}

/// The run's checkpoints, oldest first (by step).
pub(crate) fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read run directory {}", dir.display()))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry =
            entry.with_context(|| format!("cannot read run directory {}", dir.display()))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let step = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.strip_suffix(&format!(".{EXTENSION}")))
            .and_then(|digits| digits.parse::<u64>().ok());
        if let Some(step) = step {
            found.push((step, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// The newest checkpoint of a run, if any.
pub(crate) fn latest(dir: &Path) -> Result<Option<PathBuf>> {
    Ok(list(dir)?.pop().map(|(_, p)| p))
}

/// Deletes all but the newest `keep` checkpoints (at least one is always kept).
pub(crate) fn prune(dir: &Path, keep: usize) -> Result<()> {
    let all = list(dir)?;
    let excess = all.len().saturating_sub(keep.max(1));
    for (_, path) in all.into_iter().take(excess) {
        std::fs::remove_file(&path)
            .with_context(|| format!("cannot remove old checkpoint {}", path.display()))?;
    }
    Ok(())
}

fn int(v: u64) -> Object {
    Object::Int(i64::try_from(v).unwrap_or(i64::MAX))
}

fn str_dict(entries: Vec<(&str, Object)>) -> Object {
    Object::Dict(
        entries
            .into_iter()
            .map(|(k, v)| (Object::Str(k.to_string()), v))
            .collect(),
    )
}

fn rng_to_object(rng: &GeneratorState) -> Object {
    let opt = |v: Option<f64>| v.map_or(Object::None, Object::Float);
    str_dict(vec![
        ("seed", int(rng.seed())),
        (
            "mt",
            Object::List(
                rng.mt()
                    .iter()
                    .map(|&w| Object::Int(i64::from(w)))
                    .collect(),
            ),
        ),
        ("index", int(rng.index() as u64)),
        ("next_double_normal", opt(rng.next_double_normal())),
        (
            "next_float_normal",
            opt(rng.next_float_normal().map(f64::from)),
        ),
    ])
}

fn rng_from_object(o: &Object) -> Result<GeneratorState> {
    let get = |k: &str| o.get(k).with_context(|| format!("`rng` has no `{k}`"));
    let uint = |k: &str| -> Result<u64> {
        get(k)?
            .as_i64()
            .and_then(|v| u64::try_from(v).ok())
            .with_context(|| format!("`rng.{k}` must be a non-negative int"))
    };
    let opt_float = |k: &str| -> Result<Option<f64>> {
        match get(k)? {
            Object::None => Ok(None),
            Object::Float(v) => Ok(Some(*v)),
            other => bail!(
                "`rng.{k}` must be a float or None, found {}",
                other.type_name()
            ),
        }
    };
    let mt = get("mt")?
        .items()
        .context("`rng.mt` must be a list of ints")?
        .iter()
        .map(|w| {
            w.as_i64()
                .and_then(|v| u32::try_from(v).ok())
                .context("`rng.mt` must hold 32-bit unsigned ints")
        })
        .collect::<Result<Vec<u32>>>()?;
    let index = usize::try_from(uint("index")?).context("`rng.index` is too large")?;
    GeneratorState::new(
        uint("seed")?,
        mt,
        index,
        opt_float("next_double_normal")?,
        opt_float("next_float_normal")?.map(|v| v as f32),
    )
    .map_err(|e| anyhow::anyhow!("`rng`: {e}"))
}

/// Writes a checkpoint atomically.
pub(crate) fn save(
    path: &Path,
    model: &ModuleStateDict,
    optimizer: &OptimizerStateDict,
    scheduler: Option<&Dict>,
    progress: &Progress,
) -> Result<()> {
    let metrics =
        serde_json::to_string(&progress.metrics).context("cannot encode the metrics as JSON")?;
    let object = str_dict(vec![
        ("model", module_state_to_object(model)),
        ("optimizer", optimizer_state_to_object(optimizer)),
        (
            "scheduler",
            scheduler.map_or(Object::None, scheduler_state_to_object),
        ),
        ("epoch", int(progress.epochs_done)),
        ("batch_in_epoch", int(progress.batches_done)),
        ("step", int(progress.step)),
        ("rng", rng_to_object(&progress.rng)),
        ("metrics", Object::Str(metrics)),
        ("config", Object::Str(progress.config.clone())),
    ]);
    save_object(path, &object).with_context(|| format!("cannot save checkpoint {}", path.display()))
}

/// Reads a checkpoint written by [`save`].
pub(crate) fn load(path: &Path) -> Result<Checkpoint> {
    let object =
        load_object(path).with_context(|| format!("cannot load checkpoint {}", path.display()))?;
    let what = || format!("{} is not a tempo train checkpoint", path.display());
    let get = |k: &str| {
        object
            .get(k)
            .with_context(|| format!("it has no `{k}`"))
            .with_context(what)
    };
    let uint = |k: &str| -> Result<u64> {
        get(k)?
            .as_i64()
            .and_then(|v| u64::try_from(v).ok())
            .with_context(|| format!("`{k}` must be a non-negative int"))
            .with_context(what)
    };
    let model = module_state_from_object(get("model")?).context("reading `model`")?;
    let optimizer =
        optimizer_state_from_object(get("optimizer")?).context("reading `optimizer`")?;
    let scheduler = match get("scheduler")? {
        Object::None => None,
        o => Some(scheduler_state_from_object(o).context("reading `scheduler`")?),
    };
    let metrics_text = get("metrics")?
        .as_str()
        .context("`metrics` must be a string")
        .with_context(what)?;
    let metrics: Metrics =
        serde_json::from_str(metrics_text).context("`metrics` is not valid metrics JSON")?;
    let config = get("config")?
        .as_str()
        .context("`config` must be a string")
        .with_context(what)?
        .to_string();
    let progress = Progress {
        epochs_done: uint("epoch")?,
        batches_done: uint("batch_in_epoch")?,
        step: uint("step")?,
        rng: rng_from_object(get("rng")?).with_context(what)?,
        metrics,
        config,
    };
    Ok(Checkpoint {
        model,
        optimizer,
        scheduler,
        progress,
    })
}
