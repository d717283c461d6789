//! RMSprop, centered or not, with optional momentum.

use tempo_param_groups::{Dict, Value};
use tempo_tensor::Float;

use crate::engine::{elementwise_optimizer, Algorithm};
use crate::kernels::{f, fma, GradPrep, Kernel, Lanes, Lerp};
use crate::kwargs::{Kwargs, SINGLE_TENSOR_ONLY};
use crate::param_group::{py_num, py_opt_bool, GroupReader};
use crate::state::{ParamState, StateReader, StateWriter};
use crate::validate::non_negative;
use crate::OptimError;

/// RMSprop's hyperparameters, by PyTorch's names; `Default` is PyTorch's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct RmspropConfig {
    /// Learning rate (1e-2).
    pub lr: f64,
    /// Smoothing constant of the squared-gradient average (0.99).
    pub alpha: f64,
    /// Added to the denominator (1e-8).
    pub eps: f64,
    /// L2 penalty (0).
    pub weight_decay: f64,
    /// Momentum factor (0).
    pub momentum: f64,
    /// Centered RMSprop: normalize by an estimate of the gradient's variance (false).
    pub centered: bool,
    /// PyTorch's `foreach` flag, stored in the groups; it does not change tempo's numbers.
    pub foreach: Option<bool>,
    /// Maximize the objective (false).
    pub maximize: bool,
}

impl Default for RmspropConfig {
    fn default() -> Self {
        Self {
            lr: 1e-2,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.0,
            centered: false,
            foreach: None,
            maximize: false,
        }
    }
}

impl RmspropConfig {
    pub(crate) fn from_kwargs(kw: &Kwargs<'_>) -> Result<Self, OptimError> {
        kw.check_known(&[
            "lr",
            "alpha",
            "eps",
            "weight_decay",
            "momentum",
            "centered",
            "capturable",
            "maximize",
            "differentiable",
        ])?;
        kw.unsupported_flag("capturable", SINGLE_TENSOR_ONLY)?;
        kw.unsupported_flag("differentiable", SINGLE_TENSOR_ONLY)?;
        let d = Self::default();
        Ok(Self {
            lr: kw.f64("lr", d.lr)?,
            alpha: kw.f64("alpha", d.alpha)?,
            eps: kw.f64("eps", d.eps)?,
            weight_decay: kw.f64("weight_decay", d.weight_decay)?,
            momentum: kw.f64("momentum", d.momentum)?,
            centered: kw.bool("centered", d.centered)?,
            foreach: kw.opt_bool("foreach", d.foreach)?,
            maximize: kw.bool("maximize", d.maximize)?,
        })
    }
}

elementwise_optimizer!(
    /// RMSprop (Hinton, "Neural Networks for Machine Learning", lecture 6e, 2012; centered
    /// version after Graves, "Generating Sequences With Recurrent Neural Networks", 2013):
    /// PyTorch's `torch.optim.RMSprop`.
    ///
    /// State: `step`, `square_avg`, `momentum_buffer` (only if `momentum > 0` when the
    /// state is created) and `grad_avg` (only if `centered`). As in PyTorch, turning
    /// momentum or centering on after the first step is an error (missing state).
    Rmsprop,
    RmspropConfig
);

#[derive(Debug, Clone, Copy)]
pub(crate) struct RmspropHyper {
    lr: f64,
    alpha: f64,
    eps: f64,
    weight_decay: f64,
    momentum: f64,
    centered: bool,
    maximize: bool,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct RmspropState<T> {
    step: T,
    square_avg: Vec<T>,
    momentum_buffer: Option<Vec<T>>,
    grad_avg: Option<Vec<T>>,
}

impl<T: Float> Algorithm<T> for RmspropConfig {
    const NAME: &'static str = "RMSprop";
    type Hyper = RmspropHyper;
    type State = RmspropState<T>;
    type Kernel = RmspropRun<T>;

    fn validate(&self) -> Result<(), OptimError> {
        let o = <Self as Algorithm<T>>::NAME;
        non_negative(o, "lr", self.lr)?;
        non_negative(o, "eps", self.eps)?;
        non_negative(o, "momentum", self.momentum)?;
        non_negative(o, "weight_decay", self.weight_decay)?;
        non_negative(o, "alpha", self.alpha)
    }

    fn defaults(&self) -> Dict {
        [
            ("lr", Value::Float(self.lr)),
            ("momentum", py_num(self.momentum, Some(0))),
            ("alpha", Value::Float(self.alpha)),
            ("eps", Value::Float(self.eps)),
            ("centered", Value::Bool(self.centered)),
            ("weight_decay", py_num(self.weight_decay, Some(0))),
            ("capturable", Value::Bool(false)),
            ("foreach", py_opt_bool(self.foreach)),
            ("maximize", Value::Bool(self.maximize)),
            ("differentiable", Value::Bool(false)),
        ]
        .into_iter()
        .collect()
    }

    fn hyper(&self, g: &GroupReader<'_>) -> Result<RmspropHyper, OptimError> {
        Ok(RmspropHyper {
            lr: g.f64("lr")?,
            alpha: g.f64("alpha")?,
            eps: g.f64("eps")?,
            weight_decay: g.f64("weight_decay")?,
            momentum: g.f64("momentum")?,
            centered: g.bool("centered")?,
            maximize: g.bool("maximize")?,
        })
    }

    fn init_state(&self, h: &RmspropHyper, n: usize) -> RmspropState<T> {
        RmspropState {
            step: T::zero(),
            square_avg: vec![T::zero(); n],
            momentum_buffer: (h.momentum > 0.0).then(|| vec![T::zero(); n]),
            grad_avg: h.centered.then(|| vec![T::zero(); n]),
        }
    }

    fn check_state(
        &self,
        h: &RmspropHyper,
        st: &RmspropState<T>,
        param: usize,
    ) -> Result<(), OptimError> {
        if h.momentum > 0.0 && st.momentum_buffer.is_none() {
            return Err(OptimError::MissingState {
                param,
                key: "momentum_buffer".into(),
            });
        }
        if h.centered && st.grad_avg.is_none() {
            return Err(OptimError::MissingState {
                param,
                key: "grad_avg".into(),
            });
        }
        Ok(())
    }

    fn prepare<'a>(
        &self,
        h: &RmspropHyper,
        st: &'a mut RmspropState<T>,
        p: &'a mut [T],
        g: &'a [T],
    ) -> (RmspropRun<T>, Lanes<'a, T>) {
        st.step += T::one();
        let k = RmspropKernel {
            prep: GradPrep::new(h.maximize, h.weight_decay),
            alpha: f(h.alpha),
            one_minus_alpha: f(1.0 - h.alpha),
            lerp: Lerp::new(1.0 - h.alpha),
            eps: f(h.eps),
            momentum: f(h.momentum),
            neg_lr: f(-h.lr),
        };
        let mut lanes = Lanes::new(p, g).with(0, &mut st.square_avg);
        let use_momentum = h.momentum > 0.0;
        if use_momentum {
            if let Some(b) = st.momentum_buffer.as_mut() {
                lanes = lanes.with(1, b);
            }
        }
        if h.centered {
            if let Some(ga) = st.grad_avg.as_mut() {
                lanes = lanes.with(2, ga);
            }
        }
        let run = RmspropRun {
            kernel: k,
            centered: h.centered,
            momentum: use_momentum,
        };
        (run, lanes)
    }

    fn save_state(&self, st: &RmspropState<T>, shape: &[usize]) -> ParamState {
        StateWriter::new(shape)
            .scalar("step", st.step)
            .tensor("square_avg", &st.square_avg)
            .opt_tensor("momentum_buffer", st.momentum_buffer.as_ref())
            .opt_tensor("grad_avg", st.grad_avg.as_ref())
            .finish()
    }

    fn load_state(&self, r: &StateReader<'_>) -> Result<RmspropState<T>, OptimError> {
        Ok(RmspropState {
            step: r.scalar("step")?,
            square_avg: r.tensor("square_avg")?,
            momentum_buffer: r.opt_tensor("momentum_buffer")?,
            grad_avg: r.opt_tensor("grad_avg")?,
        })
    }
}

/// RMSprop's kernel and the variant it runs as.
pub(crate) struct RmspropRun<T> {
    kernel: RmspropKernel<T>,
    centered: bool,
    momentum: bool,
}

impl<T: Float> Kernel<T> for RmspropRun<T> {
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
struct RmspropKernel<T> {
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
struct Variant<T, const CENTERED: bool, const MOMENTUM: bool>(RmspropKernel<T>);

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
