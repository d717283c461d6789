//! [`CandleNnGroups`]: a tempo scheduler drives candle-nn's own optimizers (`SGD`,
//! `AdamW`, or any `candle_nn::Optimizer`), whose learning rate it pushes through
//! `set_learning_rate` before each step.

use candle_core::backprop::GradStore;
use candle_core::Var;
use tempo_param_groups::{Dict, OptimizerParamGroups, ParamGroupError, Value};

use crate::CandleError;

/// A candle-nn optimizer seen as one param group: a dict holding `lr` (taken from the
/// optimizer at construction) and the keys a scheduler adds (`initial_lr`, ...).
///
/// A scheduler writes the group's `lr` in place; the optimizer gets it (through
/// `set_learning_rate`) when it is about to use it: before each step (`step`,
/// `backward_step`: this adapter is itself a `candle_nn::Optimizer`), and when it is
/// lent by [`CandleNnGroups::inner_mut`] or given back by
/// [`CandleNnGroups::into_inner`]. So [`CandleNnGroups::inner`]'s learning rate is the
/// one of the last step; the group's is `lr(0)` (or `learning_rate()`). An `lr` that is
/// not a number is an `Err` of the step that would push it.
///
/// candle-nn's optimizers have no momentum a scheduler could cycle: a scheduler that
/// reads or writes one (OneCycleLR or CyclicLR with `cycle_momentum=True`) gets an
/// `Err` (`NoMomentum`; adding `momentum` or `betas` is `UnknownKey`); pass
/// `cycle_momentum=False`.
///
/// ```
/// use candle_core::{DType, Device, Var};
/// use candle_nn::{AdamW, Optimizer, ParamsAdamW};
/// use tempo_candle::CandleNnGroups;
/// use tempo_param_groups::OptimizerParamGroups;
/// use tempo_sched::{LRScheduler, StepLR, StepLRConfig};
///
/// let w = Var::zeros(3, DType::F32, &Device::Cpu)?;
/// let adamw = AdamW::new(vec![w.clone()], ParamsAdamW { lr: 0.1, ..Default::default() })?;
/// let mut opt = CandleNnGroups::new(adamw);
/// let mut sched = StepLR::new(&mut opt, StepLRConfig { gamma: 0.5, ..StepLRConfig::new(1) })?;
/// sched.step(&mut opt)?;
/// assert!((opt.lr(0)? - 0.05).abs() < 1e-15);
/// // AdamW steps with the scheduled lr.
/// opt.backward_step(&w.as_tensor().sum_all()?)?;
/// assert!((opt.inner().learning_rate() - 0.05).abs() < 1e-15);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct CandleNnGroups<O> {
    inner: O,
    group: Dict,
}

impl<O: candle_nn::Optimizer> CandleNnGroups<O> {
    /// Wraps `optimizer`; the group's `lr` is its learning rate.
    pub fn new(optimizer: O) -> Self {
        let group = [("lr", Value::Float(optimizer.learning_rate()))]
            .into_iter()
            .collect();
        Self {
            inner: optimizer,
            group,
        }
    }

    /// The optimizer, with the learning rate of its last step.
    pub fn inner(&self) -> &O {
        &self.inner
    }

    /// The optimizer, mutably, with the group's `lr` pushed into it first
    /// (`inner_mut()?.backward_step(&loss)`); `Err` if that `lr` is not a number.
    pub fn inner_mut(&mut self) -> Result<&mut O, CandleError> {
        self.push_lr()?;
        Ok(&mut self.inner)
    }

    /// The optimizer back, with the group's `lr` pushed into it; `Err` if that `lr` is
    /// not a number.
    pub fn into_inner(mut self) -> Result<O, CandleError> {
        self.push_lr()?;
        Ok(self.inner)
    }

    /// Gives the optimizer the group's `lr`, which a scheduler may have written.
    fn push_lr(&mut self) -> Result<(), CandleError> {
        let lr = self.lr(0)?;
        self.inner.set_learning_rate(lr);
        Ok(())
    }
}

/// One group, an open dict but for `momentum` and `betas`, which candle-nn's optimizers
/// do not have.
impl<O: candle_nn::Optimizer> OptimizerParamGroups for CandleNnGroups<O> {
    fn num_groups(&self) -> usize {
        1
    }

    fn get(&self, group: usize, key: &str) -> Option<&Value> {
        if group == 0 {
            self.group.get(key)
        } else {
            None
        }
    }

    fn get_mut(&mut self, group: usize, key: &str) -> Option<&mut Value> {
        if group == 0 {
            self.group.get_mut(key)
        } else {
            None
        }
    }

    fn insert(&mut self, group: usize, key: &str, value: Value) -> Result<(), ParamGroupError> {
        self.check_group(group)?;
        if matches!(key, "momentum" | "betas") {
            return Err(ParamGroupError::UnknownKey {
                group,
                key: key.into(),
            });
        }
        self.group.insert(key, value);
        Ok(())
    }
}

/// candle's optimizer trait over the wrapped one: `step` (and so `backward_step`)
/// pushes the group's `lr` first; `learning_rate` and `set_learning_rate` are the
/// group's `lr`.
impl<O: candle_nn::Optimizer> candle_nn::Optimizer for CandleNnGroups<O> {
    type Config = O::Config;

    fn new(vars: Vec<Var>, config: O::Config) -> candle_core::Result<Self> {
        Ok(Self::new(O::new(vars, config)?))
    }

    fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        self.push_lr()?;
        self.inner.step(grads)
    }

    fn learning_rate(&self) -> f64 {
        self.lr(0).unwrap_or(f64::NAN)
    }

    fn set_learning_rate(&mut self, lr: f64) {
        // Group 0 exists and takes any `lr`: the write cannot fail.
        let _ = self.set_lr(0, lr);
    }
}
