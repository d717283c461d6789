//! [`CandleNnGroups`]: a tempo scheduler drives candle-nn's own optimizers (`SGD`,
//! `AdamW`, or any `candle_nn::Optimizer`) through `set_learning_rate`.

use tempo_param_groups::{Dict, OptimizerParamGroups, ParamGroupError, Value};

/// A candle-nn optimizer seen as one param group holding `lr` (read from and written
/// to the optimizer) and the keys a scheduler adds (`initial_lr`, kept here).
///
/// candle-nn's optimizers have no momentum a scheduler could cycle: a scheduler that
/// writes one (OneCycleLR or CyclicLR with `cycle_momentum=True`) gets
/// `ParamGroupError::UnknownKey`; pass `cycle_momentum=False`.
///
/// ```
/// use candle_core::{DType, Device, Var};
/// use candle_nn::{AdamW, Optimizer, ParamsAdamW};
/// use tempo_candle::CandleNnGroups;
/// use tempo_sched::{LrScheduler, StepLR, StepLRConfig};
///
/// let w = Var::zeros(3, DType::F32, &Device::Cpu)?;
/// let adamw = AdamW::new(vec![w], ParamsAdamW { lr: 0.1, ..Default::default() })?;
/// let mut opt = CandleNnGroups::new(adamw);
/// let mut sched = StepLR::new(&mut opt, StepLRConfig { gamma: 0.5, ..StepLRConfig::new(1) })?;
/// sched.step(&mut opt)?;
/// assert!((opt.inner().learning_rate() - 0.05).abs() < 1e-15);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct CandleNnGroups<O> {
    inner: O,
    extra: Dict,
}

impl<O: candle_nn::Optimizer> CandleNnGroups<O> {
    /// Wraps `optimizer`.
    pub fn new(optimizer: O) -> Self {
        Self {
            inner: optimizer,
            extra: Dict::new(),
        }
    }

    /// The optimizer (to step it).
    pub fn inner(&self) -> &O {
        &self.inner
    }

    /// The optimizer, mutably (`inner_mut().backward_step(&loss)`).
    pub fn inner_mut(&mut self) -> &mut O {
        &mut self.inner
    }

    /// The optimizer back.
    pub fn into_inner(self) -> O {
        self.inner
    }
}

impl<O: candle_nn::Optimizer> OptimizerParamGroups for CandleNnGroups<O> {
    fn num_groups(&self) -> usize {
        1
    }

    fn get(&self, group: usize, key: &str) -> Option<Value> {
        match (group, key) {
            (0, "lr") => Some(Value::Float(self.inner.learning_rate())),
            (0, _) => self.extra.get(key).cloned(),
            _ => None,
        }
    }

    fn set(&mut self, group: usize, key: &str, value: Value) -> Result<(), ParamGroupError> {
        self.check_group(group)?;
        match key {
            "lr" => {
                let lr = value.as_f64().ok_or_else(|| ParamGroupError::UnknownKey {
                    group,
                    key: format!("lr (a number, found {value})"),
                })?;
                self.inner.set_learning_rate(lr);
            }
            "momentum" | "betas" => {
                return Err(ParamGroupError::UnknownKey {
                    group,
                    key: key.into(),
                })
            }
            _ => {
                self.extra.insert(key, value);
            }
        }
        Ok(())
    }
}
