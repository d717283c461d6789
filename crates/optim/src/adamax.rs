//! Adamax: Adam with the infinity norm.

use tempo_param_groups::{Dict, Value};
use tempo_tensor::Float;

use crate::engine::{elementwise_optimizer, Algorithm};
use crate::kernels::{f, maximum, wide, GradPrep, Kernel, Lanes, Lerp};
use crate::kwargs::{Kwargs, SINGLE_TENSOR_ONLY};
use crate::param_group::{py_num, py_opt_bool, py_pair, GroupReader};
use crate::state::{ParamState, StateReader, StateWriter};
use crate::validate::adam_like;
use crate::OptimError;

/// Adamax's hyperparameters, by PyTorch's names; `Default` is PyTorch's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct AdamaxConfig {
    /// Learning rate (2e-3).
    pub lr: f64,
    /// Decay rates of the first moment and the infinity norm ((0.9, 0.999)).
    pub betas: (f64, f64),
    /// Added to the norm (1e-8).
    pub eps: f64,
    /// L2 penalty (0).
    pub weight_decay: f64,
    /// PyTorch's `foreach` flag, stored in the groups; it does not change tempo's numbers.
    pub foreach: Option<bool>,
    /// Maximize the objective (false).
    pub maximize: bool,
}

impl Default for AdamaxConfig {
    fn default() -> Self {
        Self {
            lr: 2e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            foreach: None,
            maximize: false,
        }
    }
}

impl AdamaxConfig {
    pub(crate) fn from_kwargs(kw: &Kwargs<'_>) -> Result<Self, OptimError> {
        kw.check_known(&[
            "lr",
            "betas",
            "eps",
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
            betas: kw.pair("betas", d.betas)?,
            eps: kw.f64("eps", d.eps)?,
            weight_decay: kw.f64("weight_decay", d.weight_decay)?,
            foreach: kw.opt_bool("foreach", d.foreach)?,
            maximize: kw.bool("maximize", d.maximize)?,
        })
    }
}

elementwise_optimizer!(
    /// Adamax, the infinity-norm variant of Adam (Kingma & Ba, "Adam: A Method for
    /// Stochastic Optimization", ICLR 2015, §7.1): PyTorch's `torch.optim.Adamax`.
    ///
    /// State: `step`, `exp_avg`, `exp_inf`.
    Adamax,
    AdamaxConfig
);

#[derive(Debug, Clone, Copy)]
pub(crate) struct AdamaxHyper {
    lr: f64,
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
    maximize: bool,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct AdamaxState<T> {
    step: T,
    exp_avg: Vec<T>,
    exp_inf: Vec<T>,
}

impl<T: Float> Algorithm<T> for AdamaxConfig {
    const NAME: &'static str = "Adamax";
    type Hyper = AdamaxHyper;
    type State = AdamaxState<T>;
    type Kernel = AdamaxKernel<T>;

    fn validate(&self) -> Result<(), OptimError> {
        adam_like(
            <Self as Algorithm<T>>::NAME,
            self.lr,
            self.eps,
            self.betas,
            self.weight_decay,
        )
    }

    fn defaults(&self) -> Dict {
        [
            ("lr", Value::Float(self.lr)),
            ("betas", py_pair(self.betas, (None, None))),
            ("eps", Value::Float(self.eps)),
            ("weight_decay", py_num(self.weight_decay, Some(0))),
            ("foreach", py_opt_bool(self.foreach)),
            ("maximize", Value::Bool(self.maximize)),
            ("differentiable", Value::Bool(false)),
            ("capturable", Value::Bool(false)),
        ]
        .into_iter()
        .collect()
    }

    fn hyper(&self, g: &GroupReader<'_>) -> Result<AdamaxHyper, OptimError> {
        Ok(AdamaxHyper {
            lr: g.f64("lr")?,
            betas: g.pair("betas")?,
            eps: g.f64("eps")?,
            weight_decay: g.f64("weight_decay")?,
            maximize: g.bool("maximize")?,
        })
    }

    fn init_state(&self, _h: &AdamaxHyper, n: usize) -> AdamaxState<T> {
        AdamaxState {
            step: T::zero(),
            exp_avg: vec![T::zero(); n],
            exp_inf: vec![T::zero(); n],
        }
    }

    fn prepare<'a>(
        &self,
        h: &AdamaxHyper,
        st: &'a mut AdamaxState<T>,
        p: &'a mut [T],
        g: &'a [T],
    ) -> (AdamaxKernel<T>, Lanes<'a, T>) {
        st.step += T::one();
        let t = wide(st.step);
        let (b1, b2) = h.betas;
        let clr = h.lr / (1.0 - b1.powf(t));
        let k = AdamaxKernel {
            prep: GradPrep::new(h.maximize, h.weight_decay),
            lerp: Lerp::new(1.0 - b1),
            beta2: f(b2),
            eps: f(h.eps),
            neg_clr: f(-clr),
        };
        (
            k,
            Lanes::new(p, g)
                .with(0, &mut st.exp_avg)
                .with(1, &mut st.exp_inf),
        )
    }

    fn save_state(&self, st: &AdamaxState<T>, shape: &[usize]) -> ParamState {
        StateWriter::new(shape)
            .scalar("step", st.step)
            .tensor("exp_avg", &st.exp_avg)
            .tensor("exp_inf", &st.exp_inf)
            .finish()
    }

    fn load_state(&self, r: &StateReader<'_>) -> Result<AdamaxState<T>, OptimError> {
        Ok(AdamaxState {
            step: r.scalar("step")?,
            exp_avg: r.tensor("exp_avg")?,
            exp_inf: r.tensor("exp_inf")?,
        })
    }
}

pub(crate) struct AdamaxKernel<T> {
    prep: GradPrep<T>,
    lerp: Lerp<T>,
    beta2: T,
    eps: T,
    neg_clr: T,
}

impl<T: Float> Kernel<T> for AdamaxKernel<T> {
    #[inline(always)]
    fn run(&self, l: Lanes<'_, T>) {
        let [m, u, _] = l.s;
        for ((p, &g), (m, u)) in l.p.iter_mut().zip(l.g).zip(m.iter_mut().zip(u.iter_mut())) {
            let g = self.prep.apply(g, *p);
            *m = self.lerp.apply(*m, g);
            *u = maximum(*u * self.beta2, g.abs() + self.eps);
            *p += (self.neg_clr * *m) / *u;
        }
    }
}
