//! RAdam: Adam with a rectified adaptive learning rate.

use tempo_tensor::Float;

use crate::adam::Moments;
use crate::engine::elementwise_optimizer;
use crate::kernels::{each, f, wide, Kernel, Lanes};
use crate::validate::{betas, non_negative};

elementwise_optimizer! {
    /// RAdam (Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond",
    /// ICLR 2020), with optional decoupled weight decay: PyTorch's `torch.optim.RAdam`.
    ///
    /// While the variance is intractable (ρ_t ≤ 5: the first five steps with the default
    /// betas) the update is bias-corrected momentum SGD. State: `step`, `exp_avg`,
    /// `exp_avg_sq`.
    pub struct RAdam with RAdamKernel;

    /// RAdam's hyperparameters, by PyTorch's names; `Default` is PyTorch's defaults.
    pub struct RAdamConfig as "RAdam" {
        lr = 1e-3, betas = (0.9, 0.999), eps = 1e-8,
        /// Weight decay (0): an L2 penalty, or decoupled when `decoupled_weight_decay`.
        weight_decay = 0,
        maximize = false, foreach = None, capturable: flag false, decoupled_weight_decay = false,
        differentiable: flag false,
    }
    check { lr: non_negative, eps: non_negative, betas: betas, weight_decay: non_negative }

    /// RAdam's per-parameter state.
    state RAdamState for RAdamConfig; |_config, _h| {
        step: counter, exp_avg: tensor(0.0), exp_avg_sq: tensor(0.0),
    }
}

pub(crate) struct RAdamKernel<T> {
    moments: Moments<T>,
    bc1: T,
    lr: T,
    eps: T,
    /// `(F(rect), F(sqrt(bc2)))` once the variance is tractable.
    rect: Option<(T, T)>,
}

impl<T: Float> RAdamKernel<T> {
    fn new(h: &RAdamConfig, st: &mut RAdamState<T>) -> Self {
        let t = wide(st.step);
        let (b1, b2) = h.betas;
        let bc2 = 1.0 - b2.powf(t);
        let rho_inf = 2.0 / (1.0 - b2) - 1.0;
        let rho_t = rho_inf - ((2.0 * t) * b2.powf(t)) / bc2;
        let rect = (rho_t > 5.0).then(|| {
            let r = (((rho_t - 4.0) * (rho_t - 2.0)) * rho_inf)
                / (((rho_inf - 4.0) * (rho_inf - 2.0)) * rho_t);
            (f(r.powf(0.5)), f(bc2.powf(0.5)))
        });
        Self {
            moments: Moments::from(h),
            bc1: f(1.0 - b1.powf(t)),
            lr: f(h.lr),
            eps: f(h.eps),
            rect,
        }
    }
}

impl<T: Float> Kernel<T> for RAdamKernel<T> {
    #[inline(always)]
    fn run(&self, l: Lanes<'_, T>) {
        each!(l, |p, g, m, v| {
            let (q, _) = self.moments.update(*p, g, m, v);
            let mhat = *m / self.bc1;
            let upd = match self.rect {
                Some((rect, bc2_sqrt)) => {
                    let adaptive = (T::one() / (v.sqrt() + self.eps)) * bc2_sqrt;
                    ((mhat * self.lr) * adaptive) * rect
                }
                None => mhat * self.lr,
            };
            *p = q - upd;
        });
    }
}
