//! `tempo-burn`: tempo's PyTorch-exact schedulers and optimizers for
//! [burn](https://burn.dev) 0.22.
//!
//! - [`TempoLRScheduler`]: every tempo scheduler, composite and preset (every name in
//!   [`tempo_sched::SCHEDULER_NAMES`], by [`tempo_sched::SchedulerSpec`] or typed
//!   config) as a burn [`LrScheduler`](burn_optim::lr_scheduler::LrScheduler), with
//!   PyTorch's numbers and its whole state in burn's scheduler record.
//!   ReduceLROnPlateau takes its metric through a [`MetricFeed`]; per-group schedules
//!   become burn's per-module scheduler
//!   ([`TempoLRScheduler::into_module_scheduler`]).
//! - [`TempoOptimizer`]: every tempo optimizer but LBFGS (SGD, Adam, AdamW, Adagrad,
//!   Adadelta, Adamax, NAdam, RAdam, RMSprop, Rprop, ASGD, Adafactor, Muon) as a burn
//!   [`Optimizer`](burn_optim::Optimizer): PyTorch's update and defaults (Adam's `eps`
//!   is `1e-8`, hyperparameters are f64), on f32 and f64 parameters of any backend, the
//!   state ([`TempoState`]) in burn's optimizer record.
//!
//! burn drives both the usual way: `lr = scheduler.step()` before each
//! `model = optimizer.step(lr, model, grads)`. A scheduler that cycles momentum
//! (OneCycleLR's and CyclicLR's default) reaches a [`TempoOptimizer`] built into it with
//! [`TempoLRScheduler::for_optimizer`]; burn's own optimizers keep their momentum out of
//! reach, so there it is [`BurnError::MomentumNotReachable`].
//!
//! ```
//! use burn_optim::lr_scheduler::LrScheduler;
//! use tempo_burn::{TempoLRScheduler, TempoOptimizer};
//! use tempo_optim::OptimizerSpec;
//!
//! let opt = TempoOptimizer::new(&OptimizerSpec::from_json(
//!     r#"{"type": "AdamW", "kwargs": {"lr": 0.01, "weight_decay": 0.05}}"#,
//! )?)?;
//! let spec = "OneCycleLR(max_lr=0.01, total_steps=100)".parse()?;
//! let mut sched = TempoLRScheduler::for_optimizer(&spec, &opt)?;
//! let lr0 = sched.step(); // the lr of the first optimizer step
//! assert!((lr0 - 0.0004).abs() < 1e-15);
//! // OneCycleLR starts Adam's beta1 at max_momentum, in the optimizer:
//! assert_eq!(opt.hyperparameters().get("betas").unwrap().as_slice().unwrap()[0].as_f64(), Some(0.95));
//!
//! // burn's own optimizers have no reachable momentum: a clear error.
//! assert!(matches!(
//!     TempoLRScheduler::new(&spec, 0.01),
//!     Err(tempo_burn::BurnError::MomentumNotReachable { .. })
//! ));
//! # Ok::<(), tempo_burn::BurnError>(())
//! ```

#![forbid(unsafe_code)]

mod error;
mod host;
mod optimizer;
mod record;
mod scheduler;
mod state;

pub use error::BurnError;
pub use optimizer::TempoOptimizer;
pub use scheduler::{MetricFeed, SchedGroup, TempoLRScheduler};
pub use state::TempoState;
