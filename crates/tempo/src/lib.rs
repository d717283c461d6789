//! tempo: PyTorch's `torch.optim` and `torch.optim.lr_scheduler` in Rust, with the same
//! numbers, exact resume, and checkpoints that move between PyTorch and Rust.
//!
//! Each crate of the workspace is a module here: [`tensor`] (f32/f64 tensors with
//! autograd), [`nn`] (layers, losses), [`optim`] (every PyTorch optimizer),
//! [`sched`] (every PyTorch LR scheduler), [`param_groups`] (the seam between the
//! two) and [`ckpt`] (checkpoints, PyTorch `.pt` in and out).
//!
//! # The relation between a scheduler and an optimizer
//!
//! The scheduler writes each param group's `lr`, at construction and at every step; the
//! optimizer only reads it. In tempo the scheduler borrows the optimizer's groups for
//! each of those writes and keeps nothing in between. Here is the loop of a PyTorch
//! user's question, `Adam(lr=0.1)` with `CyclicLR(base_lr=1e-3, max_lr=0.1,
//! step_size_up=1, mode="triangular2", cycle_momentum=False)`, on their 2-20-20-4 net:
//!
//! ```
//! use ndarray::arr1;
//! use tempo::nn::{Linear, Module, Sequential};
//! use tempo::optim::{Adam, AdamConfig, Optimizer};
//! use tempo::param_groups::OptimizerParamGroups;
//! use tempo::sched::{CyclicLR, CyclicLRConfig, CyclicMode, LRScheduler};
//! use tempo::tensor::{Generator, Tensor};
//!
//! let mut rng = Generator::new(0); // torch.manual_seed(0)
//! let net = Sequential::<f32>::new()
//!     .with_named("fc1", Linear::new(2, 20, true, &mut rng))?
//!     .with_named("fc2", Linear::new(20, 20, true, &mut rng))?
//!     .with_named("out", Linear::new(20, 4, true, &mut rng))?;
//! let mut optimizer = Adam::new(net.parameters(), AdamConfig { lr: 0.1, ..AdamConfig::default() })?;
//!
//! let mut config = CyclicLRConfig::new(1e-3, 0.1);
//! config.step_size_up = 1.0;
//! config.mode = CyclicMode::Triangular2;
//! config.cycle_momentum = false;
//! // Construction writes lr = base_lr and records initial_lr = 0.001 in the group.
//! let mut scheduler = CyclicLR::new(&mut optimizer, config)?;
//! assert_eq!(optimizer.lr(0)?, 0.001);
//! assert_eq!(optimizer.initial_lr(0), Some(0.001));
//!
//! let input = Tensor::from_array(arr1(&[1.0f32, 2.0]).into_dyn());
//! let mut used = Vec::new();
//! for _epoch in 0..10 {
//!     used.push(optimizer.lr(0)?); // the lr this step will use
//!     optimizer.zero_grad();
//!     let loss = net.forward(&input)?.sum();
//!     loss.backward()?;
//!     optimizer.step()?;
//!     scheduler.step(&mut optimizer)?;
//! }
//! // Odd steps use base_lr; even steps climb to max_lr, halved every cycle.
//! assert_eq!(used[..4], [0.001, 0.1, 0.001, 0.0505]);
//! // After 10 steps the cycle is back at base_lr: Adam's own 0.1 was never used.
//! assert_eq!(optimizer.lr(0)?, 0.001);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

pub use tempo_ckpt as ckpt;
pub use tempo_nn as nn;
pub use tempo_optim as optim;
pub use tempo_param_groups as param_groups;
pub use tempo_sched as sched;
pub use tempo_tensor as tensor;
