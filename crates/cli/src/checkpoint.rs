//! What a `tempo train` checkpoint holds, on top of `tempo::ckpt`'s training state.
//!
//! Each checkpoint is a [`TrainingState`] saved by a [`Checkpointer`] (atomic writes, the
//! last N kept) as `ckpt-<step, 12 digits>.tempo` in the run directory:
//!
//! * `epoch`: completed epochs; `step`: optimizer steps so far;
//! * `model`, `optimizer`, `scheduler`: the three state dicts, in PyTorch's layouts;
//! * `rng`: the MT19937 generator as it was at the start of the epoch in progress (before
//!   that epoch's shuffle), so a resumed run draws the same order;
//! * `metadata`: `batch_in_epoch` (batches of that epoch already done), `metrics` (the
//!   history so far, as JSON) and `config` (the run's configuration, as TOML).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use tempo::ckpt::{
    Checkpointer, CheckpointerConfig, ModuleStateDict, OptimizerStateDict, RngArray, RngState,
    TrainingState,
};
use tempo::param_groups::{Dict, Value};
use tempo::tensor::GeneratorState;

use crate::metrics::Metrics;

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

/// The checkpointer of a run directory, keeping the newest `keep`.
pub(crate) fn checkpointer(dir: &Path, keep: usize) -> Result<Checkpointer> {
    Checkpointer::new(
        dir,
        CheckpointerConfig {
            prefix: "ckpt".into(),
            keep_last: keep.max(1),
            keep_best: None,
        },
    )
    .with_context(|| format!("cannot use run directory {}", dir.display()))
}

/// The newest checkpoint of a run directory, if any.
pub(crate) fn latest(dir: &Path) -> Result<Option<PathBuf>> {
    if !dir.is_dir() {
        return Ok(None);
    }
    checkpointer(dir, 1)?
        .latest()
        .with_context(|| format!("cannot list the checkpoints in {}", dir.display()))
}

fn rng_to_state(rng: &GeneratorState) -> RngState {
    RngState {
        kind: "mt19937".into(),
        arrays: vec![
            ("mt".into(), RngArray::U32(rng.mt().to_vec())),
            ("index".into(), RngArray::U64(vec![rng.index() as u64])),
            ("seed".into(), RngArray::U64(vec![rng.seed()])),
            (
                "next_double_normal".into(),
                RngArray::U64(
                    rng.next_double_normal()
                        .map(f64::to_bits)
                        .into_iter()
                        .collect(),
                ),
            ),
            (
                "next_float_normal".into(),
                RngArray::U32(
                    rng.next_float_normal()
                        .map(f32::to_bits)
                        .into_iter()
                        .collect(),
                ),
            ),
        ],
    }
}

fn rng_from_state(state: &RngState) -> Result<GeneratorState> {
    if state.kind != "mt19937" {
        bail!(
            "expected an mt19937 generator state, found `{}`",
            state.kind
        );
    }
    let array = |name: &str| {
        state
            .arrays
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a)
            .with_context(|| format!("the generator state has no `{name}`"))
    };
    let u64s = |name: &str| match array(name)? {
        RngArray::U64(v) => Ok(v.clone()),
        RngArray::U32(_) => bail!("`{name}` must be uint64"),
    };
    let u32s = |name: &str| match array(name)? {
        RngArray::U32(v) => Ok(v.clone()),
        RngArray::U64(_) => bail!("`{name}` must be uint32"),
    };
    let one = |name: &str| -> Result<u64> {
        match u64s(name)?.as_slice() {
            [v] => Ok(*v),
            other => bail!("`{name}` must hold one value, found {}", other.len()),
        }
    };
    let index = usize::try_from(one("index")?).context("`index` is too large")?;
    GeneratorState::new(
        one("seed")?,
        u32s("mt")?,
        index,
        u64s("next_double_normal")?
            .first()
            .map(|&b| f64::from_bits(b)),
        u32s("next_float_normal")?
            .first()
            .map(|&b| f32::from_bits(b)),
    )
    .map_err(|e| anyhow::anyhow!("the generator state: {e}"))
}

fn int(v: u64) -> Value {
    Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
}

/// Saves a checkpoint through the run's checkpointer; returns its path.
pub(crate) fn save(
    checkpointer: &Checkpointer,
    model: ModuleStateDict,
    optimizer: OptimizerStateDict,
    scheduler: Option<Dict>,
    progress: &Progress,
) -> Result<PathBuf> {
    let mut metadata = Dict::new();
    metadata.insert("batch_in_epoch", int(progress.batches_done));
    metadata.insert(
        "metrics",
        serde_json::to_string(&progress.metrics).context("cannot encode the metrics")?,
    );
    metadata.insert("config", progress.config.clone());
    let state = TrainingState {
        epoch: i64::try_from(progress.epochs_done).unwrap_or(i64::MAX),
        step: i64::try_from(progress.step).unwrap_or(i64::MAX),
        model,
        optimizer: Some(optimizer),
        scheduler,
        rng: Some(rng_to_state(&progress.rng)),
        metadata,
    };
    checkpointer.save(&state).with_context(|| {
        format!(
            "cannot save a checkpoint in {}",
            checkpointer.dir().display()
        )
    })
}

/// The newest intact checkpoint of a run directory, with its path and a line for each
/// newer one that was skipped (corrupt or truncated) and why; `None` if there is none.
pub(crate) fn load_latest(dir: &Path) -> Result<Option<(PathBuf, Checkpoint, Vec<String>)>> {
    if !dir.is_dir() {
        return Ok(None);
    }
    let Some(latest) = checkpointer(dir, 1)?
        .load_latest_intact()
        .with_context(|| format!("cannot resume from {}", dir.display()))?
    else {
        return Ok(None);
    };
    let skipped = latest.skipped.iter().map(ToString::to_string).collect();
    let path = latest.entry.path;
    let checkpoint = from_state(&path, latest.state)?;
    Ok(Some((path, checkpoint, skipped)))
}

/// The parts of a training state that [`save`] wrote at `path`.
fn from_state(path: &Path, state: TrainingState) -> Result<Checkpoint> {
    let not_ours =
        |what: &str| format!("{} is not a tempo train checkpoint: {what}", path.display());
    let count = |v: i64, name: &str| {
        u64::try_from(v).with_context(|| not_ours(&format!("`{name}` is negative")))
    };
    let meta = |key: &str| {
        state
            .metadata
            .get(key)
            .with_context(|| not_ours(&format!("its metadata has no `{key}`")))
    };
    let metrics_text = meta("metrics")?
        .as_str()
        .with_context(|| not_ours("`metrics` is not a string"))?;
    let metrics: Metrics = serde_json::from_str(metrics_text)
        .with_context(|| not_ours("`metrics` is not valid metrics JSON"))?;
    let config = meta("config")?
        .as_str()
        .with_context(|| not_ours("`config` is not a string"))?
        .to_string();
    let batches_done = meta("batch_in_epoch")?
        .as_i64()
        .and_then(|v| u64::try_from(v).ok())
        .with_context(|| not_ours("`batch_in_epoch` is not a count"))?;
    let rng = state
        .rng
        .as_ref()
        .with_context(|| not_ours("it has no generator state"))?;
    let progress = Progress {
        epochs_done: count(state.epoch, "epoch")?,
        batches_done,
        step: count(state.step, "step")?,
        rng: rng_from_state(rng).with_context(|| not_ours("bad generator state"))?,
        metrics,
        config,
    };
    Ok(Checkpoint {
        model: state.model,
        optimizer: state
            .optimizer
            .with_context(|| not_ours("it has no optimizer state"))?,
        scheduler: state.scheduler,
        progress,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tempo::tensor::Generator;

    #[test]
    fn generator_state_round_trips() {
        let mut g = Generator::new(7);
        for _ in 0..1000 {
            g.next_u32();
        }
        let state = g.state();
        assert_eq!(rng_from_state(&rng_to_state(&state)).unwrap(), state);
        let mut bad = rng_to_state(&state);
        bad.kind = "pcg".into();
        assert!(rng_from_state(&bad)
            .unwrap_err()
            .to_string()
            .contains("mt19937"));
    }
}
