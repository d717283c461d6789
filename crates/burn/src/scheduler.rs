//! [`TempoLRScheduler`]: any tempo scheduler as a burn [`LrScheduler`].

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use burn_core::module::ParamGroup;
use burn_optim::lr_scheduler::module_lr_scheduler::ModuleLrScheduler;
use burn_optim::lr_scheduler::{LrScheduler, LrSchedulerRecord};
use burn_optim::LearningRate;
use burn_pack::Scalar;
use tempo_param_groups::{Dict, OptimizerParamGroups, ParamGroupError, Value};
use tempo_sched::{build_scheduler, SchedError, SchedulerSpec, SimulatedGroups};

use crate::optimizer::Hyper;
use crate::record::{decode, encode, len_key, read_tokens, token_key};
use crate::{BurnError, TempoOptimizer};

/// What a record of a [`TempoLRScheduler`] says it is.
const FORMAT: &str = "tempo-burn.scheduler/1";
/// The prefix of a scheduler's token stream in its record.
const PREFIX: &str = "tempo";

/// One param group of a [`TempoLRScheduler`]: what its learning rate drives.
#[derive(Debug, Clone)]
pub enum SchedGroup {
    /// A group stepped by one of burn's own optimizers, starting at this learning rate.
    /// The scheduler writes only the group's `lr`, which burn passes to the optimizer.
    Lr(f64),
    /// A group stepped by a [`TempoOptimizer`]: its learning rate starts at the
    /// optimizer's `lr`, and the momentum a scheduler cycles (`betas[0]` or `momentum`,
    /// OneCycleLR's and CyclicLR's `cycle_momentum`) reaches the optimizer.
    Tempo(TempoOptimizer),
}

impl From<f64> for SchedGroup {
    fn from(lr: f64) -> Self {
        SchedGroup::Lr(lr)
    }
}

impl From<&TempoOptimizer> for SchedGroup {
    fn from(opt: &TempoOptimizer) -> Self {
        SchedGroup::Tempo(opt.clone())
    }
}

/// A handle through which a training loop reports the validation metric to a
/// [`TempoLRScheduler`] (ReduceLROnPlateau, and a composite holding one).
///
/// burn's learner does not hand a metric to its schedulers, so the scheduler takes it
/// from this handle: call [`MetricFeed::report`] once per validation (PyTorch's
/// `scheduler.step(val_loss)` once per epoch); the scheduler's next `step` steps with
/// that metric. A scheduler that needs a metric and has no new one keeps its lr, so
/// that a plateau scheduler stepped at every iteration moves once per reported metric.
/// Clones of a feed (and of the schedulers using it) share the reports.
#[derive(Debug, Clone, Default)]
pub struct MetricFeed(Arc<Mutex<(u64, f64)>>);

impl MetricFeed {
    /// Reports a new metric value (a validation loss, an accuracy).
    pub fn report(&self, metric: f64) {
        let mut m = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *m = (m.0 + 1, metric);
    }

    /// The number of reports so far and the last value.
    fn latest(&self) -> (u64, f64) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Any tempo scheduler (every PyTorch scheduler, composite and preset, by
/// [`SchedulerSpec`] or by a typed config) as a burn [`LrScheduler`], with PyTorch's
/// numbers.
///
/// burn calls `step()` before each optimizer step and uses the lr it returns, so the
/// first `step()` returns the lr PyTorch's scheduler sets at construction, and step
/// `k` returns the lr after PyTorch's `k`-th `scheduler.step()`.
///
/// The scheduler keeps its own copy of each param group's values (`lr`, `initial_lr`,
/// and, for a [`SchedGroup::Tempo`] group, the optimizer's momentum), which it writes as
/// PyTorch's scheduler writes an optimizer's groups; the lr of the group it stands for
/// (group 0 unless built by [`TempoLRScheduler::into_module_scheduler`]) is what
/// `step()` returns, and a cycled momentum is written through to the tempo optimizer.
///
/// # Records
///
/// `to_record` writes the scheduler's whole state (PyTorch's `state_dict()`, the group
/// values, whether it has started) as burn record scalars, so burn's checkpointing
/// saves and restores it exactly. burn's `load_record` cannot fail: on a bad record it
/// changes nothing and keeps the error for [`TempoLRScheduler::take_error`];
/// [`TempoLRScheduler::try_load_record`] returns it.
///
/// ```
/// use burn_optim::lr_scheduler::LrScheduler;
/// use tempo_burn::TempoLRScheduler;
///
/// let spec = "MultiStepLR(milestones=[2, 3], gamma=0.5)".parse()?;
/// let mut sched = TempoLRScheduler::new(&spec, 0.1)?;
/// let lrs: Vec<f64> = (0..5).map(|_| sched.step()).collect();
/// assert_eq!(lrs, [0.1, 0.1, 0.05, 0.025, 0.025]);
/// # Ok::<(), tempo_burn::BurnError>(())
/// ```
pub struct TempoLRScheduler {
    inner: Mutex<Box<dyn tempo_sched::LRScheduler>>,
    groups: SimulatedGroups,
    targets: Vec<Option<Hyper>>,
    group: usize,
    started: bool,
    feed: MetricFeed,
    seen: u64,
    error: Option<BurnError>,
}

impl std::fmt::Debug for TempoLRScheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TempoLRScheduler")
            .field("scheduler", &self.lock().name())
            .field("groups", &self.groups.groups())
            .field("group", &self.group)
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

impl Clone for TempoLRScheduler {
    fn clone(&self) -> Self {
        Self {
            inner: Mutex::new(self.lock().clone_box()),
            groups: self.groups.clone(),
            targets: self.targets.clone(),
            group: self.group,
            started: self.started,
            feed: self.feed.clone(),
            seen: self.seen,
            error: self.error.clone(),
        }
    }
}

impl TempoLRScheduler {
    /// The scheduler `spec` describes (any name in [`tempo_sched::SCHEDULER_NAMES`]), on
    /// one group driven by one of burn's own optimizers, starting at `lr`.
    ///
    /// A scheduler that cycles momentum (OneCycleLR's and CyclicLR's default) is
    /// [`BurnError::MomentumNotReachable`] here: use
    /// [`TempoLRScheduler::for_optimizer`] with a [`TempoOptimizer`], or
    /// `cycle_momentum=False`.
    pub fn new(spec: &SchedulerSpec, lr: f64) -> Result<Self, BurnError> {
        Self::from_spec(spec, vec![SchedGroup::Lr(lr)])
    }

    /// The scheduler `spec` describes, on one group driven by the tempo optimizer `opt`
    /// (its lr is the optimizer's `lr`; a cycled momentum reaches the optimizer).
    pub fn for_optimizer(spec: &SchedulerSpec, opt: &TempoOptimizer) -> Result<Self, BurnError> {
        Self::from_spec(spec, vec![SchedGroup::Tempo(opt.clone())])
    }

    /// The scheduler `spec` describes, on the given groups (per-group values such as a
    /// list of `max_lr`s have one entry per group).
    pub fn from_spec(spec: &SchedulerSpec, groups: Vec<SchedGroup>) -> Result<Self, BurnError> {
        Self::build(groups, |opt| build_scheduler(spec, opt))
    }

    /// A scheduler built by `make` on the given groups: any tempo scheduler, by its
    /// typed config (`|g| Ok(Box::new(OneCycleLR::new(g, config)?))`).
    pub fn build(
        groups: Vec<SchedGroup>,
        make: impl FnOnce(
            &mut dyn OptimizerParamGroups,
        ) -> Result<Box<dyn tempo_sched::LRScheduler>, SchedError>,
    ) -> Result<Self, BurnError> {
        if groups.is_empty() {
            return Err(BurnError::CountMismatch {
                what: "parameter groups (at least)",
                expected: 1,
                found: 0,
            });
        }
        let mut dicts = Vec::with_capacity(groups.len());
        let mut targets = Vec::with_capacity(groups.len());
        for g in groups {
            match g {
                SchedGroup::Lr(lr) => {
                    let mut d = Dict::new();
                    d.insert("lr", lr);
                    dicts.push(d);
                    targets.push(None);
                }
                SchedGroup::Tempo(opt) => {
                    dicts.push(opt.hyper().schedulable());
                    targets.push(Some(opt.hyper().clone()));
                }
            }
        }
        let mut dicts = SimulatedGroups::new(dicts);
        let burn_group = targets.iter().position(Option::is_none);
        let inner = make(&mut dicts).map_err(|e| match (e, burn_group) {
            // A scheduler reading the momentum of a group that has none: a group of
            // burn's own optimizers.
            (SchedError::ParamGroup(ParamGroupError::NoMomentum { group }), _)
                if targets.get(group).is_some_and(Option::is_none) =>
            {
                BurnError::MomentumNotReachable {
                    scheduler: "the scheduler",
                    group,
                }
            }
            (
                SchedError::ParamGroup(
                    ParamGroupError::MissingKey { key, .. }
                    | ParamGroupError::WrongType { key, .. },
                ),
                Some(group),
            ) if key == "betas" || key == "momentum" => BurnError::MomentumNotReachable {
                scheduler: "the scheduler",
                group,
            },
            (e, _) => BurnError::Sched(e),
        })?;
        if inner.writes_momentum() {
            if let Some(group) = targets.iter().position(Option::is_none) {
                return Err(BurnError::MomentumNotReachable {
                    scheduler: inner.name(),
                    group,
                });
            }
        }
        let s = Self {
            inner: Mutex::new(inner),
            groups: dicts,
            targets,
            group: 0,
            started: false,
            feed: MetricFeed::default(),
            seen: 0,
            error: None,
        };
        s.write_momentum()?;
        Ok(s)
    }

    /// Feeds the scheduler from `feed` (shared with other schedulers, or kept by a
    /// training loop) instead of its own; reports made before this call count as seen.
    pub fn with_metric_feed(mut self, feed: MetricFeed) -> Self {
        self.seen = feed.latest().0;
        self.feed = feed;
        self
    }

    /// The handle to report validation metrics through (see [`MetricFeed`]).
    pub fn metric_feed(&self) -> MetricFeed {
        self.feed.clone()
    }

    /// The tempo scheduler's name (PyTorch's class name, or the preset's).
    pub fn name(&self) -> &'static str {
        self.lock().name()
    }

    /// The number of param groups.
    pub fn num_groups(&self) -> usize {
        self.groups.num_groups()
    }

    /// Every group's current lr (PyTorch's `get_last_lr()` once started).
    pub fn lrs(&self) -> Result<Vec<f64>, BurnError> {
        let mut out = Vec::with_capacity(self.groups.num_groups());
        self.groups.lrs_into(&mut out)?;
        Ok(out)
    }

    /// The tempo scheduler's state, PyTorch's `scheduler.state_dict()`.
    pub fn state_dict(&self) -> Dict {
        self.lock().state_dict()
    }

    /// burn's `step`, with an error instead of a kept lr: advance (from the second call
    /// on) and return the lr of the group this scheduler stands for.
    pub fn try_step(&mut self) -> Result<LearningRate, BurnError> {
        if self.started {
            let (count, metric) = self.feed.latest();
            let fresh = count > self.seen;
            let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            let groups = &mut self.groups;
            if fresh {
                inner.step_with_metric(groups, metric)?;
            } else if !inner.needs_metric() {
                inner.step(groups)?;
            }
            drop(inner);
            if fresh {
                self.seen = count;
            }
            self.write_momentum()?;
        }
        self.started = true;
        Ok(self.groups.lr(self.group)?)
    }

    /// The error burn's infallible `step` or `load_record` met, if any (then the
    /// scheduler kept its lr or its state); taking it clears it.
    pub fn take_error(&mut self) -> Option<BurnError> {
        self.error.take()
    }

    /// The scheduler's state as a burn record (what burn's `to_record` returns).
    pub fn record(&self) -> LrSchedulerRecord {
        let inner = self.lock();
        let mut v = Dict::new();
        v.insert("format", FORMAT);
        v.insert("scheduler", inner.name());
        v.insert("started", self.started);
        v.insert(
            "groups",
            Value::List(
                self.groups
                    .groups()
                    .iter()
                    .cloned()
                    .map(Value::Dict)
                    .collect(),
            ),
        );
        v.insert("state", inner.state_dict());
        let mut tokens = Vec::new();
        encode(&Value::Dict(v), &mut tokens);
        let mut record =
            LrSchedulerRecord::new().with_scalar(&len_key(PREFIX), tokens.len() as u64);
        for (i, t) in tokens.into_iter().enumerate() {
            record = record.with_scalar(&token_key(PREFIX, i), t);
        }
        record
    }

    /// Restores a record written by [`TempoLRScheduler::record`] (or burn's
    /// `to_record`) for the same scheduler on as many groups; on error nothing changes.
    pub fn try_load_record(&mut self, record: &LrSchedulerRecord) -> Result<(), BurnError> {
        let bad = |reason: String| BurnError::BadRecord {
            what: "scheduler",
            reason,
        };
        let tokens = read_tokens(PREFIX, |k| record.scalar::<Scalar>(k)).map_err(bad)?;
        let v = decode(&tokens).map_err(bad)?;
        let d = v
            .as_dict()
            .ok_or_else(|| bad(format!("expected a dict, found {}", v.type_name())))?;
        let field = |k: &str| d.get(k).ok_or_else(|| bad(format!("no `{k}`")));
        if field("format")?.as_str() != Some(FORMAT) {
            return Err(bad(format!("format {} is not {FORMAT}", field("format")?)));
        }
        let name = self.name();
        if field("scheduler")?.as_str() != Some(name) {
            return Err(bad(format!(
                "it is of {}, this scheduler is {name}",
                field("scheduler")?
            )));
        }
        let started = field("started")?
            .as_bool()
            .ok_or_else(|| bad("`started` is not a bool".into()))?;
        let groups = field("groups")?
            .as_slice()
            .ok_or_else(|| bad("`groups` is not a list".into()))?
            .iter()
            .map(|g| {
                g.as_dict()
                    .cloned()
                    .ok_or_else(|| bad("a group is not a dict".into()))
            })
            .collect::<Result<Vec<Dict>, _>>()?;
        if groups.len() != self.groups.num_groups() {
            return Err(BurnError::CountMismatch {
                what: "parameter groups in the scheduler record",
                expected: self.groups.num_groups(),
                found: groups.len(),
            });
        }
        for g in &groups {
            g.get("lr")
                .and_then(Value::as_f64)
                .ok_or_else(|| bad("a group has no number `lr`".into()))?;
        }
        let state = field("state")?
            .as_dict()
            .ok_or_else(|| bad("`state` is not a dict".into()))?;
        self.inner
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .load_state_dict(state)?;
        self.groups = SimulatedGroups::new(groups);
        self.started = started;
        self.write_momentum()?;
        Ok(())
    }

    /// burn's per-module scheduling: this scheduler as a [`ModuleLrScheduler`] whose
    /// group 0 covers every parameter (burn's base group) and whose group `g` covers
    /// `groups[g - 1]` (the parameters a burn `ModuleOptimizer` steps in that group).
    ///
    /// Each burn group gets a copy of this scheduler standing for its tempo group, so
    /// the groups move exactly as the tempo scheduler's do (a composite, OneCycleLR's
    /// per-group `max_lr`s); the copies share this scheduler's [`MetricFeed`].
    pub fn into_module_scheduler(
        self,
        groups: Vec<ParamGroup>,
    ) -> Result<ModuleLrScheduler, BurnError> {
        if groups.len() + 1 != self.groups.num_groups() {
            return Err(BurnError::CountMismatch {
                what: "burn parameter groups besides the base group",
                expected: self.groups.num_groups() - 1,
                found: groups.len(),
            });
        }
        let view = |g: usize| {
            let mut s = self.clone();
            s.group = g;
            for (i, t) in s.targets.iter_mut().enumerate() {
                if i != g {
                    *t = None;
                }
            }
            s
        };
        let mut module = ModuleLrScheduler::new(view(0));
        for (i, pg) in groups.into_iter().enumerate() {
            module = module.with_group(pg, view(i + 1));
        }
        Ok(module)
    }

    fn lock(&self) -> MutexGuard<'_, Box<dyn tempo_sched::LRScheduler>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes each tempo group's momentum (if the scheduler cycles it) through to its
    /// optimizer.
    fn write_momentum(&self) -> Result<(), BurnError> {
        if !self.lock().writes_momentum() {
            return Ok(());
        }
        for (g, target) in self.targets.iter().enumerate() {
            if let Some(h) = target {
                h.set_momentum_from(&self.groups.groups()[g])?;
            }
        }
        Ok(())
    }
}

impl LrScheduler for TempoLRScheduler {
    /// [`TempoLRScheduler::try_step`]; on error the lr stays and the error is kept
    /// ([`TempoLRScheduler::take_error`]).
    fn step(&mut self) -> LearningRate {
        match self.try_step() {
            Ok(lr) => lr,
            Err(e) => {
                self.error = Some(e);
                self.groups.lr(self.group).unwrap_or(f64::NAN)
            }
        }
    }

    fn to_record(&self) -> LrSchedulerRecord {
        self.record()
    }

    /// [`TempoLRScheduler::try_load_record`]; on error nothing changes and the error is
    /// kept ([`TempoLRScheduler::take_error`]).
    fn load_record(&mut self, record: LrSchedulerRecord) {
        if let Err(e) = self.try_load_record(&record) {
            self.error = Some(e);
        }
    }
}
