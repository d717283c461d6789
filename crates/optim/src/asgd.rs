//! ASGD: averaged stochastic gradient descent.

use tempo_tensor::Float;

use crate::engine::elementwise_optimizer;
use crate::kernels::{each, f, fma, wide, GradPrep, Kernel, Lanes};
use crate::validate::non_negative;

elementwise_optimizer! {
    /// Averaged SGD (Polyak & Juditsky, "Acceleration of Stochastic Approximation by
    /// Averaging", SIAM J. Control Optim. 1992): PyTorch's `torch.optim.ASGD`.
    ///
    /// State: `step`, `eta` and `mu` (0-d tensors in the parameters' type, as in PyTorch),
    /// and the average `ax`.
    pub struct ASGD with ASGDKernel;

    /// ASGD's hyperparameters, by PyTorch's names; `Default` is PyTorch's defaults.
    pub struct ASGDConfig as "ASGD" {
        lr = 1e-2,
        /// Decay term (1e-4).
        lambd: f64 = 1e-4,
        /// Power of the eta update (0.75).
        alpha: f64 = 0.75,
        /// The step at which averaging starts (1e6).
        t0: f64 = 1e6,
        weight_decay = 0, foreach = None, maximize = false, differentiable: flag false,
        capturable: flag false,
    }
    check { lr: non_negative, lambd: non_negative, alpha: non_negative, weight_decay: non_negative }

    /// ASGD's per-parameter state: `eta` and `mu` are 0-d tensors in the parameters' type.
    state ASGDState for ASGDConfig; |_config, h| {
        step: counter, eta: scalar(h.lr), mu: scalar(1.0), ax: tensor(0.0),
    }
}

pub(crate) struct ASGDKernel<T> {
    prep: GradPrep<T>,
    decay: T,
    neg_eta: T,
    /// `Some(mu)` once averaging has started (`mu != 1`).
    mu: Option<T>,
}

impl<T: Float> ASGDKernel<T> {
    fn new(h: &ASGDConfig, st: &mut ASGDState<T>) -> Self {
        let t = wide(st.step);
        let eta = wide(st.eta);
        // PyTorch's exact test `mu.item() != 1`: averaging starts once mu leaves 1.
        #[allow(clippy::float_cmp)]
        let averaging = wide(st.mu) != 1.0;
        let k = Self {
            prep: GradPrep::new(h.maximize, h.weight_decay),
            decay: f(1.0 - h.lambd * eta),
            neg_eta: f(-eta),
            mu: averaging.then_some(st.mu),
        };
        // The next step's eta and mu (the kernel holds this step's).
        st.eta = f(h.lr / (1.0 + (h.lambd * h.lr) * t).powf(h.alpha));
        let d = t - h.t0;
        st.mu = f(1.0 / if d > 1.0 { d } else { 1.0 });
        k
    }
}

impl<T: Float> Kernel<T> for ASGDKernel<T> {
    #[inline(always)]
    fn run(&self, l: Lanes<'_, T>) {
        each!(l, |p, g, ax| {
            let g = self.prep.apply(g, *p);
            *p *= self.decay;
            *p = fma(self.neg_eta, g, *p);
            *ax = match self.mu {
                Some(mu) => *ax + (*p - *ax) * mu,
                None => *p,
            };
        });
    }
}
