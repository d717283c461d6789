//! Adadelta.

use tempo_param_groups::{Dict, Value};
use tempo_tensor::Float;

use crate::engine::{elementwise_optimizer, Algorithm};
use crate::kernels::{f, fma, GradPrep, Kernel, Lanes};
use crate::kwargs::{Kwargs, SINGLE_TENSOR_ONLY};
use crate::param_group::{py_num, py_opt_bool, GroupReader};
use crate::state::{ParamState, StateReader, StateWriter};
use crate::validate::{non_negative, repr, require};
use crate::OptimError;

/// Adadelta's hyperparameters, by PyTorch's names; `Default` is PyTorch's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct AdadeltaConfig {
    /// Scale of the update (1.0).
    pub lr: f64,
    /// Decay rate of the running averages (0.9).
    pub rho: f64,
    /// Added inside the square roots (1e-6).
    pub eps: f64,
    /// L2 penalty (0).
    pub weight_decay: f64,
    /// PyTorch's `foreach` flag, stored in the groups; it does not change tempo's numbers.
    pub foreach: Option<bool>,
    /// Maximize the objective (false).
    pub maximize: bool,
}

impl Default for AdadeltaConfig {
    fn default() -> Self {
        Self {
            lr: 1.0,
            rho: 0.9,
            eps: 1e-6,
            weight_decay: 0.0,
            foreach: None,
            maximize: false,
        }
    }
}

impl AdadeltaConfig {
    pub(crate) fn from_kwargs(kw: &Kwargs<'_>) -> Result<Self, OptimError> {
        kw.check_known(&[
            "lr",
            "rho",
            "eps",
            "weight_decay",
            "capturable",
            "maximize",
            "differentiable",
        ])?;
        kw.unsupported_flag("capturable", SINGLE_TENSOR_ONLY)?;
        kw.unsupported_flag("differentiable", SINGLE_TENSOR_ONLY)?;
        let d = Self::default();
        Ok(Self {
            lr: kw.f64("lr", d.lr)?,
            rho: kw.f64("rho", d.rho)?,
            eps: kw.f64("eps", d.eps)?,
            weight_decay: kw.f64("weight_decay", d.weight_decay)?,
            foreach: kw.opt_bool("foreach", d.foreach)?,
            maximize: kw.bool("maximize", d.maximize)?,
        })
    }
}

elementwise_optimizer!(
    /// Adadelta (Zeiler, "ADADELTA: An Adaptive Learning Rate Method", 2012): PyTorch's
    /// `torch.optim.Adadelta`.
    ///
    /// State: `step`, `square_avg`, `acc_delta`.
    Adadelta,
    AdadeltaConfig
);

#[derive(Debug, Clone, Copy)]
pub(crate) struct AdadeltaHyper {
    lr: f64,
    rho: f64,
    eps: f64,
    weight_decay: f64,
    maximize: bool,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct AdadeltaState<T> {
    step: T,
    square_avg: Vec<T>,
    acc_delta: Vec<T>,
}

impl<T: Float> Algorithm<T> for AdadeltaConfig {
    const NAME: &'static str = "Adadelta";
    type Hyper = AdadeltaHyper;
    type State = AdadeltaState<T>;
    type Kernel = AdadeltaKernel<T>;

    fn validate(&self) -> Result<(), OptimError> {
        let o = <Self as Algorithm<T>>::NAME;
        non_negative(o, "lr", self.lr)?;
        require(
            (0.0..=1.0).contains(&self.rho),
            o,
            "rho",
            repr(self.rho),
            "0 <= rho <= 1",
        )?;
        non_negative(o, "eps", self.eps)?;
        non_negative(o, "weight_decay", self.weight_decay)
    }

    fn defaults(&self) -> Dict {
        [
            ("lr", Value::Float(self.lr)),
            ("rho", Value::Float(self.rho)),
            ("eps", Value::Float(self.eps)),
            ("weight_decay", py_num(self.weight_decay, Some(0))),
            ("maximize", Value::Bool(self.maximize)),
            ("capturable", Value::Bool(false)),
            ("foreach", py_opt_bool(self.foreach)),
            ("differentiable", Value::Bool(false)),
        ]
        .into_iter()
        .collect()
    }

    fn hyper(&self, g: &GroupReader<'_>) -> Result<AdadeltaHyper, OptimError> {
        Ok(AdadeltaHyper {
            lr: g.f64("lr")?,
            rho: g.f64("rho")?,
            eps: g.f64("eps")?,
            weight_decay: g.f64("weight_decay")?,
            maximize: g.bool("maximize")?,
        })
    }

    fn init_state(&self, _h: &AdadeltaHyper, n: usize) -> AdadeltaState<T> {
        AdadeltaState {
            step: T::zero(),
            square_avg: vec![T::zero(); n],
            acc_delta: vec![T::zero(); n],
        }
    }

    fn prepare<'a>(
        &self,
        h: &AdadeltaHyper,
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

    fn save_state(&self, st: &AdadeltaState<T>, shape: &[usize]) -> ParamState {
        StateWriter::new(shape)
            .scalar("step", st.step)
            .tensor("square_avg", &st.square_avg)
            .tensor("acc_delta", &st.acc_delta)
            .finish()
    }

    fn load_state(&self, r: &StateReader<'_>) -> Result<AdadeltaState<T>, OptimError> {
        Ok(AdadeltaState {
            step: r.scalar("step")?,
            square_avg: r.tensor("square_avg")?,
            acc_delta: r.tensor("acc_delta")?,
        })
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
