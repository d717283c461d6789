//! RMSprop, centered or not, with optional momentum.

use tempo_tensor::Float;

use crate::engine::elementwise_optimizer;
use crate::kernels::{f, fma, GradPrep, Kernel, Lanes, Lerp};
use crate::validate::non_negative;

elementwise_optimizer! {
    /// RMSprop (Hinton, "Neural Networks for Machine Learning", lecture 6e, 2012; centered
    /// version after Graves, "Generating Sequences With Recurrent Neural Networks", 2013):
    /// PyTorch's `torch.optim.RMSprop`.
    ///
    /// State: `step`, `square_avg`, `momentum_buffer` (only if `momentum > 0` when the
    /// state is created) and `grad_avg` (only if `centered`). As in PyTorch, turning
    /// momentum or centering on after the first step is an error (missing state).
    pub struct RMSprop with RMSpropRun;

    /// RMSprop's hyperparameters, by PyTorch's names; `Default` is PyTorch's defaults.
    pub struct RMSpropConfig as "RMSprop" {
        lr = 1e-2, momentum = 0,
        /// Smoothing constant of the squared-gradient average (0.99).
        alpha: f64 = 0.99,
        eps = 1e-8,
        /// Centered RMSprop: normalize by an estimate of the gradient's variance (false).
        centered: bool = false,
        weight_decay = 0, capturable: flag false, foreach = None, maximize = false,
        differentiable: flag false,
    }
    check {
        lr: non_negative,
        eps: non_negative,
        momentum: non_negative,
        weight_decay: non_negative,
        alpha: non_negative,
    }

    /// RMSprop's per-parameter state: `momentum_buffer` only if `momentum > 0` and
    /// `grad_avg` only if `centered` when the state is created.
    state RMSpropState for RMSpropConfig; |_config, h| {
        step: counter, square_avg: tensor(0.0),
        momentum_buffer: tensor(0.0) if (h.momentum > 0.0),
        grad_avg: tensor(0.0) if (h.centered),
    }
}

/// RMSprop's kernel and the variant it runs as.
pub(crate) struct RMSpropRun<T> {
    kernel: RMSpropKernel<T>,
    centered: bool,
    momentum: bool,
}

impl<T: Float> RMSpropRun<T> {
    fn new(h: &RMSpropConfig, _: &mut RMSpropState<T>) -> Self {
        let kernel = RMSpropKernel {
            prep: GradPrep::new(h.maximize, h.weight_decay),
            alpha: f(h.alpha),
            one_minus_alpha: f(1.0 - h.alpha),
            lerp: Lerp::new(1.0 - h.alpha),
            eps: f(h.eps),
            momentum: f(h.momentum),
            neg_lr: f(-h.lr),
        };
        Self {
            kernel,
            centered: h.centered,
            momentum: h.momentum > 0.0,
        }
    }
}

impl<T: Float> Kernel<T> for RMSpropRun<T> {
    #[inline(always)]
    fn run(&self, l: Lanes<'_, T>) {
        let k = self.kernel;
        match (self.centered, self.momentum) {
            (false, false) => Variant::<T, false, false>(k).run(l),
            (false, true) => Variant::<T, false, true>(k).run(l),
            (true, false) => Variant::<T, true, false>(k).run(l),
            (true, true) => Variant::<T, true, true>(k).run(l),
        }
    }
}

#[derive(Clone, Copy)]
struct RMSpropKernel<T> {
    prep: GradPrep<T>,
    alpha: T,
    one_minus_alpha: T,
    lerp: Lerp<T>,
    eps: T,
    momentum: T,
    neg_lr: T,
}

/// The kernel specialised for `CENTERED` and `MOMENTUM` (both known at compile time, so
/// the unused state slots are never touched).
struct Variant<T, const CENTERED: bool, const MOMENTUM: bool>(RMSpropKernel<T>);

impl<T: Float, const CENTERED: bool, const MOMENTUM: bool> Kernel<T>
    for Variant<T, CENTERED, MOMENTUM>
{
    #[inline(always)]
    fn run(&self, l: Lanes<'_, T>) {
        let k = &self.0;
        let n = l.p.len();
        let p = &mut l.p[..n];
        let g = &l.g[..n];
        let [sq, buf, ga] = l.s;
        let sq = &mut sq[..n];
        let buf = if MOMENTUM { &mut buf[..n] } else { buf };
        let ga = if CENTERED { &mut ga[..n] } else { ga };
        for i in 0..n {
            let gi = k.prep.apply(g[i], p[i]);
            sq[i] = fma(k.one_minus_alpha * gi, gi, sq[i] * k.alpha);
            let avg = if CENTERED {
                ga[i] = k.lerp.apply(ga[i], gi);
                fma(-ga[i], ga[i], sq[i]).sqrt()
            } else {
                sq[i].sqrt()
            };
            let avg = avg + k.eps;
            if MOMENTUM {
                buf[i] = buf[i] * k.momentum + gi / avg;
                p[i] = fma(k.neg_lr, buf[i], p[i]);
            } else {
                p[i] += (k.neg_lr * gi) / avg;
            }
        }
    }
}
