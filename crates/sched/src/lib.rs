//! `tempo-sched`: every PyTorch learning-rate scheduler, number for number, with exact
//! resume, composites that accept ReduceLROnPlateau, closed forms and presets.
//!
//! A scheduler is built on an optimizer's param groups (anything implementing
//! [`OptimizerParamGroups`](tempo_param_groups::OptimizerParamGroups)) and does to them
//! what PyTorch's does at construction: record `initial_lr`, apply its first value. Each
//! [`step`](LRScheduler::step) borrows the groups again and writes the next lr. It keeps
//! no reference in between, so this crate knows nothing about tensors or optimizers.
//!
//! # Example
//!
//! ```
//! use tempo_sched::{build_scheduler, CyclicLR, CyclicLRConfig, CyclicMode, LRScheduler, SimulatedGroups};
//!
//! // Any OptimizerParamGroups works; SimulatedGroups is one with nothing behind it.
//! let mut opt = SimulatedGroups::adam(&[0.1], (0.9, 0.999));
//! let mut config = CyclicLRConfig::new(1e-3, 0.1);
//! config.step_size_up = 1.0;
//! config.mode = CyclicMode::Triangular2;
//! config.cycle_momentum = false;
//! let mut sched = CyclicLR::new(&mut opt, config)?;
//! let mut lrs = vec![opt.lrs()[0]];
//! for _ in 0..5 {
//!     // optimizer.step() would go here
//!     sched.step(&mut opt)?;
//!     lrs.push(opt.lrs()[0]);
//! }
//! assert_eq!(lrs, [0.001, 0.1, 0.001, 0.0505, 0.001, 0.025750000000000002]);
//!
//! // Resume: a fresh scheduler on fresh groups, then the saved group values, then the state.
//! let state = sched.state_dict();
//! let saved_groups = opt.clone();
//! let mut fresh_opt = SimulatedGroups::adam(&[0.1], (0.9, 0.999));
//! let mut resumed = build_scheduler(&"CyclicLR(base_lr=1e-3, max_lr=0.1, step_size_up=1, \
//!     mode='triangular2', cycle_momentum=False)".parse()?, &mut fresh_opt)?;
//! let mut fresh_opt = saved_groups;
//! resumed.load_state_dict(&state)?;
//! resumed.step(&mut fresh_opt)?;
//! sched.step(&mut opt)?;
//! assert_eq!(fresh_opt.lrs(), opt.lrs());
//! # Ok::<(), tempo_sched::SchedError>(())
//! ```
//!
//! # What tempo adds to PyTorch
//!
//! * Validation: a bad argument is an [`SchedError`] naming it, at construction (where
//!   PyTorch divides by zero steps later or overflows after 1000 cycles).
//! * [`LRScheduler::load_state_dict`] checks the state is this scheduler's and changes
//!   nothing on error; the state carries the base values, so groups need no
//!   `initial_lr` to resume.
//! * [`SequentialLR`] and [`ChainedScheduler`] accept [`ReduceLROnPlateau`] children.
//! * [`LRScheduler::lr_at`] (closed forms) and [`simulate`] (trajectories without an
//!   optimizer); presets ([`WarmupCosineLR`], [`WarmupStableDecayLR`], [`InverseSqrtLR`]).
//! * [`SchedulerSpec`] / [`build_scheduler`]: schedulers as data, and
//!   [`parse_scheduler_call`] for `"StepLR(step_size=3)"`.
//! * Hugging Face transformers' named schedules ([`transformers_scheduler`],
//!   `"transformers:cosine"` in specs), with transformers' numbers.
//!
//! # PyTorch's `last_epoch`
//!
//! Every config has PyTorch's `last_epoch` (-1, a fresh run). With `k >= 0` the groups
//! must carry `initial_lr` (else [`SchedError::MissingGroupKey`], naming the group and
//! the fix), which becomes the base; nothing is written to them, and the constructor
//! steps once, to epoch `k + 1`, with PyTorch's numbers (a recursive rule at a boundary
//! applies its factor again, as PyTorch's does). Loading a state dict is the exact way
//! to resume; `last_epoch` is there for code and checkpoints that use it.

#![forbid(unsafe_code)]

mod base;
mod call;
mod composite;
mod constant;
mod cosine;
mod cyclic;
mod error;
mod exponential;
mod lambda;
mod linear;
mod multiplicative;
mod multistep;
mod one_cycle;
mod per_group;
mod plateau;
mod polynomial;
mod presets;
mod recognize;
mod scheduler;
mod simulate;
mod spec;
mod state;
mod step;
mod swa;
mod transformers;
mod warm_restarts;

pub use call::parse_scheduler_call;
pub use composite::{ChainedScheduler, SequentialLR, SequentialLRConfig};
pub use constant::{ConstantLR, ConstantLRConfig};
pub use cosine::{CosineAnnealingLR, CosineAnnealingLRConfig};
pub use cyclic::{CyclicLR, CyclicLRConfig, CyclicMode, ScaleFn, ScaleMode};
pub use error::SchedError;
pub use exponential::{ExponentialLR, ExponentialLRConfig};
pub use lambda::{LRLambda, LambdaLR, LambdaLRConfig, NamedLambda};
pub use linear::{LinearLR, LinearLRConfig};
pub use multiplicative::{MultiplicativeLR, MultiplicativeLRConfig};
pub use multistep::{MultiStepLR, MultiStepLRConfig};
pub use one_cycle::{AnnealStrategy, OneCycleLR, OneCycleLRConfig};
pub use per_group::PerGroup;
pub use plateau::{PlateauMode, ReduceLROnPlateau, ReduceLROnPlateauConfig, ThresholdMode};
pub use polynomial::{PolynomialLR, PolynomialLRConfig};
pub use presets::{
    DecayShape, InverseSqrtLR, InverseSqrtLRConfig, WarmupCosineLR, WarmupCosineLRConfig,
    WarmupStableDecayLR, WarmupStableDecayLRConfig,
};
pub use recognize::{scheduler_group_keys, schedulers_with_state_keys, BASE_STATE_KEYS};
pub use scheduler::LRScheduler;
pub use simulate::{
    simulate, simulate_scheduler, simulate_with_metrics, SimulatedGroups, Trajectory,
};
pub use spec::{build_scheduler, SchedulerInfo, SchedulerSpec, SCHEDULERS, SCHEDULER_NAMES};
pub use step::{StepLR, StepLRConfig};
pub use swa::{SWALRConfig, SWALR};
pub use transformers::{
    transformers_scheduler, TransformersConfig, TransformersSchedule, TRANSFORMERS_SCHEDULES,
};
pub use warm_restarts::{CosineAnnealingWarmRestarts, CosineAnnealingWarmRestartsConfig};
