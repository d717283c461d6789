//! MultiplicativeLR.

use std::sync::{Mutex, PoisonError};

use tempo_param_groups::{Dict, OptimizerParamGroups, Value};

use crate::base::{self, leaf_scheduler, read_lrs, At, Core, Rule};
use crate::lambda::read_lr_lambdas;
use crate::state::StateReader;
use crate::{LRLambda, PerGroup, SchedError};

/// The arguments of [`MultiplicativeLR`].
#[derive(Debug, Clone)]
pub struct MultiplicativeLRConfig {
    /// One function for every group, or one per group.
    pub lr_lambda: PerGroup<LRLambda>,
    /// PyTorch's `last_epoch`: -1 (the default) for a fresh run; `k >= 0` to resume at
    /// epoch `k` (every group must then carry `initial_lr`, the base, and the constructor
    /// steps once, to epoch `k + 1`, as PyTorch's does).
    pub last_epoch: i64,
}

/// `lr *= lr_lambda(epoch)` at every step: PyTorch's
/// `torch.optim.lr_scheduler.MultiplicativeLR`.
///
/// The constructor leaves the lr unchanged. [`lr_at`](crate::LRScheduler::lr_at) is the
/// product `base * f(1) * ... * f(step)`, in the order the steps multiply: what stepping
/// gives, bit for bit. It has no shortcut (PyTorch's MultiplicativeLR has no closed
/// form, and `base * factor.powf(step)` is not that product in floating point), so it
/// costs `step` multiplications; with named functions (which are pure) it continues
/// from the last step it was asked for when that is not later, so asking for the steps
/// in order costs one multiplication each.
#[derive(Debug)]
pub struct MultiplicativeLR {
    core: Core,
    lambdas: Vec<LRLambda>,
    /// Not state: the last answer of `lr_at` with named functions.
    memo: Mutex<Option<Product>>,
}

/// `lrs` is `base_lrs * f(1) * ... * f(step)`.
#[derive(Debug, Clone)]
struct Product {
    step: i64,
    base_lrs: Vec<f64>,
    lrs: Vec<f64>,
}

impl Clone for MultiplicativeLR {
    fn clone(&self) -> Self {
        MultiplicativeLR {
            core: self.core.clone(),
            lambdas: self.lambdas.clone(),
            memo: Mutex::new(None),
        }
    }
}

/// Whether two slices hold the same numbers, bit for bit.
fn same_bits(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

impl MultiplicativeLR {
    /// Records `initial_lr` in every group; the lr is not changed.
    pub fn new(
        opt: &mut dyn OptimizerParamGroups,
        config: MultiplicativeLRConfig,
    ) -> Result<Self, SchedError> {
        let lambdas = config.lr_lambda.resolve("lr_lambda", opt.num_groups())?;
        base::construct(
            MultiplicativeLR {
                core: Core::attach(opt, <Self as Rule>::NAME, config.last_epoch)?,
                lambdas,
                memo: Mutex::new(None),
            },
            opt,
        )
    }
}

impl Rule for MultiplicativeLR {
    const NAME: &'static str = "MultiplicativeLR";
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
        if !initial {
            out.iter_mut()
                .zip(&self.lambdas)
                .for_each(|(lr, f)| *lr *= f.call(at.last_epoch));
        }
        Ok(())
    }
    fn lr_at(&self, step: u64) -> Option<Vec<f64>> {
        let step = i64::try_from(step).ok()?;
        let base_lrs = &self.core.base_lrs;
        let product = |from: i64, start: &[f64]| -> Vec<f64> {
            start
                .iter()
                .zip(&self.lambdas)
                .map(|(&lr, f)| match f.named() {
                    Some(named) => (from + 1..=step).fold(lr, |lr, e| lr * named.eval(e)),
                    None => (from + 1..=step).fold(lr, |lr, e| lr * f.call(e)),
                })
                .collect()
        };
        if !self.lambdas.iter().all(|f| f.named().is_some()) {
            return Some(product(0, base_lrs));
        }
        let mut memo = self.memo.lock().unwrap_or_else(PoisonError::into_inner);
        let lrs = match memo.as_ref() {
            Some(m) if m.step <= step && same_bits(&m.base_lrs, base_lrs) => {
                product(m.step, &m.lrs)
            }
            _ => product(0, base_lrs),
        };
        match memo.as_mut() {
            Some(m) => {
                m.step = step;
                m.base_lrs.clone_from(base_lrs);
                m.lrs.clone_from(&lrs);
            }
            None => {
                *memo = Some(Product {
                    step,
                    base_lrs: base_lrs.clone(),
                    lrs: lrs.clone(),
                })
            }
        }
        Some(lrs)
    }
    fn write_own(&self, _d: &mut Dict) {}
    fn write_trailing(&self, d: &mut Dict) {
        d.insert(
            "lr_lambdas",
            Value::List(vec![Value::None; self.lambdas.len()]),
        );
    }
    fn read_own(&mut self, r: &mut StateReader<'_>, groups: usize) -> Result<(), SchedError> {
        read_lr_lambdas(r, groups)
    }
}

leaf_scheduler!(MultiplicativeLR);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LRScheduler, NamedLambda, SimulatedGroups};

    /// Each group's lr after every step `0..=steps`, by stepping.
    fn stepped(config: &MultiplicativeLRConfig, steps: usize) -> Vec<Vec<u64>> {
        let mut opt = SimulatedGroups::with_lrs(&[0.1, 0.03]);
        let mut s = MultiplicativeLR::new(&mut opt, config.clone()).expect("build");
        let mut rows = vec![s.last_lr().iter().map(|x| x.to_bits()).collect()];
        for _ in 0..steps {
            s.step(&mut opt).expect("step");
            rows.push(opt.lrs().iter().map(|x| x.to_bits()).collect());
        }
        rows
    }

    #[test]
    fn lr_at_in_any_order_is_what_stepping_gives() {
        let named = MultiplicativeLRConfig {
            lr_lambda: PerGroup::Each(vec![
                NamedLambda::Const { factor: 0.97 }.into(),
                NamedLambda::Pow { base: 0.999 }.into(),
            ]),
            last_epoch: -1,
        };
        let closure = MultiplicativeLRConfig {
            lr_lambda: PerGroup::All(LRLambda::new(|e| 1.0 - 0.01 * (e % 3) as f64)),
            last_epoch: -1,
        };
        for config in [named, closure] {
            let want = stepped(&config, 40);
            let mut opt = SimulatedGroups::with_lrs(&[0.1, 0.03]);
            let s = MultiplicativeLR::new(&mut opt, config).expect("build");
            let copy = s.clone();
            for step in [0u64, 5, 3, 17, 17, 18, 40, 2, 39, 0, 1] {
                for sched in [&s, &copy] {
                    let got: Vec<u64> = LRScheduler::lr_at(sched, step)
                        .expect("a product")
                        .iter()
                        .map(|x| x.to_bits())
                        .collect();
                    assert_eq!(got, want[step as usize], "lr_at({step})");
                }
            }
        }
    }
}
