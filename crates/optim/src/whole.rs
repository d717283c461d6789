//! The machinery of the optimizers whose update of a parameter reads the parameter as a
//! whole (its shape, norms, matrix products): Adafactor and Muon. Groups, lazily created
//! state in first-touch order and the state dict are the elementwise engine's; the step
//! hands each parameter's shape, data and gradient to the algorithm, one parameter at a
//! time, in state-dict id order (PyTorch's single-tensor loop).

use tempo_param_groups::Dict;
use tempo_tensor::Float;

use crate::hyper::Hyperparameters;
use crate::param_group::{GroupReader, Groups};
use crate::state::{load_states, save_states, ParamState, StateReader};
use crate::store::{LockScope, Slot};
use crate::{OptimError, OptimizerStateDict, Param, ParamGroup};

/// One whole-tensor algorithm (its config struct implements this; its hyperparameters
/// are declared by `crate::hyper::hyperparameters!`).
pub(crate) trait WholeAlgorithm<T: Float>: Hyperparameters {
    /// One parameter's state.
    type State: Send + Sync + std::fmt::Debug;
    /// Buffers a step reuses, kept between steps so that a steady-state step does not
    /// allocate.
    type Scratch: Default + Send + Sync;

    /// The constructor's checks of a parameter (`param` is its state-dict id).
    fn check_param(&self, _shape: &[usize], _param: usize) -> Result<(), OptimError> {
        Ok(())
    }
    /// Reads a group's hyperparameters (and checks what PyTorch checks at each step).
    fn hyper(&self, group: &GroupReader<'_>) -> Result<Self::Hyper, OptimError> {
        Self::Hyper::from_group(group)
    }
    /// Fresh state for a parameter of `shape`.
    fn init_state(&self, shape: &[usize]) -> Self::State;
    /// Checks, before anything changes, that `state` fits a parameter of `shape`.
    fn check_state(
        &self,
        state: &Self::State,
        shape: &[usize],
        param: usize,
    ) -> Result<(), OptimError>;
    /// Updates one parameter in place (`p` and `g` row-major, of `shape`).
    fn update(
        &self,
        hyper: &Self::Hyper,
        state: &mut Self::State,
        shape: &[usize],
        p: &mut [T],
        g: &[T],
        scratch: &mut Self::Scratch,
    );
    /// The state in PyTorch's names and order.
    fn save_state(&self, state: &Self::State, shape: &[usize]) -> ParamState;
    /// Reads state saved by `save_state` (or by PyTorch).
    fn load_state(&self, reader: &StateReader<'_>) -> Result<Self::State, OptimError>;
}

/// Groups + state + the step loop for a [`WholeAlgorithm`], over parameters in `P`.
pub(crate) struct WholeEngine<T: Float, A: WholeAlgorithm<T>, P: Param<T>> {
    pub(crate) config: A,
    defaults: Dict,
    pub(crate) groups: Groups<T, P>,
    /// By state-dict id.
    shapes: Vec<Vec<usize>>,
    /// By state-dict id.
    states: Vec<Option<A::State>>,
    /// State-dict ids in first-touch order.
    order: Vec<usize>,
    /// Reused every step.
    hypers: Vec<A::Hyper>,
    scratch: A::Scratch,
    locks: P::Scratch,
}

impl<T: Float, A: WholeAlgorithm<T>, P: Param<T>> std::fmt::Debug for WholeEngine<T, A, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WholeEngine")
            .field("config", &self.config)
            .field("defaults", &self.defaults)
            .field("groups", &self.groups)
            .field("states", &self.states)
            .field("order", &self.order)
            .finish_non_exhaustive()
    }
}

impl<T: Float, A: WholeAlgorithm<T>, P: Param<T>> WholeEngine<T, A, P> {
    pub(crate) fn new(
        groups: Vec<ParamGroup<T, P>>,
        config: A,
        overrides: Option<&Dict>,
    ) -> Result<Self, OptimError> {
        let (groups, defaults) = Groups::configured(groups, &config, overrides)?;
        let shapes: Vec<Vec<usize>> = groups.flat().map(Param::shape).collect();
        for (id, s) in shapes.iter().enumerate() {
            config.check_param(s, id)?;
        }
        let n = shapes.len();
        Ok(Self {
            config,
            defaults,
            groups,
            shapes,
            states: (0..n).map(|_| None).collect(),
            order: Vec::new(),
            hypers: Vec::new(),
            scratch: A::Scratch::default(),
            locks: P::Scratch::default(),
        })
    }

    /// One step: checks everything that can fail, then locks every parameter that has a
    /// gradient and updates them one by one, in id order.
    /// A whole-tensor update (norms, matrix products) is not elementwise.
    pub(crate) fn is_elementwise(&self) -> bool {
        false
    }

    pub(crate) fn step(&mut self) -> Result<bool, OptimError> {
        self.hypers.clear();
        for (gi, d) in self.groups.options.iter().enumerate() {
            let h = self.config.hyper(&GroupReader { dict: d, group: gi })?;
            self.hypers.push(h);
        }
        // A state's check is plain arithmetic on tempo's own data: the storage is asked
        // whether the parameter has a gradient (a lock for a tensor) only when it fails.
        for (id, st) in self.states.iter().enumerate() {
            if let Some(st) = st {
                if let Err(e) = self.config.check_state(st, &self.shapes[id], id) {
                    if self.groups.flat[id].has_grad() {
                        return Err(e);
                    }
                }
            }
        }
        let Self {
            config,
            groups,
            shapes,
            states,
            order,
            hypers,
            scratch,
            locks,
            ..
        } = self;
        let mut updated = false;
        P::lock(&groups.flat, LockScope::WithGrad, locks, &mut |slots| {
            for slot in slots.iter_mut() {
                let Slot { id, data, grad } = slot;
                let (id, Some(g)) = (*id, *grad) else {
                    continue;
                };
                updated = true;
                let shape = &shapes[id];
                let st = states[id].get_or_insert_with(|| {
                    order.push(id);
                    config.init_state(shape)
                });
                config.update(&hypers[groups.group_of[id]], st, shape, data, g, scratch);
            }
            Ok(())
        })?;
        Ok(updated)
    }

    pub(crate) fn add_param_group(&mut self, group: ParamGroup<T, P>) -> Result<(), OptimError> {
        let first = self.shapes.len();
        let shapes: Vec<Vec<usize>> = group.params.iter().map(Param::shape).collect();
        for (i, s) in shapes.iter().enumerate() {
            self.config.check_param(s, first + i)?;
        }
        let n = group.params.len();
        self.groups.add(group, &self.defaults)?;
        self.shapes.extend(shapes);
        self.states.extend((0..n).map(|_| None));
        Ok(())
    }

    pub(crate) fn state_dict(&self) -> OptimizerStateDict {
        OptimizerStateDict {
            state: save_states(&self.order, &self.states, |id, st| {
                self.config.save_state(st, &self.shapes[id])
            }),
            param_groups: self.groups.state_dict_groups(),
        }
    }

    pub(crate) fn load_state_dict(&mut self, sd: &OptimizerStateDict) -> Result<(), OptimError> {
        let map = self.groups.map_saved_ids(&sd.param_groups)?;
        let (shapes, config) = (&self.shapes, &self.config);
        let (states, order) = load_states(shapes.len(), &map, &sd.state, |id, state, param| {
            config.load_state(&StateReader {
                state,
                shape: &shapes[id],
                param,
            })
        })?;
        self.groups
            .load_options(&sd.param_groups, &self.defaults, |_| {});
        self.states = states;
        self.order = order;
        Ok(())
    }
}

/// Declares the public optimizer type `$name` over `WholeEngine<T, $config>`, with its
/// constructors and the trait impls forwarding to the engine.
macro_rules! whole_tensor_optimizer {
    ($(#[$doc:meta])* $name:ident, $config:ty) => {
        $(#[$doc])*
        ///
        /// `P` is the parameters' storage: tempo's `Tensor<T>` by default, or any
        /// [`Param`](crate::Param).
        #[derive(Debug)]
        pub struct $name<
            T: tempo_tensor::Float,
            P: crate::Param<T> = tempo_tensor::Tensor<T>,
        > {
            engine: crate::whole::WholeEngine<T, $config, P>,
        }

        impl<T: tempo_tensor::Float, P: crate::Param<T>> $name<T, P> {
            /// One group holding `params`, with `config` as its hyperparameters.
            /// Validates `config` and the parameters (an invalid value is an `Err`
            /// naming it).
            pub fn new(params: Vec<P>, config: $config) -> Result<Self, crate::OptimError> {
                Self::with_groups(vec![crate::ParamGroup::new(params)], config)
            }

            /// Several groups; each group's options override `config`'s values for it
            /// (group values are not validated, as in PyTorch).
            pub fn with_groups(
                groups: Vec<crate::ParamGroup<T, P>>,
                config: $config,
            ) -> Result<Self, crate::OptimError> {
                Ok(Self { engine: crate::whole::WholeEngine::new(groups, config, None)? })
            }

            pub(crate) fn from_spec(
                groups: Vec<crate::ParamGroup<T, P>>,
                config: $config,
                kwargs: &tempo_param_groups::Dict,
            ) -> Result<Self, crate::OptimError> {
                Ok(Self { engine: crate::whole::WholeEngine::new(groups, config, Some(kwargs))? })
            }

            /// The constructor's configuration (the defaults of new groups).
            pub fn config(&self) -> &$config {
                &self.engine.config
            }
        }

        crate::engine::forward_to_engine!($name, <$config as crate::hyper::Hyperparameters>::NAME);
    };
}

pub(crate) use whole_tensor_optimizer;
