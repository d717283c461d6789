//! Rprop: resilient backpropagation.

use tempo_tensor::Float;

use crate::engine::elementwise_optimizer;
use crate::kernels::{each, f, fma, sign, Kernel, Lanes};
use crate::validate::{etas, non_negative};

elementwise_optimizer! {
    /// Rprop (Riedmiller & Braun, "A Direct Adaptive Method for Faster Backpropagation
    /// Learning: The RPROP Algorithm", ICNN 1993): PyTorch's `torch.optim.Rprop`.
    ///
    /// State: `step`, `prev`, `step_size`. As in PyTorch, `lr` only seeds `step_size`
    /// when the state is created: later changes to a group's `lr` (by a scheduler) have
    /// no effect.
    pub struct Rprop with RpropKernel;

    /// Rprop's hyperparameters, by PyTorch's names; `Default` is PyTorch's defaults.
    pub struct RpropConfig as "Rprop" {
        /// Initial step size (1e-2). Read once, when a parameter's state is created.
        lr = 1e-2,
        /// Multiplicative decrease and increase factors (η-, η+) ((0.5, 1.2)).
        etas: (f64, f64) = (0.5, 1.2),
        /// Minimal and maximal step sizes ((1e-6, 50)).
        step_sizes: (f64, f64) = (1e-6, 50),
        foreach = None, maximize = false, differentiable: flag false, capturable: flag false,
    }
    check { lr: non_negative, etas: etas }

    /// Rprop's per-parameter state: `step_size` starts at the group's `lr`.
    state RpropState for RpropConfig; |_config, h| {
        step: counter, prev: tensor(0.0), step_size: tensor(h.lr),
    }
}

pub(crate) struct RpropKernel<T> {
    maximize: bool,
    eta_minus: T,
    eta_plus: T,
    min: T,
    max: T,
}

impl<T: Float> RpropKernel<T> {
    fn new(h: &RpropConfig, _: &mut RpropState<T>) -> Self {
        Self {
            maximize: h.maximize,
            eta_minus: f(h.etas.0),
            eta_plus: f(h.etas.1),
            min: f(h.step_sizes.0),
            max: f(h.step_sizes.1),
        }
    }
}

impl<T: Float> Kernel<T> for RpropKernel<T> {
    #[inline(always)]
    fn run(&self, l: Lanes<'_, T>) {
        each!(l, |p, g, prev, ss| {
            let g = if self.maximize { -g } else { g };
            let prod = g * *prev;
            // sign -> {eta_plus, eta_minus, 1}; NaN stays NaN.
            let s = if prod > T::zero() {
                self.eta_plus
            } else if prod < T::zero() {
                self.eta_minus
            } else if prod == T::zero() {
                T::one()
            } else {
                prod
            };
            let x = *ss * s;
            // clamp_(min, max): min(max(x, min), max), NaN propagating.
            *ss = if x.is_nan() {
                x
            } else {
                let lo = if x < self.min { self.min } else { x };
                if lo > self.max {
                    self.max
                } else {
                    lo
                }
            };
            let g = if s == self.eta_minus { T::zero() } else { g };
            *p = fma(-sign(g), *ss, *p);
            *prev = g;
        });
    }
}
