//! `tempo-optim`: every PyTorch optimizer, number for number.
//!
//! The [`Optimizer`] trait is PyTorch's `torch.optim.Optimizer` API: param groups with
//! per-group overrides of the defaults, `add_param_group`, `zero_grad`, `step`,
//! `state_dict` and `load_state_dict` in PyTorch's layout and names. Every step reads its
//! hyperparameters from the group dicts, so a scheduler writing `lr` or `betas` through
//! [`tempo_param_groups::OptimizerParamGroups`] (in place, unchecked) takes effect at the
//! next step, and a value the step cannot use is that step's `Err`.
//!
//! Updates follow PyTorch's single-tensor CPU code path operation by operation (scalar
//! arithmetic in f64, rounded once where it meets a tensor; fused multiply-adds where
//! PyTorch fuses), so f64 results match PyTorch to the last bits and f32 results within
//! the one-ulp differences of PyTorch's MKL square root. Each update is one fused pass
//! over a parameter's elements, compiled with FMA/AVX2 when the CPU has them (detected
//! at run time). A step of 2^16 elements or more in all is shared, as one batch over all
//! its parameters, between the calling thread and tempo-optim's worker threads (see
//! [Threads](#threads)); neither changes a number. Steady-state steps allocate nothing,
//! and neither do a scheduler's writes to the groups.
//!
//! ## Threads
//!
//! tempo-optim starts `std::thread::available_parallelism() - 1` worker threads (none on
//! one core; [`set_num_threads`] sets another number), named `tempo-optim-0`,
//! `tempo-optim-1`, ..., once per process: at the first step with 2^16 elements or more
//! in all, the first bfloat16 product of Muon's Newton-Schulz iteration with 2^21
//! multiply-adds or more, or the first call of [`join`].
//! They live until the process ends. Smaller steps run on the calling thread alone and
//! never start or wake them.
//!
//! A shared step runs on the calling thread and on every worker, and returns when none
//! of them is inside it any more; a panic in it, on any of them, is raised again on the
//! calling thread then. One step is shared at a time: a step on another thread waits for
//! its turn, and a step started from within a shared step (on any thread) runs on that
//! thread alone. The worker pool's tests run under Miri, and its rendezvous (posting a
//! step, waking and waiting for the workers, their exit) is model-checked with loom in
//! every interleaving of a small pool's threads.
//!
//! Between steps a worker spins for about 100 µs (steps often come back to back, and
//! waking a sleeping thread can cost more than its share of a step), then sleeps on a
//! condition variable until the next shared step; so an idle process's workers sleep. The
//! calling thread spins for up to 50 µs for the workers to finish, then sleeps likewise.
//!
//! [`set_num_threads`] (PyTorch's `torch.set_num_threads`), called before the first
//! shared step, sets the number of threads in all, the calling thread included: `n`
//! starts `n - 1` workers, `1` none. Several processes on one machine (the ranks of a
//! distributed run) can so share its cores. Without it the number is read once from
//! `available_parallelism`, which on Linux follows the process's CPU affinity mask
//! (`taskset`) and cgroup CPU quota, so running under `taskset -c 0` starts none.
//! [`num_threads`] says which number holds.
//!
//! | PyTorch class | tempo type | config |
//! |---|---|---|
//! | `SGD` | [`SGD`] | [`SGDConfig`] |
//! | `Adam` | [`Adam`] | [`AdamConfig`] |
//! | `AdamW` | [`AdamW`] | [`AdamWConfig`] |
//! | `Adagrad` | [`Adagrad`] | [`AdagradConfig`] |
//! | `Adadelta` | [`Adadelta`] | [`AdadeltaConfig`] |
//! | `Adamax` | [`Adamax`] | [`AdamaxConfig`] |
//! | `NAdam` | [`NAdam`] | [`NAdamConfig`] |
//! | `RAdam` | [`RAdam`] | [`RAdamConfig`] |
//! | `RMSprop` | [`RMSprop`] | [`RMSpropConfig`] |
//! | `Rprop` | [`Rprop`] | [`RpropConfig`] |
//! | `ASGD` | [`ASGD`] | [`ASGDConfig`] |
//! | `LBFGS` | [`LBFGS`] | [`LBFGSConfig`] |
//! | `Adafactor` | [`Adafactor`] | [`AdafactorConfig`] |
//! | `Muon` | [`Muon`] | [`MuonConfig`] |
//!
//! ## Any parameter storage
//!
//! Every optimizer is generic over where its parameters live: `Adam<T, P>` with `P:`
//! [`Param`]`<T>`, and `P` defaults to tempo-tensor's [`tempo_tensor::Tensor`]. A step
//! needs from a storage only each parameter's data (written), its gradient (read) and
//! its shape, locked together for the step; the optimizer state (moments, step
//! counts) lives in tempo. So a foreign framework plugs in by implementing [`Param`]
//! for a cheap, shared handle on one of its variables:
//!
//! - `shape`, `numel`, `same` (identity: a parameter listed twice is refused),
//!   `has_grad` and `zero_grad`;
//! - [`Param::lock`], which checks every parameter first (gradient shapes, supported
//!   dtypes and devices: an `Err` before anything changes), then lends each selected
//!   parameter as a [`Slot`] (`&mut [T]` data, `&[T]` gradient, row-major) to a
//!   callback, all at once or in consecutive runs; a storage that cannot lend memory
//!   (a GPU) copies to host vectors and back around the callback.
//!
//! Then [`build_optimizer`], the config constructors (`Adam::new(handles, config)`),
//! param groups, state dicts, validation, the kernels and the worker threads are the
//! same, number for number, as over tempo's tensors; a scheduler drives the result
//! through `OptimizerParamGroups` as usual. Frameworks that keep gradients apart from
//! their variables (candle's `GradStore`) give the handle a gradient slot that the
//! adapter fills before a step. `tempo-candle` is such an adapter.
//!
//! Unlike PyTorch: state is always a copy (`state_dict` does not alias live tensors);
//! a parameter listed twice in one group is an error (PyTorch warns); scalar state
//! (`step`, `mu_product`, `eta`, `mu`) is a 0-d tensor of the parameters' type (PyTorch
//! uses its default dtype); loading state under an id no group lists is an error
//! (PyTorch carries it along); `capturable`, `differentiable` and `fused` must stay
//! at their defaults (tempo implements the default single-tensor path only).
//!
//! ```
//! use ndarray::ArrayD;
//! use tempo_optim::{build_optimizer, Optimizer, OptimizerSpec};
//! use tempo_param_groups::OptimizerParamGroups;
//! use tempo_tensor::Tensor;
//!
//! let w = Tensor::<f32>::parameter(ArrayD::from_shape_vec(vec![2], vec![1.0, -1.0]).unwrap());
//! let spec = OptimizerSpec::from_json(r#"{"type": "SGD", "kwargs": {"lr": 0.5}}"#)?;
//! let mut opt = build_optimizer(&spec, &[w.clone()])?;
//!
//! w.set_grad(Some(ArrayD::from_shape_vec(vec![2], vec![1.0, 2.0]).unwrap()))?;
//! assert!(opt.step()?); // a real step: w -= 0.5 * grad
//! assert_eq!(w.data().as_slice().unwrap(), &[0.5, -2.0]);
//!
//! opt.set_lr(0, 0.1)?; // what a scheduler does between steps
//! opt.zero_grad();
//! assert!(!opt.step()?); // no gradients: nothing to do
//! assert_eq!(opt.state_dict().param_groups[0].get("lr").and_then(|v| v.as_f64()), Some(0.1));
//! # Ok::<(), tempo_optim::OptimError>(())
//! ```

mod adadelta;
mod adafactor;
mod adagrad;
mod adam;
mod adamax;
mod adamw;
mod asgd;
mod bf16;
mod engine;
mod error;
mod hyper;
mod kernels;
mod kwargs;
mod lbfgs;
mod muon;
mod nadam;
mod optimizer;
mod param_group;
mod pool;
mod radam;
mod rmsprop;
mod rprop;
mod sgd;
mod spec;
mod state;
mod store;
mod validate;
mod whole;

pub use adadelta::{Adadelta, AdadeltaConfig};
pub use adafactor::{Adafactor, AdafactorConfig};
pub use adagrad::{Adagrad, AdagradConfig};
pub use adam::{Adam, AdamConfig};
pub use adamax::{Adamax, AdamaxConfig};
pub use adamw::{AdamW, AdamWConfig};
pub use asgd::{ASGDConfig, ASGD};
pub use error::OptimError;
pub use lbfgs::{LBFGSConfig, LBFGS};
pub use muon::{Muon, MuonConfig, MUON_ADJUST_LR_FNS};
pub use nadam::{NAdam, NAdamConfig};
pub use optimizer::Optimizer;
pub use param_group::ParamGroup;
pub use pool::{join, num_threads, set_num_threads};
pub use radam::{RAdam, RAdamConfig};
pub use rmsprop::{RMSprop, RMSpropConfig};
pub use rprop::{Rprop, RpropConfig};
pub use sgd::{SGDConfig, SGD};
pub use spec::{
    build_optimizer, GroupSpec, OptimizerInfo, OptimizerSpec, ParamSelection, OPTIMIZERS,
    OPTIMIZER_NAMES,
};
pub use state::{OptimizerStateDict, ParamState, StateValue};
pub use store::{LockScope, Param, Slot, TensorLocks, WithSlots};
