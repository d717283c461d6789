//! ChainedScheduler.

use tempo_param_groups::{Dict, OptimizerParamGroups, Value};

use super::{
    children_state, insert_initial_step_keys, load_children, new_dict, read_initial_step_keys,
};
use crate::base::{check_groups, current_lrs, invalid, read_lrs};
use crate::state::{float_list, StateReader};
use crate::{LRScheduler, SchedError};

const NAME: &str = "ChainedScheduler";

/// Steps all its children, in order, at every step, so their (multiplicative) rules
/// compose: PyTorch's `torch.optim.lr_scheduler.ChainedScheduler`.
///
/// Unlike PyTorch, a child may be a [`ReduceLROnPlateau`](crate::ReduceLROnPlateau): with
/// [`step_with_metric`](LRScheduler::step_with_metric) it gets the metric, the other
/// children step. A failing child leaves every child and every group as they were: the
/// children that had stepped take their step back
/// ([`undo_step`](LRScheduler::undo_step)) and each group's `lr` (and, if a child cycles
/// momentum, `momentum` and `betas`) gets its value from before the step back (an lr is
/// put back as a float: an int lr comes back as the equal float).
pub struct ChainedScheduler {
    children: Vec<Box<dyn LRScheduler>>,
    last_lr: Vec<f64>,
    /// Whether an outer SequentialLR gave this one its initial step (PyTorch's
    /// `_initial_step`), which adds `_step_count` (0) and `_is_initial` to its state.
    initial_stepped: bool,
    /// Not state: `initial_stepped` before the last successful step.
    prev_initial_stepped: bool,
    /// Not state: the `last_lr` before the last successful step, and the buffer the next
    /// one is read into.
    scratch: Vec<f64>,
    /// Not state: the group values a failing step puts back, group by group.
    saved: Vec<Option<Value>>,
    /// Not state: the lrs a failing step puts back, when its children change nothing
    /// else (then `saved` is empty).
    saved_lrs: Vec<f64>,
    /// Not state: whether a child cycles momentum, asked of the children when they
    /// are set (it depends on their configuration, not on their step), not every step.
    /// (Whether a child needs a metric can change as it steps: a SequentialLR's.)
    writes_momentum: bool,
}

/// Whether any child cycles momentum.
fn any_writes_momentum(children: &[Box<dyn LRScheduler>]) -> bool {
    children.iter().any(|c| c.writes_momentum())
}

/// The group values a step of children that never write momentum may change.
const LR_KEYS: &[&str] = &["lr"];
/// The group values a step may change when a child cycles momentum.
const MOMENTUM_KEYS: &[&str] = &["lr", "momentum", "betas"];

impl std::fmt::Debug for ChainedScheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.children.iter().map(|c| c.name()).collect();
        f.debug_struct("ChainedScheduler")
            .field("children", &names)
            .finish()
    }
}

impl ChainedScheduler {
    /// Takes children already built on `opt` (their initial steps have composed).
    pub fn new(
        opt: &mut dyn OptimizerParamGroups,
        schedulers: Vec<Box<dyn LRScheduler>>,
    ) -> Result<Self, SchedError> {
        if schedulers.is_empty() {
            return Err(invalid(
                NAME,
                "schedulers",
                "at least one scheduler",
                "an empty list",
            ));
        }
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
        let last_lr = current_lrs(opt)?;
        let writes_momentum = any_writes_momentum(&schedulers);
        Ok(ChainedScheduler {
            children: schedulers,
            last_lr,
            initial_stepped: false,
            prev_initial_stepped: false,
            scratch: Vec::with_capacity(n),
            saved: Vec::with_capacity(n * MOMENTUM_KEYS.len()),
            saved_lrs: Vec::with_capacity(n),
            writes_momentum,
        })
    }

    /// The children, in order.
    pub fn schedulers(&self) -> &[Box<dyn LRScheduler>] {
        &self.children
    }

    /// Runs `f` on every child, then reads the new lrs; on error, takes the children's
    /// steps back and puts the group values back.
    ///
    /// Allocates nothing once the buffers have their size, except (through
    /// [`OptimizerParamGroups::get`]) the copy of a list-valued `betas` it keeps when a
    /// child cycles momentum.
    fn each(
        &mut self,
        opt: &mut dyn OptimizerParamGroups,
        mut f: impl FnMut(&mut dyn LRScheduler, &mut dyn OptimizerParamGroups) -> Result<(), SchedError>,
    ) -> Result<(), SchedError> {
        check_groups(self.last_lr.len(), opt)?;
        let n = opt.num_groups();
        let keys = if self.writes_momentum {
            MOMENTUM_KEYS
        } else {
            LR_KEYS
        };
        self.saved.clear();
        self.saved_lrs.clear();
        // Children that write only `lr`: the lrs as numbers (one call, no copies of
        // values). Else, or if a group's lr is not a number, every key as a value.
        let numbers = !self.writes_momentum && opt.lrs_into(&mut self.saved_lrs).is_ok();
        if !numbers {
            self.saved_lrs.clear();
            self.saved.reserve(n * keys.len());
            for g in 0..n {
                for &k in keys {
                    self.saved.push(opt.get(g, k).cloned());
                }
            }
        }
        // Errors are moved only on the failing path: an Ok step copies no `Result`.
        let mut failure = None;
        for (i, c) in self.children.iter_mut().enumerate() {
            if let Err(e) = f(c.as_mut(), opt) {
                failure = Some((i, e));
                break;
            }
        }
        if failure.is_none() {
            let mut lrs = std::mem::take(&mut self.scratch);
            lrs.clear();
            lrs.reserve(n);
            match read_lrs(opt, &mut lrs) {
                Ok(()) => std::mem::swap(&mut self.last_lr, &mut lrs),
                Err(e) => failure = Some((self.children.len(), e)),
            }
            self.scratch = lrs;
        }
        let Some((stepped, error)) = failure else {
            self.prev_initial_stepped = self.initial_stepped;
            return Ok(());
        };
        for c in self.children[..stepped].iter_mut().rev() {
            c.undo_step();
        }
        for (g, &lr) in self.saved_lrs.iter().enumerate() {
            // Best effort, as below.
            let _ = opt.set_lr(g, lr);
        }
        for (i, v) in self.saved.drain(..).enumerate() {
            if let Some(v) = v {
                // Best effort: these keys were readable a moment ago.
                let _ = opt.set(i / keys.len(), keys[i % keys.len()], v);
            }
        }
        Err(error)
    }
}

impl LRScheduler for ChainedScheduler {
    fn step(&mut self, opt: &mut dyn OptimizerParamGroups) -> Result<(), SchedError> {
        if self.children.iter().any(|c| c.needs_metric()) {
            return Err(SchedError::MetricRequired { scheduler: NAME });
        }
        self.each(opt, |c, opt| c.step(opt))
    }

    fn step_with_metric(
        &mut self,
        opt: &mut dyn OptimizerParamGroups,
        metric: f64,
    ) -> Result<(), SchedError> {
        self.each(opt, |c, opt| c.step_with_metric(opt, metric))
    }

    fn step_to_epoch(
        &mut self,
        _opt: &mut dyn OptimizerParamGroups,
        epoch: f64,
    ) -> Result<(), SchedError> {
        Err(SchedError::InvalidEpoch {
            scheduler: NAME,
            epoch,
            reason: "ChainedScheduler only steps one epoch at a time",
        })
    }

    fn last_lr(&self) -> &[f64] {
        &self.last_lr
    }

    fn state_dict(&self) -> Dict {
        let mut d = new_dict();
        d.insert("_last_lr", float_list(&self.last_lr));
        if self.initial_stepped {
            insert_initial_step_keys(&mut d);
        }
        d.insert("_schedulers", children_state(&self.children));
        d
    }

    fn load_state_dict(&mut self, state: &Dict) -> Result<(), SchedError> {
        let mut r = StateReader::new(state, NAME);
        let last_lr = r.floats("_last_lr", self.last_lr.len())?;
        let initial_stepped = read_initial_step_keys(&mut r)?;
        let children = load_children(&mut r, NAME, &self.children)?;
        r.finish()?;
        self.last_lr = last_lr;
        self.initial_stepped = initial_stepped;
        self.writes_momentum = any_writes_momentum(&children);
        self.children = children;
        Ok(())
    }

    fn name(&self) -> &'static str {
        NAME
    }

    fn lr_at(&self, _step: u64) -> Option<Vec<f64>> {
        None
    }

    fn clone_box(&self) -> Box<dyn LRScheduler> {
        Box::new(ChainedScheduler {
            children: self.children.clone(),
            last_lr: self.last_lr.clone(),
            initial_stepped: self.initial_stepped,
            prev_initial_stepped: self.prev_initial_stepped,
            scratch: Vec::with_capacity(self.last_lr.len()),
            saved: Vec::new(),
            saved_lrs: Vec::new(),
            writes_momentum: self.writes_momentum,
        })
    }

    fn needs_metric(&self) -> bool {
        self.children.iter().any(|c| c.needs_metric())
    }

    fn undo_epoch(&mut self) {
        for c in &mut self.children {
            c.undo_epoch();
        }
    }

    fn undo_step(&mut self) {
        for c in self.children.iter_mut().rev() {
            c.undo_step();
        }
        std::mem::swap(&mut self.last_lr, &mut self.scratch);
        self.initial_stepped = self.prev_initial_stepped;
    }

    fn writes_momentum(&self) -> bool {
        self.writes_momentum
    }

    /// PyTorch's `_initial_step` of a ChainedScheduler (an outer SequentialLR's
    /// constructor calls it): one ordinary step of every child, with the keys it adds.
    /// (A ReduceLROnPlateau child, which PyTorch does not allow here, takes its own
    /// initial step.)
    fn initial_step(&mut self, opt: &mut dyn OptimizerParamGroups) -> Result<(), SchedError> {
        let before = self.initial_stepped;
        self.each(opt, |c, opt| {
            if c.needs_metric() {
                c.initial_step(opt)
            } else {
                c.step(opt)
            }
        })?;
        self.prev_initial_stepped = before;
        self.initial_stepped = true;
        Ok(())
    }

    /// PyTorch's `_update_lr` on a ChainedScheduler raises `NotImplementedError`.
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
