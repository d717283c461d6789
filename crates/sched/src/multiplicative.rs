//! MultiplicativeLR.

use tempo_param_groups::{Dict, OptimizerParamGroups, Value};

use crate::base::{self, leaf_scheduler, read_lrs, At, Core, Rule};
use crate::lambda::read_lr_lambdas;
use crate::state::StateReader;
use crate::{LrLambda, PerGroup, SchedError};

/// The arguments of [`MultiplicativeLR`].
#[derive(Debug, Clone)]
pub struct MultiplicativeLRConfig {
    /// One function for every group, or one per group.
    pub lr_lambda: PerGroup<LrLambda>,
}

/// `lr *= lr_lambda(epoch)` at every step: PyTorch's
/// `torch.optim.lr_scheduler.MultiplicativeLR`.
///
/// The constructor leaves the lr unchanged. [`lr_at`](crate::LrScheduler::lr_at) is the
/// product `base * f(1) * ... * f(step)`, in the order the steps multiply.
#[derive(Debug, Clone)]
pub struct MultiplicativeLR {
    core: Core,
    lambdas: Vec<LrLambda>,
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
                core: Core::attach(opt)?,
                lambdas,
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
        Some(
            self.core
                .base_lrs
                .iter()
                .zip(&self.lambdas)
                .map(|(&b, f)| (1..=step).fold(b, |lr, e| lr * f.call(e)))
                .collect(),
        )
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
