//! Adagrad, with learning-rate decay and an initial accumulator value.

use tempo_tensor::Float;

use crate::engine::elementwise_optimizer;
use crate::kernels::{each, f, fma, wide, GradPrep, Kernel, Lanes};
use crate::validate::non_negative;

elementwise_optimizer! {
    /// Adagrad (Duchi, Hazan & Singer, "Adaptive Subgradient Methods for Online Learning
    /// and Stochastic Optimization", JMLR 2011): PyTorch's `torch.optim.Adagrad`.
    ///
    /// State (`step`, `sum`) is created in the constructor for every parameter, as in
    /// PyTorch, so a state dict taken before any step already has it; `sum` starts at the
    /// constructor's `initial_accumulator_value` (a per-group value is ignored, as in
    /// PyTorch). Parameters added later start from the same constructor value.
    pub struct Adagrad with AdagradKernel;

    /// Adagrad's hyperparameters, by PyTorch's names; `Default` is PyTorch's defaults.
    pub struct AdagradConfig as "Adagrad" {
        lr = 1e-2,
        /// Learning-rate decay per step (0).
        lr_decay: f64 = 0,
        /// Added to the denominator (1e-10).
        eps = 1e-10,
        weight_decay = 0,
        /// Initial value of the sum of squared gradients (0).
        initial_accumulator_value: f64 = 0,
        foreach = None, maximize = false, differentiable: flag false, fused: flag None,
    }
    check {
        lr: non_negative,
        lr_decay: non_negative,
        weight_decay: non_negative,
        initial_accumulator_value: non_negative,
        eps: non_negative,
    }

    /// Adagrad's per-parameter state; `sum` starts at the constructor's
    /// `initial_accumulator_value` (a group's is ignored, as in PyTorch).
    state AdagradState for AdagradConfig; |config, _h| {
        step: counter, sum: tensor(config.initial_accumulator_value),
    }

    impl {
        fn eager_init(&self) -> bool {
            true
        }
    }
}

pub(crate) struct AdagradKernel<T> {
    prep: GradPrep<T>,
    eps: T,
    neg_clr: T,
}

impl<T: Float> AdagradKernel<T> {
    fn new(h: &AdagradConfig, st: &mut AdagradState<T>) -> Self {
        let t = wide(st.step);
        let clr = h.lr / (1.0 + (t - 1.0) * h.lr_decay);
        Self {
            prep: GradPrep::new(h.maximize, h.weight_decay),
            eps: f(h.eps),
            neg_clr: f(-clr),
        }
    }
}

impl<T: Float> Kernel<T> for AdagradKernel<T> {
    #[inline(always)]
    fn run(&self, l: Lanes<'_, T>) {
        each!(l, |p, g, s| {
            let g = self.prep.apply(g, *p);
            *s = fma(g, g, *s);
            let std = s.sqrt() + self.eps;
            *p += (self.neg_clr * g) / std;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::param;
    use crate::Optimizer;

    #[test]
    fn state_exists_before_the_first_step() {
        let cfg = AdagradConfig {
            initial_accumulator_value: 0.5,
            ..Default::default()
        };
        let opt = Adagrad::new(vec![param(&[1.0f64, 2.0])], cfg).unwrap();
        let sd = opt.state_dict();
        assert_eq!(sd.state.len(), 1);
        let sum = sd.state[0]
            .1
            .get("sum")
            .and_then(|v| v.as_tensor())
            .unwrap()
            .to_f64_vec();
        assert_eq!(sum.len(), 2);
        assert!(sum.iter().all(|&s| (s - 0.5).abs() < 1e-15));
    }
}
