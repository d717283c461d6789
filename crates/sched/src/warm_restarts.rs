//! CosineAnnealingWarmRestarts.

use std::f64::consts::PI;

use serde::{Deserialize, Serialize};
use tempo_param_groups::{Dict, OptimizerParamGroups, Value};

use crate::base::{check_groups, invalid, write_lrs, At, Core};
use crate::state::StateReader;
use crate::{LRScheduler, SchedError};

fn one() -> u64 {
    1
}

/// The arguments of [`CosineAnnealingWarmRestarts`] (`T_0`, `T_mult` load as `t_0`,
/// `t_mult`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CosineAnnealingWarmRestartsConfig {
    /// The length of the first period (required, > 0).
    #[serde(rename = "T_0")]
    pub t_0: u64,
    /// The factor by which each period is longer than the last (1, >= 1).
    #[serde(rename = "T_mult", default = "one")]
    pub t_mult: u64,
    /// The minimum lr (0.0).
    #[serde(default)]
    pub eta_min: f64,
    /// PyTorch's `last_epoch`: -1 (the default) for a fresh run; `k >= 0` to resume at
    /// epoch `k` (every group must then carry `initial_lr`, the base, and the constructor
    /// steps once, to epoch `k + 1`, as PyTorch's does).
    #[serde(default = "crate::base::fresh_run")]
    pub last_epoch: i64,
}

impl CosineAnnealingWarmRestartsConfig {
    /// `T_0` with PyTorch's defaults `T_mult = 1`, `eta_min = 0`.
    pub fn new(t_0: u64) -> Self {
        CosineAnnealingWarmRestartsConfig {
            t_0,
            t_mult: 1,
            eta_min: 0.0,
            last_epoch: -1,
        }
    }
}

/// SGDR: cosine annealing with warm restarts (Loshchilov & Hutter, 2017,
/// <https://arxiv.org/abs/1608.03983>): PyTorch's
/// `torch.optim.lr_scheduler.CosineAnnealingWarmRestarts`.
///
/// [`step`](LRScheduler::step) advances one epoch; [`step_to_epoch`](LRScheduler::step_to_epoch)
/// takes fractional epochs (`step(epoch)` in PyTorch, e.g. `epoch + i / iters` inside an
/// epoch), with PyTorch's `ln / ln` computation of the restart index. As in PyTorch,
/// `_step_count` stays 0.
#[derive(Debug, Clone)]
pub struct CosineAnnealingWarmRestarts {
    core: Core,
    t_0: i64,
    t_i: i64,
    t_mult: i64,
    eta_min: f64,
    t_cur: f64,
    /// Whether PyTorch would hold `T_cur` as an int (integer steps only).
    t_cur_int: bool,
    /// Where it was before the last successful step, for
    /// [`undo_step`](LRScheduler::undo_step) (the core keeps its own).
    prev: Pos,
}

/// Where the schedule is: what a step moves.
#[derive(Debug, Clone, Copy)]
struct Pos {
    last_epoch: i64,
    t_cur: f64,
    t_i: i64,
    t_cur_int: bool,
}

/// Each group's lr at `T_cur` of a period of `T_i`, pushed onto `out`.
fn push_lrs(eta: f64, base_lrs: &[f64], t_cur: f64, t_i: i64, out: &mut Vec<f64>) {
    let c = 1.0 + (PI * t_cur / t_i as f64).cos();
    out.extend(base_lrs.iter().map(|b| eta + (b - eta) * c / 2.0));
}

impl CosineAnnealingWarmRestarts {
    /// Records `initial_lr`; the initial step sets `lr = base` (`T_cur = 0`).
    pub fn new(
        opt: &mut dyn OptimizerParamGroups,
        config: CosineAnnealingWarmRestartsConfig,
    ) -> Result<Self, SchedError> {
        const NAME: &str = "CosineAnnealingWarmRestarts";
        let t_0 = i64::try_from(config.t_0)
            .ok()
            .filter(|&t| t > 0)
            .ok_or_else(|| invalid(NAME, "T_0", "an int > 0", config.t_0))?;
        let t_mult = i64::try_from(config.t_mult)
            .ok()
            .filter(|&t| t >= 1)
            .ok_or_else(|| invalid(NAME, "T_mult", "an int >= 1", config.t_mult))?;
        if !config.eta_min.is_finite() {
            return Err(invalid(NAME, "eta_min", "a finite number", config.eta_min));
        }
        let mut s = CosineAnnealingWarmRestarts {
            core: Core::attach(opt, NAME, config.last_epoch)?,
            t_0,
            t_i: t_0,
            t_mult,
            eta_min: config.eta_min,
            t_cur: config.last_epoch as f64,
            t_cur_int: true,
            prev: Pos {
                last_epoch: config.last_epoch,
                t_cur: config.last_epoch as f64,
                t_i: t_0,
                t_cur_int: true,
            },
        };
        s.step(opt)?;
        Ok(s)
    }

    fn pos(&self) -> Pos {
        Pos {
            last_epoch: self.core.last_epoch,
            t_cur: self.t_cur,
            t_i: self.t_i,
            t_cur_int: self.t_cur_int,
        }
    }

    /// Writes the lrs at `next` and moves there; on error nothing changes.
    fn commit(&mut self, opt: &mut dyn OptimizerParamGroups, next: Pos) -> Result<(), SchedError> {
        check_groups(self.core.groups(), opt)?;
        let eta = self.eta_min;
        let at = At {
            last_epoch: next.last_epoch,
            step_count: self.core.step_count,
        };
        let before = self.pos();
        self.core.update(at, |base_lrs, lrs| {
            push_lrs(eta, base_lrs, next.t_cur, next.t_i, lrs);
            write_lrs(opt, lrs)
        })?;
        self.prev = before;
        self.t_cur = next.t_cur;
        self.t_i = next.t_i;
        self.t_cur_int = next.t_cur_int;
        Ok(())
    }

    /// PyTorch's explicit-epoch branch.
    fn at_epoch(&self, epoch: f64) -> Result<Pos, SchedError> {
        if epoch.is_nan() || epoch < 0.0 {
            return Err(SchedError::InvalidEpoch {
                scheduler: "CosineAnnealingWarmRestarts",
                epoch,
                reason: "the epoch must be a non-negative number",
            });
        }
        let mut next = self.pos();
        let t0 = self.t_0 as f64;
        if epoch >= t0 {
            if self.t_mult == 1 {
                next.t_cur = epoch.rem_euclid(t0);
            } else {
                let m = self.t_mult as f64;
                let n = ((epoch / t0 * (m - 1.0) + 1.0).ln() / m.ln()) as u32;
                let pow = self.t_mult.saturating_pow(n);
                next.t_cur =
                    epoch - (self.t_0.saturating_mul(pow - 1)) as f64 / (self.t_mult - 1) as f64;
                next.t_i = self.t_0.saturating_mul(pow);
            }
        } else {
            next.t_i = self.t_0;
            next.t_cur = epoch;
        }
        next.last_epoch = epoch.floor() as i64;
        Ok(next)
    }
}

impl LRScheduler for CosineAnnealingWarmRestarts {
    fn step(&mut self, opt: &mut dyn OptimizerParamGroups) -> Result<(), SchedError> {
        if self.core.last_epoch < 0 {
            let mut next = self.at_epoch(0.0)?;
            next.t_cur_int = self.t_cur_int;
            return self.commit(opt, next);
        }
        let mut next = self.pos();
        next.last_epoch += 1;
        next.t_cur += 1.0;
        if next.t_cur >= next.t_i as f64 {
            next.t_cur = next.t_cur.rem_euclid(next.t_i as f64);
            next.t_i = next.t_i.saturating_mul(self.t_mult);
        }
        self.commit(opt, next)
    }

    fn step_to_epoch(
        &mut self,
        opt: &mut dyn OptimizerParamGroups,
        epoch: f64,
    ) -> Result<(), SchedError> {
        let mut next = self.at_epoch(epoch)?;
        next.t_cur_int = false;
        self.commit(opt, next)
    }

    fn last_lr(&self) -> &[f64] {
        &self.core.last_lr
    }

    fn state_dict(&self) -> Dict {
        let mut d = Dict::new();
        d.insert("T_0", Value::Int(self.t_0));
        d.insert("T_i", Value::Int(self.t_i));
        d.insert("T_mult", Value::Int(self.t_mult));
        d.insert("eta_min", Value::Float(self.eta_min));
        let t_cur = if self.t_cur_int && self.t_cur.fract() == 0.0 {
            Value::Int(self.t_cur as i64)
        } else {
            Value::Float(self.t_cur)
        };
        d.insert("T_cur", t_cur);
        self.core.write(&mut d);
        d
    }

    fn load_state_dict(&mut self, state: &Dict) -> Result<(), SchedError> {
        const NAME: &str = "CosineAnnealingWarmRestarts";
        let mut r = StateReader::new(state, NAME);
        let mut next = self.clone();
        let positive = |key: &str, v: i64, min: i64| {
            if v >= min {
                Ok(v)
            } else {
                Err(SchedError::StateWrongType {
                    scheduler: NAME,
                    key: key.into(),
                    expected: "a positive int",
                    found: v.to_string(),
                })
            }
        };
        next.t_0 = positive("T_0", r.int("T_0")?, 1)?;
        next.t_i = positive("T_i", r.int("T_i")?, 1)?;
        next.t_mult = positive("T_mult", r.int("T_mult")?, 1)?;
        next.eta_min = r.float("eta_min")?;
        let t_cur = r.value("T_cur")?;
        next.t_cur_int = matches!(t_cur, Value::Int(_));
        next.t_cur = r.float("T_cur")?;
        next.core = Core::read(&mut r, self.core.groups())?;
        r.finish()?;
        *self = next;
        Ok(())
    }

    fn name(&self) -> &'static str {
        "CosineAnnealingWarmRestarts"
    }

    fn lr_at(&self, step: u64) -> Option<Vec<f64>> {
        // Integer steps, in integer arithmetic: what stepping gives.
        let step = i64::try_from(step).ok()?;
        let (mut t_cur, mut t_i) = (step, self.t_0);
        if self.t_mult == 1 {
            t_cur %= t_i;
        } else {
            while t_cur >= t_i {
                t_cur -= t_i;
                t_i = t_i.checked_mul(self.t_mult)?;
            }
        }
        let mut out = Vec::with_capacity(self.core.base_lrs.len());
        push_lrs(
            self.eta_min,
            &self.core.base_lrs,
            t_cur as f64,
            t_i,
            &mut out,
        );
        Some(out)
    }

    fn clone_box(&self) -> Box<dyn LRScheduler> {
        Box::new(self.clone())
    }

    fn undo_epoch(&mut self) {
        self.core.last_epoch -= 1;
    }

    fn undo_step(&mut self) {
        self.core.undo();
        self.t_cur = self.prev.t_cur;
        self.t_i = self.prev.t_i;
        self.t_cur_int = self.prev.t_cur_int;
    }

    fn writes_momentum(&self) -> bool {
        false
    }

    fn initial_step(&mut self, opt: &mut dyn OptimizerParamGroups) -> Result<(), SchedError> {
        self.step(opt)
    }

    fn restart_at(
        &mut self,
        opt: &mut dyn OptimizerParamGroups,
        epoch: i64,
    ) -> Result<(), SchedError> {
        // PyTorch's `_update_lr(epoch)`: no closed form, so `get_lr()` at the current T_cur.
        let mut next = self.pos();
        next.last_epoch = epoch;
        self.commit(opt, next)
    }
}
