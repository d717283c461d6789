//! SequentialLR.

use serde::{Deserialize, Serialize};
use tempo_param_groups::{Dict, OptimizerParamGroups, Value};

use super::{
    children_state, insert_initial_step_keys, load_children, new_dict, read_initial_step_keys,
};
use crate::base::{check_groups, invalid};
use crate::state::{float_list, StateReader};
use crate::{LRScheduler, SchedError};

/// The arguments of [`SequentialLR`] besides its children.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SequentialLRConfig {
    /// The epochs at which the next child takes over; one fewer than the children.
    pub milestones: Vec<i64>,
    /// PyTorch's `last_epoch` (-1). As in PyTorch, a SequentialLR built with `k >= 0`
    /// starts counting at `k + 1` but still starts its first child afresh, so every
    /// milestone comes `k + 1` steps early.
    #[serde(default = "crate::base::fresh_run")]
    pub last_epoch: i64,
}

impl Default for SequentialLRConfig {
    fn default() -> Self {
        SequentialLRConfig {
            milestones: Vec::new(),
            last_epoch: -1,
        }
    }
}

const NAME: &str = "SequentialLR";

/// Runs its children one after the other, switching at the milestones: PyTorch's
/// `torch.optim.lr_scheduler.SequentialLR` (e.g. LinearLR warmup, then cosine).
///
/// Construction follows PyTorch: reset every lr to `initial_lr`, undo the epoch each
/// child's constructor counted, redo the first child's initial step. At a milestone the
/// next child restarts at its epoch 0 through its closed form (PyTorch's `_update_lr(0)`).
///
/// Composites nest as in PyTorch 2.15, with its numbers: the undo reaches the leaves of
/// a nested composite (not its own counter), and the first child's initial step is, for
/// a composite, one ordinary step of it (so a nested SequentialLR's milestones come one
/// step early, and a ChainedScheduler's children all take a real step at epoch 0).
/// PyTorch cannot restart a composite at a milestone (`NotImplementedError`): reaching
/// the milestone of a composite child is [`SchedError::CompositeAtMilestone`], and
/// changes nothing.
///
/// Unlike PyTorch, a child may be a [`ReduceLROnPlateau`](crate::ReduceLROnPlateau):
/// [`step_with_metric`](LRScheduler::step_with_metric) passes the metric down (the
/// metric of a milestone step is not used: the switch itself is that step).
pub struct SequentialLR {
    children: Vec<Box<dyn LRScheduler>>,
    milestones: Vec<i64>,
    last_epoch: i64,
    last_lr: Vec<f64>,
    /// Whether an outer SequentialLR gave this one its initial step (PyTorch's
    /// `_initial_step`), which adds `_step_count` (0) and `_is_initial` to its state.
    initial_stepped: bool,
    /// Not state: the `last_lr` before the last successful step, and the buffer the next
    /// one is copied into.
    scratch: Vec<f64>,
    /// Not state: `last_epoch` (and `initial_stepped`) before the last successful step,
    /// and the child it moved.
    prev_epoch: i64,
    prev_initial_stepped: bool,
    prev_child: usize,
}

/// Whether a scheduler is a composite (PyTorch's `hasattr(s, "_schedulers")`).
pub(crate) fn is_composite(s: &dyn LRScheduler) -> bool {
    matches!(s.name(), NAME | "ChainedScheduler")
}

impl std::fmt::Debug for SequentialLR {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.children.iter().map(|c| c.name()).collect();
        f.debug_struct("SequentialLR")
            .field("children", &names)
            .field("milestones", &self.milestones)
            .field("last_epoch", &self.last_epoch)
            .finish()
    }
}

/// Python's `bisect_right` on the list as given (PyTorch does not sort the milestones).
fn bisect_right(list: &[i64], x: i64) -> usize {
    let (mut lo, mut hi) = (0, list.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        if x < list[mid] {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
}

impl SequentialLR {
    /// Takes children already built on `opt` (in order) and applies PyTorch's
    /// construction to them.
    pub fn new(
        opt: &mut dyn OptimizerParamGroups,
        schedulers: Vec<Box<dyn LRScheduler>>,
        config: SequentialLRConfig,
    ) -> Result<Self, SchedError> {
        if schedulers.is_empty() {
            return Err(invalid(
                NAME,
                "schedulers",
                "at least one scheduler",
                "an empty list",
            ));
        }
        if config.milestones.len() != schedulers.len() - 1 {
            return Err(SchedError::InvalidArgument {
                scheduler: NAME,
                arg: "milestones",
                expected: "one fewer milestone than schedulers",
                found: format!(
                    "{} milestones for {} schedulers",
                    config.milestones.len(),
                    schedulers.len()
                ),
            });
        }
        crate::base::check_last_epoch(NAME, config.last_epoch)?;
        let n = opt.num_groups();
        for c in &schedulers {
            if c.last_lr().len() != n {
                return Err(SchedError::GroupCountMismatch {
                    arg: format!("{}'s param groups", c.name()),
                    expected: n,
                    got: c.last_lr().len(),
                });
            }
        }
        let mut s = SequentialLR {
            children: schedulers,
            milestones: config.milestones,
            last_epoch: 0,
            last_lr: Vec::with_capacity(n),
            initial_stepped: false,
            scratch: Vec::with_capacity(n),
            prev_epoch: 0,
            prev_initial_stepped: false,
            prev_child: 0,
        };
        for g in 0..n {
            let lr = match opt.initial_lr(g) {
                Some(v) => v,
                None => opt.lr(g)?,
            };
            opt.set_lr(g, lr)?;
        }
        s.undo_epoch();
        let idx = bisect_right(&s.milestones, 0);
        s.children[idx].initial_step(opt)?;
        s.moved(idx, config.last_epoch + 1);
        Ok(s)
    }

    /// The children, in order.
    pub fn schedulers(&self) -> &[Box<dyn LRScheduler>] {
        &self.children
    }

    fn step_inner(
        &mut self,
        opt: &mut dyn OptimizerParamGroups,
        metric: Option<f64>,
    ) -> Result<(), SchedError> {
        check_groups(self.last_lr.len(), opt)?;
        let epoch = self.last_epoch + 1;
        let idx = bisect_right(&self.milestones, epoch);
        let child = &mut self.children[idx];
        if idx > 0 && self.milestones[idx - 1] == epoch {
            if is_composite(child.as_ref()) {
                return Err(SchedError::CompositeAtMilestone {
                    child: child.name(),
                    milestone: epoch,
                });
            }
            child.restart_at(opt, 0)?;
        } else {
            match metric {
                Some(m) => child.step_with_metric(opt, m)?,
                None => child.step(opt)?,
            }
        }
        self.moved(idx, epoch);
        Ok(())
    }

    /// After child `idx` moved successfully: its lrs become `last_lr` and the epoch
    /// `epoch` (the old ones are kept for [`undo_step`](LRScheduler::undo_step)).
    fn moved(&mut self, idx: usize, epoch: i64) {
        let mut lrs = std::mem::take(&mut self.scratch);
        lrs.clear();
        lrs.extend_from_slice(self.children[idx].last_lr());
        std::mem::swap(&mut self.last_lr, &mut lrs);
        self.scratch = lrs;
        self.prev_epoch = self.last_epoch;
        self.prev_initial_stepped = self.initial_stepped;
        self.prev_child = idx;
        self.last_epoch = epoch;
    }
}

impl LRScheduler for SequentialLR {
    fn step(&mut self, opt: &mut dyn OptimizerParamGroups) -> Result<(), SchedError> {
        self.step_inner(opt, None)
    }

    fn step_with_metric(
        &mut self,
        opt: &mut dyn OptimizerParamGroups,
        metric: f64,
    ) -> Result<(), SchedError> {
        self.step_inner(opt, Some(metric))
    }

    fn step_to_epoch(
        &mut self,
        _opt: &mut dyn OptimizerParamGroups,
        epoch: f64,
    ) -> Result<(), SchedError> {
        Err(SchedError::InvalidEpoch {
            scheduler: NAME,
            epoch,
            reason: "SequentialLR only steps one epoch at a time",
        })
    }

    fn last_lr(&self) -> &[f64] {
        &self.last_lr
    }

    fn state_dict(&self) -> Dict {
        let mut d = new_dict();
        d.insert(
            "_milestones",
            Value::List(self.milestones.iter().map(|&m| Value::Int(m)).collect()),
        );
        d.insert("last_epoch", Value::Int(self.last_epoch));
        d.insert("_last_lr", float_list(&self.last_lr));
        if self.initial_stepped {
            insert_initial_step_keys(&mut d);
        }
        d.insert("_schedulers", children_state(&self.children));
        d
    }

    fn load_state_dict(&mut self, state: &Dict) -> Result<(), SchedError> {
        let mut r = StateReader::new(state, NAME);
        let items = r.list("_milestones")?;
        let milestones = items
            .iter()
            .map(|v| v.as_i64())
            .collect::<Option<Vec<_>>>()
            .filter(|m| m.len() + 1 == self.children.len())
            .ok_or_else(|| SchedError::StateWrongType {
                scheduler: NAME,
                key: "_milestones".into(),
                expected: "a list of ints, one fewer than the children",
                found: Value::List(items.to_vec()).to_string(),
            })?;
        let last_epoch = r.int("last_epoch")?;
        let last_lr = r.floats("_last_lr", self.last_lr.len())?;
        let initial_stepped = read_initial_step_keys(&mut r)?;
        let children = load_children(&mut r, NAME, &self.children)?;
        r.finish()?;
        self.milestones = milestones;
        self.last_epoch = last_epoch;
        self.last_lr = last_lr;
        self.initial_stepped = initial_stepped;
        self.children = children;
        Ok(())
    }

    fn name(&self) -> &'static str {
        NAME
    }

    /// Child `i`'s closed form at the epoch since its milestone. Equal to stepping when
    /// each later child's schedule restarts at its base lr (every closed-form scheduler
    /// does) and no later child rewrote `initial_lr` (OneCycleLR does, and then, as in
    /// PyTorch, the first child starts from that); `None` if a child has no closed form
    /// or is a composite.
    fn lr_at(&self, step: u64) -> Option<Vec<f64>> {
        if self.children.iter().any(|c| is_composite(c.as_ref())) {
            return None;
        }
        let e = i64::try_from(step).ok()?;
        let idx = bisect_right(&self.milestones, e);
        let local = if idx == 0 {
            e
        } else {
            e - self.milestones[idx - 1]
        };
        self.children[idx].lr_at(u64::try_from(local).ok()?)
    }

    fn clone_box(&self) -> Box<dyn LRScheduler> {
        Box::new(SequentialLR {
            children: self.children.clone(),
            milestones: self.milestones.clone(),
            last_epoch: self.last_epoch,
            last_lr: self.last_lr.clone(),
            initial_stepped: self.initial_stepped,
            scratch: Vec::with_capacity(self.last_lr.len()),
            prev_epoch: self.prev_epoch,
            prev_initial_stepped: self.prev_initial_stepped,
            prev_child: self.prev_child,
        })
    }

    fn needs_metric(&self) -> bool {
        let epoch = self.last_epoch + 1;
        let idx = bisect_right(&self.milestones, epoch);
        let switching = idx > 0 && self.milestones[idx - 1] == epoch;
        !switching && self.children[idx].needs_metric()
    }

    fn undo_epoch(&mut self) {
        for c in &mut self.children {
            c.undo_epoch();
        }
    }

    fn undo_step(&mut self) {
        if let Some(c) = self.children.get_mut(self.prev_child) {
            c.undo_step();
        }
        std::mem::swap(&mut self.last_lr, &mut self.scratch);
        self.last_epoch = self.prev_epoch;
        self.initial_stepped = self.prev_initial_stepped;
    }

    fn writes_momentum(&self) -> bool {
        self.children.iter().any(|c| c.writes_momentum())
    }

    /// PyTorch's `_initial_step` of a nested SequentialLR (the outer one's constructor
    /// calls it): one ordinary [`step`](LRScheduler::step), with the keys it adds.
    fn initial_step(&mut self, opt: &mut dyn OptimizerParamGroups) -> Result<(), SchedError> {
        let before = self.initial_stepped;
        self.step_inner(opt, None)?;
        self.prev_initial_stepped = before;
        self.initial_stepped = true;
        Ok(())
    }

    /// PyTorch's `_update_lr` on a SequentialLR raises `NotImplementedError`.
    fn restart_at(
        &mut self,
        _opt: &mut dyn OptimizerParamGroups,
        epoch: i64,
    ) -> Result<(), SchedError> {
        Err(SchedError::CompositeAtMilestone {
            child: NAME,
            milestone: epoch,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::bisect_right;

    #[test]
    fn bisect_right_is_pythons() {
        assert_eq!(bisect_right(&[], 3), 0);
        assert_eq!(bisect_right(&[5], 4), 0);
        assert_eq!(bisect_right(&[5], 5), 1);
        assert_eq!(bisect_right(&[2, 5, 5, 9], 5), 3);
        // Unsorted, as PyTorch allows: the same probes as Python's loop.
        assert_eq!(bisect_right(&[9, 2], 3), 2);
    }
}
