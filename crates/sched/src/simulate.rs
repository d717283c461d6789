//! Trajectories without an optimizer.

use tempo_param_groups::{Dict, OptimizerParamGroups, ParamGroupError, Value};

use crate::{build_scheduler, LRScheduler, SchedError, SchedulerSpec};

/// Param groups with no optimizer behind them: open dicts of hyperparameters, as
/// PyTorch's groups are. What [`simulate`] runs schedulers on; also a handy
/// [`OptimizerParamGroups`] for plotting or testing a schedule.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SimulatedGroups {
    groups: Vec<Dict>,
}

impl SimulatedGroups {
    /// Groups from dicts (each needs at least `lr`).
    pub fn new(groups: Vec<Dict>) -> Self {
        SimulatedGroups { groups }
    }

    /// One group `{"lr": lr}` per lr.
    pub fn with_lrs(lrs: &[f64]) -> Self {
        Self::new(
            lrs.iter()
                .map(|&lr| [("lr", Value::Float(lr))].into_iter().collect())
                .collect(),
        )
    }

    /// SGD-like groups `{"lr", "momentum"}`.
    pub fn sgd(lrs: &[f64], momentum: f64) -> Self {
        let mut s = Self::with_lrs(lrs);
        for g in &mut s.groups {
            g.insert("momentum", momentum);
        }
        s
    }

    /// Adam-like groups `{"lr", "betas": (beta1, beta2)}`.
    pub fn adam(lrs: &[f64], betas: (f64, f64)) -> Self {
        let mut s = Self::with_lrs(lrs);
        for g in &mut s.groups {
            g.insert("betas", Value::Tuple(vec![betas.0.into(), betas.1.into()]));
        }
        s
    }

    /// A copy of the keys schedulers read and write in `opt`'s groups: `lr`,
    /// `momentum` and `betas`, and those they add ([`scheduler_group_keys`]:
    /// `initial_lr`, `max_lr`, `swa_lr`, ...).
    ///
    /// [`scheduler_group_keys`]: crate::scheduler_group_keys
    pub fn snapshot(opt: &dyn OptimizerParamGroups) -> Self {
        let read = ["lr", "momentum", "betas"].into_iter();
        let added = crate::scheduler_group_keys().iter().map(String::as_str);
        let keys: Vec<&str> = read.chain(added).collect();
        let groups = (0..opt.num_groups())
            .map(|g| {
                keys.iter()
                    .filter_map(|&k| opt.get(g, k).map(|v| (k, v.clone())))
                    .collect()
            })
            .collect();
        SimulatedGroups { groups }
    }

    /// The groups.
    pub fn groups(&self) -> &[Dict] {
        &self.groups
    }

    /// Each group's lr (NaN where it has none).
    pub fn lrs(&self) -> Vec<f64> {
        (0..self.groups.len())
            .map(|g| self.lr(g).unwrap_or(f64::NAN))
            .collect()
    }

    /// Each group's momentum (`momentum` or `betas[0]`), `None` where it has neither.
    pub fn momenta(&self) -> Vec<Option<f64>> {
        (0..self.groups.len())
            .map(|g| self.momentum(g).ok())
            .collect()
    }
}

/// Open dicts: every key is lent in place and any key can be added, so a step (which
/// writes keys the groups already have) allocates nothing.
impl OptimizerParamGroups for SimulatedGroups {
    fn num_groups(&self) -> usize {
        self.groups.len()
    }
    // Inlined into the seam's provided methods (`set_lrs`, `set_momentum`, ...), as the
    // optimizers' are: a scheduler step looks up `lr` (and `betas`) every time.
    #[inline(always)]
    fn get(&self, group: usize, key: &str) -> Option<&Value> {
        self.groups.get(group)?.get(key)
    }
    #[inline(always)]
    fn get_mut(&mut self, group: usize, key: &str) -> Option<&mut Value> {
        self.groups.get_mut(group)?.get_mut(key)
    }
    fn insert(&mut self, group: usize, key: &str, value: Value) -> Result<(), ParamGroupError> {
        let groups = self.groups.len();
        let dict = self
            .groups
            .get_mut(group)
            .ok_or(ParamGroupError::NoSuchGroup { group, groups })?;
        dict.insert(key, value);
        Ok(())
    }
}

/// Per-group trajectories: row 0 is after construction, row `t` after step `t`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Trajectory {
    /// Each group's lr, per row.
    pub lr: Vec<Vec<f64>>,
    /// Each group's momentum (`momentum` or `betas[0]`), `None` where it has neither.
    pub momentum: Vec<Vec<Option<f64>>>,
}

impl Trajectory {
    fn record(&mut self, groups: &SimulatedGroups) {
        self.lr.push(groups.lrs());
        self.momentum.push(groups.momenta());
    }
}

fn run(
    scheduler: &mut dyn LRScheduler,
    groups: &mut SimulatedGroups,
    steps: usize,
    metrics: Option<&[f64]>,
) -> Result<Trajectory, SchedError> {
    let mut t = Trajectory::default();
    t.record(groups);
    for i in 0..steps {
        match metrics {
            Some(m) => scheduler.step_with_metric(groups, m[i])?,
            None => scheduler.step(groups)?,
        }
        t.record(groups);
    }
    Ok(t)
}

/// Builds `spec` on a copy of `groups` and steps it `steps` times: the lr (and momentum)
/// trajectory, `steps + 1` rows, with no optimizer involved.
///
/// ```
/// use tempo_sched::{simulate, SimulatedGroups};
/// let spec = "StepLR(step_size=2, gamma=0.5)".parse()?;
/// let t = simulate(&spec, &SimulatedGroups::with_lrs(&[1.0]), 4)?;
/// let lrs: Vec<f64> = t.lr.iter().map(|row| row[0]).collect();
/// assert_eq!(lrs, [1.0, 1.0, 0.5, 0.5, 0.25]);
/// # Ok::<(), tempo_sched::SchedError>(())
/// ```
pub fn simulate(
    spec: &SchedulerSpec,
    groups: &SimulatedGroups,
    steps: usize,
) -> Result<Trajectory, SchedError> {
    let mut groups = groups.clone();
    let mut s = build_scheduler(spec, &mut groups)?;
    run(s.as_mut(), &mut groups, steps, None)
}

/// [`simulate`], stepping with a metric per step (ReduceLROnPlateau and composites
/// holding one): `metrics.len()` steps.
pub fn simulate_with_metrics(
    spec: &SchedulerSpec,
    groups: &SimulatedGroups,
    metrics: &[f64],
) -> Result<Trajectory, SchedError> {
    let mut groups = groups.clone();
    let mut s = build_scheduler(spec, &mut groups)?;
    run(s.as_mut(), &mut groups, metrics.len(), Some(metrics))
}

/// Continues a copy of `scheduler` from its current state for `steps` steps on a copy of
/// `groups` (e.g. [`SimulatedGroups::snapshot`] of the optimizer it drives); neither the
/// scheduler nor any optimizer is touched. Row 0 is `groups` as given.
pub fn simulate_scheduler(
    scheduler: &dyn LRScheduler,
    groups: &SimulatedGroups,
    steps: usize,
) -> Result<Trajectory, SchedError> {
    let mut groups = groups.clone();
    let mut s = scheduler.clone_box();
    run(s.as_mut(), &mut groups, steps, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_keeps_what_schedulers_use_and_nothing_else() {
        let mut group: Dict = [("lr", Value::Float(0.1)), ("momentum", Value::Float(0.9))]
            .into_iter()
            .collect();
        group.insert("weight_decay", 0.01);
        let mut opt = SimulatedGroups::new(vec![group]);
        let spec: SchedulerSpec = "OneCycleLR(max_lr=0.5, total_steps=10)".parse().unwrap();
        build_scheduler(&spec, &mut opt).unwrap();
        let snap = SimulatedGroups::snapshot(&opt);
        let keys: Vec<&str> = snap.groups()[0].keys().collect();
        for k in [
            "lr",
            "momentum",
            "initial_lr",
            "max_lr",
            "min_lr",
            "max_momentum",
        ] {
            assert!(keys.contains(&k), "{k} missing from {keys:?}");
        }
        assert!(!keys.contains(&"weight_decay"), "{keys:?}");
        assert_eq!(snap.lrs(), opt.lrs());
    }
}
