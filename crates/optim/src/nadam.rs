//! NAdam: Adam with Nesterov momentum.

use tempo_param_groups::{Dict, Value};
use tempo_tensor::Float;

use crate::engine::{elementwise_optimizer, Algorithm};
use crate::kernels::{f, fma, wide, GradPrep, Kernel, Lanes, Lerp};
use crate::kwargs::{Kwargs, SINGLE_TENSOR_ONLY};
use crate::param_group::{py_num, py_opt_bool, py_pair, GroupReader};
use crate::state::{ParamState, StateReader, StateWriter};
use crate::validate::{adam_like, non_negative};
use crate::OptimError;

/// NAdam's hyperparameters, by PyTorch's names; `Default` is PyTorch's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct NAdamConfig {
    /// Learning rate (2e-3).
    pub lr: f64,
    /// Decay rates of the first and second moments ((0.9, 0.999)).
    pub betas: (f64, f64),
    /// Added to the denominator (1e-8).
    pub eps: f64,
    /// Weight decay (0): an L2 penalty, or decoupled when `decoupled_weight_decay`.
    pub weight_decay: f64,
    /// Momentum decay ψ of the schedule μ_t = β1 (1 - 0.5·0.96^(tψ)) (4e-3).
    pub momentum_decay: f64,
    /// Decoupled weight decay, as AdamW (false).
    pub decoupled_weight_decay: bool,
    /// PyTorch's `foreach` flag, stored in the groups; it does not change tempo's numbers.
    pub foreach: Option<bool>,
    /// Maximize the objective (false).
    pub maximize: bool,
}

impl Default for NAdamConfig {
    fn default() -> Self {
        Self {
            lr: 2e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            momentum_decay: 4e-3,
            decoupled_weight_decay: false,
            foreach: None,
            maximize: false,
        }
    }
}

impl NAdamConfig {
    pub(crate) fn from_kwargs(kw: &Kwargs<'_>) -> Result<Self, OptimError> {
        kw.check_known(&[
            "lr",
            "betas",
            "eps",
            "weight_decay",
            "momentum_decay",
            "decoupled_weight_decay",
            "maximize",
            "capturable",
            "differentiable",
        ])?;
        kw.unsupported_flag("capturable", SINGLE_TENSOR_ONLY)?;
        kw.unsupported_flag("differentiable", SINGLE_TENSOR_ONLY)?;
        let d = Self::default();
        Ok(Self {
            lr: kw.f64("lr", d.lr)?,
            betas: kw.pair("betas", d.betas)?,
            eps: kw.f64("eps", d.eps)?,
            weight_decay: kw.f64("weight_decay", d.weight_decay)?,
            momentum_decay: kw.f64("momentum_decay", d.momentum_decay)?,
            decoupled_weight_decay: kw.bool("decoupled_weight_decay", d.decoupled_weight_decay)?,
            foreach: kw.opt_bool("foreach", d.foreach)?,
            maximize: kw.bool("maximize", d.maximize)?,
        })
    }
}

elementwise_optimizer!(
    /// NAdam (Dozat, "Incorporating Nesterov Momentum into Adam", ICLR 2016 workshop),
    /// with optional decoupled weight decay: PyTorch's `torch.optim.NAdam`.
    ///
    /// State: `step`, `mu_product` (a 0-d tensor accumulated in the parameters' type, as
    /// in PyTorch), `exp_avg`, `exp_avg_sq`.
    NAdam,
    NAdamConfig
);

#[derive(Debug, Clone, Copy)]
pub(crate) struct NAdamHyper {
    lr: f64,
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
    momentum_decay: f64,
    decoupled: bool,
    maximize: bool,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct NAdamState<T> {
    step: T,
    mu_product: T,
    exp_avg: Vec<T>,
    exp_avg_sq: Vec<T>,
}

impl<T: Float> Algorithm<T> for NAdamConfig {
    const NAME: &'static str = "NAdam";
    type Hyper = NAdamHyper;
    type State = NAdamState<T>;
    type Kernel = NAdamKernel<T>;

    fn validate(&self) -> Result<(), OptimError> {
        let o = <Self as Algorithm<T>>::NAME;
        adam_like(o, self.lr, self.eps, self.betas, self.weight_decay)?;
        non_negative(o, "momentum_decay", self.momentum_decay)
    }

    fn defaults(&self) -> Dict {
        [
            ("lr", Value::Float(self.lr)),
            ("betas", py_pair(self.betas, (None, None))),
            ("eps", Value::Float(self.eps)),
            ("weight_decay", py_num(self.weight_decay, Some(0))),
            ("momentum_decay", Value::Float(self.momentum_decay)),
            (
                "decoupled_weight_decay",
                Value::Bool(self.decoupled_weight_decay),
            ),
            ("maximize", Value::Bool(self.maximize)),
            ("foreach", py_opt_bool(self.foreach)),
            ("capturable", Value::Bool(false)),
            ("differentiable", Value::Bool(false)),
        ]
        .into_iter()
        .collect()
    }

    fn hyper(&self, g: &GroupReader<'_>) -> Result<NAdamHyper, OptimError> {
        Ok(NAdamHyper {
            lr: g.f64("lr")?,
            betas: g.pair("betas")?,
            eps: g.f64("eps")?,
            weight_decay: g.f64("weight_decay")?,
            momentum_decay: g.f64("momentum_decay")?,
            decoupled: g.bool("decoupled_weight_decay")?,
            maximize: g.bool("maximize")?,
        })
    }

    fn init_state(&self, _h: &NAdamHyper, n: usize) -> NAdamState<T> {
        NAdamState {
            step: T::zero(),
            mu_product: T::one(),
            exp_avg: vec![T::zero(); n],
            exp_avg_sq: vec![T::zero(); n],
        }
    }

    fn prepare<'a>(
        &self,
        h: &NAdamHyper,
        st: &'a mut NAdamState<T>,
        p: &'a mut [T],
        g: &'a [T],
    ) -> (NAdamKernel<T>, Lanes<'a, T>) {
        st.step += T::one();
        let t = wide(st.step);
        let (b1, b2) = h.betas;
        let bc2 = 1.0 - b2.powf(t);
        let (prep, decay) = if h.weight_decay != 0.0 && h.decoupled {
            (
                GradPrep::new(h.maximize, 0.0),
                Some(f(1.0 - h.lr * h.weight_decay)),
            )
        } else {
            (GradPrep::new(h.maximize, h.weight_decay), None)
        };
        let mu = b1 * (1.0 - 0.5 * 0.96f64.powf(t * h.momentum_decay));
        let mu_next = b1 * (1.0 - 0.5 * 0.96f64.powf((t + 1.0) * h.momentum_decay));
        st.mu_product *= f(mu);
        let mp = wide(st.mu_product);
        let mp_next = mp * mu_next;
        let k = NAdamKernel {
            prep,
            decay,
            lerp: Lerp::new(1.0 - b1),
            beta2: f(b2),
            one_minus_beta2: f(1.0 - b2),
            bc2: f(bc2),
            eps: f(h.eps),
            c_grad: f((-h.lr * (1.0 - mu)) / (1.0 - mp)),
            c_avg: f((-h.lr * mu_next) / (1.0 - mp_next)),
        };
        (
            k,
            Lanes::new(p, g)
                .with(0, &mut st.exp_avg)
                .with(1, &mut st.exp_avg_sq),
        )
    }

    fn save_state(&self, st: &NAdamState<T>, shape: &[usize]) -> ParamState {
        StateWriter::new(shape)
            .scalar("step", st.step)
            .scalar("mu_product", st.mu_product)
            .tensor("exp_avg", &st.exp_avg)
            .tensor("exp_avg_sq", &st.exp_avg_sq)
            .finish()
    }

    fn load_state(&self, r: &StateReader<'_>) -> Result<NAdamState<T>, OptimError> {
        Ok(NAdamState {
            step: r.scalar("step")?,
            mu_product: r.scalar("mu_product")?,
            exp_avg: r.tensor("exp_avg")?,
            exp_avg_sq: r.tensor("exp_avg_sq")?,
        })
    }
}

pub(crate) struct NAdamKernel<T> {
    prep: GradPrep<T>,
    decay: Option<T>,
    lerp: Lerp<T>,
    beta2: T,
    one_minus_beta2: T,
    bc2: T,
    eps: T,
    c_grad: T,
    c_avg: T,
}

impl<T: Float> Kernel<T> for NAdamKernel<T> {
    #[inline(always)]
    fn run(&self, l: Lanes<'_, T>) {
        let [m, v, _] = l.s;
        for ((p, &g), (m, v)) in l.p.iter_mut().zip(l.g).zip(m.iter_mut().zip(v.iter_mut())) {
            let g = self.prep.apply(g, *p);
            // Decay as a value, not a conditional store (see `AdamKernel::moments`).
            let q = match self.decay {
                Some(d) => *p * d,
                None => *p,
            };
            *m = self.lerp.apply(*m, g);
            *v = fma(self.one_minus_beta2 * g, g, *v * self.beta2);
            let denom = (*v / self.bc2).sqrt() + self.eps;
            let q = q + (self.c_grad * g) / denom;
            *p = q + (self.c_avg * *m) / denom;
        }
    }
}
