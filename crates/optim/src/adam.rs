//! Adam, with AMSGrad, L2 or decoupled weight decay, and maximize.

use tempo_param_groups::{Dict, Value};
use tempo_tensor::Float;

use crate::engine::{elementwise_optimizer, Algorithm};
use crate::kernels::{f, maximum, GradPrep, Kernel, Lanes, Lerp};
use crate::kwargs::{Kwargs, SINGLE_TENSOR_ONLY};
use crate::param_group::{py_num, py_opt_bool, py_pair, GroupReader};
use crate::state::{ParamState, StateReader, StateWriter};
use crate::validate::adam_like;
use crate::OptimError;

/// Adam's hyperparameters, by PyTorch's names; `Default` is PyTorch's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct AdamConfig {
    /// Learning rate (1e-3).
    pub lr: f64,
    /// Decay rates of the first and second moments ((0.9, 0.999)).
    pub betas: (f64, f64),
    /// Added to the denominator (1e-8).
    pub eps: f64,
    /// Weight decay (0): an L2 penalty, or decoupled when `decoupled_weight_decay`.
    pub weight_decay: f64,
    /// AMSGrad: divide by the running maximum of the second moment (false).
    pub amsgrad: bool,
    /// Maximize the objective (false).
    pub maximize: bool,
    /// PyTorch's `foreach` flag, stored in the groups; it does not change tempo's numbers.
    pub foreach: Option<bool>,
    /// Decoupled weight decay, as AdamW (false).
    pub decoupled_weight_decay: bool,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            amsgrad: false,
            maximize: false,
            foreach: None,
            decoupled_weight_decay: false,
        }
    }
}

pub(crate) const ADAM_KWARGS: &[&str] = &[
    "lr",
    "betas",
    "eps",
    "weight_decay",
    "amsgrad",
    "maximize",
    "capturable",
    "differentiable",
    "fused",
    "decoupled_weight_decay",
];

impl AdamConfig {
    pub(crate) fn from_kwargs(kw: &Kwargs<'_>) -> Result<Self, OptimError> {
        kw.check_known(ADAM_KWARGS)?;
        Self::read(kw)
    }

    pub(crate) fn read(kw: &Kwargs<'_>) -> Result<Self, OptimError> {
        for flag in ["capturable", "differentiable", "fused"] {
            kw.unsupported_flag(flag, SINGLE_TENSOR_ONLY)?;
        }
        let d = Self::default();
        Ok(Self {
            lr: kw.f64("lr", d.lr)?,
            betas: kw.float_pair("betas", d.betas)?,
            eps: kw.f64("eps", d.eps)?,
            weight_decay: kw.f64("weight_decay", d.weight_decay)?,
            amsgrad: kw.bool("amsgrad", d.amsgrad)?,
            maximize: kw.bool("maximize", d.maximize)?,
            foreach: kw.opt_bool("foreach", d.foreach)?,
            decoupled_weight_decay: kw.bool("decoupled_weight_decay", d.decoupled_weight_decay)?,
        })
    }

    /// PyTorch's key order, with `weight_decay`'s int default given.
    pub(crate) fn defaults_with(&self, wd_int_default: Option<i64>) -> Dict {
        [
            ("lr", Value::Float(self.lr)),
            ("betas", py_pair(self.betas, (None, None))),
            ("eps", Value::Float(self.eps)),
            ("weight_decay", py_num(self.weight_decay, wd_int_default)),
            ("amsgrad", Value::Bool(self.amsgrad)),
            ("maximize", Value::Bool(self.maximize)),
            ("foreach", py_opt_bool(self.foreach)),
            ("capturable", Value::Bool(false)),
            ("differentiable", Value::Bool(false)),
            ("fused", Value::None),
            (
                "decoupled_weight_decay",
                Value::Bool(self.decoupled_weight_decay),
            ),
        ]
        .into_iter()
        .collect()
    }
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

/// A group's hyperparameters for one step (shared with AdamW).
#[derive(Debug, Clone, Copy)]
pub(crate) struct AdamHyper {
    pub(crate) lr: f64,
    pub(crate) betas: (f64, f64),
    pub(crate) eps: f64,
    pub(crate) weight_decay: f64,
    pub(crate) amsgrad: bool,
    pub(crate) maximize: bool,
    pub(crate) decoupled: bool,
}

impl AdamHyper {
    pub(crate) fn read(g: &GroupReader<'_>, decoupled: Option<bool>) -> Result<Self, OptimError> {
        Ok(Self {
            lr: g.f64("lr")?,
            betas: g.pair("betas")?,
            eps: g.f64("eps")?,
            weight_decay: g.f64("weight_decay")?,
            amsgrad: g.bool("amsgrad")?,
            maximize: g.bool("maximize")?,
            decoupled: match decoupled {
                Some(d) => d,
                None => g.bool("decoupled_weight_decay")?,
            },
        })
    }
}

/// Adam's per-parameter state.
#[derive(Debug, Clone, Default)]
pub(crate) struct AdamState<T> {
    step: T,
    exp_avg: Vec<T>,
    exp_avg_sq: Vec<T>,
    max_exp_avg_sq: Option<Vec<T>>,
}

pub(crate) fn adam_init<T: Float>(h: &AdamHyper, n: usize) -> AdamState<T> {
    AdamState {
        step: T::zero(),
        exp_avg: vec![T::zero(); n],
        exp_avg_sq: vec![T::zero(); n],
        max_exp_avg_sq: h.amsgrad.then(|| vec![T::zero(); n]),
    }
}

pub(crate) fn adam_check<T>(
    h: &AdamHyper,
    st: &AdamState<T>,
    param: usize,
) -> Result<(), OptimError> {
    if h.amsgrad && st.max_exp_avg_sq.is_none() {
        return Err(OptimError::MissingState {
            param,
            key: "max_exp_avg_sq".into(),
        });
    }
    Ok(())
}

/// PyTorch's single-tensor Adam, fused into one pass (`torch.optim.adam._single_tensor_adam`): advances the
/// step count and returns the kernel with this parameter's bias corrections.
pub(crate) fn adam_prepare<'a, T: Float>(
    h: &AdamHyper,
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
    let (prep, decay) = if h.weight_decay != 0.0 && h.decoupled {
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

pub(crate) fn adam_save<T: Float>(st: &AdamState<T>, shape: &[usize]) -> ParamState {
    StateWriter::new(shape)
        .scalar("step", st.step)
        .tensor("exp_avg", &st.exp_avg)
        .tensor("exp_avg_sq", &st.exp_avg_sq)
        .opt_tensor("max_exp_avg_sq", st.max_exp_avg_sq.as_ref())
        .finish()
}

pub(crate) fn adam_load<T: Float>(r: &StateReader<'_>) -> Result<AdamState<T>, OptimError> {
    Ok(AdamState {
        step: r.scalar("step")?,
        exp_avg: r.tensor("exp_avg")?,
        exp_avg_sq: r.tensor("exp_avg_sq")?,
        max_exp_avg_sq: r.opt_tensor("max_exp_avg_sq")?,
    })
}

impl<T: Float> Algorithm<T> for AdamConfig {
    const NAME: &'static str = "Adam";
    type Hyper = AdamHyper;
    type State = AdamState<T>;
    type Kernel = AdamRun<T>;

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
        self.defaults_with(Some(0))
    }
    fn hyper(&self, g: &GroupReader<'_>) -> Result<AdamHyper, OptimError> {
        AdamHyper::read(g, None)
    }
    fn init_state(&self, h: &AdamHyper, n: usize) -> AdamState<T> {
        adam_init(h, n)
    }
    fn check_state(
        &self,
        h: &AdamHyper,
        st: &AdamState<T>,
        param: usize,
    ) -> Result<(), OptimError> {
        adam_check(h, st, param)
    }
    fn prepare<'a>(
        &self,
        h: &AdamHyper,
        st: &'a mut AdamState<T>,
        p: &'a mut [T],
        g: &'a [T],
    ) -> (AdamRun<T>, Lanes<'a, T>) {
        adam_prepare(h, st, p, g)
    }
    fn save_state(&self, st: &AdamState<T>, shape: &[usize]) -> ParamState {
        adam_save(st, shape)
    }
    fn load_state(&self, r: &StateReader<'_>) -> Result<AdamState<T>, OptimError> {
        adam_load(r)
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
    use crate::Optimizer;
    use ndarray::ArrayD;

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
