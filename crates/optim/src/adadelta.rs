//! Adadelta.

use tempo_tensor::Float;

use crate::engine::{elementwise_optimizer, Algorithm};
use crate::hyper::{hyperparameters, optimizer_state};
use crate::kernels::{f, fma, GradPrep, Kernel, Lanes};
use crate::validate::{non_negative, rho_range};

hyperparameters! {
    /// Adadelta's hyperparameters, by PyTorch's names; `Default` is PyTorch's defaults.
    pub struct AdadeltaConfig as "Adadelta" {
        /// Scale of the update (1.0).
        lr: f64 = 1.0,
        /// Decay rate of the running averages (0.9).
        rho: f64 = 0.9,
        /// Added inside the square roots (1e-6).
        eps: f64 = 1e-6,
        /// L2 penalty (0).
        weight_decay: f64 = 0,
        /// Maximize the objective (false).
        maximize: bool = false,
        capturable: flag false,
        /// PyTorch's `foreach` flag, stored in the groups; it does not change tempo's numbers.
        foreach: Option<bool> = None,
        differentiable: flag false,
    }
    check { lr: non_negative, rho: rho_range, eps: non_negative, weight_decay: non_negative }
}

elementwise_optimizer!(
    /// Adadelta (Zeiler, "ADADELTA: An Adaptive Learning Rate Method", 2012): PyTorch's
    /// `torch.optim.Adadelta`.
    ///
    /// State: `step`, `square_avg`, `acc_delta`.
    Adadelta,
    AdadeltaConfig
);

optimizer_state! {
    /// Adadelta's per-parameter state.
    AdadeltaState for AdadeltaConfig; |_config, _h| {
        step: scalar(0.0),
        square_avg: tensor(0.0),
        acc_delta: tensor(0.0),
    }
}

impl<T: Float> Algorithm<T> for AdadeltaConfig {
    type State = AdadeltaState<T>;
    type Kernel = AdadeltaKernel<T>;

    fn prepare<'a>(
        &self,
        h: &Self,
        st: &'a mut AdadeltaState<T>,
        p: &'a mut [T],
        g: &'a [T],
    ) -> (AdadeltaKernel<T>, Lanes<'a, T>) {
        st.step += T::one();
        let k = AdadeltaKernel {
            prep: GradPrep::new(h.maximize, h.weight_decay),
            rho: f(h.rho),
            one_minus_rho: f(1.0 - h.rho),
            eps: f(h.eps),
            neg_lr: f(-h.lr),
        };
        (
            k,
            Lanes::new(p, g)
                .with(0, &mut st.square_avg)
                .with(1, &mut st.acc_delta),
        )
    }
}

pub(crate) struct AdadeltaKernel<T> {
    prep: GradPrep<T>,
    rho: T,
    one_minus_rho: T,
    eps: T,
    neg_lr: T,
}

impl<T: Float> Kernel<T> for AdadeltaKernel<T> {
    #[inline(always)]
    fn run(&self, l: Lanes<'_, T>) {
        let [sq, acc, _] = l.s;
        for ((p, &g), (sq, acc)) in
            l.p.iter_mut()
                .zip(l.g)
                .zip(sq.iter_mut().zip(acc.iter_mut()))
        {
            let g = self.prep.apply(g, *p);
            *sq = fma(self.one_minus_rho * g, g, *sq * self.rho);
            let std = (*sq + self.eps).sqrt();
            let delta = (*acc + self.eps).sqrt();
            let delta = (delta / std) * g;
            *acc = fma(self.one_minus_rho * delta, delta, *acc * self.rho);
            *p = fma(self.neg_lr, delta, *p);
        }
    }
}
