//! Adamax: Adam with the infinity norm.

use tempo_tensor::Float;

use crate::engine::{elementwise_optimizer, Algorithm};
use crate::hyper::{hyperparameters, optimizer_state};
use crate::kernels::{f, maximum, wide, GradPrep, Kernel, Lanes, Lerp};
use crate::validate::{betas, non_negative};

hyperparameters! {
    /// Adamax's hyperparameters, by PyTorch's names; `Default` is PyTorch's defaults.
    pub struct AdamaxConfig as "Adamax" {
        /// Learning rate (2e-3).
        lr: f64 = 2e-3,
        /// Decay rates of the first moment and the infinity norm ((0.9, 0.999)).
        betas: (f64, f64) = (0.9, 0.999),
        /// Added to the norm (1e-8).
        eps: f64 = 1e-8,
        /// L2 penalty (0).
        weight_decay: f64 = 0,
        /// PyTorch's `foreach` flag, stored in the groups; it does not change tempo's numbers.
        foreach: Option<bool> = None,
        /// Maximize the objective (false).
        maximize: bool = false,
        differentiable: flag false,
        capturable: flag false,
    }
    check { lr: non_negative, eps: non_negative, betas: betas, weight_decay: non_negative }
}

elementwise_optimizer!(
    /// Adamax, the infinity-norm variant of Adam (Kingma & Ba, "Adam: A Method for
    /// Stochastic Optimization", ICLR 2015, §7.1): PyTorch's `torch.optim.Adamax`.
    ///
    /// State: `step`, `exp_avg`, `exp_inf`.
    Adamax,
    AdamaxConfig
);

optimizer_state! {
    /// Adamax's per-parameter state.
    AdamaxState for AdamaxConfig; |_config, _h| {
        step: scalar(0.0),
        exp_avg: tensor(0.0),
        exp_inf: tensor(0.0),
    }
}

impl<T: Float> Algorithm<T> for AdamaxConfig {
    type State = AdamaxState<T>;
    type Kernel = AdamaxKernel<T>;

    fn prepare<'a>(
        &self,
        h: &Self,
        st: &'a mut AdamaxState<T>,
        p: &'a mut [T],
        g: &'a [T],
    ) -> (AdamaxKernel<T>, Lanes<'a, T>) {
        st.step += T::one();
        let t = wide(st.step);
        let (b1, b2) = h.betas;
        let clr = h.lr / (1.0 - b1.powf(t));
        let k = AdamaxKernel {
            prep: GradPrep::new(h.maximize, h.weight_decay),
            lerp: Lerp::new(1.0 - b1),
            beta2: f(b2),
            eps: f(h.eps),
            neg_clr: f(-clr),
        };
        (
            k,
            Lanes::new(p, g)
                .with(0, &mut st.exp_avg)
                .with(1, &mut st.exp_inf),
        )
    }
}

pub(crate) struct AdamaxKernel<T> {
    prep: GradPrep<T>,
    lerp: Lerp<T>,
    beta2: T,
    eps: T,
    neg_clr: T,
}

impl<T: Float> Kernel<T> for AdamaxKernel<T> {
    #[inline(always)]
    fn run(&self, l: Lanes<'_, T>) {
        let [m, u, _] = l.s;
        for ((p, &g), (m, u)) in l.p.iter_mut().zip(l.g).zip(m.iter_mut().zip(u.iter_mut())) {
            let g = self.prep.apply(g, *p);
            *m = self.lerp.apply(*m, g);
            *u = maximum(*u * self.beta2, g.abs() + self.eps);
            *p += (self.neg_clr * *m) / *u;
        }
    }
}
