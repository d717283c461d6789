//! Adadelta.

use tempo_tensor::Float;

use crate::engine::elementwise_optimizer;
use crate::kernels::{each, f, fma, GradPrep, Kernel, Lanes};
use crate::validate::{non_negative, rho_range};

elementwise_optimizer! {
    /// Adadelta (Zeiler, "ADADELTA: An Adaptive Learning Rate Method", 2012): PyTorch's
    /// `torch.optim.Adadelta`.
    ///
    /// State: `step`, `square_avg`, `acc_delta`.
    pub struct Adadelta with AdadeltaKernel;

    /// Adadelta's hyperparameters, by PyTorch's names; `Default` is PyTorch's defaults.
    pub struct AdadeltaConfig as "Adadelta" {
        /// Scale of the update (1.0).
        lr = 1.0,
        /// Decay rate of the running averages (0.9).
        rho: f64 = 0.9,
        /// Added inside the square roots (1e-6).
        eps = 1e-6,
        weight_decay = 0, maximize = false,
        capturable: flag false, foreach = None, differentiable: flag false,
    }
    check { lr: non_negative, rho: rho_range, eps: non_negative, weight_decay: non_negative }

    /// Adadelta's per-parameter state.
    state AdadeltaState for AdadeltaConfig; |_config, _h| {
        step: counter, square_avg: tensor(0.0), acc_delta: tensor(0.0),
    }
}

pub(crate) struct AdadeltaKernel<T> {
    prep: GradPrep<T>,
    rho: T,
    one_minus_rho: T,
    eps: T,
    neg_lr: T,
}

impl<T: Float> AdadeltaKernel<T> {
    fn new(h: &AdadeltaConfig, _: &mut AdadeltaState<T>) -> Self {
        Self {
            prep: GradPrep::new(h.maximize, h.weight_decay),
            rho: f(h.rho),
            one_minus_rho: f(1.0 - h.rho),
            eps: f(h.eps),
            neg_lr: f(-h.lr),
        }
    }
}

impl<T: Float> Kernel<T> for AdadeltaKernel<T> {
    #[inline(always)]
    fn run(&self, l: Lanes<'_, T>) {
        each!(l, |p, g, sq, acc| {
            let g = self.prep.apply(g, *p);
            *sq = fma(self.one_minus_rho * g, g, *sq * self.rho);
            let std = (*sq + self.eps).sqrt();
            let delta = (*acc + self.eps).sqrt();
            let delta = (delta / std) * g;
            *acc = fma(self.one_minus_rho * delta, delta, *acc * self.rho);
            *p = fma(self.neg_lr, delta, *p);
        });
    }
}
