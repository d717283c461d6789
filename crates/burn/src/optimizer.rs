//! [`TempoOptimizer`]: tempo's optimizers (PyTorch's numbers) as a burn [`Optimizer`].

use std::sync::{Arc, Mutex, PoisonError, RwLock};

use burn_core::tensor::{DType, Device, Element, Tensor, TensorCreationOptions, TensorData};
use burn_optim::{LearningRate, ModuleOptimizer, Optimizer};
use tempo_optim::{
    build_optimizer, OptimError, OptimizerSpec, OptimizerStateDict, Param, ParamState,
};
use tempo_param_groups::{Dict, ParamGroupError, Value};

use crate::host::HostParam;
use crate::state::{HostFloat, Inner, Live, TempoState};
use crate::BurnError;

/// A [`TempoOptimizer`]'s hyperparameters (one PyTorch param-group dict without its
/// `params`), shared between the optimizer, its clones (burn keeps one inside its
/// `ModuleOptimizer`) and the schedulers that cycle its momentum.
#[derive(Debug, Clone)]
pub(crate) struct Hyper(Arc<RwLock<Dict>>);

impl Hyper {
    fn get(&self) -> Dict {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// One hyperparameter's current value.
    fn value(&self, key: &str) -> Option<Value> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    /// The group as a scheduler starts from: every hyperparameter but `params`.
    pub(crate) fn schedulable(&self) -> Dict {
        let mut d = self.get();
        d.remove("params");
        d
    }

    /// Writes `betas` and `momentum` from a scheduler's copy of the group, where both
    /// have them.
    pub(crate) fn set_momentum_from(&self, group: &Dict) -> Result<(), ParamGroupError> {
        let mut d = self.0.write().unwrap_or_else(PoisonError::into_inner);
        for key in ["betas", "momentum"] {
            if let (Some(v), true) = (group.get(key), d.contains_key(key)) {
                d.insert(key, v.clone());
            }
        }
        Ok(())
    }
}

/// Any tempo optimizer but LBFGS (SGD, Adam, AdamW, Adagrad, Adadelta, Adamax, NAdam,
/// RAdam, RMSprop, Rprop, ASGD, Adafactor, Muon) as a burn [`Optimizer`]: PyTorch's
/// update, number for number, on any burn backend.
///
/// Built from an [`OptimizerSpec`] (PyTorch's class name and keyword arguments, PyTorch's
/// defaults: Adam's `eps` is `1e-8`, hyperparameters are f64). burn calls
/// [`Optimizer::step`] once per parameter with the learning rate of the step: the
/// parameter and its gradient are read to host memory, tempo's optimizer steps them with
/// the parameter's state (tempo's, in PyTorch's layout: `exp_avg`, `step`, ...), and the
/// result is written back on the parameter's device in its dtype (f32 or f64). The state
/// (with the parameter's tempo optimizer, built at its first step) is kept in host
/// memory and goes into burn's optimizer record with its dtype, so a resume is exact.
///
/// burn's `step` cannot fail: a parameter tempo cannot step (a dtype other than f32 or
/// f64) is left unchanged and the error is kept for [`TempoOptimizer::take_error`].
/// LBFGS needs a closure, which burn's optimizers do not get, and is refused.
///
/// A scheduler that cycles momentum reaches this optimizer through
/// [`TempoLRScheduler::for_optimizer`](crate::TempoLRScheduler::for_optimizer).
///
/// ```
/// use tempo_burn::TempoOptimizer;
/// use tempo_optim::OptimizerSpec;
///
/// let spec = OptimizerSpec::from_json(r#"{"type": "NAdam", "kwargs": {"lr": 0.002}}"#)?;
/// let opt = TempoOptimizer::new(&spec)?;
/// assert_eq!(opt.name(), "NAdam");
/// let mut module_optimizer = opt.init(); // burn's ModuleOptimizer: optimizer.step(lr, model, grads)
/// # let _ = &mut module_optimizer;
/// # Ok::<(), tempo_burn::BurnError>(())
/// ```
#[derive(Debug, Clone)]
pub struct TempoOptimizer {
    spec: OptimizerSpec,
    name: &'static str,
    hyper: Hyper,
    error: Arc<Mutex<Option<BurnError>>>,
}

impl TempoOptimizer {
    /// The optimizer `spec` describes; its hyperparameters are checked here (an `Err`
    /// names a bad one). burn's `ModuleOptimizer::with_group` makes groups, so `spec`
    /// has no `groups` of its own.
    pub fn new(spec: &OptimizerSpec) -> Result<Self, BurnError> {
        if spec.groups.is_some() {
            return Err(OptimError::InvalidSpec {
                message: "a TempoOptimizer is one param group: give burn's \
                         ModuleOptimizer::with_group one TempoOptimizer per group instead \
                         of `groups`"
                    .into(),
            }
            .into());
        }
        if spec.kind == "LBFGS" {
            return Err(OptimError::Unsupported {
                optimizer: "LBFGS",
                option: "a burn optimizer step".into(),
                reason: "LBFGS re-evaluates the loss through a closure, which burn's \
                         optimizer step does not take",
            }
            .into());
        }
        // A 1x1 matrix: every optimizer takes one (Muon only takes matrices).
        let probe = HostParam::<f64>::new(vec![1, 1], vec![0.0], None);
        let opt = build_optimizer(spec, &[probe])?;
        let name = opt.name();
        let group = opt
            .state_dict()
            .param_groups
            .into_iter()
            .next()
            .unwrap_or_default();
        Ok(Self {
            spec: spec.clone(),
            name,
            hyper: Hyper(Arc::new(RwLock::new(group))),
            error: Arc::new(Mutex::new(None)),
        })
    }

    /// The optimizer of a Python call, as tempo's CLI takes it:
    /// `"AdamW(lr=1e-3, weight_decay=0.01)"`.
    pub fn from_call(call: &str) -> Result<Self, BurnError> {
        let parsed = tempo_sched::parse_scheduler_call(call)?;
        Self::new(&OptimizerSpec {
            kind: parsed.r#type,
            kwargs: parsed.kwargs,
            groups: None,
        })
    }

    /// PyTorch's class name (`"AdamW"`).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The current hyperparameters, PyTorch's group dict (with `params: [0]`); a
    /// scheduler cycling momentum changes `betas` or `momentum`.
    pub fn hyperparameters(&self) -> Dict {
        self.hyper.get()
    }

    /// This optimizer as burn's `ModuleOptimizer`, which steps a whole module.
    pub fn init(&self) -> ModuleOptimizer {
        self.clone().into()
    }

    /// The first error a step met since the last call (then that parameter was left
    /// unchanged); clones share it.
    pub fn take_error(&self) -> Option<BurnError> {
        self.error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    pub(crate) fn hyper(&self) -> &Hyper {
        &self.hyper
    }

    fn keep(&self, e: BurnError) {
        let mut slot = self.error.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(e);
        }
    }

    /// One step of `tensor`: the stepped tensor, or the error and `tensor` unchanged.
    /// The parameter is taken out of burn without a copy where burn allows (a tensor
    /// no one else holds), so `tensor` is consumed and rebuilt from the same values on
    /// error.
    fn try_step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: &mut Option<TempoState<D>>,
    ) -> Result<Tensor<D>, Box<(BurnError, Tensor<D>)>> {
        let dtype = tensor.dtype();
        let shape = tensor.dims().to_vec();
        let options = TensorCreationOptions::new(tensor.device()).with_dtype(dtype);
        let rebuild = |v: TensorData| Tensor::from_data(v, options.clone());
        macro_rules! step_as {
            ($t:ty) => {{
                // Without a copy when no one else holds the tensor's buffer.
                let td = tensor.into_data();
                if let Err(e) = td.as_slice::<$t>() {
                    return Err(Box::new((read_error(e), rebuild(td))));
                }
                // The bytes were just read as `$t`s: taking them as a vector cannot fail.
                let data: Vec<$t> = vec_of(td).unwrap_or_default();
                if data.len() != shape.iter().product::<usize>() {
                    return Err(Box::new((
                        BurnError::TensorRead {
                            reason: "the parameter's elements could not be taken".into(),
                        },
                        rebuild(TensorData::new(data, [0])),
                    )));
                }
                match self.step_host::<$t, D>(lr, &shape, data, grad, state) {
                    Ok(v) => Ok(rebuild(TensorData::new(v, shape))),
                    Err((e, v)) => Err(Box::new((e, rebuild(TensorData::new(v, shape))))),
                }
            }};
        }
        match dtype {
            DType::F32 => step_as!(f32),
            DType::F64 => step_as!(f64),
            other => Err(Box::new((
                BurnError::UnsupportedDType {
                    dtype: format!("{other:?}"),
                },
                tensor,
            ))),
        }
    }

    /// One PyTorch step of one parameter in host memory, by the parameter's live
    /// optimizer (built on its first step, or from a saved state); the new elements.
    /// On error, the error and `data` as given; the parameter's state is as it was.
    fn step_host<T: HostFloat + Element, const D: usize>(
        &self,
        lr: LearningRate,
        shape: &[usize],
        data: Vec<T>,
        grad: Tensor<D>,
        state: &mut Option<TempoState<D>>,
    ) -> Result<Vec<T>, (BurnError, Vec<T>)> {
        let grad: Vec<T> = match vec_of(grad.into_data()) {
            Ok(g) => g,
            Err(e) => return Err((e, data)),
        };
        let slot =
            state.get_or_insert_with(|| TempoState::from_inner(Inner::Saved(ParamState::new())));
        let inner = slot.inner_mut();
        if T::live(inner).is_none() {
            match self.build_live::<T>(shape, &inner.param_state()) {
                Ok(live) => *inner = T::wrap(live),
                Err(e) => return Err((e, data)),
            }
        }
        let Some(live) = T::live(inner) else {
            return Err((
                BurnError::BadRecord {
                    what: "optimizer state",
                    reason: "no optimizer of the parameter's dtype".into(),
                },
                data,
            ));
        };
        let held = Param::shape(&live.param);
        if held != shape {
            let e = OptimError::GradShapeMismatch {
                param: 0,
                expected: held,
                got: shape.to_vec(),
            };
            return Err((e.into(), data));
        }
        if let Err(e) = self.set_group(&mut *live.opt, lr) {
            return Err((e, data));
        }
        live.param.put(data, grad);
        let stepped = live.opt.step();
        // tempo checks everything before it writes: on error `data` is unchanged.
        let data = live.param.take_data();
        match stepped {
            Ok(_) => Ok(data),
            Err(e) => Err((e.into(), data)),
        }
    }

    /// Writes the step's lr and the momentum a scheduler may have cycled into the
    /// parameter's optimizer.
    fn set_group<T: HostFloat>(
        &self,
        opt: &mut dyn tempo_optim::Optimizer<T, HostParam<T>>,
        lr: LearningRate,
    ) -> Result<(), BurnError> {
        opt.set_lr(0, lr)?;
        for key in ["betas", "momentum"] {
            if let Some(v) = self.hyper.value(key) {
                if opt.get(0, key) != Some(&v) {
                    opt.set(0, key, v)?;
                }
            }
        }
        Ok(())
    }

    /// A one-parameter optimizer over host storage of `shape`, holding `saved`.
    fn build_live<T: HostFloat>(
        &self,
        shape: &[usize],
        saved: &ParamState,
    ) -> Result<Live<T>, BurnError> {
        let numel = shape.iter().product();
        let param = HostParam::new(shape.to_vec(), vec![T::zero(); numel], None);
        let mut opt = build_optimizer::<T, HostParam<T>>(&self.spec, std::slice::from_ref(&param))?;
        let saved_dict = OptimizerStateDict {
            state: if saved.is_empty() {
                vec![]
            } else {
                vec![(0, saved.clone())]
            },
            param_groups: vec![self.hyper.get()],
        };
        opt.load_state_dict(&saved_dict)?;
        Ok(Live { param, opt })
    }
}

/// A burn tensor's elements as a vector of `E` (its dtype must be `E`'s), without a
/// copy where burn's buffer allows.
fn vec_of<E: Element>(data: TensorData) -> Result<Vec<E>, BurnError> {
    data.try_into_vec::<E>().map_err(read_error)
}

fn read_error(e: impl std::fmt::Debug) -> BurnError {
    BurnError::TensorRead {
        reason: format!("{e:?}"),
    }
}

impl Optimizer for TempoOptimizer {
    type State<const D: usize> = TempoState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        mut state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let fresh = state.is_none();
        match self.try_step(lr, tensor, grad, &mut state) {
            Ok(t) => (t, state),
            Err(failed) => {
                let (e, tensor) = *failed;
                self.keep(e);
                // A parameter that never stepped keeps no state.
                (tensor, if fresh { None } else { state })
            }
        }
    }

    /// The state lives in host memory: nothing to move.
    fn to_device<const D: usize>(state: Self::State<D>, _device: &Device) -> Self::State<D> {
        state
    }
}
