//! Adamax: Adam with the infinity norm.

use tempo_tensor::Float;

use crate::engine::elementwise_optimizer;
use crate::kernels::{each, f, maximum, wide, GradPrep, Kernel, Lanes, Lerp};
use crate::validate::{betas, non_negative};

elementwise_optimizer! {
    /// Adamax, the infinity-norm variant of Adam (Kingma & Ba, "Adam: A Method for
    /// Stochastic Optimization", ICLR 2015, §7.1): PyTorch's `torch.optim.Adamax`.
    ///
    /// State: `step`, `exp_avg`, `exp_inf`.
    pub struct Adamax with AdamaxKernel;

    /// Adamax's hyperparameters, by PyTorch's names; `Default` is PyTorch's defaults.
    pub struct AdamaxConfig as "Adamax" {
        lr = 2e-3,
        /// Decay rates of the first moment and the infinity norm ((0.9, 0.999)).
        betas = (0.9, 0.999),
        /// Added to the norm (1e-8).
        eps = 1e-8,
        weight_decay = 0, foreach = None, maximize = false,
        differentiable: flag false, capturable: flag false,
    }
    check { lr: non_negative, eps: non_negative, betas: betas, weight_decay: non_negative }

    /// Adamax's per-parameter state.
    state AdamaxState for AdamaxConfig; |_config, _h| {
        step: counter, exp_avg: tensor(0.0), exp_inf: tensor(0.0),
    }
}

pub(crate) struct AdamaxKernel<T> {
    prep: GradPrep<T>,
    lerp: Lerp<T>,
    beta2: T,
    eps: T,
    neg_clr: T,
}

impl<T: Float> AdamaxKernel<T> {
    fn new(h: &AdamaxConfig, st: &mut AdamaxState<T>) -> Self {
        let (b1, b2) = h.betas;
        let clr = h.lr / (1.0 - b1.powf(wide(st.step)));
        Self {
            prep: GradPrep::new(h.maximize, h.weight_decay),
            lerp: Lerp::new(1.0 - b1),
            beta2: f(b2),
            eps: f(h.eps),
            neg_clr: f(-clr),
        }
    }
}

impl<T: Float> Kernel<T> for AdamaxKernel<T> {
    #[inline(always)]
    fn run(&self, l: Lanes<'_, T>) {
        each!(l, |p, g, m, u| {
            let g = self.prep.apply(g, *p);
            *m = self.lerp.apply(*m, g);
            *u = maximum(*u * self.beta2, g.abs() + self.eps);
            *p += (self.neg_clr * *m) / *u;
        });
    }
}
