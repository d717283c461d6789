//! The machinery shared by every elementwise optimizer: groups, lazily created
//! per-parameter state in first-touch order, the step loop, and the state dict.

use tempo_param_groups::Dict;
use tempo_tensor::Float;
#[cfg(test)]
use tempo_tensor::Tensor;

use crate::hyper::{Buffers, Hyperparameters};
use crate::kernels::{Batch, Kernel, Lanes, Task};
use crate::param_group::{GroupReader, Groups};
use crate::state::{load_states, save_states, ParamState, StateReader};
use crate::store::{LockScope, Slot, Spare};
use crate::{OptimError, OptimizerStateDict, Param, ParamGroup};

/// One elementwise algorithm (its config struct implements this; the hyperparameters,
/// the state and what comes of them are declared in `crate::hyper`'s tables).
pub(crate) trait Algorithm<T: Float>: Hyperparameters {
    /// One parameter's state.
    type State: Default + Send + Sync + std::fmt::Debug + Buffers<Self, T>;
    /// The per-element update, with one parameter's coefficients.
    type Kernel: Kernel<T>;

    /// Reads a group's hyperparameters.
    fn hyper(&self, group: &GroupReader<'_>) -> Result<Self::Hyper, OptimError> {
        Self::Hyper::from_group(group)
    }
    /// Whether a parameter stepped under `hyper` gets state (SGD without momentum: no).
    fn has_state(&self, _hyper: &Self::Hyper) -> bool {
        true
    }
    /// Whether state is created in the constructor (Adagrad).
    fn eager_init(&self) -> bool {
        false
    }
    /// Fresh state for a parameter with `numel` elements.
    fn init_state(&self, hyper: &Self::Hyper, numel: usize) -> Self::State {
        Self::State::init(self, hyper, numel)
    }
    /// Checks, before anything changes, that `state` can be stepped under `hyper`. A
    /// step runs it for every state, and a failure counts only if the parameter has a
    /// gradient; it reads nothing but `hyper` and `state`.
    fn check_state(
        &self,
        hyper: &Self::Hyper,
        state: &Self::State,
        param: usize,
    ) -> Result<(), OptimError> {
        state.check(hyper, param)
    }
    /// Starts the update of one parameter, whose step counters the engine has just
    /// advanced ([`Buffers::advance`]): updates its other scalar state and returns the
    /// kernel with this parameter's coefficients. The kernel runs over the parameter,
    /// its gradient and the state's buffers ([`Buffers::lanes`]); the engine runs the
    /// kernels of all the step's parameters together, after every parameter's
    /// `prepare`.
    fn prepare(hyper: &Self::Hyper, state: &mut Self::State) -> Self::Kernel;
    /// The state in PyTorch's names and order.
    fn save_state(&self, state: &Self::State, shape: &[usize]) -> ParamState {
        state.save(shape)
    }
    /// Reads state saved by `save_state` (or by PyTorch).
    fn load_state(&self, reader: &StateReader<'_>) -> Result<Self::State, OptimError> {
        Self::State::load(reader)
    }
    /// PyTorch's `__setstate__` fix-ups of a loaded group, after missing keys were
    /// filled from the defaults (AdamW forces `decoupled_weight_decay`).
    fn fix_loaded_group(&self, _group: &mut Dict) {}
}

/// Groups + state + the step loop for an [`Algorithm`], over parameters stored in `P`.
pub(crate) struct Engine<T: Float, A: Algorithm<T>, P: Param<T>> {
    pub(crate) config: A,
    defaults: Dict,
    pub(crate) groups: Groups<T, P>,
    /// Indexed by state-dict id.
    states: Vec<Option<A::State>>,
    /// State-dict ids in first-touch order.
    order: Vec<usize>,
    /// Reused every step, so a step does not allocate.
    hypers: Vec<A::Hyper>,
    /// By state-dict id: the state lent to the update of a parameter stepped without
    /// state (SGD without momentum), which is never saved.
    scratch: Vec<A::State>,
    /// What the storage keeps between steps to lock the parameters without allocating.
    locks: P::Scratch,
    /// The allocation of a step's tasks, kept between steps.
    spare_tasks: Spare<Task<'static, T, A::Kernel>>,
}

impl<T: Float, A: Algorithm<T>, P: Param<T>> std::fmt::Debug for Engine<T, A, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.config)
            .field("defaults", &self.defaults)
            .field("groups", &self.groups)
            .field("states", &self.states)
            .field("order", &self.order)
            .finish_non_exhaustive()
    }
}

impl<T: Float, A: Algorithm<T>, P: Param<T>> Engine<T, A, P> {
    pub(crate) fn new(
        groups: Vec<ParamGroup<T, P>>,
        config: A,
        overrides: Option<&Dict>,
    ) -> Result<Self, OptimError> {
        let (groups, defaults) = Groups::configured(groups, &config, overrides)?;
        let n = groups.num_params();
        let mut engine = Self {
            config,
            defaults,
            groups,
            states: (0..n).map(|_| None).collect(),
            order: Vec::new(),
            hypers: Vec::new(),
            scratch: (0..n).map(|_| A::State::default()).collect(),
            locks: P::Scratch::default(),
            spare_tasks: Spare::default(),
        };
        if engine.config.eager_init() {
            engine.init_all()?;
        }
        Ok(engine)
    }

    fn init_all(&mut self) -> Result<(), OptimError> {
        let mut id = 0;
        for (gi, (ps, d)) in self
            .groups
            .params
            .iter()
            .zip(&self.groups.options)
            .enumerate()
        {
            let h = self.config.hyper(&GroupReader { dict: d, group: gi })?;
            for p in ps {
                if self.states[id].is_none() {
                    self.states[id] = Some(self.config.init_state(&h, p.numel()));
                    self.order.push(id);
                }
                id += 1;
            }
        }
        Ok(())
    }

    /// One step: checks everything that can fail, then locks every parameter that has
    /// a gradient, prepares each parameter's update and runs them as one batch (one
    /// batch per run of slots the storage hands out).
    pub(crate) fn step(&mut self) -> Result<bool, OptimError> {
        self.hypers.clear();
        for (gi, d) in self.groups.options.iter().enumerate() {
            let h = self.config.hyper(&GroupReader { dict: d, group: gi })?;
            self.hypers.push(h);
        }
        // Check everything that can fail before changing anything (the storage checks
        // the gradients' shapes before it lends the first slot). A state's check is
        // plain arithmetic on tempo's own data, so it runs for every state; the storage
        // is asked whether the parameter has a gradient (a lock for a tensor) only when
        // the check fails, so a step that is going ahead asks nothing more than `lock`.
        for (id, st) in self.states.iter().enumerate() {
            if let Some(st) = st {
                let h = &self.hypers[self.groups.group_of[id]];
                if let Err(e) = self.config.check_state(h, st, id) {
                    if self.groups.flat[id].has_grad() {
                        return Err(e);
                    }
                }
            }
        }
        let Self {
            config,
            groups,
            states,
            order,
            hypers,
            scratch,
            locks,
            spare_tasks,
            ..
        } = self;
        let mut updated = false;
        P::lock(&groups.flat, LockScope::WithGrad, locks, &mut |slots| {
            updated |= !slots.is_empty();
            let mut batch = Batch::new(spare_tasks.lend());
            let mut cells = states.iter_mut().zip(scratch.iter_mut());
            let mut next = 0;
            for slot in slots.iter_mut() {
                let Slot { id, data, grad } = slot;
                // Slots come in increasing id order: skip the cells in between.
                let Some((state, spare)) = cells.nth(id.wrapping_sub(next)) else {
                    break;
                };
                next = *id + 1;
                let (id, Some(g)) = (*id, *grad) else {
                    continue;
                };
                let h = &hypers[groups.group_of[id]];
                let st = if config.has_state(h) {
                    if state.is_none() {
                        order.push(id);
                    }
                    state.get_or_insert_with(|| config.init_state(h, data.len()))
                } else {
                    spare
                };
                st.advance();
                let kernel = A::prepare(h, st);
                batch.push(kernel, st.lanes(h, Lanes::new(data, g)));
            }
            batch.run();
            spare_tasks.restore(batch.into_tasks());
            Ok(())
        })?;
        Ok(updated)
    }

    pub(crate) fn add_param_group(&mut self, group: ParamGroup<T, P>) -> Result<(), OptimError> {
        let n = group.params.len();
        self.groups.add(group, &self.defaults)?;
        self.states.extend((0..n).map(|_| None));
        self.scratch.extend((0..n).map(|_| A::State::default()));
        Ok(())
    }

    pub(crate) fn state_dict(&self) -> OptimizerStateDict {
        let params = &self.groups.flat;
        OptimizerStateDict {
            state: save_states(&self.order, &self.states, |id, st| {
                self.config.save_state(st, &params[id].shape())
            }),
            param_groups: self.groups.state_dict_groups(),
        }
    }

    /// Each element's update reads only its own values and the parameter's scalars.
    pub(crate) fn is_elementwise(&self) -> bool {
        true
    }

    pub(crate) fn load_state_dict(&mut self, sd: &OptimizerStateDict) -> Result<(), OptimError> {
        let map = self.groups.map_saved_ids(&sd.param_groups)?;
        let (params, config) = (&self.groups.flat, &self.config);
        let (states, order) = load_states(params.len(), &map, &sd.state, |id, state, param| {
            let shape = params[id].shape();
            config.load_state(&StateReader {
                state,
                shape: &shape,
                param,
            })
        })?;
        self.groups
            .load_options(&sd.param_groups, &self.defaults, |d| {
                config.fix_loaded_group(d)
            });
        self.states = states;
        self.order = order;
        Ok(())
    }
}

/// Builds a parameter tensor's shape-agnostic view for tests and docs.
#[cfg(test)]
pub(crate) fn param<T: Float>(data: &[T]) -> Tensor<T> {
    Tensor::parameter(
        ndarray::ArrayD::from_shape_vec(vec![data.len()], data.to_vec())
            .unwrap_or_else(|_| ndarray::ArrayD::zeros(vec![0])),
    )
}

/// Declares an elementwise optimizer in one place: the public type `$name` over
/// `Engine<T, $config>`, with its constructors and the trait impls forwarding to the
/// engine; its config `$config` (the table and checks of
/// [`hyperparameters!`](crate::hyper::hyperparameters)); its per-parameter state
/// `$state` (the table of [`optimizer_state!`](crate::hyper::optimizer_state), or only
/// its name where another optimizer's declaration serves this config too); and
/// `$config`'s [`Algorithm`], whose kernel is `$kernel<T>` and whose `prepare` is
/// `$kernel::new(hyper, state)`. The optional `impl { ... }` adds to the `Algorithm`
/// impl (its provided methods' overrides).
macro_rules! elementwise_optimizer {
    (
        $(#[$doc:meta])*
        pub struct $name:ident with $kernel:ident;
        $(#[$config_meta:meta])*
        pub struct $config:ident as $config_name:literal $table:tt
        check $checks:tt
        $(also $also:path;)?
        $(kwargs $kwcheck:path;)?
        $(steps as $hyper:ty;)?
        $(#[$state_meta:meta])*
        state $state:ident $(for $($for:ty),+ ; |$c:ident, $h:ident| $entries:tt)? $(;)?
        $(impl { $($extra:tt)* })?
    ) => {
        crate::hyper::hyperparameters! {
            $(#[$config_meta])*
            pub struct $config as $config_name $table
            check $checks
            $(also $also;)?
            $(kwargs $kwcheck;)?
            $(steps as $hyper;)?
        }

        crate::engine::elementwise_optimizer!(
            @state [$(#[$state_meta])*] $state $([$($for),+] [$c $h] $entries)?
        );

        impl<T: tempo_tensor::Float> crate::engine::Algorithm<T> for $config {
            type State = $state<T>;
            type Kernel = $kernel<T>;

            fn prepare(
                hyper: &<Self as crate::hyper::Hyperparameters>::Hyper,
                state: &mut $state<T>,
            ) -> $kernel<T> {
                $kernel::new(hyper, state)
            }

            $($($extra)*)?
        }

        $(#[$doc])*
        ///
        /// `P` is the parameters' storage: tempo's `Tensor<T>` by default, or any
        /// [`Param`](crate::Param).
        #[derive(Debug)]
        pub struct $name<
            T: tempo_tensor::Float,
            P: crate::Param<T> = tempo_tensor::Tensor<T>,
        > {
            engine: crate::engine::Engine<T, $config, P>,
        }

        impl<T: tempo_tensor::Float, P: crate::Param<T>> $name<T, P> {
            /// One group holding `params`, with `config` as its hyperparameters.
            /// Validates `config` (an invalid value is an `Err` naming it).
            pub fn new(
                params: Vec<P>,
                config: $config,
            ) -> Result<Self, crate::OptimError> {
                Self::with_groups(vec![crate::ParamGroup::new(params)], config)
            }

            /// Several groups; each group's options override `config`'s values for it
            /// (group values are not validated, as in PyTorch).
            pub fn with_groups(
                groups: Vec<crate::ParamGroup<T, P>>,
                config: $config,
            ) -> Result<Self, crate::OptimError> {
                Ok(Self { engine: crate::engine::Engine::new(groups, config, None)? })
            }

            #[allow(dead_code)]
            pub(crate) fn from_spec(
                groups: Vec<crate::ParamGroup<T, P>>,
                config: $config,
                kwargs: &tempo_param_groups::Dict,
            ) -> Result<Self, crate::OptimError> {
                Ok(Self { engine: crate::engine::Engine::new(groups, config, Some(kwargs))? })
            }

            /// The constructor's configuration (the defaults of new groups).
            pub fn config(&self) -> &$config {
                &self.engine.config
            }
        }

        crate::engine::forward_to_engine!($name, <$config as crate::hyper::Hyperparameters>::NAME);
    };
    // The state's table, or nothing where another optimizer declares the state.
    (@state [$($meta:tt)*] $state:ident [$($for:ty),+] [$c:ident $h:ident] $entries:tt) => {
        crate::hyper::optimizer_state! { $($meta)* $state for $($for),+ ; |$c, $h| $entries }
    };
    (@state [$($meta:tt)*] $state:ident) => {};
}

pub(crate) use elementwise_optimizer;

/// The param-group seam and the `Optimizer` trait for an optimizer struct whose `engine`
/// field holds its groups and state (an [`Engine`] or a `WholeEngine`): every method
/// forwards to the engine (the param-group seam's required ones to its groups).
/// `$algorithm_name` is the optimizer's PyTorch name.
macro_rules! forward_to_engine {
    ($name:ident, $algorithm_name:expr) => {
        /// The group dicts, lent in place (the step reads them again).
        impl<T: tempo_tensor::Float, P: crate::Param<T>> tempo_param_groups::OptimizerParamGroups
            for $name<T, P>
        {
            fn num_groups(&self) -> usize {
                self.engine.groups.num_groups()
            }
            fn get(&self, group: usize, key: &str) -> Option<&tempo_param_groups::Value> {
                self.engine.groups.get(group, key)
            }
            fn get_mut(
                &mut self,
                group: usize,
                key: &str,
            ) -> Option<&mut tempo_param_groups::Value> {
                self.engine.groups.get_mut(group, key)
            }
            fn insert(
                &mut self,
                group: usize,
                key: &str,
                value: tempo_param_groups::Value,
            ) -> Result<(), tempo_param_groups::ParamGroupError> {
                self.engine.groups.insert(group, key, value)
            }
        }

        impl<T: tempo_tensor::Float, P: crate::Param<T>> crate::Optimizer<T, P> for $name<T, P> {
            fn name(&self) -> &'static str {
                $algorithm_name
            }
            fn step(&mut self) -> Result<bool, crate::OptimError> {
                self.engine.step()
            }
            fn zero_grad(&mut self) {
                self.engine.groups.zero_grad()
            }
            fn params(&self) -> Vec<P> {
                self.engine.groups.flat.clone()
            }
            fn is_elementwise(&self) -> bool {
                self.engine.is_elementwise()
            }
            fn add_param_group(
                &mut self,
                group: crate::ParamGroup<T, P>,
            ) -> Result<(), crate::OptimError> {
                self.engine.add_param_group(group)
            }
            fn state_dict(&self) -> crate::OptimizerStateDict {
                self.engine.state_dict()
            }
            fn load_state_dict(
                &mut self,
                sd: &crate::OptimizerStateDict,
            ) -> Result<(), crate::OptimError> {
                self.engine.load_state_dict(sd)
            }
        }
    };
}

pub(crate) use forward_to_engine;

#[cfg(test)]
mod tests {
    use tempo_param_groups::{OptimizerParamGroups, Value};

    use super::param;
    use crate::{Adam, AdamConfig, OptimError, Optimizer};

    fn grad(p: &tempo_tensor::Tensor<f64>, v: f64) {
        p.set_grad(Some(ndarray::ArrayD::from_elem(p.shape(), v)))
            .unwrap();
    }

    /// An Adam whose state for `stepped` was made without `max_exp_avg_sq`, and which now
    /// has `amsgrad` on, so the check of that state fails.
    fn amsgrad_turned_on(
        stepped: &[&tempo_tensor::Tensor<f64>],
        all: Vec<tempo_tensor::Tensor<f64>>,
    ) -> Adam<f64> {
        let mut opt = Adam::new(all.clone(), AdamConfig::default()).unwrap();
        for p in &all {
            p.zero_grad();
        }
        for p in stepped {
            grad(p, 0.5);
        }
        assert!(opt.step().unwrap());
        opt.set(0, "amsgrad", Value::Bool(true)).unwrap();
        opt
    }

    #[test]
    fn a_bad_state_counts_only_for_a_parameter_with_a_gradient() {
        let ps = vec![param(&[1.0, 2.0]), param(&[3.0])];
        let mut opt = amsgrad_turned_on(&[&ps[0]], ps.clone());
        let p0 = ps[0].to_vec();
        // ps[0]'s state cannot be stepped with amsgrad, but ps[0] has no gradient.
        ps[0].zero_grad();
        grad(&ps[1], 0.25);
        assert!(opt.step().unwrap());
        assert_eq!(ps[0].to_vec(), p0);
        assert_ne!(ps[1].to_vec(), [3.0]);
        // With a gradient, it is refused, and nothing changes.
        grad(&ps[0], 0.5);
        let (before, sd) = (
            ps.iter().map(|p| p.to_vec()).collect::<Vec<_>>(),
            opt.state_dict(),
        );
        assert_eq!(
            opt.step(),
            Err(OptimError::MissingState {
                param: 0,
                key: "max_exp_avg_sq".into()
            })
        );
        assert_eq!(ps.iter().map(|p| p.to_vec()).collect::<Vec<_>>(), before);
        assert_eq!(opt.state_dict(), sd);
    }

    #[test]
    fn a_bad_state_is_reported_before_a_bad_gradient_shape_and_changes_nothing() {
        // ps[0]: a gradient of the wrong shape; ps[1]: a state that cannot be stepped;
        // ps[2]: a good gradient and no state yet. Then both faults on ps[1].
        for both_on_one in [false, true] {
            let ps = vec![param(&[1.0, 2.0]), param(&[3.0, 4.0]), param(&[5.0])];
            let mut opt = amsgrad_turned_on(&[&ps[1]], ps.clone());
            let wrong = Some(ndarray::ArrayD::from_elem(vec![3], 0.5));
            if both_on_one {
                *ps[1].grad_mut() = wrong;
            } else {
                *ps[0].grad_mut() = wrong;
                grad(&ps[1], 0.5);
            }
            grad(&ps[2], 0.5);
            let before: Vec<_> = ps.iter().map(|p| p.to_vec()).collect();
            let sd = opt.state_dict();
            assert_eq!(
                opt.step(),
                Err(OptimError::MissingState {
                    param: 1,
                    key: "max_exp_avg_sq".into()
                }),
                "both faults on one parameter: {both_on_one}"
            );
            assert_eq!(ps.iter().map(|p| p.to_vec()).collect::<Vec<_>>(), before);
            assert_eq!(opt.state_dict(), sd);
            // With the state fixed (amsgrad off), the wrong shape is what is refused.
            opt.set(0, "amsgrad", Value::Bool(false)).unwrap();
            let bad = usize::from(both_on_one);
            assert_eq!(
                opt.step(),
                Err(OptimError::GradShapeMismatch {
                    param: bad,
                    expected: vec![2],
                    got: vec![3]
                })
            );
            assert_eq!(ps.iter().map(|p| p.to_vec()).collect::<Vec<_>>(), before);
            assert_eq!(opt.state_dict().state, sd.state);
        }
    }
}
