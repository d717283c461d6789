//! `tempo-param-groups`: the seam between an optimizer and a learning-rate scheduler.
//!
//! In PyTorch a scheduler holds on to its optimizer and writes each param group's `lr`
//! itself, at construction and at every step; the optimizer only reads it. tempo makes
//! that relation explicit: a scheduler borrows `&mut impl OptimizerParamGroups` when it
//! writes, and keeps no reference in between. This crate is that trait and the small
//! value type a group's hyperparameters are made of. It depends on nothing of tempo's,
//! so any optimizer, tempo's own or a foreign one, can be scheduled.
//!
//! # Example: scheduling a ten-line foreign optimizer
//!
//! ```
//! use tempo_param_groups::{OptimizerParamGroups, ParamGroupError, Value};
//!
//! /// A foreign optimizer: plain SGD with one learning rate per group.
//! struct MySgd {
//!     lrs: Vec<f64>,
//!     initial: Vec<Option<f64>>,
//! }
//!
//! impl OptimizerParamGroups for MySgd {
//!     fn num_groups(&self) -> usize {
//!         self.lrs.len()
//!     }
//!     fn get(&self, group: usize, key: &str) -> Option<Value> {
//!         match key {
//!             "lr" => self.lrs.get(group).map(|&v| Value::Float(v)),
//!             "initial_lr" => self.initial.get(group).copied().flatten().map(Value::Float),
//!             _ => None,
//!         }
//!     }
//!     fn set(&mut self, group: usize, key: &str, value: Value) -> Result<(), ParamGroupError> {
//!         let groups = self.lrs.len();
//!         let v = value.as_f64().ok_or_else(|| ParamGroupError::WrongType {
//!             key: key.to_string(),
//!             expected: "a number",
//!             found: value.type_name(),
//!         })?;
//!         match key {
//!             "lr" => *self.lrs.get_mut(group).ok_or(ParamGroupError::NoSuchGroup { group, groups })? = v,
//!             "initial_lr" => {
//!                 *self.initial.get_mut(group).ok_or(ParamGroupError::NoSuchGroup { group, groups })? = Some(v)
//!             }
//!             _ => return Err(ParamGroupError::UnknownKey { group, key: key.to_string() }),
//!         }
//!         Ok(())
//!     }
//! }
//!
//! let mut opt = MySgd { lrs: vec![0.1, 0.01], initial: vec![None, None] };
//! // What a scheduler does at construction: remember the base lr, then write a new lr.
//! for g in 0..opt.num_groups() {
//!     if opt.initial_lr(g).is_none() {
//!         let lr = opt.lr(g)?;
//!         opt.set_initial_lr(g, lr)?;
//!     }
//!     opt.set_lr(g, opt.initial_lr(g).unwrap() * 0.5)?;
//! }
//! assert_eq!(opt.lrs, vec![0.05, 0.005]);
//! // This optimizer has no momentum: asking for it is an error, not a panic.
//! assert!(matches!(opt.momentum(0), Err(ParamGroupError::NoMomentum { group: 0 })));
//! # Ok::<(), ParamGroupError>(())
//! ```

#![forbid(unsafe_code)]

mod dicts;
mod error;
mod groups;
mod value;

pub use error::ParamGroupError;
pub use groups::{MomentumKey, OptimizerParamGroups};
pub use value::{Dict, Value};
