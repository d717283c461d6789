//! Keeping the last N checkpoints of a run (and the best by a metric).

use std::fs;
use std::path::{Path, PathBuf};

use tempo_param_groups::Value;

use crate::read::peek_object;
use crate::training::{load, save};
use crate::write::remove_file;
use crate::{CkptError, Object, TrainingState};

/// Whether a smaller or a larger metric is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricMode {
    /// Smaller is better (a loss).
    Min,
    /// Larger is better (an accuracy).
    Max,
}

/// How a [`Checkpointer`] names and keeps checkpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointerConfig {
    /// File names are `<prefix>-<step, 12 digits>.tempo`.
    pub prefix: String,
    /// How many of the most recent checkpoints to keep (at least 1).
    pub keep_last: usize,
    /// Also keep the best checkpoint by this key of [`TrainingState::metadata`]
    /// (a number), whatever its age.
    pub keep_best: Option<(String, MetricMode)>,
}

impl Default for CheckpointerConfig {
    fn default() -> Self {
        CheckpointerConfig {
            prefix: "ckpt".into(),
            keep_last: 3,
            keep_best: None,
        }
    }
}

/// A checkpoint file of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointEntry {
    /// The file.
    pub path: PathBuf,
    /// The step it was saved at.
    pub step: u64,
}

/// What [`Checkpointer::load_latest_intact`] loaded, and what it skipped.
#[derive(Debug)]
pub struct LatestCheckpoint {
    /// The state of the newest checkpoint that loads.
    pub state: TrainingState,
    /// Its file and step.
    pub entry: CheckpointEntry,
    /// The newer checkpoints that did not load, newest first.
    pub skipped: Vec<SkippedCheckpoint>,
}

/// A checkpoint that did not load, and why.
#[derive(Debug)]
pub struct SkippedCheckpoint {
    /// Its file and step.
    pub entry: CheckpointEntry,
    /// Why it did not load.
    pub error: CkptError,
}

impl std::fmt::Display for SkippedCheckpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "skipped `{}` (step {}): {}",
            self.entry.path.display(),
            self.entry.step,
            self.error
        )
    }
}

/// Saves training states into a directory, keeping the last N (and the best).
///
/// Every save is atomic, so the directory always holds complete checkpoints only;
/// older ones are deleted after the new one is safely on disk.
#[derive(Debug, Clone)]
pub struct Checkpointer {
    dir: PathBuf,
    config: CheckpointerConfig,
}

impl Checkpointer {
    /// A checkpointer writing into `dir` (created if needed).
    pub fn new(
        dir: impl Into<PathBuf>,
        config: CheckpointerConfig,
    ) -> Result<Checkpointer, CkptError> {
        if config.keep_last == 0 {
            return Err(CkptError::InvalidConfig {
                what: "keep_last",
                detail: "must be at least 1, found 0".into(),
            });
        }
        if config.prefix.is_empty() || config.prefix.contains(['/', '\\']) {
            return Err(CkptError::InvalidConfig {
                what: "prefix",
                detail: format!(
                    "must be a non-empty file name part, found `{}`",
                    config.prefix
                ),
            });
        }
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(CkptError::io(&dir))?;
        Ok(Checkpointer { dir, config })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file a state saved at `step` goes to.
    pub fn path_for(&self, step: u64) -> PathBuf {
        self.dir
            .join(format!("{}-{step:012}.tempo", self.config.prefix))
    }

    /// The checkpoints in the directory, oldest (smallest step) first.
    pub fn list(&self) -> Result<Vec<CheckpointEntry>, CkptError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(CkptError::io(&self.dir))? {
            let entry = entry.map_err(CkptError::io(&self.dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let step = name
                .strip_prefix(self.config.prefix.as_str())
                .and_then(|r| r.strip_prefix('-'))
                .and_then(|r| r.strip_suffix(".tempo"))
                .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|d| d.parse::<u64>().ok());
            if let Some(step) = step {
                out.push(CheckpointEntry {
                    path: entry.path(),
                    step,
                });
            }
        }
        out.sort_by_key(|e| e.step);
        Ok(out)
    }

    /// The most recent checkpoint (largest step), if any.
    pub fn latest(&self) -> Result<Option<PathBuf>, CkptError> {
        Ok(self.list()?.pop().map(|e| e.path))
    }

    /// Loads the most recent intact checkpoint; `Ok(None)` if the directory has none.
    /// A newer checkpoint that cannot be loaded (corrupt, truncated) is skipped: see
    /// [`Checkpointer::load_latest_intact`], which also says which were skipped and why.
    pub fn load_latest(&self) -> Result<Option<TrainingState>, CkptError> {
        Ok(self.load_latest_intact()?.map(|l| l.state))
    }

    /// Loads the most recent checkpoint that loads, newest first, and reports the newer
    /// ones it skipped with their errors; `Ok(None)` if the directory has no
    /// checkpoint, [`CkptError::NoIntactCheckpoint`] if none of them loads.
    pub fn load_latest_intact(&self) -> Result<Option<LatestCheckpoint>, CkptError> {
        let entries = self.list()?;
        if entries.is_empty() {
            return Ok(None);
        }
        let mut skipped = Vec::new();
        for e in entries.into_iter().rev() {
            match load(&e.path) {
                Ok(state) => {
                    return Ok(Some(LatestCheckpoint {
                        state,
                        entry: e,
                        skipped,
                    }))
                }
                Err(error) => skipped.push(SkippedCheckpoint { entry: e, error }),
            }
        }
        Err(CkptError::NoIntactCheckpoint {
            dir: self.dir.clone(),
            skipped: skipped
                .iter()
                .map(SkippedCheckpoint::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        })
    }

    /// The metric of a checkpoint, read from its header.
    fn metric(&self, path: &Path, key: &str) -> Result<Option<f64>, CkptError> {
        let o = peek_object(path)?;
        Ok(o.get("metadata")
            .and_then(|m| m.get(key))
            .and_then(|v| match v {
                Object::Float(f) if !f.is_nan() => Some(*f),
                Object::Int(i) => Value::Int(*i).as_f64(),
                _ => None,
            }))
    }

    /// The best checkpoint by the configured metric; `Ok(None)` if no metric is
    /// configured or no checkpoint records it.
    pub fn best(&self) -> Result<Option<PathBuf>, CkptError> {
        let Some((key, mode)) = &self.config.keep_best else {
            return Ok(None);
        };
        let mut best: Option<(f64, PathBuf)> = None;
        for e in self.list()? {
            // A checkpoint whose header cannot be read has no metric to compare.
            let Ok(Some(m)) = self.metric(&e.path, key) else {
                continue;
            };
            let better = match (&best, mode) {
                (None, _) => true,
                (Some((b, _)), MetricMode::Min) => m < *b,
                (Some((b, _)), MetricMode::Max) => m > *b,
            };
            if better {
                best = Some((m, e.path));
            }
        }
        Ok(best.map(|(_, p)| p))
    }

    /// Saves `state` as `path_for(state.step)` (atomically), then deletes the
    /// checkpoints that are neither among the last `keep_last` (by step) nor the best.
    /// The file just written is never deleted, even if older steps are on disk.
    pub fn save(&self, state: &TrainingState) -> Result<PathBuf, CkptError> {
        let step = u64::try_from(state.step).map_err(|_| CkptError::InvalidConfig {
            what: "step",
            detail: format!(
                "a checkpointed step must be non-negative, found {}",
                state.step
            ),
        })?;
        let path = self.path_for(step);
        save(&path, state)?;
        let entries = self.list()?;
        let best = self.best()?;
        let keep_from = entries.len().saturating_sub(self.config.keep_last);
        for (i, e) in entries.iter().enumerate() {
            if i < keep_from && Some(&e.path) != best.as_ref() && e.path != path {
                remove_file(&e.path)?;
            }
        }
        Ok(path)
    }
}
