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
/// An implementation exposes each group's hyperparameters by PyTorch's names (`lr`,
/// `initial_lr`, `momentum`, `betas`, `weight_decay`, `swa_lr`, `max_lr`, ...). The
/// two required methods read and write any of them; the provided methods are the
/// typed accessors schedulers use. The trait is object-safe: a scheduler can take
/// `&mut dyn OptimizerParamGroups`.
///
/// Invariant: `get(g, k)` after a successful `set(g, k, v)` returns `v` (for keys the
/// implementation stores as given; an implementation may normalise ints to floats).
pub trait OptimizerParamGroups {
    /// The number of param groups.
    fn num_groups(&self) -> usize;

    /// The hyperparameter `key` of group `group`, or `None` if the group has no such key
    /// (or the group does not exist).
    fn get(&self, group: usize, key: &str) -> Option<Value>;

    /// Writes the hyperparameter `key` of group `group`, adding the key if the group did
    /// not have it (PyTorch's groups are open dicts: `initial_lr`, `max_lr`, `swa_lr` are
    /// added by schedulers). An implementation may refuse keys it cannot store.
    fn set(&mut self, group: usize, key: &str, value: Value) -> Result<(), ParamGroupError>;

    /// A number-valued hyperparameter.
    fn get_f64(&self, group: usize, key: &str) -> Result<f64, ParamGroupError> {
        self.check_group(group)?;
        match self.get(group, key) {
            None => Err(ParamGroupError::MissingKey {
                group,
                key: key.to_string(),
            }),
            Some(v) => v.as_f64().ok_or_else(|| ParamGroupError::WrongType {
                key: key.to_string(),
                expected: "a number",
                found: v.type_name(),
            }),
        }
    }

    /// Writes a number-valued hyperparameter.
    fn set_f64(&mut self, group: usize, key: &str, value: f64) -> Result<(), ParamGroupError> {
        self.check_group(group)?;
        self.set(group, key, Value::Float(value))
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

    /// The group's learning rate.
    fn lr(&self, group: usize) -> Result<f64, ParamGroupError> {
        self.get_f64(group, "lr")
    }

    /// Sets the group's learning rate.
    fn set_lr(&mut self, group: usize, lr: f64) -> Result<(), ParamGroupError> {
        self.set_f64(group, "lr", lr)
    }

    /// Every group's learning rate, in group order, appended to `out` (a scheduler reads
    /// them all at every step; an implementation can do it in one call instead of one
    /// per group). Stops at the first group whose `lr` cannot be read, with its error.
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

    /// The group's `initial_lr`, if a scheduler recorded one.
    fn initial_lr(&self, group: usize) -> Option<f64> {
        self.get(group, "initial_lr").and_then(|v| v.as_f64())
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
            MomentumKey::Beta1 => beta1(&self.get(group, "betas").unwrap_or_default()),
        }
    }

    /// Sets the group's momentum: `betas[0]` (keeping `betas[1]`) or `momentum`.
    fn set_momentum(&mut self, group: usize, momentum: f64) -> Result<(), ParamGroupError> {
        match self.momentum_key(group)? {
            MomentumKey::Momentum => self.set_f64(group, "momentum", momentum),
            MomentumKey::Beta1 => {
                let mut betas = self.get(group, "betas").unwrap_or_default();
                set_beta1(&mut betas, momentum)?;
                self.set(group, "betas", betas)
            }
        }
    }
}

/// `betas[0]` as a number.
pub(crate) fn beta1(betas: &Value) -> Result<f64, ParamGroupError> {
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
pub(crate) fn set_beta1(betas: &mut Value, momentum: f64) -> Result<(), ParamGroupError> {
    match betas {
        Value::Tuple(items) | Value::List(items) if items.len() == 2 => {
            items[0] = Value::Float(momentum);
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

    struct Groups(Vec<Dict>);
    impl OptimizerParamGroups for Groups {
        fn num_groups(&self) -> usize {
            self.0.len()
        }
        fn get(&self, group: usize, key: &str) -> Option<Value> {
            self.0.get(group)?.get(key).cloned()
        }
        fn set(&mut self, group: usize, key: &str, value: Value) -> Result<(), ParamGroupError> {
            let groups = self.0.len();
            let g = self
                .0
                .get_mut(group)
                .ok_or(ParamGroupError::NoSuchGroup { group, groups })?;
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
            Some(Value::Tuple(vec![0.85.into(), 0.999.into()]))
        );
        assert!((g.momentum(1).unwrap() - 0.95).abs() < 1e-15);
    }

    #[test]
    fn errors_name_what_is_missing() {
        let g = adam_and_sgd();
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
        let dynamic: &dyn OptimizerParamGroups = &g;
        assert_eq!(dynamic.num_groups(), 3);
    }
}
