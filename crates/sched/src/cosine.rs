//! CosineAnnealingLR.

use std::f64::consts::PI;

use serde::{Deserialize, Serialize};
use tempo_param_groups::{Dict, OptimizerParamGroups, Value};

use crate::base::{self, invalid, leaf_scheduler, read_lrs, At, Core, CosMemo, Rule};
use crate::state::StateReader;
use crate::SchedError;

/// The arguments of [`CosineAnnealingLR`] (PyTorch's names; `T_max` loads as `t_max`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CosineAnnealingLRConfig {
    /// Half the period, in epochs (required, > 0).
    #[serde(rename = "T_max")]
    pub t_max: u64,
    /// The minimum lr (0.0).
    #[serde(default)]
    pub eta_min: f64,
    /// PyTorch's `last_epoch`: -1 (the default) for a fresh run; `k >= 0` to resume at
    /// epoch `k` (every group must then carry `initial_lr`, the base, and the constructor
    /// steps once, to epoch `k + 1`, as PyTorch's does).
    #[serde(default = "crate::base::fresh_run")]
    pub last_epoch: i64,
}

impl CosineAnnealingLRConfig {
    /// `T_max` with PyTorch's default `eta_min = 0`.
    pub fn new(t_max: u64) -> Self {
        CosineAnnealingLRConfig {
            t_max,
            eta_min: 0.0,
            last_epoch: -1,
        }
    }
}

/// Cosine annealing from the base lr to `eta_min` over `T_max` epochs, from SGDR
/// (Loshchilov & Hutter, 2017, <https://arxiv.org/abs/1608.03983>), without restarts:
/// PyTorch's `torch.optim.lr_scheduler.CosineAnnealingLR`.
///
/// Stepped, it follows PyTorch's recursive form, branch for branch, so its last bits
/// match PyTorch's; past `T_max` it keeps oscillating with period `2 * T_max`, as
/// PyTorch's does. [`lr_at`](crate::LRScheduler::lr_at) is the closed form
/// `eta_min + (base - eta_min) * (1 + cos(pi * e / T_max)) / 2`.
/// Unlike PyTorch (ZeroDivisionError), `T_max = 0` is refused.
#[derive(Debug, Clone)]
pub struct CosineAnnealingLR {
    core: Core,
    t_max: i64,
    eta_min: f64,
    /// The recursive form's cosine at `e` is the next step's at `e - 1`.
    cos: CosMemo,
    /// Not state: where the last epoch asked about stood in the `2 * T_max` period.
    period: PeriodMemo,
}

impl CosineAnnealingLR {
    /// Records `initial_lr` in every group; the lr is not changed.
    pub fn new(
        opt: &mut dyn OptimizerParamGroups,
        config: CosineAnnealingLRConfig,
    ) -> Result<Self, SchedError> {
        let t_max = i64::try_from(config.t_max)
            .ok()
            .filter(|&t| t > 0)
            .ok_or_else(|| invalid("CosineAnnealingLR", "T_max", "an int > 0", config.t_max))?;
        base::construct(
            CosineAnnealingLR {
                core: Core::attach(opt, <Self as Rule>::NAME, config.last_epoch)?,
                t_max,
                eta_min: config.eta_min,
                cos: CosMemo::default(),
                period: PeriodMemo::default(),
            },
            opt,
        )
    }
}

impl Rule for CosineAnnealingLR {
    const NAME: &'static str = "CosineAnnealingLR";
    fn core(&self) -> &Core {
        &self.core
    }
    fn core_mut(&mut self) -> &mut Core {
        &mut self.core
    }
    fn get_lr(
        &mut self,
        at: At,
        opt: &mut dyn OptimizerParamGroups,
        initial: bool,
        out: &mut Vec<f64>,
    ) -> Result<(), SchedError> {
        read_lrs(opt, out)?;
        if initial {
            return Ok(());
        }
        let (e, t, eta) = (at.last_epoch, self.t_max, self.eta_min);
        let (ef, tf) = (e as f64, t as f64);
        let pairs = out.iter_mut().zip(&self.core.base_lrs);
        if at.step_count == 1 && e > 0 {
            pairs.for_each(|(lr, b)| *lr = eta + (b - eta) * (1.0 + (ef * PI / tf).cos()) / 2.0);
        } else if self.period.restarts(e, t) {
            pairs.for_each(|(lr, b)| *lr += (b - eta) * (1.0 - (PI / tf).cos()) / 2.0);
        } else {
            // The last step's numerator is this one's denominator: ask for it first.
            let before = self.cos.cos(PI * (ef - 1.0) / tf);
            let now = self.cos.cos(PI * ef / tf);
            let ratio = (1.0 + now) / (1.0 + before);
            pairs.for_each(|(lr, _)| *lr = ratio * (*lr - eta) + eta);
        }
        Ok(())
    }
    fn closed_form(&self, base_lrs: &[f64], epoch: i64, out: &mut Vec<f64>) -> bool {
        let eta = self.eta_min;
        let c = 1.0 + (PI * epoch as f64 / self.t_max as f64).cos();
        out.extend(base_lrs.iter().map(|b| eta + (b - eta) * c / 2.0));
        true
    }
    fn write_own(&self, d: &mut Dict) {
        d.insert("T_max", Value::Int(self.t_max));
        d.insert("eta_min", Value::Float(self.eta_min));
    }
    fn read_own(&mut self, r: &mut StateReader<'_>, _groups: usize) -> Result<(), SchedError> {
        let t = r.int("T_max")?;
        if t <= 0 {
            return Err(SchedError::StateWrongType {
                scheduler: Self::NAME,
                key: "T_max".into(),
                expected: "an int > 0",
                found: t.to_string(),
            });
        }
        self.t_max = t;
        self.eta_min = r.float("eta_min")?;
        Ok(())
    }
}

leaf_scheduler!(CosineAnnealingLR);

/// PyTorch's `(last_epoch - 1 - T_max) % (2 * T_max) == 0`, the step that starts a new
/// rise past `T_max`, without an integer division on the usual steps. Within the first
/// half period (`1 <= e <= T_max`) the left side is in `[-T_max, -1]`, which holds no
/// multiple of `2 * T_max`. Past it, the memo keeps the last epoch asked about and its
/// remainder `(e - 1 - T_max) mod 2 * T_max`, and steps the remainder when the next
/// epoch is the one after; any other epoch (a jump, a reload, another `T_max`) is
/// computed afresh. Not state: the answer never depends on the memo.
#[derive(Debug, Clone, Copy, Default)]
struct PeriodMemo {
    /// `(e, t, (e - 1 - t).rem_euclid(2 * t))`.
    last: Option<(i64, i64, i64)>,
}

impl PeriodMemo {
    fn restarts(&mut self, e: i64, t: i64) -> bool {
        if (1..=t).contains(&e) {
            return false;
        }
        let rem = match self.last {
            Some((le, lt, lr)) if lt == t && le.checked_add(1) == Some(e) => {
                if lr + 1 == 2 * t {
                    0
                } else {
                    lr + 1
                }
            }
            _ => (e - 1 - t).rem_euclid(2 * t),
        };
        self.last = Some((e, t, rem));
        rem == 0
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn restarts_is_pytorchs_modulo() {
        for t in 1..12i64 {
            let mut memo = super::PeriodMemo::default();
            // Consecutive epochs, then jumps back and forth, then consecutive again.
            let epochs = (-30..60)
                .chain([5, 100, 7, 8, 3 * t, 3 * t + 1])
                .chain(40..90);
            for e in epochs {
                let want = (e - 1 - t).rem_euclid(2 * t) == 0;
                assert_eq!(memo.restarts(e, t), want, "memo: e {e} T_max {t}");
            }
        }
    }
}
