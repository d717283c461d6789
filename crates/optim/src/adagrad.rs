//! Adagrad, with learning-rate decay and an initial accumulator value.

use tempo_param_groups::{Dict, Value};
use tempo_tensor::Float;

use crate::engine::{elementwise_optimizer, Algorithm};
use crate::kernels::{f, fma, wide, GradPrep, Kernel, Lanes};
use crate::kwargs::{Kwargs, SINGLE_TENSOR_ONLY};
use crate::param_group::{py_num, py_opt_bool, GroupReader};
use crate::state::{ParamState, StateReader, StateWriter};
use crate::validate::non_negative;
use crate::OptimError;

/// Adagrad's hyperparameters, by PyTorch's names; `Default` is PyTorch's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct AdagradConfig {
    /// Learning rate (1e-2).
    pub lr: f64,
    /// Learning-rate decay per step (0).
    pub lr_decay: f64,
    /// L2 penalty (0).
    pub weight_decay: f64,
    /// Initial value of the sum of squared gradients (0).
    pub initial_accumulator_value: f64,
    /// Added to the denominator (1e-10).
    pub eps: f64,
    /// PyTorch's `foreach` flag, stored in the groups; it does not change tempo's numbers.
    pub foreach: Option<bool>,
    /// Maximize the objective (false).
    pub maximize: bool,
}

impl Default for AdagradConfig {
    fn default() -> Self {
        Self {
            lr: 1e-2,
            lr_decay: 0.0,
            weight_decay: 0.0,
            initial_accumulator_value: 0.0,
            eps: 1e-10,
            foreach: None,
            maximize: false,
        }
    }
}

impl AdagradConfig {
    pub(crate) fn from_kwargs(kw: &Kwargs<'_>) -> Result<Self, OptimError> {
        kw.check_known(&[
            "lr",
            "lr_decay",
            "weight_decay",
            "initial_accumulator_value",
            "eps",
            "maximize",
            "differentiable",
            "fused",
        ])?;
        kw.unsupported_flag("differentiable", SINGLE_TENSOR_ONLY)?;
        kw.unsupported_flag("fused", SINGLE_TENSOR_ONLY)?;
        let d = Self::default();
        Ok(Self {
            lr: kw.f64("lr", d.lr)?,
            lr_decay: kw.f64("lr_decay", d.lr_decay)?,
            weight_decay: kw.f64("weight_decay", d.weight_decay)?,
            initial_accumulator_value: kw
                .f64("initial_accumulator_value", d.initial_accumulator_value)?,
            eps: kw.f64("eps", d.eps)?,
            foreach: kw.opt_bool("foreach", d.foreach)?,
            maximize: kw.bool("maximize", d.maximize)?,
        })
    }
}

elementwise_optimizer!(
    /// Adagrad (Duchi, Hazan & Singer, "Adaptive Subgradient Methods for Online Learning
    /// and Stochastic Optimization", JMLR 2011): PyTorch's `torch.optim.Adagrad`.
    ///
    /// State (`step`, `sum`) is created in the constructor for every parameter, as in
    /// PyTorch, so a state dict taken before any step already has it; `sum` starts at the
    /// constructor's `initial_accumulator_value` (a per-group value is ignored, as in
    /// PyTorch). Parameters added later start from the same constructor value.
    Adagrad,
    AdagradConfig
);

#[derive(Debug, Clone, Copy)]
pub(crate) struct AdagradHyper {
    lr: f64,
    lr_decay: f64,
    weight_decay: f64,
    eps: f64,
    maximize: bool,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct AdagradState<T> {
    step: T,
    sum: Vec<T>,
}

impl<T: Float> Algorithm<T> for AdagradConfig {
    const NAME: &'static str = "Adagrad";
    type Hyper = AdagradHyper;
    type State = AdagradState<T>;
    type Kernel = AdagradKernel<T>;

    fn validate(&self) -> Result<(), OptimError> {
        let o = <Self as Algorithm<T>>::NAME;
        non_negative(o, "lr", self.lr)?;
        non_negative(o, "lr_decay", self.lr_decay)?;
        non_negative(o, "weight_decay", self.weight_decay)?;
        non_negative(
            o,
            "initial_accumulator_value",
            self.initial_accumulator_value,
        )?;
        non_negative(o, "eps", self.eps)
    }

    fn defaults(&self) -> Dict {
        [
            ("lr", Value::Float(self.lr)),
            ("lr_decay", py_num(self.lr_decay, Some(0))),
            ("eps", Value::Float(self.eps)),
            ("weight_decay", py_num(self.weight_decay, Some(0))),
            (
                "initial_accumulator_value",
                py_num(self.initial_accumulator_value, Some(0)),
            ),
            ("foreach", py_opt_bool(self.foreach)),
            ("maximize", Value::Bool(self.maximize)),
            ("differentiable", Value::Bool(false)),
            ("fused", Value::None),
        ]
        .into_iter()
        .collect()
    }

    fn hyper(&self, g: &GroupReader<'_>) -> Result<AdagradHyper, OptimError> {
        Ok(AdagradHyper {
            lr: g.f64("lr")?,
            lr_decay: g.f64("lr_decay")?,
            weight_decay: g.f64("weight_decay")?,
            eps: g.f64("eps")?,
            maximize: g.bool("maximize")?,
        })
    }

    fn eager_init(&self) -> bool {
        true
    }

    fn init_state(&self, _h: &AdagradHyper, n: usize) -> AdagradState<T> {
        AdagradState {
            step: T::zero(),
            sum: vec![f(self.initial_accumulator_value); n],
        }
    }

    fn prepare<'a>(
        &self,
        h: &AdagradHyper,
        st: &'a mut AdagradState<T>,
        p: &'a mut [T],
        g: &'a [T],
    ) -> (AdagradKernel<T>, Lanes<'a, T>) {
        st.step += T::one();
        let t = wide(st.step);
        let clr = h.lr / (1.0 + (t - 1.0) * h.lr_decay);
        let k = AdagradKernel {
            prep: GradPrep::new(h.maximize, h.weight_decay),
            eps: f(h.eps),
            neg_clr: f(-clr),
        };
        (k, Lanes::new(p, g).with(0, &mut st.sum))
    }

    fn save_state(&self, st: &AdagradState<T>, shape: &[usize]) -> ParamState {
        StateWriter::new(shape)
            .scalar("step", st.step)
            .tensor("sum", &st.sum)
            .finish()
    }

    fn load_state(&self, r: &StateReader<'_>) -> Result<AdagradState<T>, OptimError> {
        Ok(AdagradState {
            step: r.scalar("step")?,
            sum: r.tensor("sum")?,
        })
    }
}

pub(crate) struct AdagradKernel<T> {
    prep: GradPrep<T>,
    eps: T,
    neg_clr: T,
}

impl<T: Float> Kernel<T> for AdagradKernel<T> {
    #[inline(always)]
    fn run(&self, l: Lanes<'_, T>) {
        let [sum, _, _] = l.s;
        for ((p, &g), s) in l.p.iter_mut().zip(l.g).zip(sum.iter_mut()) {
            let g = self.prep.apply(g, *p);
            *s = fma(g, g, *s);
            let std = s.sqrt() + self.eps;
            *p += (self.neg_clr * g) / std;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::param;
    use crate::Optimizer;

    #[test]
    fn state_exists_before_the_first_step() {
        let cfg = AdagradConfig {
            initial_accumulator_value: 0.5,
            ..Default::default()
        };
        let opt = Adagrad::new(vec![param(&[1.0f64, 2.0])], cfg).unwrap();
        let sd = opt.state_dict();
        assert_eq!(sd.state.len(), 1);
        let sum = sd.state[0]
            .1
            .get("sum")
            .and_then(|v| v.as_tensor())
            .unwrap()
            .to_f64_vec();
        assert_eq!(sum.len(), 2);
        assert!(sum.iter().all(|&s| (s - 0.5).abs() < 1e-15));
    }
}
