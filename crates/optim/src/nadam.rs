//! NAdam: Adam with Nesterov momentum.

use tempo_tensor::Float;

use crate::engine::{elementwise_optimizer, Algorithm};
use crate::hyper::{hyperparameters, optimizer_state};
use crate::kernels::{f, fma, wide, GradPrep, Kernel, Lanes, Lerp};
use crate::validate::{betas, non_negative};

hyperparameters! {
    /// NAdam's hyperparameters, by PyTorch's names; `Default` is PyTorch's defaults.
    pub struct NAdamConfig as "NAdam" {
        /// Learning rate (2e-3).
        lr: f64 = 2e-3,
        /// Decay rates of the first and second moments ((0.9, 0.999)).
        betas: (f64, f64) = (0.9, 0.999),
        /// Added to the denominator (1e-8).
        eps: f64 = 1e-8,
        /// Weight decay (0): an L2 penalty, or decoupled when `decoupled_weight_decay`.
        weight_decay: f64 = 0,
        /// Momentum decay ψ of the schedule μ_t = β1 (1 - 0.5·0.96^(tψ)) (4e-3).
        momentum_decay: f64 = 4e-3,
        /// Decoupled weight decay, as AdamW (false).
        decoupled_weight_decay: bool = false,
        /// Maximize the objective (false).
        maximize: bool = false,
        /// PyTorch's `foreach` flag, stored in the groups; it does not change tempo's numbers.
        foreach: Option<bool> = None,
        capturable: flag false,
        differentiable: flag false,
    }
    check {
        lr: non_negative,
        eps: non_negative,
        betas: betas,
        weight_decay: non_negative,
        momentum_decay: non_negative,
    }
}

elementwise_optimizer!(
    /// NAdam (Dozat, "Incorporating Nesterov Momentum into Adam", ICLR 2016 workshop),
    /// with optional decoupled weight decay: PyTorch's `torch.optim.NAdam`.
    ///
    /// State: `step`, `mu_product` (a 0-d tensor accumulated in the parameters' type, as
    /// in PyTorch), `exp_avg`, `exp_avg_sq`.
    NAdam,
    NAdamConfig
);

optimizer_state! {
    /// NAdam's per-parameter state: `mu_product` is a 0-d tensor accumulated in the
    /// parameters' type.
    NAdamState for NAdamConfig; |_config, _h| {
        step: scalar(0.0),
        mu_product: scalar(1.0),
        exp_avg: tensor(0.0),
        exp_avg_sq: tensor(0.0),
    }
}

impl<T: Float> Algorithm<T> for NAdamConfig {
    type State = NAdamState<T>;
    type Kernel = NAdamKernel<T>;

    fn prepare<'a>(
        &self,
        h: &Self,
        st: &'a mut NAdamState<T>,
        p: &'a mut [T],
        g: &'a [T],
    ) -> (NAdamKernel<T>, Lanes<'a, T>) {
        st.step += T::one();
        let t = wide(st.step);
        let (b1, b2) = h.betas;
        let bc2 = 1.0 - b2.powf(t);
        let (prep, decay) = if h.weight_decay != 0.0 && h.decoupled_weight_decay {
            (
                GradPrep::new(h.maximize, 0.0),
                Some(f(1.0 - h.lr * h.weight_decay)),
            )
        } else {
            (GradPrep::new(h.maximize, h.weight_decay), None)
        };
        let mu = b1 * (1.0 - 0.5 * 0.96f64.powf(t * h.momentum_decay));
        let mu_next = b1 * (1.0 - 0.5 * 0.96f64.powf((t + 1.0) * h.momentum_decay));
        st.mu_product *= f(mu);
        let mp = wide(st.mu_product);
        let mp_next = mp * mu_next;
        let k = NAdamKernel {
            prep,
            decay,
            lerp: Lerp::new(1.0 - b1),
            beta2: f(b2),
            one_minus_beta2: f(1.0 - b2),
            bc2: f(bc2),
            eps: f(h.eps),
            c_grad: f((-h.lr * (1.0 - mu)) / (1.0 - mp)),
            c_avg: f((-h.lr * mu_next) / (1.0 - mp_next)),
        };
        (
            k,
            Lanes::new(p, g)
                .with(0, &mut st.exp_avg)
                .with(1, &mut st.exp_avg_sq),
        )
    }
}

pub(crate) struct NAdamKernel<T> {
    prep: GradPrep<T>,
    decay: Option<T>,
    lerp: Lerp<T>,
    beta2: T,
    one_minus_beta2: T,
    bc2: T,
    eps: T,
    c_grad: T,
    c_avg: T,
}

impl<T: Float> Kernel<T> for NAdamKernel<T> {
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
            let denom = (*v / self.bc2).sqrt() + self.eps;
            let q = q + (self.c_grad * g) / denom;
            *p = q + (self.c_avg * *m) / denom;
        }
    }
}
