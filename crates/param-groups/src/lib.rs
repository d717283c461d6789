//! `tempo-param-groups`: the seam between an optimizer and a learning-rate scheduler.
//!
//! In PyTorch a scheduler holds on to its optimizer and writes each param group's `lr`
//! itself, at construction and at every step; the optimizer only reads it. tempo makes
//! that relation explicit: a scheduler borrows `&mut impl OptimizerParamGroups` when it
//! writes, and keeps no reference in between; the trait itself lends each value by
//! reference, so a scheduler reads and writes a group's `lr` in place. This crate is
//! that trait and the small value type a group's hyperparameters are made of. It depends on nothing of tempo's,
//! so any optimizer, tempo's own or a foreign one, can be scheduled.
//!
//! # Example: scheduling a ten-line foreign optimizer
//!
//! ```
//! use tempo_param_groups::{Dict, OptimizerParamGroups, ParamGroupError, Value};
//!
//! /// A foreign optimizer: plain SGD, its groups PyTorch-style dicts it reads at each step.
//! struct MySGD {
//!     groups: Vec<Dict>,
//! }
//!
//! impl OptimizerParamGroups for MySGD {
//!     fn num_groups(&self) -> usize {
//!         self.groups.len()
//!     }
//!     fn get(&self, group: usize, key: &str) -> Option<&Value> {
//!         self.groups.get(group)?.get(key)
//!     }
//!     fn get_mut(&mut self, group: usize, key: &str) -> Option<&mut Value> {
//!         self.groups.get_mut(group)?.get_mut(key)
//!     }
//!     fn insert(&mut self, group: usize, key: &str, value: Value) -> Result<(), ParamGroupError> {
//!         let groups = self.groups.len();
//!         let dict = self.groups.get_mut(group).ok_or(ParamGroupError::NoSuchGroup { group, groups })?;
//!         dict.insert(key, value);
//!         Ok(())
//!     }
//! }
//!
//! let group = |lr: f64| [("lr", Value::Float(lr))].into_iter().collect();
//! let mut opt = MySGD { groups: vec![group(0.1), group(0.01)] };
//! // What a scheduler does at construction: remember the base lr, then write a new lr.
//! for g in 0..opt.num_groups() {
//!     if opt.initial_lr(g).is_none() {
//!         let lr = opt.lr(g)?;
//!         opt.set_initial_lr(g, lr)?;
//!     }
//!     opt.set_lr(g, opt.initial_lr(g).unwrap() * 0.5)?;
//! }
//! assert_eq!((opt.lr(0)?, opt.lr(1)?), (0.05, 0.005));
//! assert_eq!(opt.groups[0].keys().collect::<Vec<_>>(), ["lr", "initial_lr"]);
//! // This optimizer has no momentum: asking for it is an error, not a panic.
//! assert!(matches!(opt.momentum(0), Err(ParamGroupError::NoMomentum { group: 0 })));
//! # Ok::<(), ParamGroupError>(())
//! ```

#![forbid(unsafe_code)]

mod error;
mod groups;
mod value;

pub use error::ParamGroupError;
pub use groups::{MomentumKey, OptimizerParamGroups};
pub use value::{Dict, Value};
