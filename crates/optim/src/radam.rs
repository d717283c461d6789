//! RAdam: Adam with a rectified adaptive learning rate.

use tempo_param_groups::{Dict, Value};
use tempo_tensor::Float;

use crate::engine::{elementwise_optimizer, Algorithm};
use crate::kernels::{f, fma, wide, GradPrep, Kernel, Lanes, Lerp};
use crate::kwargs::{Kwargs, SINGLE_TENSOR_ONLY};
use crate::param_group::{py_num, py_opt_bool, py_pair, GroupReader};
use crate::state::{ParamState, StateReader, StateWriter};
use crate::validate::adam_like;
use crate::OptimError;

/// RAdam's hyperparameters, by PyTorch's names; `Default` is PyTorch's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct RAdamConfig {
    /// Learning rate (1e-3).
    pub lr: f64,
    /// Decay rates of the first and second moments ((0.9, 0.999)).
    pub betas: (f64, f64),
    /// Added to the denominator (1e-8).
    pub eps: f64,
    /// Weight decay (0): an L2 penalty, or decoupled when `decoupled_weight_decay`.
    pub weight_decay: f64,
    /// Decoupled weight decay, as AdamW (false).
    pub decoupled_weight_decay: bool,
    /// PyTorch's `foreach` flag, stored in the groups; it does not change tempo's numbers.
    pub foreach: Option<bool>,
    /// Maximize the objective (false).
    pub maximize: bool,
}

impl Default for RAdamConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled_weight_decay: false,
            foreach: None,
            maximize: false,
        }
    }
}

impl RAdamConfig {
    pub(crate) fn from_kwargs(kw: &Kwargs<'_>) -> Result<Self, OptimError> {
        kw.check_known(&[
            "lr",
            "betas",
            "eps",
            "weight_decay",
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
            decoupled_weight_decay: kw.bool("decoupled_weight_decay", d.decoupled_weight_decay)?,
            foreach: kw.opt_bool("foreach", d.foreach)?,
            maximize: kw.bool("maximize", d.maximize)?,
        })
    }
}

elementwise_optimizer!(
    /// RAdam (Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond",
    /// ICLR 2020), with optional decoupled weight decay: PyTorch's `torch.optim.RAdam`.
    ///
    /// While the variance is intractable (ρ_t ≤ 5: the first five steps with the default
    /// betas) the update is bias-corrected momentum SGD. State: `step`, `exp_avg`,
    /// `exp_avg_sq`.
    RAdam,
    RAdamConfig
);

#[derive(Debug, Clone, Copy)]
pub(crate) struct RAdamHyper {
    lr: f64,
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
    decoupled: bool,
    maximize: bool,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct RAdamState<T> {
    step: T,
    exp_avg: Vec<T>,
    exp_avg_sq: Vec<T>,
}

impl<T: Float> Algorithm<T> for RAdamConfig {
    const NAME: &'static str = "RAdam";
    type Hyper = RAdamHyper;
    type State = RAdamState<T>;
    type Kernel = RAdamKernel<T>;

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
            ("maximize", Value::Bool(self.maximize)),
            ("foreach", py_opt_bool(self.foreach)),
            ("capturable", Value::Bool(false)),
            (
                "decoupled_weight_decay",
                Value::Bool(self.decoupled_weight_decay),
            ),
            ("differentiable", Value::Bool(false)),
        ]
        .into_iter()
        .collect()
    }

    fn hyper(&self, g: &GroupReader<'_>) -> Result<RAdamHyper, OptimError> {
        Ok(RAdamHyper {
            lr: g.f64("lr")?,
            betas: g.pair("betas")?,
            eps: g.f64("eps")?,
            weight_decay: g.f64("weight_decay")?,
            decoupled: g.bool("decoupled_weight_decay")?,
            maximize: g.bool("maximize")?,
        })
    }

    fn init_state(&self, _h: &RAdamHyper, n: usize) -> RAdamState<T> {
        RAdamState {
            step: T::zero(),
            exp_avg: vec![T::zero(); n],
            exp_avg_sq: vec![T::zero(); n],
        }
    }

    fn prepare<'a>(
        &self,
        h: &RAdamHyper,
        st: &'a mut RAdamState<T>,
        p: &'a mut [T],
        g: &'a [T],
    ) -> (RAdamKernel<T>, Lanes<'a, T>) {
        st.step += T::one();
        let t = wide(st.step);
        let (b1, b2) = h.betas;
        let (prep, decay) = if h.weight_decay != 0.0 && h.decoupled {
            (
                GradPrep::new(h.maximize, 0.0),
                Some(f(1.0 - h.lr * h.weight_decay)),
            )
        } else {
            (GradPrep::new(h.maximize, h.weight_decay), None)
        };
        let bc1 = 1.0 - b1.powf(t);
        let bc2 = 1.0 - b2.powf(t);
        let rho_inf = 2.0 / (1.0 - b2) - 1.0;
        let rho_t = rho_inf - ((2.0 * t) * b2.powf(t)) / bc2;
        let rect = (rho_t > 5.0).then(|| {
            let r = (((rho_t - 4.0) * (rho_t - 2.0)) * rho_inf)
                / (((rho_inf - 4.0) * (rho_inf - 2.0)) * rho_t);
            (f(r.powf(0.5)), f(bc2.powf(0.5)))
        });
        let k = RAdamKernel {
            prep,
            decay,
            lerp: Lerp::new(1.0 - b1),
            beta2: f(b2),
            one_minus_beta2: f(1.0 - b2),
            bc1: f(bc1),
            lr: f(h.lr),
            eps: f(h.eps),
            rect,
        };
        (
            k,
            Lanes::new(p, g)
                .with(0, &mut st.exp_avg)
                .with(1, &mut st.exp_avg_sq),
        )
    }

    fn save_state(&self, st: &RAdamState<T>, shape: &[usize]) -> ParamState {
        StateWriter::new(shape)
            .scalar("step", st.step)
            .tensor("exp_avg", &st.exp_avg)
            .tensor("exp_avg_sq", &st.exp_avg_sq)
            .finish()
    }

    fn load_state(&self, r: &StateReader<'_>) -> Result<RAdamState<T>, OptimError> {
        Ok(RAdamState {
            step: r.scalar("step")?,
            exp_avg: r.tensor("exp_avg")?,
            exp_avg_sq: r.tensor("exp_avg_sq")?,
        })
    }
}

pub(crate) struct RAdamKernel<T> {
    prep: GradPrep<T>,
    decay: Option<T>,
    lerp: Lerp<T>,
    beta2: T,
    one_minus_beta2: T,
    bc1: T,
    lr: T,
    eps: T,
    /// `(F(rect), F(sqrt(bc2)))` once the variance is tractable.
    rect: Option<(T, T)>,
}

impl<T: Float> Kernel<T> for RAdamKernel<T> {
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
            let mhat = *m / self.bc1;
            let upd = match self.rect {
                Some((rect, bc2_sqrt)) => {
                    let adaptive = (T::one() / (v.sqrt() + self.eps)) * bc2_sqrt;
                    ((mhat * self.lr) * adaptive) * rect
                }
                None => mhat * self.lr,
            };
            *p = q - upd;
        }
    }
}
