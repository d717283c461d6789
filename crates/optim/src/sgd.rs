//! SGD with momentum, dampening, Nesterov momentum, weight decay and maximize.

use tempo_tensor::Float;

use crate::engine::elementwise_optimizer;
use crate::kernels::{each, f, fma, GradPrep, Kernel, Lanes};
use crate::validate::{at_least_zero_or_nan, repr, require};
use crate::OptimError;

elementwise_optimizer! {
    /// Stochastic gradient descent (optionally with momentum), PyTorch's
    /// `torch.optim.SGD`; Nesterov momentum after Sutskever et al., "On the importance of
    /// initialization and momentum in deep learning" (ICML 2013).
    ///
    /// State: `momentum_buffer` when `momentum != 0`, a copy of the (decayed) gradient at
    /// the first step. SGD validates with `x < 0`, so a NaN `lr` is accepted, as in PyTorch.
    pub struct SGD with SGDKernel;

    /// SGD's hyperparameters, by PyTorch's names; `Default` is PyTorch's defaults.
    pub struct SGDConfig as "SGD" {
        lr = 1e-3, momentum = 0,
        /// Dampening of the momentum (0).
        dampening: f64 = 0,
        weight_decay = 0, nesterov = false, maximize = false, foreach = None,
        differentiable: flag false, fused: flag None,
    }
    check {
        lr: at_least_zero_or_nan,
        momentum: at_least_zero_or_nan,
        weight_decay: at_least_zero_or_nan,
    }
    also nesterov_needs_momentum;

    /// SGD's per-parameter state: the momentum buffer, created by the first step with
    /// momentum.
    state SGDState for SGDConfig; |_config, h| {
        momentum_buffer: lazy if (h.momentum != 0.0),
    }

    impl {
        fn has_state(&self, h: &SGDConfig) -> bool {
            h.momentum != 0.0
        }
    }
}

/// PyTorch's "Nesterov momentum requires a momentum and zero dampening".
fn nesterov_needs_momentum(c: &SGDConfig) -> Result<(), OptimError> {
    require(
        !(c.nesterov && (c.momentum <= 0.0 || c.dampening != 0.0)),
        "SGD",
        "nesterov",
        format!(
            "True with momentum={} and dampening={}",
            repr(c.momentum),
            repr(c.dampening)
        ),
        "Nesterov momentum requires a momentum > 0 and zero dampening",
    )
}

#[derive(Clone, Copy)]
struct MomentumCoef<T> {
    first: bool,
    momentum: T,
    one_minus_dampening: T,
    nesterov: bool,
}

pub(crate) struct SGDKernel<T> {
    prep: GradPrep<T>,
    neg_lr: T,
    momentum: Option<MomentumCoef<T>>,
}

impl<T: Float> SGDKernel<T> {
    fn new(h: &SGDConfig, st: &mut SGDState<T>) -> Self {
        let momentum = (h.momentum != 0.0).then(|| MomentumCoef {
            first: st.momentum_buffer.is_none(),
            momentum: f(h.momentum),
            one_minus_dampening: f(1.0 - h.dampening),
            nesterov: h.nesterov,
        });
        Self {
            prep: GradPrep::new(h.maximize, h.weight_decay),
            neg_lr: f(-h.lr),
            momentum,
        }
    }
}

impl<T: Float> Kernel<T> for SGDKernel<T> {
    #[inline(always)]
    fn run(&self, l: Lanes<'_, T>) {
        let (prep, neg_lr) = (self.prep, self.neg_lr);
        match self.momentum {
            None => each!(l, |p, g| {
                let g = prep.apply(g, *p);
                *p = fma(neg_lr, g, *p);
            }),
            Some(m) => each!(l, |p, g, b| {
                let g = prep.apply(g, *p);
                *b = if m.first {
                    g
                } else {
                    fma(m.one_minus_dampening, g, *b * m.momentum)
                };
                let d = if m.nesterov {
                    fma(m.momentum, *b, g)
                } else {
                    *b
                };
                *p = fma(neg_lr, d, *p);
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::param;
    use crate::Optimizer;
    use ndarray::ArrayD;

    #[test]
    fn momentum_buffer_starts_as_the_gradient() {
        let p = param(&[1.0f64, 2.0]);
        let cfg = SGDConfig {
            lr: 0.1,
            momentum: 0.9,
            dampening: 0.5,
            ..Default::default()
        };
        let mut opt = SGD::new(vec![p.clone()], cfg).unwrap();
        p.set_grad(Some(
            ArrayD::from_shape_vec(vec![2], vec![1.0, -1.0]).unwrap(),
        ))
        .unwrap();
        assert!(opt.step().unwrap());
        // First step: buf = g (no dampening), p -= lr * buf.
        assert!((p.data()[[0]] - 0.9).abs() < 1e-15);
        opt.step().unwrap();
        // buf = 0.9*1 + 0.5*1 = 1.4; p = 0.9 - 0.14.
        assert!((p.data()[[0]] - 0.76).abs() < 1e-12);
        let sd = opt.state_dict();
        assert_eq!(sd.state.len(), 1);
        assert_eq!(
            sd.state[0].1.keys().collect::<Vec<_>>(),
            ["momentum_buffer"]
        );
    }

    #[test]
    fn no_grad_means_no_step_and_no_state() {
        let p = param(&[1.0f32]);
        let mut opt = SGD::new(
            vec![p],
            SGDConfig {
                momentum: 0.5,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(!opt.step().unwrap());
        assert!(opt.state_dict().state.is_empty());
    }

    #[test]
    fn validation_names_the_value() {
        let e = SGD::new(
            vec![param(&[1.0f64])],
            SGDConfig {
                momentum: -0.5,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("momentum") && e.to_string().contains("-0.5"),
            "{e}"
        );
        let nan = SGDConfig {
            lr: f64::NAN,
            ..Default::default()
        };
        assert!(
            SGD::new(vec![param(&[1.0f64])], nan).is_ok(),
            "SGD accepts a NaN lr, as PyTorch"
        );
        let nest = SGDConfig {
            nesterov: true,
            ..Default::default()
        };
        assert!(matches!(
            SGD::new(vec![param(&[1.0f64])], nest),
            Err(OptimError::InvalidHyperparameter { ref name, .. }) if name == "nesterov"
        ));
    }
}
