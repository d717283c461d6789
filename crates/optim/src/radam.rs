//! RAdam: Adam with a rectified adaptive learning rate.

use tempo_tensor::Float;

use crate::engine::{elementwise_optimizer, Algorithm};
use crate::hyper::{hyperparameters, optimizer_state};
use crate::kernels::{f, fma, wide, GradPrep, Kernel, Lanes, Lerp};
use crate::validate::{betas, non_negative};

hyperparameters! {
    /// RAdam's hyperparameters, by PyTorch's names; `Default` is PyTorch's defaults.
    pub struct RAdamConfig as "RAdam" {
        /// Learning rate (1e-3).
        lr: f64 = 1e-3,
        /// Decay rates of the first and second moments ((0.9, 0.999)).
        betas: (f64, f64) = (0.9, 0.999),
        /// Added to the denominator (1e-8).
        eps: f64 = 1e-8,
        /// Weight decay (0): an L2 penalty, or decoupled when `decoupled_weight_decay`.
        weight_decay: f64 = 0,
        /// Maximize the objective (false).
        maximize: bool = false,
        /// PyTorch's `foreach` flag, stored in the groups; it does not change tempo's numbers.
        foreach: Option<bool> = None,
        capturable: flag false,
        /// Decoupled weight decay, as AdamW (false).
        decoupled_weight_decay: bool = false,
        differentiable: flag false,
    }
    check { lr: non_negative, eps: non_negative, betas: betas, weight_decay: non_negative }
}

elementwise_optimizer!(
    /// RAdam (Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond",
    /// ICLR 2020), with optional decoupled weight decay: PyTorch's `torch.optim.RAdam`.
    ///
    /// While the variance is intractable (ρ_t ≤ 5: the first five steps with the default
    /// betas) the update is bias-corrected momentum SGD. State: `step`, `exp_avg`,
    /// `exp_avg_sq`.
    RAdam,
    RAdamConfig
);

optimizer_state! {
    /// RAdam's per-parameter state.
    RAdamState for RAdamConfig; |_config, _h| {
        step: scalar(0.0),
        exp_avg: tensor(0.0),
        exp_avg_sq: tensor(0.0),
    }
}

impl<T: Float> Algorithm<T> for RAdamConfig {
    type State = RAdamState<T>;
    type Kernel = RAdamKernel<T>;

    fn prepare<'a>(
        &self,
        h: &Self,
        st: &'a mut RAdamState<T>,
        p: &'a mut [T],
        g: &'a [T],
    ) -> (RAdamKernel<T>, Lanes<'a, T>) {
        st.step += T::one();
        let t = wide(st.step);
        let (b1, b2) = h.betas;
        let (prep, decay) = if h.weight_decay != 0.0 && h.decoupled_weight_decay {
            (
                GradPrep::new(h.maximize, 0.0),
                Some(f(1.0 - h.lr * h.weight_decay)),
            )
        } else {
            (GradPrep::new(h.maximize, h.weight_decay), None)
        };
        let bc1 = 1.0 - b1.powf(t);
        let bc2 = 1.0 - b2.powf(t);
        let rho_inf = 2.0 / (1.0 - b2) - 1.0;
        let rho_t = rho_inf - ((2.0 * t) * b2.powf(t)) / bc2;
        let rect = (rho_t > 5.0).then(|| {
            let r = (((rho_t - 4.0) * (rho_t - 2.0)) * rho_inf)
                / (((rho_inf - 4.0) * (rho_inf - 2.0)) * rho_t);
            (f(r.powf(0.5)), f(bc2.powf(0.5)))
        });
        let k = RAdamKernel {
            prep,
            decay,
            lerp: Lerp::new(1.0 - b1),
            beta2: f(b2),
            one_minus_beta2: f(1.0 - b2),
            bc1: f(bc1),
            lr: f(h.lr),
            eps: f(h.eps),
            rect,
        };
        (
            k,
            Lanes::new(p, g)
                .with(0, &mut st.exp_avg)
                .with(1, &mut st.exp_avg_sq),
        )
    }
}

pub(crate) struct RAdamKernel<T> {
    prep: GradPrep<T>,
    decay: Option<T>,
    lerp: Lerp<T>,
    beta2: T,
    one_minus_beta2: T,
    bc1: T,
    lr: T,
    eps: T,
    /// `(F(rect), F(sqrt(bc2)))` once the variance is tractable.
    rect: Option<(T, T)>,
}

impl<T: Float> Kernel<T> for RAdamKernel<T> {
    #[inline(always)]
    fn run(&self, l: Lanes<'_, T>) {
        let [m, v, _] = l.s;
        for ((p, &g), (m, v)) in l.p.iter_mut().zip(l.g).zip(m.iter_mut().zip(v.iter_mut())) {
            let g = self.prep.apply(g, *p);
            // Decay as a value, not a conditional store (see `AdamKernel::moments`).
            let q = match self.decay {
                Some(d) => *p * d,
                None => *p,
            };
            *m = self.lerp.apply(*m, g);
            *v = fma(self.one_minus_beta2 * g, g, *v * self.beta2);
            let mhat = *m / self.bc1;
            let upd = match self.rect {
                Some((rect, bc2_sqrt)) => {
                    let adaptive = (T::one() / (v.sqrt() + self.eps)) * bc2_sqrt;
                    ((mhat * self.lr) * adaptive) * rect
                }
                None => mhat * self.lr,
            };
            *p = q - upd;
        }
    }
}
