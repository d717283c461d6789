//! Adam, with AMSGrad, L2 or decoupled weight decay, and maximize.

use tempo_tensor::Float;

use crate::engine::{elementwise_optimizer, Algorithm};
use crate::hyper::{hyperparameters, optimizer_state};
use crate::kernels::{f, maximum, GradPrep, Kernel, Lanes, Lerp};
use crate::kwargs::float_betas;
use crate::validate::{betas, non_negative};
use crate::AdamWConfig;

hyperparameters! {
    /// Adam's hyperparameters, by PyTorch's names; `Default` is PyTorch's defaults.
    pub struct AdamConfig as "Adam" {
        /// Learning rate (1e-3).
        lr: f64 = 1e-3,
        /// Decay rates of the first and second moments ((0.9, 0.999)).
        betas: (f64, f64) = (0.9, 0.999),
        /// Added to the denominator (1e-8).
        eps: f64 = 1e-8,
        /// Weight decay (0): an L2 penalty, or decoupled when `decoupled_weight_decay`.
        weight_decay: f64 = 0,
        /// AMSGrad: divide by the running maximum of the second moment (false).
        amsgrad: bool = false,
        /// Maximize the objective (false).
        maximize: bool = false,
        /// PyTorch's `foreach` flag, stored in the groups; it does not change tempo's numbers.
        foreach: Option<bool> = None,
        capturable: flag false,
        differentiable: flag false,
        fused: flag None,
        /// Decoupled weight decay, as AdamW (false).
        decoupled_weight_decay: bool = false,
    }
    check { lr: non_negative, eps: non_negative, betas: betas, weight_decay: non_negative }
    kwargs float_betas;
}

elementwise_optimizer!(
    /// Adam (Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015), with
    /// AMSGrad (Reddi et al., "On the Convergence of Adam and Beyond", ICLR 2018) and
    /// decoupled weight decay (Loshchilov & Hutter, "Decoupled Weight Decay
    /// Regularization", ICLR 2019): PyTorch's `torch.optim.Adam`.
    ///
    /// State: `step`, `exp_avg`, `exp_avg_sq`, and `max_exp_avg_sq` with AMSGrad.
    Adam,
    AdamConfig
);

optimizer_state! {
    /// Adam's (and AdamW's) per-parameter state.
    AdamState for AdamConfig, AdamWConfig; |_config, h| {
        step: scalar(0.0),
        exp_avg: tensor(0.0),
        exp_avg_sq: tensor(0.0),
        max_exp_avg_sq: tensor(0.0) if (h.amsgrad),
    }
}

impl<T: Float> Algorithm<T> for AdamConfig {
    type State = AdamState<T>;
    type Kernel = AdamRun<T>;

    fn prepare<'a>(
        &self,
        h: &Self,
        st: &'a mut AdamState<T>,
        p: &'a mut [T],
        g: &'a [T],
    ) -> (AdamRun<T>, Lanes<'a, T>) {
        adam_prepare(h, st, p, g)
    }
}

/// PyTorch's single-tensor Adam, fused into one pass (`torch.optim.adam._single_tensor_adam`): advances the
/// step count and returns the kernel with this parameter's bias corrections.
pub(crate) fn adam_prepare<'a, T: Float>(
    h: &AdamConfig,
    st: &'a mut AdamState<T>,
    p: &'a mut [T],
    g: &'a [T],
) -> (AdamRun<T>, Lanes<'a, T>) {
    st.step += T::one();
    let t = crate::kernels::wide(st.step);
    let (b1, b2) = h.betas;
    let bc1 = 1.0 - b1.powf(t);
    let bc2 = 1.0 - b2.powf(t);
    let step_size = h.lr / bc1;
    let bc2_sqrt = bc2.powf(0.5);
    let (prep, decay) = if h.weight_decay != 0.0 && h.decoupled_weight_decay {
        (
            GradPrep::new(h.maximize, 0.0),
            Some(f(1.0 - h.lr * h.weight_decay)),
        )
    } else {
        (GradPrep::new(h.maximize, h.weight_decay), None)
    };
    let k = AdamKernel {
        prep,
        decay,
        lerp: Lerp::new(1.0 - b1),
        beta2: f(b2),
        one_minus_beta2: f(1.0 - b2),
        bc2_sqrt: f(bc2_sqrt),
        eps: f(h.eps),
        neg_step_size: f(-step_size),
    };
    let lanes = Lanes::new(p, g)
        .with(0, &mut st.exp_avg)
        .with(1, &mut st.exp_avg_sq);
    match (&mut st.max_exp_avg_sq, h.amsgrad) {
        (Some(vmax), true) => (AdamRun::Ams(k), lanes.with(2, vmax)),
        _ => (AdamRun::Plain(k), lanes),
    }
}

/// Adam's kernel, with or without AMSGrad's running maximum.
pub(crate) enum AdamRun<T> {
    Plain(AdamKernel<T>),
    Ams(AdamKernel<T>),
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
    prep: GradPrep<T>,
    decay: Option<T>,
    lerp: Lerp<T>,
    beta2: T,
    one_minus_beta2: T,
    bc2_sqrt: T,
    eps: T,
    neg_step_size: T,
}

impl<T: Float> AdamKernel<T> {
    /// Weight decay and the moment updates; returns the decayed parameter and the new
    /// `exp_avg_sq`.
    ///
    /// The decay is a value, never a conditional store to the parameter: a store under
    /// a loop-invariant condition may be vectorized as a masked store (`vmaskmovps`),
    /// which some CPUs (AMD Zen) run several times slower than the whole update.
    #[inline(always)]
    fn moments(&self, p: T, g: T, m: &mut T, v: &mut T) -> (T, T) {
        let g = self.prep.apply(g, p);
        let p = match self.decay {
            Some(d) => p * d,
            None => p,
        };
        *m = self.lerp.apply(*m, g);
        *v = crate::kernels::fma(self.one_minus_beta2 * g, g, *v * self.beta2);
        (p, *v)
    }

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
        let [m, v, _] = l.s;
        for ((p, &g), (m, v)) in l.p.iter_mut().zip(l.g).zip(m.iter_mut().zip(v.iter_mut())) {
            let (q, v) = self.moments(*p, g, m, v);
            *p = self.apply(q, *m, v);
        }
    }
}

struct AmsKernel<T>(AdamKernel<T>);

impl<T: Float> Kernel<T> for AmsKernel<T> {
    #[inline(always)]
    fn run(&self, l: Lanes<'_, T>) {
        let [m, v, vmax] = l.s;
        for (((p, &g), (m, v)), vmax) in
            l.p.iter_mut()
                .zip(l.g)
                .zip(m.iter_mut().zip(v.iter_mut()))
                .zip(vmax.iter_mut())
        {
            let (q, v) = self.0.moments(*p, g, m, v);
            *vmax = maximum(*vmax, v);
            *p = self.0.apply(q, *m, *vmax);
        }
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
        assert!(
            Adam::new(vec![param(&[1.0f32])], nan).is_err(),
            "Adam rejects a NaN lr"
        );
    }
}
