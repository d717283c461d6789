//! Adam, with AMSGrad, L2 or decoupled weight decay, and maximize.

use tempo_tensor::Float;

use crate::engine::elementwise_optimizer;
use crate::kernels::{each, f, fma, maximum, wide, GradPrep, Kernel, Lanes, Lerp};
use crate::kwargs::float_betas;
use crate::validate::{betas, non_negative};
use crate::AdamWConfig;

elementwise_optimizer! {
    /// Adam (Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015), with
    /// AMSGrad (Reddi et al., "On the Convergence of Adam and Beyond", ICLR 2018) and
    /// decoupled weight decay (Loshchilov & Hutter, "Decoupled Weight Decay
    /// Regularization", ICLR 2019): PyTorch's `torch.optim.Adam`.
    ///
    /// State: `step`, `exp_avg`, `exp_avg_sq`, and `max_exp_avg_sq` with AMSGrad.
    pub struct Adam with AdamRun;

    /// Adam's hyperparameters, by PyTorch's names; `Default` is PyTorch's defaults.
    pub struct AdamConfig as "Adam" {
        lr = 1e-3, betas = (0.9, 0.999), eps = 1e-8,
        /// Weight decay (0): an L2 penalty, or decoupled when `decoupled_weight_decay`.
        weight_decay = 0,
        amsgrad = false, maximize = false, foreach = None, capturable: flag false,
        differentiable: flag false, fused: flag None, decoupled_weight_decay = false,
    }
    check { lr: non_negative, eps: non_negative, betas: betas, weight_decay: non_negative }
    kwargs float_betas;

    /// Adam's (and AdamW's) per-parameter state.
    state AdamState for AdamConfig, AdamWConfig; |_config, h| {
        step: counter, exp_avg: tensor(0.0), exp_avg_sq: tensor(0.0),
        max_exp_avg_sq: tensor(0.0) if (h.amsgrad),
    }
}

/// The moment updates of Adam, RAdam and NAdam: the gradient as the update sees it,
/// weight decay (an L2 penalty, or decoupled: `p * (1 - lr*weight_decay)`), and the
/// first and second moments' updates, in PyTorch's order.
#[derive(Clone, Copy)]
pub(crate) struct Moments<T> {
    prep: GradPrep<T>,
    decay: Option<T>,
    lerp: Lerp<T>,
    beta2: T,
    one_minus_beta2: T,
}

/// Adam's, RAdam's and NAdam's configs name the hyperparameters of [`Moments`] alike.
macro_rules! moments_from {
    ($($config:ty),*) => {$(
        impl<T: Float> From<&$config> for Moments<T> {
            fn from(h: &$config) -> Self {
                let (b1, b2) = h.betas;
                let (prep, decay) = if h.weight_decay != 0.0 && h.decoupled_weight_decay {
                    (
                        GradPrep::new(h.maximize, 0.0),
                        Some(f(1.0 - h.lr * h.weight_decay)),
                    )
                } else {
                    (GradPrep::new(h.maximize, h.weight_decay), None)
                };
                Self {
                    prep,
                    decay,
                    lerp: Lerp::new(1.0 - b1),
                    beta2: f(b2),
                    one_minus_beta2: f(1.0 - b2),
                }
            }
        }
    )*};
}

moments_from!(AdamConfig, crate::RAdamConfig, crate::NAdamConfig);

impl<T: Float> Moments<T> {
    /// Updates the moments `m` and `v` from the gradient `g` of the parameter `p`;
    /// returns the decayed parameter and the gradient as the update saw it.
    ///
    /// The decay is a value, never a conditional store to the parameter: a store under
    /// a loop-invariant condition may be vectorized as a masked store (`vmaskmovps`),
    /// which some CPUs (AMD Zen) run several times slower than the whole update.
    #[inline(always)]
    pub(crate) fn update(&self, p: T, g: T, m: &mut T, v: &mut T) -> (T, T) {
        let g = self.prep.apply(g, p);
        let p = match self.decay {
            Some(d) => p * d,
            None => p,
        };
        *m = self.lerp.apply(*m, g);
        *v = fma(self.one_minus_beta2 * g, g, *v * self.beta2);
        (p, g)
    }
}

/// Adam's kernel, with or without AMSGrad's running maximum.
pub(crate) enum AdamRun<T> {
    Plain(AdamKernel<T>),
    Ams(AdamKernel<T>),
}

impl<T: Float> AdamRun<T> {
    /// PyTorch's single-tensor Adam, fused into one pass
    /// (`torch.optim.adam._single_tensor_adam`): advances the step count and returns the
    /// kernel with this parameter's bias corrections.
    pub(crate) fn new(h: &AdamConfig, st: &mut AdamState<T>) -> Self {
        let t = wide(st.step);
        let (b1, b2) = h.betas;
        let bc2 = 1.0 - b2.powf(t);
        let k = AdamKernel {
            moments: Moments::from(h),
            bc2_sqrt: f(bc2.powf(0.5)),
            eps: f(h.eps),
            neg_step_size: f(-(h.lr / (1.0 - b1.powf(t)))),
        };
        if h.amsgrad {
            AdamRun::Ams(k)
        } else {
            AdamRun::Plain(k)
        }
    }
}

impl<T: Float> Kernel<T> for AdamRun<T> {
    #[inline(always)]
    fn run(&self, l: Lanes<'_, T>) {
        match self {
            AdamRun::Plain(k) => k.run(l),
            AdamRun::Ams(k) => AmsKernel(*k).run(l),
        }
    }
}

#[derive(Clone, Copy)]
pub(crate) struct AdamKernel<T> {
    moments: Moments<T>,
    bc2_sqrt: T,
    eps: T,
    neg_step_size: T,
}

impl<T: Float> AdamKernel<T> {
    /// The parameter after the update, from the decayed parameter `p`.
    #[inline(always)]
    fn apply(&self, p: T, m: T, s: T) -> T {
        let denom = s.sqrt() / self.bc2_sqrt + self.eps;
        p + (self.neg_step_size * m) / denom
    }
}

impl<T: Float> Kernel<T> for AdamKernel<T> {
    #[inline(always)]
    fn run(&self, l: Lanes<'_, T>) {
        each!(l, |p, g, m, v| {
            let (q, _) = self.moments.update(*p, g, m, v);
            *p = self.apply(q, *m, *v);
        });
    }
}

struct AmsKernel<T>(AdamKernel<T>);

impl<T: Float> Kernel<T> for AmsKernel<T> {
    #[inline(always)]
    fn run(&self, l: Lanes<'_, T>) {
        each!(l, |p, g, m, v, vmax| {
            let (q, _) = self.0.moments.update(*p, g, m, v);
            *vmax = maximum(*vmax, *v);
            *p = self.0.apply(q, *m, *vmax);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::param;
    use crate::{OptimError, Optimizer};
    use ndarray::ArrayD;
    use tempo_param_groups::Value;

    #[test]
    fn first_step_moves_each_element_by_about_lr() {
        // With bias correction, Adam's first step is lr * g/|g| (up to eps).
        let p = param(&[1.0f64, -1.0]);
        let mut opt = Adam::new(
            vec![p.clone()],
            AdamConfig {
                lr: 0.1,
                ..Default::default()
            },
        )
        .unwrap();
        p.set_grad(Some(
            ArrayD::from_shape_vec(vec![2], vec![3.0, -0.5]).unwrap(),
        ))
        .unwrap();
        opt.step().unwrap();
        assert!((p.data()[[0]] - 0.9).abs() < 1e-7);
        assert!((p.data()[[1]] + 0.9).abs() < 1e-7);
        let sd = opt.state_dict();
        assert_eq!(
            sd.state[0].1.keys().collect::<Vec<_>>(),
            ["step", "exp_avg", "exp_avg_sq"]
        );
        let keys: Vec<_> = sd.param_groups[0].keys().collect();
        assert_eq!(
            keys,
            [
                "lr",
                "betas",
                "eps",
                "weight_decay",
                "amsgrad",
                "maximize",
                "foreach",
                "capturable",
                "differentiable",
                "fused",
                "decoupled_weight_decay",
                "params"
            ]
        );
        assert_eq!(sd.param_groups[0].get("weight_decay"), Some(&Value::Int(0)));
    }

    #[test]
    fn betas_are_validated_with_their_index() {
        let cfg = AdamConfig {
            betas: (0.9, 1.0),
            ..Default::default()
        };
        let e = Adam::new(vec![param(&[1.0f32])], cfg).unwrap_err();
        assert!(
            matches!(e, OptimError::InvalidHyperparameter { ref name, ref value, .. } if name == "betas[1]" && value == "1.0")
        );
        let nan = AdamConfig {
            lr: f64::NAN,
            ..Default::default()
        };
        let e = Adam::new(vec![param(&[1.0f32])], nan).unwrap_err();
        assert!(
            matches!(e, OptimError::InvalidHyperparameter { ref name, .. } if name == "lr"),
            "Adam rejects a NaN lr: {e}"
        );
    }
}
