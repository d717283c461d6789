//! `tempo-candle`: PyTorch's optimizers, LR schedulers and checkpoints on candle
//! models, with PyTorch's numbers.
//!
//! candle ships SGD without momentum and AdamW, without param groups, schedulers or
//! optimizer state to save. tempo-candle puts every tempo optimizer (the twelve of
//! `torch.optim`) over a candle model's named `Var`s, so every tempo scheduler drives
//! it and its whole training state saves and loads, in tempo's format or as a PyTorch
//! `.pt`.
//!
//! * [`NamedVars`]: the model's variables by name (`"fc1.weight"`, the paths a
//!   `VarBuilder` gave them), in the order of PyTorch's `model.parameters()`, so
//!   state-dict ids agree with PyTorch's.
//! * [`GroupRule`]: param groups by name pattern or predicate (no weight decay on
//!   biases and norms, a lower lr for an embedding).
//! * [`CandleOptimizer`]: built from a spec, a Python call string or a config struct;
//!   `step(&GradStore)`, `impl candle_nn::Optimizer` (so `backward_step(&loss)`
//!   works), `impl OptimizerParamGroups` (so every tempo scheduler drives it).
//! * [`CandleNnGroups`]: a tempo scheduler drives candle-nn's own `SGD`/`AdamW` (the
//!   scheduled `lr` is pushed in before each step).
//! * [`capture`], [`save`], [`load`], [`restore`]: the whole training state (variables
//!   by name, optimizer, scheduler, counters) in tempo's format or as a PyTorch `.pt`;
//!   PyTorch's own checkpoints load ([`PtKeys`]); restores are all or nothing.
//! * [`CandleParam`]: the storage seam (tempo-optim's `Param`) over a candle `Var`:
//!   f32/f64 on the CPU are updated in place, without copies; other devices through
//!   host copies ([`StorageMode`]); f16/bf16 are refused with an `Err`.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use candle_nn::{linear, Module, Optimizer, VarBuilder, VarMap};
//! use tempo_candle::{CandleOptimizer, GroupRule, NamedVars};
//! use tempo_sched::{LRScheduler, OneCycleLR, OneCycleLRConfig};
//!
//! let varmap = VarMap::new();
//! let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
//! let fc = linear(2, 1, vb.pp("fc"))?;
//! let vars = NamedVars::from_varmap(&varmap, &["fc.weight", "fc.bias"])?;
//! let rules = [GroupRule::rest(), GroupRule::patterns(["*.bias"]).with("weight_decay", 0.0)];
//! let mut opt = CandleOptimizer::<f32>::from_call("AdamW(lr=0.01, weight_decay=0.1)", &vars, &rules)?;
//! let mut sched = OneCycleLR::new(&mut opt, OneCycleLRConfig::new(0.05, 10))?;
//!
//! let x = Tensor::new(&[[1f32, 2.0], [3.0, 4.0]], &Device::Cpu)?;
//! for _ in 0..10 {
//!     let loss = fc.forward(&x)?.sqr()?.mean_all()?;
//!     opt.backward_step(&loss)?; // candle_nn::Optimizer
//!     sched.step(&mut opt)?;
//! }
//! assert_eq!(opt.state_dict().param_groups.len(), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

mod adapter;
mod checkpoint;
mod error;
mod optimizer;
mod param;
mod vars;

pub use adapter::CandleNnGroups;
pub use checkpoint::{capture, load, restore, save, PtKeys};
pub use error::CandleError;
pub use optimizer::CandleOptimizer;
pub use param::{CandleFloat, CandleParam, StorageMode, IN_PLACE_RUN};
pub use vars::{GroupRule, NamedVars};
