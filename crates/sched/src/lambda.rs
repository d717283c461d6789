//! LambdaLR, and the lr functions LambdaLR and MultiplicativeLR take.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tempo_param_groups::{Dict, OptimizerParamGroups, Value};

use crate::base::{self, leaf_scheduler, At, Core, Rule};
use crate::state::StateReader;
use crate::{PerGroup, SchedError};

/// A function of the epoch (PyTorch's `lr_lambda`): a shared closure, so a scheduler
/// holding it can be cloned.
///
/// Closures are not state: to restore a LambdaLR, construct it with the same functions,
/// then load its state dict.
#[derive(Clone)]
pub struct LRLambda {
    f: Arc<dyn Fn(i64) -> f64 + Send + Sync>,
    /// Set when made from a [`NamedLambda`]: evaluated directly, and known to be pure.
    named: Option<NamedLambda>,
    /// Whether PyTorch's state dict shows the function as a callable object with no
    /// attributes (`{}`, a `functools.partial`, as transformers' schedules are) rather
    /// than `None` (a plain function).
    partial: bool,
}

impl LRLambda {
    /// Wraps a closure of the epoch (PyTorch passes `last_epoch`, an int).
    pub fn new(f: impl Fn(i64) -> f64 + Send + Sync + 'static) -> Self {
        LRLambda {
            f: Arc::new(f),
            named: None,
            partial: false,
        }
    }

    /// A pure function of the epoch that PyTorch's state dict shows as `{}` (`partial`)
    /// or `None`.
    pub(crate) fn pure(f: impl Fn(i64) -> f64 + Send + Sync + 'static, partial: bool) -> Self {
        LRLambda {
            f: Arc::new(f),
            named: None,
            partial,
        }
    }

    /// The function's entry in PyTorch's `lr_lambdas` state.
    fn state(&self) -> Value {
        if self.partial {
            Value::Dict(Dict::new())
        } else {
            Value::None
        }
    }

    /// The function's value at `epoch`.
    #[inline]
    pub fn call(&self, epoch: i64) -> f64 {
        match self.named {
            Some(named) => named.eval(epoch),
            None => (self.f)(epoch),
        }
    }

    /// The named function this was made from, if it was.
    pub(crate) fn named(&self) -> Option<NamedLambda> {
        self.named
    }
}

impl fmt::Debug for LRLambda {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LRLambda(<closure>)")
    }
}

impl From<NamedLambda> for LRLambda {
    fn from(named: NamedLambda) -> Self {
        LRLambda {
            f: Arc::new(move |e| named.eval(e)),
            named: Some(named),
            partial: false,
        }
    }
}

/// The named lr functions of tempo's scheduler specs (`{"fn": "pow", "base": 0.95}`),
/// for LambdaLR and MultiplicativeLR (and CyclicLR's `scale_fn`) in config files.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "fn", rename_all = "snake_case")]
pub enum NamedLambda {
    /// `base ** epoch`.
    Pow {
        /// The base.
        base: f64,
    },
    /// A constant `factor` (MultiplicativeLR's exponential decay).
    Const {
        /// The value.
        factor: f64,
    },
    /// `min(1, (epoch + 1) / warmup)`.
    WarmupLinear {
        /// The number of warmup epochs.
        warmup: f64,
    },
    /// `1 / sqrt(max(epoch, 1))`.
    InvSqrt,
}

impl NamedLambda {
    /// The function's value at `epoch`, as Python computes it.
    pub fn eval(&self, epoch: i64) -> f64 {
        match *self {
            NamedLambda::Pow { base } => base.powf(epoch as f64),
            NamedLambda::Const { factor } => factor,
            NamedLambda::WarmupLinear { warmup } => {
                let x = (epoch + 1) as f64 / warmup;
                if x < 1.0 {
                    x
                } else {
                    1.0
                }
            }
            NamedLambda::InvSqrt => 1.0 / (epoch.max(1) as f64).sqrt(),
        }
    }
}

/// The arguments of [`LambdaLR`].
#[derive(Debug, Clone)]
pub struct LambdaLRConfig {
    /// One function for every group, or one per group.
    pub lr_lambda: PerGroup<LRLambda>,
    /// PyTorch's `last_epoch`: -1 (the default) for a fresh run; `k >= 0` to resume at
    /// epoch `k` (every group must then carry `initial_lr`, the base, and the constructor
    /// steps once, to epoch `k + 1`, as PyTorch's does).
    pub last_epoch: i64,
}

/// `lr = base_lr * lr_lambda(epoch)`: PyTorch's `torch.optim.lr_scheduler.LambdaLR`.
///
/// Not recursive, and (as in PyTorch) the constructor already sets `lr = base *
/// lambda(0)`. The state dict's `lr_lambdas` is a list of `None` (closures are not
/// state; `{}` for transformers' schedules, which PyTorch sees as `functools.partial`s).
#[derive(Debug, Clone)]
pub struct LambdaLR {
    core: Core,
    lambdas: Vec<LRLambda>,
}

impl LambdaLR {
    /// Records `initial_lr` and sets `lr = initial_lr * lambda(0)` in every group.
    pub fn new(
        opt: &mut dyn OptimizerParamGroups,
        config: LambdaLRConfig,
    ) -> Result<Self, SchedError> {
        let lambdas = config.lr_lambda.resolve("lr_lambda", opt.num_groups())?;
        base::construct(
            LambdaLR {
                core: Core::attach(opt, <Self as Rule>::NAME, config.last_epoch)?,
                lambdas,
            },
            opt,
        )
    }
}

impl Rule for LambdaLR {
    const NAME: &'static str = "LambdaLR";
    fn core(&self) -> &Core {
        &self.core
    }
    fn core_mut(&mut self) -> &mut Core {
        &mut self.core
    }
    fn get_lr(
        &mut self,
        at: At,
        _opt: &mut dyn OptimizerParamGroups,
        _initial: bool,
        out: &mut Vec<f64>,
    ) -> Result<(), SchedError> {
        self.value_at(&self.core.base_lrs, at.last_epoch, out);
        Ok(())
    }
    fn closed_form(&self, base_lrs: &[f64], epoch: i64, out: &mut Vec<f64>) -> bool {
        self.value_at(base_lrs, epoch, out);
        true
    }
    fn write_own(&self, _d: &mut Dict) {}
    fn write_trailing(&self, d: &mut Dict) {
        d.insert(
            "lr_lambdas",
            Value::List(self.lambdas.iter().map(LRLambda::state).collect()),
        );
    }
    fn read_own(&mut self, r: &mut StateReader<'_>, groups: usize) -> Result<(), SchedError> {
        read_lr_lambdas(r, groups)
    }
}

impl LambdaLR {
    fn value_at(&self, base_lrs: &[f64], epoch: i64, out: &mut Vec<f64>) {
        out.extend(
            base_lrs
                .iter()
                .zip(&self.lambdas)
                .map(|(b, f)| b * f.call(epoch)),
        );
    }
}

/// `lr_lambdas`: one entry per group (`None`, or a callable object's attributes, which
/// tempo's closures do not have).
pub(crate) fn read_lr_lambdas(r: &mut StateReader<'_>, groups: usize) -> Result<(), SchedError> {
    let items = r.list("lr_lambdas")?;
    if items.len() != groups {
        return Err(SchedError::GroupCountMismatch {
            arg: "lr_lambdas".into(),
            expected: groups,
            got: items.len(),
        });
    }
    Ok(())
}

leaf_scheduler!(LambdaLR);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_lambdas_evaluate_as_python_does() {
        let f = |s: &str| serde_json::from_str::<NamedLambda>(s).expect("a named lambda");
        assert!((f(r#"{"fn": "pow", "base": 0.5}"#).eval(3) - 0.125).abs() < 1e-15);
        assert!((f(r#"{"fn": "const", "factor": 0.9}"#).eval(7) - 0.9).abs() < 1e-15);
        let w = f(r#"{"fn": "warmup_linear", "warmup": 4}"#);
        assert!((w.eval(0) - 0.25).abs() < 1e-15 && (w.eval(9) - 1.0).abs() < 1e-15);
        let inv = f(r#"{"fn": "inv_sqrt"}"#);
        assert!((inv.eval(0) - 1.0).abs() < 1e-15 && (inv.eval(4) - 0.5).abs() < 1e-15);
        assert!(serde_json::from_str::<NamedLambda>(r#"{"fn": "exp"}"#).is_err());
    }
}
