//! ReduceLROnPlateau.

use serde::{Deserialize, Serialize};
use tempo_param_groups::{Dict, OptimizerParamGroups, Value};

use crate::base::{check_groups, current_lrs, invalid, read_lrs};
use crate::state::{float_list, StateReader};
use crate::{LRScheduler, PerGroup, SchedError};

/// Whether a lower or a higher metric is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlateauMode {
    /// Lower is better (a loss).
    #[default]
    Min,
    /// Higher is better (an accuracy).
    Max,
}

/// How `threshold` defines a significant improvement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdMode {
    /// Relative: better than `best * (1 ∓ threshold)`.
    #[default]
    Rel,
    /// Absolute: better than `best ∓ threshold`.
    Abs,
}

/// The arguments of [`ReduceLROnPlateau`] (PyTorch's names and defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReduceLROnPlateauConfig {
    /// `min` (default) or `max`.
    pub mode: PlateauMode,
    /// The factor the lr is multiplied by (0.1), < 1.
    pub factor: f64,
    /// Epochs without improvement tolerated before a reduction (10).
    pub patience: u64,
    /// The significance threshold (1e-4).
    pub threshold: f64,
    /// `rel` (default) or `abs`.
    pub threshold_mode: ThresholdMode,
    /// Epochs to wait after a reduction before counting bad epochs again (0).
    pub cooldown: u64,
    /// The lower bound of each group's lr (0).
    pub min_lr: PerGroup<f64>,
    /// Reductions smaller than this are skipped (1e-8).
    pub eps: f64,
}

impl Default for ReduceLROnPlateauConfig {
    fn default() -> Self {
        ReduceLROnPlateauConfig {
            mode: PlateauMode::Min,
            factor: 0.1,
            patience: 10,
            threshold: 1e-4,
            threshold_mode: ThresholdMode::Rel,
            cooldown: 0,
            min_lr: PerGroup::All(0.0),
            eps: 1e-8,
        }
    }
}

/// Reduces the lr when a metric stops improving: PyTorch's
/// `torch.optim.lr_scheduler.ReduceLROnPlateau`.
///
/// Driven by [`step_with_metric`](LRScheduler::step_with_metric); a plain
/// [`step`](LRScheduler::step) is [`SchedError::MetricRequired`]. It writes no
/// `initial_lr` and changes nothing at construction. Unlike PyTorch, it can be a child
/// of [`SequentialLR`](crate::SequentialLR) and [`ChainedScheduler`](crate::ChainedScheduler)
/// (warmup, then plateau): at its milestone it restarts from the base lr (the groups'
/// `initial_lr` when it was built) and the metrics drive it from the next step on. A NaN
/// metric is never an improvement.
#[derive(Debug, Clone)]
pub struct ReduceLROnPlateau {
    factor: f64,
    default_min_lr: Option<f64>,
    min_lrs: Vec<f64>,
    patience: i64,
    cooldown: i64,
    eps: f64,
    last_epoch: i64,
    last_lr: Vec<f64>,
    mode: PlateauMode,
    threshold: f64,
    threshold_mode: ThresholdMode,
    best: f64,
    cooldown_counter: i64,
    num_bad_epochs: i64,
    /// Where a SequentialLR milestone restarts it: each group's `initial_lr` (else its lr)
    /// at construction. Not state: a rebuilt scheduler recomputes it.
    restart_lrs: Vec<f64>,
    /// Not state: the `last_lr` before the last successful step (kept for
    /// [`undo_step`](LRScheduler::undo_step)), and the buffer the next one is read into.
    scratch: Vec<f64>,
    /// Not state: the lr reductions of a step, collected before any is written.
    writes: Vec<(usize, f64)>,
    /// Not state: the counters before the last successful step, and the `min_lrs` it
    /// replaced, if it did.
    prev: Counters,
    prev_min_lrs: Option<Vec<f64>>,
}

/// What a step moves besides `last_lr` (and, rarely, `min_lrs`).
#[derive(Debug, Clone, Copy)]
struct Counters {
    last_epoch: i64,
    best: f64,
    cooldown_counter: i64,
    num_bad_epochs: i64,
}

const NAME: &str = "ReduceLROnPlateau";

impl ReduceLROnPlateau {
    /// Validates the arguments and records the current lrs; the groups are not written.
    pub fn new(
        opt: &mut dyn OptimizerParamGroups,
        config: ReduceLROnPlateauConfig,
    ) -> Result<Self, SchedError> {
        if config.factor >= 1.0 {
            return Err(invalid(NAME, "factor", "< 1.0", config.factor));
        }
        let n = opt.num_groups();
        let (default_min_lr, min_lrs) = match &config.min_lr {
            PerGroup::All(v) => (Some(*v), vec![*v; n]),
            each => (None, each.resolve("min_lr", n)?),
        };
        let patience = i64::try_from(config.patience)
            .map_err(|_| invalid(NAME, "patience", "an int", config.patience))?;
        let cooldown = i64::try_from(config.cooldown)
            .map_err(|_| invalid(NAME, "cooldown", "an int", config.cooldown))?;
        let worse = mode_worse(config.mode);
        let last_lr = current_lrs(opt)?;
        let restart_lrs = (0..n)
            .map(|g| opt.initial_lr(g).unwrap_or(last_lr[g]))
            .collect();
        Ok(ReduceLROnPlateau {
            factor: config.factor,
            default_min_lr,
            min_lrs,
            patience,
            cooldown,
            eps: config.eps,
            last_epoch: 0,
            last_lr,
            mode: config.mode,
            threshold: config.threshold,
            threshold_mode: config.threshold_mode,
            best: worse,
            cooldown_counter: 0,
            num_bad_epochs: 0,
            restart_lrs,
            scratch: Vec::with_capacity(n),
            writes: Vec::with_capacity(n),
            prev: Counters {
                last_epoch: 0,
                best: worse,
                cooldown_counter: 0,
                num_bad_epochs: 0,
            },
            prev_min_lrs: None,
        })
    }

    fn counters(&self) -> Counters {
        Counters {
            last_epoch: self.last_epoch,
            best: self.best,
            cooldown_counter: self.cooldown_counter,
            num_bad_epochs: self.num_bad_epochs,
        }
    }

    /// Reads the groups' lrs into the buffer and, if that succeeds, makes them
    /// `last_lr` and `next` the counters (remembering the old ones); on error nothing
    /// changes.
    fn commit(
        &mut self,
        opt: &dyn OptimizerParamGroups,
        next: Counters,
        min_lrs: Option<Vec<f64>>,
    ) -> Result<(), SchedError> {
        let mut lrs = std::mem::take(&mut self.scratch);
        lrs.clear();
        lrs.reserve(self.last_lr.len());
        let result = read_lrs(opt, &mut lrs);
        if result.is_ok() {
            std::mem::swap(&mut self.last_lr, &mut lrs);
            self.prev = self.counters();
            (self.last_epoch, self.best) = (next.last_epoch, next.best);
            self.cooldown_counter = next.cooldown_counter;
            self.num_bad_epochs = next.num_bad_epochs;
            self.prev_min_lrs = min_lrs.map(|m| std::mem::replace(&mut self.min_lrs, m));
        }
        self.scratch = lrs;
        result
    }

    fn is_better(&self, a: f64, best: f64) -> bool {
        match (self.mode, self.threshold_mode) {
            (PlateauMode::Min, ThresholdMode::Rel) => a < best * (1.0 - self.threshold),
            (PlateauMode::Min, ThresholdMode::Abs) => a < best - self.threshold,
            (PlateauMode::Max, ThresholdMode::Rel) => a > best * (self.threshold + 1.0),
            (PlateauMode::Max, ThresholdMode::Abs) => a > best + self.threshold,
        }
    }

    /// The best metric so far.
    pub fn best(&self) -> f64 {
        self.best
    }

    /// Epochs since the last improvement (reset by a reduction and during cooldown).
    pub fn num_bad_epochs(&self) -> u64 {
        self.num_bad_epochs.max(0) as u64
    }
}

fn mode_worse(mode: PlateauMode) -> f64 {
    match mode {
        PlateauMode::Min => f64::INFINITY,
        PlateauMode::Max => f64::NEG_INFINITY,
    }
}

impl LRScheduler for ReduceLROnPlateau {
    fn step(&mut self, _opt: &mut dyn OptimizerParamGroups) -> Result<(), SchedError> {
        Err(SchedError::MetricRequired { scheduler: NAME })
    }

    fn step_with_metric(
        &mut self,
        opt: &mut dyn OptimizerParamGroups,
        metric: f64,
    ) -> Result<(), SchedError> {
        let mut next = self.counters();
        next.last_epoch += 1;
        if self.is_better(metric, next.best) {
            next.best = metric;
            next.num_bad_epochs = 0;
        } else {
            next.num_bad_epochs += 1;
        }
        if next.cooldown_counter > 0 {
            next.cooldown_counter -= 1;
            next.num_bad_epochs = 0;
        }
        let n = opt.num_groups();
        // A new `min_lrs`, when the group count changed and there is one default.
        let mut new_min_lrs = None;
        self.writes.clear();
        self.writes.reserve(n);
        if next.num_bad_epochs > self.patience {
            if self.min_lrs.len() != n {
                match self.default_min_lr {
                    Some(v) => new_min_lrs = Some(vec![v; n]),
                    None => {
                        return Err(SchedError::GroupCountMismatch {
                            arg: "min_lr".into(),
                            expected: n,
                            got: self.min_lrs.len(),
                        })
                    }
                }
            }
            let min_lrs = new_min_lrs.as_deref().unwrap_or(&self.min_lrs);
            for (g, &min_lr) in min_lrs.iter().enumerate().take(n) {
                let old = opt.lr(g)?;
                let scaled = old * self.factor;
                let new = if min_lr > scaled { min_lr } else { scaled };
                if old - new > self.eps {
                    self.writes.push((g, new));
                }
            }
            next.cooldown_counter = self.cooldown;
            next.num_bad_epochs = 0;
        }
        for &(g, lr) in &self.writes {
            opt.set_lr(g, lr)?;
        }
        self.commit(opt, next, new_min_lrs)
    }

    fn step_to_epoch(
        &mut self,
        _opt: &mut dyn OptimizerParamGroups,
        epoch: f64,
    ) -> Result<(), SchedError> {
        Err(SchedError::InvalidEpoch {
            scheduler: NAME,
            epoch,
            reason: "ReduceLROnPlateau steps on a metric",
        })
    }

    fn last_lr(&self) -> &[f64] {
        &self.last_lr
    }

    fn state_dict(&self) -> Dict {
        let mut d = Dict::new();
        d.insert("factor", Value::Float(self.factor));
        d.insert(
            "default_min_lr",
            self.default_min_lr.map_or(Value::None, Value::Float),
        );
        d.insert("min_lrs", float_list(&self.min_lrs));
        d.insert("patience", Value::Int(self.patience));
        d.insert("cooldown", Value::Int(self.cooldown));
        d.insert("eps", Value::Float(self.eps));
        d.insert("last_epoch", Value::Int(self.last_epoch));
        d.insert("_last_lr", float_list(&self.last_lr));
        d.insert("mode_worse", Value::Float(mode_worse(self.mode)));
        d.insert(
            "mode",
            if self.mode == PlateauMode::Min {
                "min"
            } else {
                "max"
            },
        );
        d.insert("threshold", Value::Float(self.threshold));
        d.insert(
            "threshold_mode",
            if self.threshold_mode == ThresholdMode::Rel {
                "rel"
            } else {
                "abs"
            },
        );
        d.insert("best", Value::Float(self.best));
        d.insert("cooldown_counter", Value::Int(self.cooldown_counter));
        d.insert("num_bad_epochs", Value::Int(self.num_bad_epochs));
        d
    }

    fn load_state_dict(&mut self, state: &Dict) -> Result<(), SchedError> {
        let groups = self.last_lr.len();
        let mut r = StateReader::new(state, NAME);
        let mut next = self.clone();
        next.factor = r.float("factor")?;
        next.default_min_lr = match r.value("default_min_lr")? {
            Value::None => None,
            _ => Some(r.float("default_min_lr")?),
        };
        let min_lrs = r.list("min_lrs")?;
        next.min_lrs = r.floats("min_lrs", min_lrs.len())?;
        next.patience = r.int("patience")?;
        next.cooldown = r.int("cooldown")?;
        next.eps = r.float("eps")?;
        next.last_epoch = r.int("last_epoch")?;
        next.last_lr = r.floats("_last_lr", groups)?;
        // Recomputed from `mode` on load, as PyTorch's `_init_is_better` does.
        r.float("mode_worse")?;
        next.mode = match r.choice("mode", &["min", "max"], "'min' or 'max'")? {
            "min" => PlateauMode::Min,
            _ => PlateauMode::Max,
        };
        next.threshold = r.float("threshold")?;
        next.threshold_mode = match r.choice("threshold_mode", &["rel", "abs"], "'rel' or 'abs'")? {
            "rel" => ThresholdMode::Rel,
            _ => ThresholdMode::Abs,
        };
        next.best = r.float("best")?;
        next.cooldown_counter = r.int("cooldown_counter")?;
        next.num_bad_epochs = r.int("num_bad_epochs")?;
        r.finish()?;
        *self = next;
        Ok(())
    }

    fn name(&self) -> &'static str {
        NAME
    }

    fn lr_at(&self, _step: u64) -> Option<Vec<f64>> {
        None
    }

    fn clone_box(&self) -> Box<dyn LRScheduler> {
        Box::new(self.clone())
    }

    fn needs_metric(&self) -> bool {
        true
    }

    fn undo_epoch(&mut self) {
        self.last_epoch -= 1;
    }

    fn undo_step(&mut self) {
        std::mem::swap(&mut self.last_lr, &mut self.scratch);
        (self.last_epoch, self.best) = (self.prev.last_epoch, self.prev.best);
        self.cooldown_counter = self.prev.cooldown_counter;
        self.num_bad_epochs = self.prev.num_bad_epochs;
        if let Some(m) = self.prev_min_lrs.take() {
            self.min_lrs = m;
        }
    }

    fn writes_momentum(&self) -> bool {
        false
    }

    fn initial_step(&mut self, opt: &mut dyn OptimizerParamGroups) -> Result<(), SchedError> {
        check_groups(self.last_lr.len(), opt)?;
        let mut next = self.counters();
        next.last_epoch += 1;
        self.commit(opt, next, None)
    }

    /// At a SequentialLR milestone: back to the base lr (each group's `initial_lr` when
    /// this scheduler was built), as a closed-form scheduler restarts at its base.
    fn restart_at(
        &mut self,
        opt: &mut dyn OptimizerParamGroups,
        epoch: i64,
    ) -> Result<(), SchedError> {
        check_groups(self.last_lr.len(), opt)?;
        for (g, &lr) in self.restart_lrs.iter().enumerate() {
            opt.set_lr(g, lr)?;
        }
        let mut lrs = std::mem::take(&mut self.scratch);
        lrs.clear();
        lrs.extend_from_slice(&self.restart_lrs);
        std::mem::swap(&mut self.last_lr, &mut lrs);
        self.scratch = lrs;
        self.prev = self.counters();
        self.prev_min_lrs = None;
        self.last_epoch = epoch;
        Ok(())
    }
}
