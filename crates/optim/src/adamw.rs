//! AdamW: Adam with decoupled weight decay.

use tempo_tensor::Float;

use crate::adam::{adam_prepare, AdamRun, AdamState};
use crate::engine::{elementwise_optimizer, Algorithm};
use crate::hyper::hyperparameters;
use crate::kernels::Lanes;
use crate::kwargs::float_betas;
use crate::validate::{betas, non_negative};
use crate::AdamConfig;

hyperparameters! {
    /// AdamW's hyperparameters, by PyTorch's names; `Default` is PyTorch's defaults.
    /// There is no `decoupled_weight_decay`: it is always on.
    pub struct AdamWConfig as "AdamW" {
        /// Learning rate (1e-3).
        lr: f64 = 1e-3,
        /// Decay rates of the first and second moments ((0.9, 0.999)).
        betas: (f64, f64) = (0.9, 0.999),
        /// Added to the denominator (1e-8).
        eps: f64 = 1e-8,
        /// Decoupled weight decay (1e-2).
        weight_decay: f64 = 1e-2,
        /// AMSGrad (false).
        amsgrad: bool = false,
        /// Maximize the objective (false).
        maximize: bool = false,
        /// PyTorch's `foreach` flag, stored in the groups; it does not change tempo's numbers.
        foreach: Option<bool> = None,
        capturable: flag false,
        differentiable: flag false,
        fused: flag None,
        decoupled_weight_decay: fixed true,
    }
    check { lr: non_negative, eps: non_negative, betas: betas, weight_decay: non_negative }
    kwargs float_betas;
    steps as AdamConfig;
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
    type State = AdamState<T>;
    type Kernel = AdamRun<T>;

    fn prepare<'a>(
        &self,
        h: &AdamConfig,
        st: &'a mut AdamState<T>,
        p: &'a mut [T],
        g: &'a [T],
    ) -> (AdamRun<T>, Lanes<'a, T>) {
        adam_prepare(h, st, p, g)
    }
    fn fix_loaded_group(&self, group: &mut tempo_param_groups::Dict) {
        group.insert("decoupled_weight_decay", true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::param;
    use crate::{Optimizer, OptimizerStateDict};
    use tempo_param_groups::Value;

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
