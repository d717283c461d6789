//! NAdam: Adam with Nesterov momentum.

use tempo_tensor::Float;

use crate::adam::Moments;
use crate::engine::elementwise_optimizer;
use crate::kernels::{each, f, wide, Kernel, Lanes};
use crate::validate::{betas, non_negative};

elementwise_optimizer! {
    /// NAdam (Dozat, "Incorporating Nesterov Momentum into Adam", ICLR 2016 workshop),
    /// with optional decoupled weight decay: PyTorch's `torch.optim.NAdam`.
    ///
    /// State: `step`, `mu_product` (a 0-d tensor accumulated in the parameters' type, as
    /// in PyTorch), `exp_avg`, `exp_avg_sq`.
    pub struct NAdam with NAdamKernel;

    /// NAdam's hyperparameters, by PyTorch's names; `Default` is PyTorch's defaults.
    pub struct NAdamConfig as "NAdam" {
        lr = 2e-3, betas = (0.9, 0.999), eps = 1e-8,
        /// Weight decay (0): an L2 penalty, or decoupled when `decoupled_weight_decay`.
        weight_decay = 0,
        /// Momentum decay ψ of the schedule μ_t = β1 (1 - 0.5·0.96^(tψ)) (4e-3).
        momentum_decay: f64 = 4e-3,
        decoupled_weight_decay = false, maximize = false, foreach = None,
        capturable: flag false, differentiable: flag false,
    }
    check {
        lr: non_negative,
        eps: non_negative,
        betas: betas,
        weight_decay: non_negative,
        momentum_decay: non_negative,
    }

    /// NAdam's per-parameter state: `mu_product` is a 0-d tensor accumulated in the
    /// parameters' type.
    state NAdamState for NAdamConfig; |_config, _h| {
        step: counter, mu_product: scalar(1.0), exp_avg: tensor(0.0),
        exp_avg_sq: tensor(0.0),
    }
}

pub(crate) struct NAdamKernel<T> {
    moments: Moments<T>,
    bc2: T,
    eps: T,
    c_grad: T,
    c_avg: T,
}

impl<T: Float> NAdamKernel<T> {
    fn new(h: &NAdamConfig, st: &mut NAdamState<T>) -> Self {
        let t = wide(st.step);
        let (b1, b2) = h.betas;
        let mu = b1 * (1.0 - 0.5 * 0.96f64.powf(t * h.momentum_decay));
        let mu_next = b1 * (1.0 - 0.5 * 0.96f64.powf((t + 1.0) * h.momentum_decay));
        st.mu_product *= f(mu);
        let mp = wide(st.mu_product);
        let mp_next = mp * mu_next;
        Self {
            moments: Moments::from(h),
            bc2: f(1.0 - b2.powf(t)),
            eps: f(h.eps),
            c_grad: f((-h.lr * (1.0 - mu)) / (1.0 - mp)),
            c_avg: f((-h.lr * mu_next) / (1.0 - mp_next)),
        }
    }
}

impl<T: Float> Kernel<T> for NAdamKernel<T> {
    #[inline(always)]
    fn run(&self, l: Lanes<'_, T>) {
        each!(l, |p, g, m, v| {
            let (q, g) = self.moments.update(*p, g, m, v);
            let denom = (*v / self.bc2).sqrt() + self.eps;
            let q = q + (self.c_grad * g) / denom;
            *p = q + (self.c_avg * *m) / denom;
        });
    }
}
