//! The `OptimizerParamGroups` seam: what a scheduler reads and writes per group.

use crate::{ParamGroupError, Value};

/// Where a group keeps the momentum that CyclicLR and OneCycleLR cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MomentumKey {
    /// `momentum` (SGD, RMSprop).
    Momentum,
    /// `betas[0]` (Adam, AdamW, Adamax, NAdam, RAdam).
    Beta1,
}

/// Everything a scheduler needs from an optimizer, per param group, and nothing more.
///
/// An implementation lends each group's hyperparameters by PyTorch's names (`lr`,
/// `initial_lr`, `momentum`, `betas`, `weight_decay`, `swa_lr`, `max_lr`, ...), as
/// PyTorch's group dicts hold them. The required methods borrow: `get` reads a
/// value in place, `get_mut` lends it for writing in place, and `insert` adds a key the
/// group does not have yet (PyTorch's groups are open dicts: schedulers add
/// `initial_lr`, `max_lr`, `swa_lr`). The provided methods are the typed accessors
/// schedulers use; they are built on those three alone and allocate nothing (but for
/// `insert` of a new key), so an implementation has nothing to override. The trait is
/// object-safe: a scheduler can take `&mut dyn OptimizerParamGroups`.
///
/// A value written through `get_mut` is not checked by the seam: an optimizer reads
/// its groups when it steps, as PyTorch's do, and a value it cannot use (a negative
/// or non-numeric `lr`) is an `Err` of that step.
///
/// Invariants: `get(g, k)` after a successful write of `v` (through `get_mut`, or
/// `insert`) returns `v`; `get` and `get_mut` see the same keys; `insert` of a group
/// that does not exist is `Err(NoSuchGroup)`.
pub trait OptimizerParamGroups {
    /// The number of param groups.
    fn num_groups(&self) -> usize;

    /// The hyperparameter `key` of group `group`, or `None` if the group has no such key
    /// (or the group does not exist).
    fn get(&self, group: usize, key: &str) -> Option<&Value>;

    /// The hyperparameter `key` of group `group`, to write in place, or `None` if the
    /// group has no such key (or the group does not exist). An implementation may lend
    /// none of a key it does not let a scheduler write.
    fn get_mut(&mut self, group: usize, key: &str) -> Option<&mut Value>;

    /// Adds the hyperparameter `key`, which the group does not have yet (the provided
    /// methods call it only for a key `get_mut` did not lend). `Err(NoSuchGroup)` if the
    /// group does not exist; an implementation may refuse keys it cannot store
    /// (`UnknownKey`).
    fn insert(&mut self, group: usize, key: &str, value: Value) -> Result<(), ParamGroupError>;

    /// Python's `group[key] = value`: in place if the group has `key`, else inserted.
    fn set(&mut self, group: usize, key: &str, value: Value) -> Result<(), ParamGroupError> {
        match self.get_mut(group, key) {
            Some(slot) => {
                *slot = value;
                Ok(())
            }
            None => self.insert(group, key, value),
        }
    }

    /// `Err(NoSuchGroup)` unless `group < num_groups()`.
    fn check_group(&self, group: usize) -> Result<(), ParamGroupError> {
        let groups = self.num_groups();
        if group < groups {
            Ok(())
        } else {
            Err(ParamGroupError::NoSuchGroup { group, groups })
        }
    }

    /// A number-valued hyperparameter.
    fn get_f64(&self, group: usize, key: &str) -> Result<f64, ParamGroupError> {
        match self.get(group, key) {
            Some(Value::Float(v)) => Ok(*v),
            Some(v) => v.as_f64().ok_or_else(|| ParamGroupError::WrongType {
                key: key.to_string(),
                expected: "a number",
                found: v.type_name(),
            }),
            None => {
                self.check_group(group)?;
                Err(ParamGroupError::MissingKey {
                    group,
                    key: key.to_string(),
                })
            }
        }
    }

    /// Writes a number-valued hyperparameter (as a float), in place if the group has it.
    fn set_f64(&mut self, group: usize, key: &str, value: f64) -> Result<(), ParamGroupError> {
        match self.get_mut(group, key) {
            Some(slot) => write_float(slot, value),
            None => return insert_float(self, group, key, value),
        }
        Ok(())
    }

    /// The group's learning rate.
    fn lr(&self, group: usize) -> Result<f64, ParamGroupError> {
        self.get_f64(group, "lr")
    }

    /// Sets the group's learning rate.
    fn set_lr(&mut self, group: usize, lr: f64) -> Result<(), ParamGroupError> {
        self.set_f64(group, "lr", lr)
    }

    /// Every group's learning rate, in group order, appended to `out` (a scheduler reads
    /// them all at every step, into a buffer it keeps). Stops at the first group whose
    /// `lr` cannot be read, with its error.
    fn lrs_into(&self, out: &mut Vec<f64>) -> Result<(), ParamGroupError> {
        for g in 0..self.num_groups() {
            out.push(self.lr(g)?);
        }
        Ok(())
    }

    /// Sets group `g`'s learning rate to `lrs[g]`, in group order, for every `g` in
    /// `lrs` (which a scheduler gives with one value per group). Stops at the first
    /// group that refuses, with its error; the groups before it are written.
    fn set_lrs(&mut self, lrs: &[f64]) -> Result<(), ParamGroupError> {
        for (g, &lr) in lrs.iter().enumerate() {
            self.set_lr(g, lr)?;
        }
        Ok(())
    }

    /// The group's `initial_lr`, if a scheduler recorded one (and it is a number).
    fn initial_lr(&self, group: usize) -> Option<f64> {
        self.get(group, "initial_lr").and_then(Value::as_f64)
    }

    /// Records the group's `initial_lr`.
    fn set_initial_lr(&mut self, group: usize, lr: f64) -> Result<(), ParamGroupError> {
        self.set_f64(group, "initial_lr", lr)
    }

    /// Where the group keeps its momentum: `betas[0]` if it has `betas`, else `momentum`
    /// if it has that, else `NoMomentum`.
    fn momentum_key(&self, group: usize) -> Result<MomentumKey, ParamGroupError> {
        self.check_group(group)?;
        if self.get(group, "betas").is_some() {
            Ok(MomentumKey::Beta1)
        } else if self.get(group, "momentum").is_some() {
            Ok(MomentumKey::Momentum)
        } else {
            Err(ParamGroupError::NoMomentum { group })
        }
    }

    /// The group's momentum: `betas[0]` for the Adam family, `momentum` otherwise.
    fn momentum(&self, group: usize) -> Result<f64, ParamGroupError> {
        match self.momentum_key(group)? {
            MomentumKey::Momentum => self.get_f64(group, "momentum"),
            MomentumKey::Beta1 => beta1(self.get(group, "betas").unwrap_or(&Value::None)),
        }
    }

    /// Sets the group's momentum: `betas[0]` of a pair, in place (keeping `betas[1]`;
    /// a list becomes a tuple, as PyTorch's schedulers write it), or `momentum`.
    /// `WrongType` (and `betas` unchanged) if `betas` is not a pair.
    fn set_momentum(&mut self, group: usize, momentum: f64) -> Result<(), ParamGroupError> {
        // `betas` first, found with one lookup (a cycling scheduler writes it every step).
        if let Some(betas) = self.get_mut(group, "betas") {
            return set_beta1(betas, momentum);
        }
        match self.momentum_key(group)? {
            MomentumKey::Momentum => self.set_f64(group, "momentum", momentum),
            // `get` sees `betas` but `get_mut` does not lend it: it is not writable.
            MomentumKey::Beta1 => Err(ParamGroupError::UnknownKey {
                group,
                key: "betas".into(),
            }),
        }
    }
}

/// `*slot = Value::Float(value)`, written in place when `slot` is already a float (as
/// a scheduler's writes are, at every step).
///
/// The other case is a call that takes `value`, out of line, so that `value` stays in a
/// register: assigned whole, the old value's drop is a call across which `value` had
/// to be saved, and every lr a scheduler wrote went through a store and a load on the
/// stack, on the path of its computation (InverseSqrtLR's step took 12% longer).
#[inline(always)]
fn write_float(slot: &mut Value, value: f64) {
    match slot {
        Value::Float(x) => *x = value,
        other => replace_with_float(other, value),
    }
}

/// [`write_float`] over a value that is not a float.
#[cold]
#[inline(never)]
fn replace_with_float(slot: &mut Value, value: f64) {
    *slot = Value::Float(value);
}

/// [`OptimizerParamGroups::set_f64`] of a key the group does not lend.
#[cold]
#[inline(never)]
fn insert_float<G: OptimizerParamGroups + ?Sized>(
    groups: &mut G,
    group: usize,
    key: &str,
    value: f64,
) -> Result<(), ParamGroupError> {
    groups.check_group(group)?;
    groups.insert(group, key, Value::Float(value))
}

/// `betas[0]` as a number.
fn beta1(betas: &Value) -> Result<f64, ParamGroupError> {
    betas
        .as_slice()
        .and_then(|b| b.first())
        .and_then(Value::as_f64)
        .ok_or_else(|| ParamGroupError::WrongType {
            key: "betas".into(),
            expected: "a pair of numbers",
            found: betas.type_name(),
        })
}

/// Writes `betas[0]` of a pair in place and makes `betas` a tuple; `WrongType` (and
/// `betas` unchanged) if it is not a pair.
fn set_beta1(betas: &mut Value, momentum: f64) -> Result<(), ParamGroupError> {
    match betas {
        Value::Tuple(items) | Value::List(items) if items.len() == 2 => {
            write_float(&mut items[0], momentum);
            if let Value::List(items) = betas {
                *betas = Value::Tuple(std::mem::take(items));
            }
            Ok(())
        }
        other => Err(ParamGroupError::WrongType {
            key: "betas".into(),
            expected: "a pair of numbers",
            found: other.type_name(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Dict;

    /// Open group dicts, as PyTorch's; `frozen` is a key that is read but never written.
    struct Groups(Vec<Dict>);
    impl OptimizerParamGroups for Groups {
        fn num_groups(&self) -> usize {
            self.0.len()
        }
        fn get(&self, group: usize, key: &str) -> Option<&Value> {
            self.0.get(group)?.get(key)
        }
        fn get_mut(&mut self, group: usize, key: &str) -> Option<&mut Value> {
            match key {
                "frozen" => None,
                _ => self.0.get_mut(group)?.get_mut(key),
            }
        }
        fn insert(&mut self, group: usize, key: &str, value: Value) -> Result<(), ParamGroupError> {
            let groups = self.0.len();
            let g = self
                .0
                .get_mut(group)
                .ok_or(ParamGroupError::NoSuchGroup { group, groups })?;
            if key == "frozen" {
                return Err(ParamGroupError::UnknownKey {
                    group,
                    key: key.into(),
                });
            }
            g.insert(key, value);
            Ok(())
        }
    }

    fn adam_and_sgd() -> Groups {
        let mut adam = Dict::new();
        adam.insert("lr", 0.1);
        adam.insert("betas", Value::Tuple(vec![0.9.into(), 0.999.into()]));
        let mut sgd = Dict::new();
        sgd.insert("lr", 0.01);
        sgd.insert("momentum", 0.0);
        Groups(vec![adam, sgd, Dict::new()])
    }

    #[test]
    fn momentum_is_beta1_or_momentum() {
        let mut g = adam_and_sgd();
        assert_eq!(g.momentum_key(0), Ok(MomentumKey::Beta1));
        assert_eq!(g.momentum_key(1), Ok(MomentumKey::Momentum));
        assert_eq!(
            g.momentum_key(2),
            Err(ParamGroupError::NoMomentum { group: 2 })
        );
        g.set_momentum(0, 0.85).unwrap();
        g.set_momentum(1, 0.95).unwrap();
        assert_eq!(
            g.get(0, "betas"),
            Some(&Value::Tuple(vec![0.85.into(), 0.999.into()]))
        );
        assert!((g.momentum(1).unwrap() - 0.95).abs() < 1e-15);
    }

    #[test]
    fn errors_name_what_is_missing() {
        let mut g = adam_and_sgd();
        assert_eq!(
            g.lr(5),
            Err(ParamGroupError::NoSuchGroup {
                group: 5,
                groups: 3
            })
        );
        assert_eq!(
            g.lr(2),
            Err(ParamGroupError::MissingKey {
                group: 2,
                key: "lr".into()
            })
        );
        assert_eq!(g.initial_lr(0), None);
        for write in [
            g.set_lr(3, 0.1),
            g.set(3, "lr", Value::Float(0.1)),
            g.set_momentum(3, 0.9),
        ] {
            assert_eq!(
                write,
                Err(ParamGroupError::NoSuchGroup {
                    group: 3,
                    groups: 3
                })
            );
        }
        assert_eq!(
            g.set_f64(0, "frozen", 1.0),
            Err(ParamGroupError::UnknownKey {
                group: 0,
                key: "frozen".into()
            })
        );
        let dynamic: &dyn OptimizerParamGroups = &g;
        assert_eq!(dynamic.num_groups(), 3);
    }

    /// Groups with each of these `betas` or `momentum`, and an `lr` that is a float, an
    /// int or a string in turn.
    fn odd_groups() -> Groups {
        let cases: Vec<(&str, Value)> = vec![
            ("betas", Value::Tuple(vec![0.9.into(), 0.999.into()])),
            ("betas", Value::List(vec![Value::Int(1), 0.5.into()])),
            ("betas", Value::Tuple(vec![0.9.into()])),
            ("betas", Value::Str("high".into())),
            ("momentum", Value::Float(0.9)),
            ("momentum", Value::Int(0)),
            ("momentum", Value::None),
            ("dampening", Value::Float(0.0)),
        ];
        let dicts = cases
            .into_iter()
            .enumerate()
            .map(|(i, (k, v))| {
                let mut d = Dict::new();
                match i % 3 {
                    0 => d.insert("lr", 0.1),
                    1 => d.insert("lr", Value::Int(1)),
                    _ => d.insert("lr", Value::Str("fast".into())),
                };
                d.insert(k, v);
                d
            })
            .collect();
        Groups(dicts)
    }

    #[test]
    fn momentum_of_odd_groups_is_read_or_refused() {
        let mut g = odd_groups();
        let pair = ParamGroupError::WrongType {
            key: "betas".into(),
            expected: "a pair of numbers",
            found: "tuple",
        };
        let got: Vec<_> = (0..=g.num_groups()).map(|i| g.momentum(i)).collect();
        assert_eq!(
            got,
            [
                Ok(0.9),
                Ok(1.0),
                Ok(0.9),
                Err(ParamGroupError::WrongType {
                    key: "betas".into(),
                    expected: "a pair of numbers",
                    found: "str",
                }),
                Ok(0.9),
                Ok(0.0),
                Err(ParamGroupError::WrongType {
                    key: "momentum".into(),
                    expected: "a number",
                    found: "None",
                }),
                Err(ParamGroupError::NoMomentum { group: 7 }),
                Err(ParamGroupError::NoSuchGroup {
                    group: 8,
                    groups: 8
                }),
            ]
        );
        let set: Vec<_> = (0..g.num_groups())
            .map(|i| g.set_momentum(i, 0.8))
            .collect();
        assert_eq!(set[..2], [Ok(()), Ok(())]);
        assert_eq!(set[2], Err(pair));
        assert!(matches!(set[3], Err(ParamGroupError::WrongType { .. })));
        assert_eq!(set[4..7], [Ok(()), Ok(()), Ok(())]);
        assert_eq!(set[7], Err(ParamGroupError::NoMomentum { group: 7 }));
        // A list of betas becomes a tuple; a refused write changes nothing.
        assert_eq!(
            g.get(1, "betas"),
            Some(&Value::Tuple(vec![0.8.into(), 0.5.into()]))
        );
        assert_eq!(g.get(2, "betas"), Some(&Value::Tuple(vec![0.9.into()])));
        assert_eq!(g.get(6, "momentum"), Some(&Value::Float(0.8)));
    }

    #[test]
    fn numbers_are_read_and_written_in_place() {
        let mut g = odd_groups();
        assert_eq!(g.get_f64(0, "lr"), Ok(0.1));
        assert_eq!(g.get_f64(1, "lr"), Ok(1.0));
        assert_eq!(
            g.get_f64(2, "lr"),
            Err(ParamGroupError::WrongType {
                key: "lr".into(),
                expected: "a number",
                found: "str",
            })
        );
        let mut lrs = vec![9.0];
        assert_eq!(
            g.lrs_into(&mut lrs),
            Err(ParamGroupError::WrongType {
                key: "lr".into(),
                expected: "a number",
                found: "str",
            })
        );
        assert_eq!(lrs, [9.0, 0.1, 1.0]);
        g.set_lrs(&[0.5, 0.25, 0.125]).unwrap();
        let got: Vec<_> = (0..3).map(|i| g.lr(i)).collect();
        assert_eq!(got, [Ok(0.5), Ok(0.25), Ok(0.125)]);
        // An int is written as a float; a key written keeps its place, a new one is
        // appended.
        assert_eq!(g.get(1, "lr"), Some(&Value::Float(0.25)));
        g.set_initial_lr(0, 0.5).unwrap();
        g.set(0, "lr", Value::Int(2)).unwrap();
        assert_eq!(g.initial_lr(0), Some(0.5));
        let keys: Vec<_> = g.0[0].keys().collect();
        assert_eq!(keys, ["lr", "betas", "initial_lr"]);
        assert_eq!(g.get(0, "lr"), Some(&Value::Int(2)));
    }
}
