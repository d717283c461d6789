//! ASGD: averaged stochastic gradient descent.

use tempo_param_groups::{Dict, Value};
use tempo_tensor::Float;

use crate::engine::{elementwise_optimizer, Algorithm};
use crate::kernels::{f, fma, wide, GradPrep, Kernel, Lanes};
use crate::kwargs::{Kwargs, SINGLE_TENSOR_ONLY};
use crate::param_group::{py_num, py_opt_bool, GroupReader};
use crate::state::{ParamState, StateReader, StateWriter};
use crate::validate::non_negative;
use crate::OptimError;

/// ASGD's hyperparameters, by PyTorch's names; `Default` is PyTorch's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct AsgdConfig {
    /// Learning rate (1e-2).
    pub lr: f64,
    /// Decay term (1e-4).
    pub lambd: f64,
    /// Power of the eta update (0.75).
    pub alpha: f64,
    /// The step at which averaging starts (1e6).
    pub t0: f64,
    /// L2 penalty (0).
    pub weight_decay: f64,
    /// PyTorch's `foreach` flag, stored in the groups; it does not change tempo's numbers.
    pub foreach: Option<bool>,
    /// Maximize the objective (false).
    pub maximize: bool,
}

impl Default for AsgdConfig {
    fn default() -> Self {
        Self {
            lr: 1e-2,
            lambd: 1e-4,
            alpha: 0.75,
            t0: 1e6,
            weight_decay: 0.0,
            foreach: None,
            maximize: false,
        }
    }
}

impl AsgdConfig {
    pub(crate) fn from_kwargs(kw: &Kwargs<'_>) -> Result<Self, OptimError> {
        kw.check_known(&[
            "lr",
            "lambd",
            "alpha",
            "t0",
            "weight_decay",
            "maximize",
            "differentiable",
            "capturable",
        ])?;
        kw.unsupported_flag("capturable", SINGLE_TENSOR_ONLY)?;
        kw.unsupported_flag("differentiable", SINGLE_TENSOR_ONLY)?;
        let d = Self::default();
        Ok(Self {
            lr: kw.f64("lr", d.lr)?,
            lambd: kw.f64("lambd", d.lambd)?,
            alpha: kw.f64("alpha", d.alpha)?,
            t0: kw.f64("t0", d.t0)?,
            weight_decay: kw.f64("weight_decay", d.weight_decay)?,
            foreach: kw.opt_bool("foreach", d.foreach)?,
            maximize: kw.bool("maximize", d.maximize)?,
        })
    }
}

elementwise_optimizer!(
    /// Averaged SGD (Polyak & Juditsky, "Acceleration of Stochastic Approximation by
    /// Averaging", SIAM J. Control Optim. 1992): PyTorch's `torch.optim.ASGD`.
    ///
    /// State: `step`, `eta` and `mu` (0-d tensors in the parameters' type, as in PyTorch),
    /// and the average `ax`.
    Asgd,
    AsgdConfig
);

#[derive(Debug, Clone, Copy)]
pub(crate) struct AsgdHyper {
    lr: f64,
    lambd: f64,
    alpha: f64,
    t0: f64,
    weight_decay: f64,
    maximize: bool,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct AsgdState<T> {
    step: T,
    eta: T,
    mu: T,
    ax: Vec<T>,
}

impl<T: Float> Algorithm<T> for AsgdConfig {
    const NAME: &'static str = "ASGD";
    type Hyper = AsgdHyper;
    type State = AsgdState<T>;
    type Kernel = AsgdKernel<T>;

    fn validate(&self) -> Result<(), OptimError> {
        let o = <Self as Algorithm<T>>::NAME;
        non_negative(o, "lr", self.lr)?;
        non_negative(o, "lambd", self.lambd)?;
        non_negative(o, "alpha", self.alpha)?;
        non_negative(o, "weight_decay", self.weight_decay)
    }

    fn defaults(&self) -> Dict {
        [
            ("lr", Value::Float(self.lr)),
            ("lambd", Value::Float(self.lambd)),
            ("alpha", Value::Float(self.alpha)),
            ("t0", Value::Float(self.t0)),
            ("weight_decay", py_num(self.weight_decay, Some(0))),
            ("foreach", py_opt_bool(self.foreach)),
            ("maximize", Value::Bool(self.maximize)),
            ("differentiable", Value::Bool(false)),
            ("capturable", Value::Bool(false)),
        ]
        .into_iter()
        .collect()
    }

    fn hyper(&self, g: &GroupReader<'_>) -> Result<AsgdHyper, OptimError> {
        Ok(AsgdHyper {
            lr: g.f64("lr")?,
            lambd: g.f64("lambd")?,
            alpha: g.f64("alpha")?,
            t0: g.f64("t0")?,
            weight_decay: g.f64("weight_decay")?,
            maximize: g.bool("maximize")?,
        })
    }

    fn init_state(&self, h: &AsgdHyper, n: usize) -> AsgdState<T> {
        AsgdState {
            step: T::zero(),
            eta: f(h.lr),
            mu: T::one(),
            ax: vec![T::zero(); n],
        }
    }

    fn prepare<'a>(
        &self,
        h: &AsgdHyper,
        st: &'a mut AsgdState<T>,
        p: &'a mut [T],
        g: &'a [T],
    ) -> (AsgdKernel<T>, Lanes<'a, T>) {
        st.step += T::one();
        let eta = wide(st.eta);
        // PyTorch's exact test `mu.item() != 1`: averaging starts once mu leaves 1.
        #[allow(clippy::float_cmp)]
        let averaging = wide(st.mu) != 1.0;
        let k = AsgdKernel {
            prep: GradPrep::new(h.maximize, h.weight_decay),
            decay: f(1.0 - h.lambd * eta),
            neg_eta: f(-eta),
            mu: averaging.then_some(st.mu),
        };
        // The next step's eta and mu (the kernel holds this step's).
        let t = wide(st.step);
        st.eta = f(h.lr / (1.0 + (h.lambd * h.lr) * t).powf(h.alpha));
        let d = t - h.t0;
        st.mu = f(1.0 / if d > 1.0 { d } else { 1.0 });
        (k, Lanes::new(p, g).with(0, &mut st.ax))
    }

    fn save_state(&self, st: &AsgdState<T>, shape: &[usize]) -> ParamState {
        StateWriter::new(shape)
            .scalar("step", st.step)
            .scalar("eta", st.eta)
            .scalar("mu", st.mu)
            .tensor("ax", &st.ax)
            .finish()
    }

    fn load_state(&self, r: &StateReader<'_>) -> Result<AsgdState<T>, OptimError> {
        Ok(AsgdState {
            step: r.scalar("step")?,
            eta: r.scalar("eta")?,
            mu: r.scalar("mu")?,
            ax: r.tensor("ax")?,
        })
    }
}

pub(crate) struct AsgdKernel<T> {
    prep: GradPrep<T>,
    decay: T,
    neg_eta: T,
    /// `Some(mu)` once averaging has started (`mu != 1`).
    mu: Option<T>,
}

impl<T: Float> Kernel<T> for AsgdKernel<T> {
    #[inline(always)]
    fn run(&self, l: Lanes<'_, T>) {
        let [ax, _, _] = l.s;
        for ((p, &g), ax) in l.p.iter_mut().zip(l.g).zip(ax.iter_mut()) {
            let g = self.prep.apply(g, *p);
            *p *= self.decay;
            *p = fma(self.neg_eta, g, *p);
            *ax = match self.mu {
                Some(mu) => *ax + (*p - *ax) * mu,
                None => *p,
            };
        }
    }
}
