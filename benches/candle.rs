//! The candle workloads: an optimizer step over candle CPU `Var`s with the same values
//! and gradients as the tensor workloads ([`crate::params_with_grads`]), stepped by
//! tempo (through tempo-candle, in place) or by candle-nn's own `AdamW`.

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use candle_nn::Optimizer as _;
use tempo::optim::OptimizerSpec;
use tempo_candle::{CandleOptimizer, NamedVars};

use crate::{normal, OptKind, Result};

/// Who steps the variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CandleSide {
    /// tempo's optimizer through tempo-candle (ids `candle/adam_step/...`).
    Tempo,
    /// candle-nn's `AdamW` (weight decay 0 for Adam; ids `candle_nn/adam_step/...`).
    CandleNn,
}

enum Stepper {
    Tempo(CandleOptimizer<f32>),
    Nn(candle_nn::AdamW),
}

/// Variables with a fixed gradient store, and an optimizer stepped once (its state
/// exists).
pub struct CandleWorkload {
    grads: GradStore,
    stepper: Stepper,
}

impl CandleWorkload {
    /// `kind` (Adam or AdamW) over variables of `sizes`, stepped by `side`.
    pub fn new(kind: OptKind, sizes: &[usize], side: CandleSide) -> Result<Self> {
        let mut vars = NamedVars::new();
        let mut loss: Option<Tensor> = None;
        for (i, &n) in sizes.iter().enumerate() {
            // The seeds of `params_with_grads(sizes, 42)`.
            let s = 42u64.wrapping_mul(1_000_003).wrapping_add(2 * i as u64);
            let data = normal(n, s, 1.0).into_raw_vec_and_offset().0;
            let grad = normal(n, s + 1, 0.1).into_raw_vec_and_offset().0;
            let var = Var::from_vec(data, n, &Device::Cpu)?;
            // d/dvar sum(var * g) = g, exactly.
            let g = Tensor::from_vec(grad, n, &Device::Cpu)?;
            let term = var.as_tensor().mul(&g)?.sum_all()?;
            loss = Some(match loss {
                Some(l) => (l + term)?,
                None => term,
            });
            vars.push(&format!("p{i}"), var)?;
        }
        let grads = loss.ok_or("no parameters")?.backward()?;
        let (lr, wd) = match kind {
            OptKind::Adam => (1e-3, 0.0),
            OptKind::AdamW => (1e-3, 0.01),
            OptKind::SGDMomentum => return Err("candle-nn has no SGD with momentum".into()),
        };
        let mut stepper = match side {
            CandleSide::Tempo => Stepper::Tempo(CandleOptimizer::new(
                &OptimizerSpec::from_json(kind.spec())?,
                &vars,
                &[],
            )?),
            CandleSide::CandleNn => Stepper::Nn(candle_nn::AdamW::new(
                vars.vars().cloned().collect(),
                candle_nn::ParamsAdamW {
                    lr,
                    weight_decay: wd,
                    ..Default::default()
                },
            )?),
        };
        match &mut stepper {
            Stepper::Tempo(o) => {
                o.step(&grads)?;
            }
            Stepper::Nn(o) => o.step(&grads)?,
        }
        Ok(Self { grads, stepper })
    }

    /// One optimizer step.
    pub fn step(&mut self) -> Result<()> {
        match &mut self.stepper {
            Stepper::Tempo(o) => {
                o.step(&self.grads)?;
            }
            Stepper::Nn(o) => o.step(&self.grads)?,
        }
        Ok(())
    }
}
