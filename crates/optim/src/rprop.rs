//! Rprop: resilient backpropagation.

use tempo_param_groups::{Dict, Value};
use tempo_tensor::Float;

use crate::engine::{elementwise_optimizer, Algorithm};
use crate::kernels::{f, fma, sign, Kernel, Lanes};
use crate::kwargs::{Kwargs, SINGLE_TENSOR_ONLY};
use crate::param_group::{py_num, py_opt_bool, GroupReader};
use crate::state::{ParamState, StateReader, StateWriter};
use crate::validate::{non_negative, repr, require};
use crate::OptimError;

/// Rprop's hyperparameters, by PyTorch's names; `Default` is PyTorch's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct RpropConfig {
    /// Initial step size (1e-2). Read once, when a parameter's state is created.
    pub lr: f64,
    /// Multiplicative decrease and increase factors (η-, η+) ((0.5, 1.2)).
    pub etas: (f64, f64),
    /// Minimal and maximal step sizes ((1e-6, 50)).
    pub step_sizes: (f64, f64),
    /// PyTorch's `foreach` flag, stored in the groups; it does not change tempo's numbers.
    pub foreach: Option<bool>,
    /// Maximize the objective (false).
    pub maximize: bool,
}

impl Default for RpropConfig {
    fn default() -> Self {
        Self {
            lr: 1e-2,
            etas: (0.5, 1.2),
            step_sizes: (1e-6, 50.0),
            foreach: None,
            maximize: false,
        }
    }
}

impl RpropConfig {
    pub(crate) fn from_kwargs(kw: &Kwargs<'_>) -> Result<Self, OptimError> {
        kw.check_known(&[
            "lr",
            "etas",
            "step_sizes",
            "capturable",
            "maximize",
            "differentiable",
        ])?;
        kw.unsupported_flag("capturable", SINGLE_TENSOR_ONLY)?;
        kw.unsupported_flag("differentiable", SINGLE_TENSOR_ONLY)?;
        let d = Self::default();
        Ok(Self {
            lr: kw.f64("lr", d.lr)?,
            etas: kw.pair("etas", d.etas)?,
            step_sizes: kw.pair("step_sizes", d.step_sizes)?,
            foreach: kw.opt_bool("foreach", d.foreach)?,
            maximize: kw.bool("maximize", d.maximize)?,
        })
    }
}

elementwise_optimizer!(
    /// Rprop (Riedmiller & Braun, "A Direct Adaptive Method for Faster Backpropagation
    /// Learning: The RPROP Algorithm", ICNN 1993): PyTorch's `torch.optim.Rprop`.
    ///
    /// State: `step`, `prev`, `step_size`. As in PyTorch, `lr` only seeds `step_size`
    /// when the state is created: later changes to a group's `lr` (by a scheduler) have
    /// no effect.
    Rprop,
    RpropConfig
);

#[derive(Debug, Clone, Copy)]
pub(crate) struct RpropHyper {
    lr: f64,
    etas: (f64, f64),
    step_sizes: (f64, f64),
    maximize: bool,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct RpropState<T> {
    step: T,
    prev: Vec<T>,
    step_size: Vec<T>,
}

impl<T: Float> Algorithm<T> for RpropConfig {
    const NAME: &'static str = "Rprop";
    type Hyper = RpropHyper;
    type State = RpropState<T>;
    type Kernel = RpropKernel<T>;

    fn validate(&self) -> Result<(), OptimError> {
        let o = <Self as Algorithm<T>>::NAME;
        non_negative(o, "lr", self.lr)?;
        let (minus, plus) = self.etas;
        require(
            0.0 < minus && minus < 1.0 && 1.0 < plus,
            o,
            "etas",
            format!("({}, {})", repr(minus), repr(plus)),
            "0 < etaminus < 1 < etaplus",
        )
    }

    fn defaults(&self) -> Dict {
        [
            ("lr", Value::Float(self.lr)),
            (
                "etas",
                Value::Tuple(vec![Value::Float(self.etas.0), Value::Float(self.etas.1)]),
            ),
            (
                "step_sizes",
                Value::Tuple(vec![
                    Value::Float(self.step_sizes.0),
                    py_num(self.step_sizes.1, Some(50)),
                ]),
            ),
            ("foreach", py_opt_bool(self.foreach)),
            ("maximize", Value::Bool(self.maximize)),
            ("differentiable", Value::Bool(false)),
            ("capturable", Value::Bool(false)),
        ]
        .into_iter()
        .collect()
    }

    fn hyper(&self, g: &GroupReader<'_>) -> Result<RpropHyper, OptimError> {
        Ok(RpropHyper {
            lr: g.f64("lr")?,
            etas: g.pair("etas")?,
            step_sizes: g.pair("step_sizes")?,
            maximize: g.bool("maximize")?,
        })
    }

    fn init_state(&self, h: &RpropHyper, n: usize) -> RpropState<T> {
        RpropState {
            step: T::zero(),
            prev: vec![T::zero(); n],
            step_size: vec![f(h.lr); n],
        }
    }

    fn prepare<'a>(
        &self,
        h: &RpropHyper,
        st: &'a mut RpropState<T>,
        p: &'a mut [T],
        g: &'a [T],
    ) -> (RpropKernel<T>, Lanes<'a, T>) {
        st.step += T::one();
        let k = RpropKernel {
            maximize: h.maximize,
            eta_minus: f(h.etas.0),
            eta_plus: f(h.etas.1),
            min: f(h.step_sizes.0),
            max: f(h.step_sizes.1),
        };
        (
            k,
            Lanes::new(p, g)
                .with(0, &mut st.prev)
                .with(1, &mut st.step_size),
        )
    }

    fn save_state(&self, st: &RpropState<T>, shape: &[usize]) -> ParamState {
        StateWriter::new(shape)
            .scalar("step", st.step)
            .tensor("prev", &st.prev)
            .tensor("step_size", &st.step_size)
            .finish()
    }

    fn load_state(&self, r: &StateReader<'_>) -> Result<RpropState<T>, OptimError> {
        Ok(RpropState {
            step: r.scalar("step")?,
            prev: r.tensor("prev")?,
            step_size: r.tensor("step_size")?,
        })
    }
}

pub(crate) struct RpropKernel<T> {
    maximize: bool,
    eta_minus: T,
    eta_plus: T,
    min: T,
    max: T,
}

impl<T: Float> Kernel<T> for RpropKernel<T> {
    #[inline(always)]
    fn run(&self, l: Lanes<'_, T>) {
        let [prev, step_size, _] = l.s;
        for ((p, &g), (prev, ss)) in
            l.p.iter_mut()
                .zip(l.g)
                .zip(prev.iter_mut().zip(step_size.iter_mut()))
        {
            let g = if self.maximize { -g } else { g };
            let prod = g * *prev;
            // sign -> {eta_plus, eta_minus, 1}; NaN stays NaN.
            let s = if prod > T::zero() {
                self.eta_plus
            } else if prod < T::zero() {
                self.eta_minus
            } else if prod == T::zero() {
                T::one()
            } else {
                prod
            };
            let x = *ss * s;
            // clamp_(min, max): min(max(x, min), max), NaN propagating.
            *ss = if x.is_nan() {
                x
            } else {
                let lo = if x < self.min { self.min } else { x };
                if lo > self.max {
                    self.max
                } else {
                    lo
                }
            };
            let g = if s == self.eta_minus { T::zero() } else { g };
            *p = fma(-sign(g), *ss, *p);
            *prev = g;
        }
    }
}
