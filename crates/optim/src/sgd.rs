//! SGD with momentum, dampening, Nesterov momentum, weight decay and maximize.

use tempo_param_groups::{Dict, Value};
use tempo_tensor::Float;

use crate::engine::{elementwise_optimizer, Algorithm};
use crate::kernels::{f, fma, GradPrep, Kernel, Lanes};
use crate::kwargs::{Kwargs, SINGLE_TENSOR_ONLY};
use crate::param_group::{py_num, py_opt_bool, GroupReader};
use crate::state::{ParamState, StateReader, StateWriter};
use crate::validate::{repr, require};
use crate::OptimError;

/// SGD's hyperparameters, by PyTorch's names; `Default` is PyTorch's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct SgdConfig {
    /// Learning rate (1e-3).
    pub lr: f64,
    /// Momentum factor (0).
    pub momentum: f64,
    /// Dampening of the momentum (0).
    pub dampening: f64,
    /// L2 penalty (0).
    pub weight_decay: f64,
    /// Nesterov momentum (false).
    pub nesterov: bool,
    /// Maximize the objective instead of minimizing (false).
    pub maximize: bool,
    /// PyTorch's `foreach` flag, stored in the groups; it does not change tempo's numbers.
    pub foreach: Option<bool>,
}

impl Default for SgdConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
            maximize: false,
            foreach: None,
        }
    }
}

impl SgdConfig {
    pub(crate) fn from_kwargs(kw: &Kwargs<'_>) -> Result<Self, OptimError> {
        kw.check_known(&[
            "lr",
            "momentum",
            "dampening",
            "weight_decay",
            "nesterov",
            "maximize",
            "differentiable",
            "fused",
        ])?;
        kw.unsupported_flag("differentiable", SINGLE_TENSOR_ONLY)?;
        kw.unsupported_flag("fused", SINGLE_TENSOR_ONLY)?;
        let d = Self::default();
        Ok(Self {
            lr: kw.f64("lr", d.lr)?,
            momentum: kw.f64("momentum", d.momentum)?,
            dampening: kw.f64("dampening", d.dampening)?,
            weight_decay: kw.f64("weight_decay", d.weight_decay)?,
            nesterov: kw.bool("nesterov", d.nesterov)?,
            maximize: kw.bool("maximize", d.maximize)?,
            foreach: kw.opt_bool("foreach", d.foreach)?,
        })
    }
}

elementwise_optimizer!(
    /// Stochastic gradient descent (optionally with momentum), PyTorch's
    /// `torch.optim.SGD`; Nesterov momentum after Sutskever et al., "On the importance of
    /// initialization and momentum in deep learning" (ICML 2013).
    ///
    /// State: `momentum_buffer` when `momentum != 0`, a copy of the (decayed) gradient at
    /// the first step. SGD validates with `x < 0`, so a NaN `lr` is accepted, as in PyTorch.
    Sgd,
    SgdConfig
);

/// A group's hyperparameters for one step.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SgdHyper {
    lr: f64,
    momentum: f64,
    dampening: f64,
    weight_decay: f64,
    nesterov: bool,
    maximize: bool,
}

/// SGD's per-parameter state.
#[derive(Debug, Clone, Default)]
pub(crate) struct SgdState<T> {
    momentum_buffer: Option<Vec<T>>,
}

impl<T: Float> Algorithm<T> for SgdConfig {
    const NAME: &'static str = "SGD";
    type Hyper = SgdHyper;
    type State = SgdState<T>;
    type Kernel = SgdKernel<T>;

    fn validate(&self) -> Result<(), OptimError> {
        let o = <Self as Algorithm<T>>::NAME;
        require(
            not_negative(self.lr),
            o,
            "lr",
            repr(self.lr),
            "a number >= 0",
        )?;
        require(
            not_negative(self.momentum),
            o,
            "momentum",
            repr(self.momentum),
            "a number >= 0",
        )?;
        require(
            not_negative(self.weight_decay),
            o,
            "weight_decay",
            repr(self.weight_decay),
            "a number >= 0",
        )?;
        require(
            !(self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0)),
            o,
            "nesterov",
            format!(
                "True with momentum={} and dampening={}",
                repr(self.momentum),
                repr(self.dampening)
            ),
            "Nesterov momentum requires a momentum > 0 and zero dampening",
        )
    }

    fn defaults(&self) -> Dict {
        [
            ("lr", Value::Float(self.lr)),
            ("momentum", py_num(self.momentum, Some(0))),
            ("dampening", py_num(self.dampening, Some(0))),
            ("weight_decay", py_num(self.weight_decay, Some(0))),
            ("nesterov", Value::Bool(self.nesterov)),
            ("maximize", Value::Bool(self.maximize)),
            ("foreach", py_opt_bool(self.foreach)),
            ("differentiable", Value::Bool(false)),
            ("fused", Value::None),
        ]
        .into_iter()
        .collect()
    }

    fn hyper(&self, g: &GroupReader<'_>) -> Result<SgdHyper, OptimError> {
        Ok(SgdHyper {
            lr: g.f64("lr")?,
            momentum: g.f64("momentum")?,
            dampening: g.f64("dampening")?,
            weight_decay: g.f64("weight_decay")?,
            nesterov: g.bool("nesterov")?,
            maximize: g.bool("maximize")?,
        })
    }

    fn has_state(&self, h: &SgdHyper) -> bool {
        h.momentum != 0.0
    }

    fn init_state(&self, _h: &SgdHyper, _numel: usize) -> SgdState<T> {
        SgdState {
            momentum_buffer: None,
        }
    }

    fn prepare<'a>(
        &self,
        h: &SgdHyper,
        st: &'a mut SgdState<T>,
        p: &'a mut [T],
        g: &'a [T],
    ) -> (SgdKernel<T>, Lanes<'a, T>) {
        let prep = GradPrep::new(h.maximize, h.weight_decay);
        let neg_lr = f(-h.lr);
        if h.momentum == 0.0 {
            let k = SgdKernel {
                prep,
                neg_lr,
                momentum: None,
            };
            return (k, Lanes::new(p, g));
        }
        let first = st.momentum_buffer.is_none();
        let buf = st
            .momentum_buffer
            .get_or_insert_with(|| vec![T::zero(); p.len()]);
        let m = MomentumCoef {
            first,
            momentum: f(h.momentum),
            one_minus_dampening: f(1.0 - h.dampening),
            nesterov: h.nesterov,
        };
        let k = SgdKernel {
            prep,
            neg_lr,
            momentum: Some(m),
        };
        (k, Lanes::new(p, g).with(0, buf))
    }

    fn save_state(&self, st: &SgdState<T>, shape: &[usize]) -> ParamState {
        StateWriter::new(shape)
            .opt_tensor("momentum_buffer", st.momentum_buffer.as_ref())
            .finish()
    }

    fn load_state(&self, r: &StateReader<'_>) -> Result<SgdState<T>, OptimError> {
        Ok(SgdState {
            momentum_buffer: r.opt_tensor("momentum_buffer")?,
        })
    }
}

/// SGD's check is `x < 0` (PyTorch's, unlike the other optimizers'): NaN passes.
fn not_negative(x: f64) -> bool {
    x.is_nan() || x >= 0.0
}

#[derive(Clone, Copy)]
struct MomentumCoef<T> {
    first: bool,
    momentum: T,
    one_minus_dampening: T,
    nesterov: bool,
}

pub(crate) struct SgdKernel<T> {
    prep: GradPrep<T>,
    neg_lr: T,
    momentum: Option<MomentumCoef<T>>,
}

impl<T: Float> Kernel<T> for SgdKernel<T> {
    #[inline(always)]
    fn run(&self, l: Lanes<'_, T>) {
        let (prep, neg_lr) = (self.prep, self.neg_lr);
        match self.momentum {
            None => {
                for (p, &g) in l.p.iter_mut().zip(l.g) {
                    let g = prep.apply(g, *p);
                    *p = fma(neg_lr, g, *p);
                }
            }
            Some(m) => {
                let [buf, _, _] = l.s;
                for ((p, &g), b) in l.p.iter_mut().zip(l.g).zip(buf.iter_mut()) {
                    let g = prep.apply(g, *p);
                    *b = if m.first {
                        g
                    } else {
                        fma(m.one_minus_dampening, g, *b * m.momentum)
                    };
                    let d = if m.nesterov {
                        fma(m.momentum, *b, g)
                    } else {
                        *b
                    };
                    *p = fma(neg_lr, d, *p);
                }
            }
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
    fn momentum_buffer_starts_as_the_gradient() {
        let p = param(&[1.0f64, 2.0]);
        let cfg = SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            dampening: 0.5,
            ..Default::default()
        };
        let mut opt = Sgd::new(vec![p.clone()], cfg).unwrap();
        p.set_grad(Some(
            ArrayD::from_shape_vec(vec![2], vec![1.0, -1.0]).unwrap(),
        ))
        .unwrap();
        assert!(opt.step().unwrap());
        // First step: buf = g (no dampening), p -= lr * buf.
        assert!((p.data()[[0]] - 0.9).abs() < 1e-15);
        opt.step().unwrap();
        // buf = 0.9*1 + 0.5*1 = 1.4; p = 0.9 - 0.14.
        assert!((p.data()[[0]] - 0.76).abs() < 1e-12);
        let sd = opt.state_dict();
        assert_eq!(sd.state.len(), 1);
        assert_eq!(
            sd.state[0].1.keys().collect::<Vec<_>>(),
            ["momentum_buffer"]
        );
    }

    #[test]
    fn no_grad_means_no_step_and_no_state() {
        let p = param(&[1.0f32]);
        let mut opt = Sgd::new(
            vec![p],
            SgdConfig {
                momentum: 0.5,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(!opt.step().unwrap());
        assert!(opt.state_dict().state.is_empty());
    }

    #[test]
    fn validation_names_the_value() {
        let e = Sgd::new(
            vec![param(&[1.0f64])],
            SgdConfig {
                momentum: -0.5,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("momentum") && e.to_string().contains("-0.5"),
            "{e}"
        );
        let nan = SgdConfig {
            lr: f64::NAN,
            ..Default::default()
        };
        assert!(
            Sgd::new(vec![param(&[1.0f64])], nan).is_ok(),
            "SGD accepts a NaN lr, as PyTorch"
        );
        let nest = SgdConfig {
            nesterov: true,
            ..Default::default()
        };
        assert!(matches!(
            Sgd::new(vec![param(&[1.0f64])], nest),
            Err(OptimError::InvalidHyperparameter { ref name, .. }) if name == "nesterov"
        ));
    }
}
