//! AdamW: Adam with decoupled weight decay.

use tempo_param_groups::{Dict, Value};
use tempo_tensor::Float;

use crate::adam::{
    adam_check, adam_init, adam_load, adam_prepare, adam_save, AdamConfig, AdamHyper, AdamRun,
    AdamState, ADAM_KWARGS,
};
use crate::engine::{elementwise_optimizer, Algorithm};
use crate::kernels::Lanes;
use crate::kwargs::Kwargs;
use crate::param_group::GroupReader;
use crate::state::{ParamState, StateReader};
use crate::validate::adam_like;
use crate::OptimError;

/// AdamW's hyperparameters, by PyTorch's names; `Default` is PyTorch's defaults.
/// There is no `decoupled_weight_decay`: it is always on.
#[derive(Debug, Clone, PartialEq)]
pub struct AdamWConfig {
    /// Learning rate (1e-3).
    pub lr: f64,
    /// Decay rates of the first and second moments ((0.9, 0.999)).
    pub betas: (f64, f64),
    /// Added to the denominator (1e-8).
    pub eps: f64,
    /// Decoupled weight decay (1e-2).
    pub weight_decay: f64,
    /// AMSGrad (false).
    pub amsgrad: bool,
    /// Maximize the objective (false).
    pub maximize: bool,
    /// PyTorch's `foreach` flag, stored in the groups; it does not change tempo's numbers.
    pub foreach: Option<bool>,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 1e-2,
            amsgrad: false,
            maximize: false,
            foreach: None,
        }
    }
}

impl AdamWConfig {
    pub(crate) fn from_kwargs(kw: &Kwargs<'_>) -> Result<Self, OptimError> {
        let accepted: Vec<&str> = ADAM_KWARGS
            .iter()
            .copied()
            .filter(|k| *k != "decoupled_weight_decay")
            .collect();
        kw.check_known(&accepted)?;
        let a = AdamConfig::read(kw)?;
        Ok(Self {
            lr: a.lr,
            betas: a.betas,
            eps: a.eps,
            weight_decay: kw.f64("weight_decay", Self::default().weight_decay)?,
            amsgrad: a.amsgrad,
            maximize: a.maximize,
            foreach: a.foreach,
        })
    }

    fn as_adam(&self) -> AdamConfig {
        AdamConfig {
            lr: self.lr,
            betas: self.betas,
            eps: self.eps,
            weight_decay: self.weight_decay,
            amsgrad: self.amsgrad,
            maximize: self.maximize,
            foreach: self.foreach,
            decoupled_weight_decay: true,
        }
    }
}

elementwise_optimizer!(
    /// AdamW (Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019):
    /// PyTorch's `torch.optim.AdamW`, i.e. Adam with `decoupled_weight_decay=True`
    /// (`p *= 1 - lr*weight_decay` before the moment updates).
    ///
    /// As in PyTorch, loading any state dict sets `decoupled_weight_decay=True` on every group.
    AdamW,
    AdamWConfig
);

impl<T: Float> Algorithm<T> for AdamWConfig {
    const NAME: &'static str = "AdamW";
    type Hyper = AdamHyper;
    type State = AdamState<T>;
    type Kernel = AdamRun<T>;

    fn validate(&self) -> Result<(), OptimError> {
        adam_like(
            <Self as Algorithm<T>>::NAME,
            self.lr,
            self.eps,
            self.betas,
            self.weight_decay,
        )
    }
    fn defaults(&self) -> Dict {
        self.as_adam().defaults_with(None)
    }
    fn hyper(&self, g: &GroupReader<'_>) -> Result<AdamHyper, OptimError> {
        AdamHyper::read(g, None)
    }
    fn init_state(&self, h: &AdamHyper, n: usize) -> AdamState<T> {
        adam_init(h, n)
    }
    fn check_state(
        &self,
        h: &AdamHyper,
        st: &AdamState<T>,
        param: usize,
    ) -> Result<(), OptimError> {
        adam_check(h, st, param)
    }
    fn prepare<'a>(
        &self,
        h: &AdamHyper,
        st: &'a mut AdamState<T>,
        p: &'a mut [T],
        g: &'a [T],
    ) -> (AdamRun<T>, Lanes<'a, T>) {
        adam_prepare(h, st, p, g)
    }
    fn save_state(&self, st: &AdamState<T>, shape: &[usize]) -> ParamState {
        adam_save(st, shape)
    }
    fn load_state(&self, r: &StateReader<'_>) -> Result<AdamState<T>, OptimError> {
        adam_load(r)
    }
    fn fix_loaded_group(&self, group: &mut Dict) {
        group.insert("decoupled_weight_decay", Value::Bool(true));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::param;
    use crate::{Optimizer, OptimizerStateDict};

    #[test]
    fn loading_forces_decoupled_weight_decay() {
        let mut opt = AdamW::new(vec![param(&[1.0f64])], AdamWConfig::default()).unwrap();
        let mut sd: OptimizerStateDict = opt.state_dict();
        sd.param_groups[0].insert("decoupled_weight_decay", false);
        opt.load_state_dict(&sd).unwrap();
        assert_eq!(
            opt.state_dict().param_groups[0].get("decoupled_weight_decay"),
            Some(&Value::Bool(true))
        );
        assert_eq!(
            opt.state_dict().param_groups[0].get("weight_decay"),
            Some(&Value::Float(0.01))
        );
    }
}
