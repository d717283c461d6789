//! `tempo train`'s configuration: a TOML file with PyTorch's names, and the defaults.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

/// The default configuration, shipped as `configs/default.toml`.
pub(crate) const DEFAULT_CONFIG: &str = include_str!("../configs/default.toml");

/// Everything that decides a training run's numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TrainConfig {
    /// Seeds the model's init, the train/test split and the per-epoch shuffles.
    pub(crate) seed: u64,
    /// Passes over the training set.
    pub(crate) epochs: usize,
    /// Samples per mini-batch.
    pub(crate) batch_size: usize,
    /// Where the data comes from.
    #[serde(default)]
    pub(crate) data: DataConfig,
    /// The MLP's shape.
    pub(crate) model: ModelConfig,
    /// `{type, kwargs, groups}`: PyTorch's optimizer class and keyword arguments.
    pub(crate) optimizer: Json,
    /// `{type, kwargs, step_every}`: PyTorch's scheduler class and keyword arguments.
    #[serde(default)]
    pub(crate) scheduler: Option<Json>,
    /// How often to save and how many checkpoints to keep.
    #[serde(default)]
    pub(crate) checkpoint: CheckpointConfig,
}

/// The data section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DataConfig {
    /// A CSV file with a header; `None` means the embedded digits.
    #[serde(default)]
    pub(crate) path: Option<PathBuf>,
    /// The class column's name (default: the last column).
    #[serde(default)]
    pub(crate) target_column: Option<String>,
    /// Features are divided by this (default 16 for the digits, 1 for a file).
    #[serde(default)]
    pub(crate) scale: Option<f64>,
    /// The share of samples held out for testing.
    #[serde(default = "default_test_fraction")]
    pub(crate) test_fraction: f64,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            path: None,
            target_column: None,
            scale: None,
            test_fraction: default_test_fraction(),
        }
    }
}

fn default_test_fraction() -> f64 {
    0.2
}

/// The model section: an MLP with ReLU between layers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ModelConfig {
    /// Hidden layer sizes, in order.
    pub(crate) hidden: Vec<usize>,
}

/// The checkpoint section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckpointConfig {
    /// Save every this many epochs (the last epoch is always saved).
    #[serde(default = "one")]
    pub(crate) every: usize,
    /// Keep this many checkpoints.
    #[serde(default = "three")]
    pub(crate) keep: usize,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self { every: 1, keep: 3 }
    }
}

fn one() -> usize {
    1
}
fn three() -> usize {
    3
}

/// When the scheduler steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StepEvery {
    /// After every optimizer step.
    Batch,
    /// After every epoch.
    Epoch,
}

impl TrainConfig {
    /// The embedded default.
    pub(crate) fn default_config() -> Result<Self> {
        Self::parse(DEFAULT_CONFIG, "the default configuration")
    }

    /// Reads a TOML configuration file.
    pub(crate) fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses TOML text; `source` names it in errors.
    pub(crate) fn parse(text: &str, source: &str) -> Result<Self> {
        let config: TrainConfig = toml::from_str(text).map_err(|e| {
            anyhow::anyhow!(
                "{source} is not a valid configuration: {}",
                one_line(&e.to_string())
            )
        })?;
        config.validate().with_context(|| format!("in {source}"))?;
        Ok(config)
    }

    /// The configuration as TOML, as saved in a run directory.
    pub(crate) fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).context("cannot write the configuration as TOML")
    }

    /// Checks what serde cannot: sizes and the spec tables' shapes.
    pub(crate) fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            bail!("epochs must be at least 1, found 0");
        }
        if self.batch_size == 0 {
            bail!("batch_size must be at least 1, found 0");
        }
        if self.model.hidden.contains(&0) {
            bail!(
                "model.hidden sizes must be at least 1, found {:?}",
                self.model.hidden
            );
        }
        if !(self.data.test_fraction > 0.0 && self.data.test_fraction < 1.0) {
            bail!(
                "data.test_fraction must be between 0 and 1, found {}",
                self.data.test_fraction
            );
        }
        spec_type(&self.optimizer, "optimizer")?;
        if let Some(s) = &self.scheduler {
            spec_type(s, "scheduler")?;
            self.step_every()?;
        }
        Ok(())
    }

    /// When the scheduler steps (`scheduler.step_every`, default per batch).
    pub(crate) fn step_every(&self) -> Result<StepEvery> {
        let Some(s) = &self.scheduler else {
            return Ok(StepEvery::Batch);
        };
        match s.get("step_every") {
            None => Ok(StepEvery::Batch),
            Some(Json::String(v)) if v == "batch" => Ok(StepEvery::Batch),
            Some(Json::String(v)) if v == "epoch" => Ok(StepEvery::Epoch),
            Some(other) => {
                bail!("scheduler.step_every must be \"batch\" or \"epoch\", found {other}")
            }
        }
    }

    /// The optimizer's class name.
    pub(crate) fn optimizer_type(&self) -> &str {
        self.optimizer
            .get("type")
            .and_then(Json::as_str)
            .unwrap_or("?")
    }

    /// The scheduler's class name, if there is a scheduler.
    pub(crate) fn scheduler_type(&self) -> Option<&str> {
        self.scheduler
            .as_ref()
            .and_then(|s| s.get("type"))
            .and_then(Json::as_str)
    }

    /// Sets `optimizer.kwargs.lr`, and the peak `max_lr` of a OneCycleLR or CyclicLR
    /// scheduler, which set the lr themselves.
    pub(crate) fn set_lr(&mut self, lr: f64) -> Result<()> {
        kwargs_mut(&mut self.optimizer, "optimizer")?.insert("lr".into(), Json::from(lr));
        if matches!(self.scheduler_type(), Some("OneCycleLR" | "CyclicLR")) {
            if let Some(s) = self.scheduler.as_mut() {
                kwargs_mut(s, "scheduler")?.insert("max_lr".into(), Json::from(lr));
            }
        }
        Ok(())
    }

    /// The scheduler spec to build, without the CLI's `step_every` key, and with the
    /// run's length filled in where the config leaves it out (OneCycleLR's
    /// `total_steps`, transformers' `num_training_steps`), and transformers' schedules
    /// given the optimizer's lr (transformers reads `optimizer.defaults["lr"]`).
    pub(crate) fn scheduler_spec(&self, batches_per_epoch: usize) -> Result<Option<Json>> {
        let Some(s) = &self.scheduler else {
            return Ok(None);
        };
        let total = match self.step_every()? {
            StepEvery::Batch => self.epochs * batches_per_epoch,
            StepEvery::Epoch => self.epochs,
        };
        let optimizer_lr = self
            .optimizer
            .get("kwargs")
            .and_then(|k| k.get("lr"))
            .cloned();
        let mut s = s.clone();
        if let Some(obj) = s.as_object_mut() {
            obj.remove("step_every");
        }
        fill_run_length(&mut s, total, optimizer_lr.as_ref())?;
        Ok(Some(s))
    }
}

/// transformers' schedules that take `num_training_steps` (and, but for
/// `warmup_stable_decay`, need it).
pub(crate) const TRANSFORMERS_WITH_LENGTH: &[&str] = &[
    "transformers:linear",
    "transformers:cosine",
    "transformers:cosine_with_restarts",
    "transformers:polynomial",
    "transformers:cosine_with_min_lr",
    "transformers:cosine_warmup_with_min_lr",
    "transformers:warmup_stable_decay",
];

/// Fills in, here and in every child, the length of a schedule that spans the run when
/// the config leaves it out: OneCycleLR's `total_steps`, transformers'
/// `num_training_steps` (not for `warmup_stable_decay` given `num_stable_steps`); and
/// transformers' `optimizer_lr`.
fn fill_run_length(spec: &mut Json, total: usize, optimizer_lr: Option<&Json>) -> Result<()> {
    let kind = spec
        .get("type")
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_string();
    if kind == "OneCycleLR" {
        let kwargs = kwargs_mut(spec, "scheduler")?;
        let given = ["total_steps", "epochs", "steps_per_epoch"]
            .iter()
            .any(|k| kwargs.contains_key(*k));
        if !given {
            kwargs.insert("total_steps".into(), Json::from(total));
        }
    }
    if kind.starts_with("transformers:") {
        let kwargs = kwargs_mut(spec, "scheduler")?;
        let stable_given = kwargs.contains_key("num_stable_steps")
            || kwargs
                .get("scheduler_specific_kwargs")
                .is_some_and(|k| k.get("num_stable_steps").is_some());
        if TRANSFORMERS_WITH_LENGTH.contains(&kind.as_str())
            && !kwargs.contains_key("num_training_steps")
            && !(kind == "transformers:warmup_stable_decay" && stable_given)
        {
            kwargs.insert("num_training_steps".into(), Json::from(total));
        }
        if let Some(lr) = optimizer_lr {
            kwargs.entry("optimizer_lr").or_insert_with(|| lr.clone());
        }
    }
    if let Some(Json::Array(children)) = spec.get_mut("schedulers") {
        for c in children {
            fill_run_length(c, total, optimizer_lr)?;
        }
    }
    Ok(())
}

/// The `type` of a `{type, kwargs}` table.
fn spec_type<'a>(spec: &'a Json, what: &str) -> Result<&'a str> {
    let Some(obj) = spec.as_object() else {
        bail!("[{what}] must be a table with `type` and `kwargs`");
    };
    match obj.get("type") {
        Some(Json::String(t)) => Ok(t),
        Some(other) => bail!("{what}.type must be a class name such as \"AdamW\", found {other}"),
        None => bail!("[{what}] has no `type` (a PyTorch class name such as \"AdamW\")"),
    }
}

/// `spec.kwargs`, created if absent.
fn kwargs_mut<'a>(spec: &'a mut Json, what: &str) -> Result<&'a mut Map<String, Json>> {
    let Some(obj) = spec.as_object_mut() else {
        bail!("[{what}] must be a table with `type` and `kwargs`");
    };
    let kwargs = obj
        .entry("kwargs")
        .or_insert_with(|| Json::Object(Map::new()));
    match kwargs {
        Json::Object(map) => Ok(map),
        other => bail!("{what}.kwargs must be a table, found {other}"),
    }
}

/// Squeezes a multi-line parser message onto one line.
pub(crate) fn one_line(s: &str) -> String {
    s.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '|' || c == ' ' || c == '^'))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_default_config_parses_to_the_documented_default() {
        let c = TrainConfig::default_config().unwrap();
        assert_eq!(c.seed, 0);
        assert_eq!(c.epochs, 15);
        assert_eq!(c.batch_size, 32);
        assert_eq!(c.model.hidden, vec![128]);
        assert_eq!(c.optimizer_type(), "AdamW");
        assert_eq!(c.scheduler_type(), Some("OneCycleLR"));
        assert_eq!(c.step_every().unwrap(), StepEvery::Batch);
        assert_eq!(c.data.path, None);
        assert_eq!(c.checkpoint, CheckpointConfig { every: 1, keep: 3 });
        // The file on disk is the one embedded.
        let on_disk =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/configs/default.toml"))
                .unwrap();
        assert_eq!(TrainConfig::parse(&on_disk, "file").unwrap(), c);
    }

    #[test]
    fn onecycle_total_steps_is_derived_from_the_run_length() {
        let c = TrainConfig::default_config().unwrap();
        let spec = c.scheduler_spec(45).unwrap().unwrap();
        assert_eq!(spec["kwargs"]["total_steps"], Json::from(15 * 45));
        assert!(spec.get("step_every").is_none());
    }

    #[test]
    fn transformers_schedules_get_the_run_length_and_the_optimizers_lr() {
        let text = DEFAULT_CONFIG.replace(
            "type = \"OneCycleLR\"",
            "type = \"transformers:cosine_with_min_lr\"",
        );
        let mut c = TrainConfig::parse(&text, "x.toml").unwrap();
        let kwargs = c.scheduler.as_mut().unwrap()["kwargs"]
            .as_object_mut()
            .unwrap();
        kwargs.clear();
        kwargs.insert("num_warmup_steps".into(), Json::from(10));
        kwargs.insert(
            "scheduler_specific_kwargs".into(),
            serde_json::json!({"min_lr": 1e-5}),
        );
        let spec = c.scheduler_spec(45).unwrap().unwrap();
        assert_eq!(spec["kwargs"]["num_training_steps"], Json::from(15 * 45));
        assert_eq!(spec["kwargs"]["optimizer_lr"], c.optimizer["kwargs"]["lr"]);
        // Given lengths are kept; a stable phase makes warmup_stable_decay's optional.
        let mut c2 = c.clone();
        let s = c2.scheduler.as_mut().unwrap();
        s["type"] = Json::from("transformers:warmup_stable_decay");
        s["kwargs"] =
            serde_json::json!({"num_warmup_steps": 5, "num_decay_steps": 5, "num_stable_steps": 7});
        let spec = c2.scheduler_spec(45).unwrap().unwrap();
        assert!(spec["kwargs"].get("num_training_steps").is_none(), "{spec}");
        c.scheduler.as_mut().unwrap()["kwargs"]["num_training_steps"] = Json::from(99);
        let spec = c.scheduler_spec(45).unwrap().unwrap();
        assert_eq!(spec["kwargs"]["num_training_steps"], Json::from(99));
    }

    #[test]
    fn lr_override_sets_the_onecycle_peak() {
        let mut c = TrainConfig::default_config().unwrap();
        c.set_lr(0.05).unwrap();
        assert_eq!(c.optimizer["kwargs"]["lr"], Json::from(0.05));
        assert_eq!(c.scheduler.unwrap()["kwargs"]["max_lr"], Json::from(0.05));
    }

    #[test]
    fn config_round_trips_through_toml() {
        let c = TrainConfig::default_config().unwrap();
        let back = TrainConfig::parse(&c.to_toml().unwrap(), "round trip").unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn bad_configs_say_what_is_wrong() {
        let bad_key = DEFAULT_CONFIG.replace("batch_size = 32", "batch_sise = 32");
        let e = TrainConfig::parse(&bad_key, "x.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("batch_sise"), "{e}");
        let bad_step = DEFAULT_CONFIG.replace("step_every = \"batch\"", "step_every = \"day\"");
        let e = format!("{:#}", TrainConfig::parse(&bad_step, "x.toml").unwrap_err());
        assert!(e.contains("\"batch\" or \"epoch\""), "{e}");
        let zero = DEFAULT_CONFIG.replace("epochs = 15", "epochs = 0");
        let e = format!("{:#}", TrainConfig::parse(&zero, "x.toml").unwrap_err());
        assert!(e.contains("epochs must be at least 1"), "{e}");
    }
}
