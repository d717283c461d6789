//! AdamW: Adam with decoupled weight decay.

use crate::adam::{AdamRun, AdamState};
use crate::engine::elementwise_optimizer;
use crate::kwargs::float_betas;
use crate::validate::{betas, non_negative};
use crate::AdamConfig;

elementwise_optimizer! {
    /// AdamW (Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019):
    /// PyTorch's `torch.optim.AdamW`, i.e. Adam with `decoupled_weight_decay=True`
    /// (`p *= 1 - lr*weight_decay` before the moment updates).
    ///
    /// As in PyTorch, loading any state dict sets `decoupled_weight_decay=True` on every group.
    pub struct AdamW with AdamRun;

    /// AdamW's hyperparameters, by PyTorch's names; `Default` is PyTorch's defaults.
    /// There is no `decoupled_weight_decay`: it is always on.
    pub struct AdamWConfig as "AdamW" {
        lr = 1e-3, betas = (0.9, 0.999), eps = 1e-8,
        /// Decoupled weight decay (1e-2).
        weight_decay = 1e-2,
        /// AMSGrad (false).
        amsgrad = false,
        maximize = false, foreach = None, capturable: flag false, differentiable: flag false,
        fused: flag None, decoupled_weight_decay: fixed true,
    }
    check { lr: non_negative, eps: non_negative, betas: betas, weight_decay: non_negative }
    kwargs float_betas;
    steps as AdamConfig;

    state AdamState;

    impl {
        fn fix_loaded_group(&self, group: &mut tempo_param_groups::Dict) {
            group.insert("decoupled_weight_decay", true);
        }
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
