//! A slice of PyTorch-style group dicts is itself an [`OptimizerParamGroups`]: what an
//! optimizer that keeps its hyperparameters as dicts (tempo-optim's groups,
//! tempo-sched's simulated groups) delegates to.

use crate::groups::{beta1, set_beta1};
use crate::{Dict, MomentumKey, OptimizerParamGroups, ParamGroupError, Value};

fn group(dicts: &[Dict], group: usize) -> Result<&Dict, ParamGroupError> {
    let groups = dicts.len();
    dicts
        .get(group)
        .ok_or(ParamGroupError::NoSuchGroup { group, groups })
}

fn group_mut(dicts: &mut [Dict], group: usize) -> Result<&mut Dict, ParamGroupError> {
    let groups = dicts.len();
    dicts
        .get_mut(group)
        .ok_or(ParamGroupError::NoSuchGroup { group, groups })
}

/// Every group a dict (a slice, so that `Vec<Dict>::get` stays the slice's own); any key may be read and written. The methods a scheduler calls
/// at every step read values in place and overwrite existing keys in place (a step
/// allocates nothing), and each behaves exactly as the trait's provided method.
impl OptimizerParamGroups for [Dict] {
    fn num_groups(&self) -> usize {
        self.len()
    }

    fn get(&self, g: usize, key: &str) -> Option<Value> {
        group(self, g).ok()?.get(key).cloned()
    }

    fn set(&mut self, g: usize, key: &str, value: Value) -> Result<(), ParamGroupError> {
        let d = group_mut(self, g)?;
        match d.get_mut(key) {
            Some(slot) => *slot = value,
            None => {
                d.insert(key, value);
            }
        }
        Ok(())
    }

    fn get_f64(&self, g: usize, key: &str) -> Result<f64, ParamGroupError> {
        let v = group(self, g)?
            .get(key)
            .ok_or_else(|| ParamGroupError::MissingKey {
                group: g,
                key: key.to_string(),
            })?;
        v.as_f64().ok_or_else(|| ParamGroupError::WrongType {
            key: key.to_string(),
            expected: "a number",
            found: v.type_name(),
        })
    }

    fn set_f64(&mut self, g: usize, key: &str, value: f64) -> Result<(), ParamGroupError> {
        if let Some(Value::Float(slot)) = group_mut(self, g)?.get_mut(key) {
            *slot = value;
            return Ok(());
        }
        self.set(g, key, Value::Float(value))
    }

    fn initial_lr(&self, g: usize) -> Option<f64> {
        self.get_f64(g, "initial_lr").ok()
    }

    fn lrs_into(&self, out: &mut Vec<f64>) -> Result<(), ParamGroupError> {
        for g in 0..self.len() {
            out.push(self.get_f64(g, "lr")?);
        }
        Ok(())
    }

    fn set_lrs(&mut self, lrs: &[f64]) -> Result<(), ParamGroupError> {
        for (g, &lr) in lrs.iter().enumerate() {
            self.set_f64(g, "lr", lr)?;
        }
        Ok(())
    }

    fn momentum_key(&self, g: usize) -> Result<MomentumKey, ParamGroupError> {
        let d = group(self, g)?;
        if d.contains_key("betas") {
            Ok(MomentumKey::Beta1)
        } else if d.contains_key("momentum") {
            Ok(MomentumKey::Momentum)
        } else {
            Err(ParamGroupError::NoMomentum { group: g })
        }
    }

    fn momentum(&self, g: usize) -> Result<f64, ParamGroupError> {
        match self.momentum_key(g)? {
            MomentumKey::Momentum => self.get_f64(g, "momentum"),
            MomentumKey::Beta1 => beta1(self[g].get("betas").unwrap_or(&Value::None)),
        }
    }

    /// `betas[0]` of a pair is written in place; `betas` becomes a tuple, as the
    /// provided method makes it.
    fn set_momentum(&mut self, g: usize, momentum: f64) -> Result<(), ParamGroupError> {
        match self.momentum_key(g)? {
            MomentumKey::Momentum => self.set_f64(g, "momentum", momentum),
            MomentumKey::Beta1 => {
                let betas = group_mut(self, g)?
                    .get_mut("betas")
                    .ok_or(ParamGroupError::NoMomentum { group: g })?;
                set_beta1(betas, momentum)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same dicts seen through the trait's provided methods only.
    struct Provided(Vec<Dict>);

    impl OptimizerParamGroups for Provided {
        fn num_groups(&self) -> usize {
            self.0.len()
        }
        fn get(&self, g: usize, key: &str) -> Option<Value> {
            OptimizerParamGroups::get(self.0.as_slice(), g, key)
        }
        fn set(&mut self, g: usize, key: &str, value: Value) -> Result<(), ParamGroupError> {
            self.0.as_mut_slice().set(g, key, value)
        }
    }

    fn fresh() -> Vec<Dict> {
        let pair = |a: Value, b: Value| vec![a, b];
        let cases: Vec<(&str, Value)> = vec![
            ("betas", Value::Tuple(pair(0.9.into(), 0.999.into()))),
            ("betas", Value::List(pair(Value::Int(1), 0.5.into()))),
            ("betas", Value::Tuple(vec![0.9.into()])),
            ("betas", Value::Str("high".into())),
            ("momentum", Value::Float(0.9)),
            ("momentum", Value::Int(0)),
            ("momentum", Value::None),
            ("dampening", Value::Float(0.0)),
        ];
        cases
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
            .collect()
    }

    #[test]
    fn every_override_behaves_as_the_provided_method() {
        let mut dicts = fresh();
        let ours = dicts.as_mut_slice();
        let mut provided = Provided(fresh());
        let n = ours.len();
        for g in 0..=n {
            for key in ["lr", "momentum", "initial_lr", "missing"] {
                assert_eq!(ours.get_f64(g, key), provided.get_f64(g, key), "{g} {key}");
            }
            assert_eq!(ours.initial_lr(g), provided.initial_lr(g));
            assert_eq!(ours.momentum_key(g), provided.momentum_key(g), "{g}");
            assert_eq!(ours.momentum(g), provided.momentum(g), "{g}");
            assert_eq!(
                ours.set_momentum(g, 0.8),
                provided.set_momentum(g, 0.8),
                "{g}"
            );
            assert_eq!(ours.set_f64(g, "lr", 0.5), provided.set_f64(g, "lr", 0.5));
            assert_eq!(ours.set_f64(g, "x", 0.25), provided.set_f64(g, "x", 0.25));
            assert_eq!(ours, provided.0, "{g}");
        }
        let (mut a, mut b) = (vec![], vec![]);
        assert_eq!(ours.lrs_into(&mut a), provided.lrs_into(&mut b));
        assert_eq!(a, b);
        let lrs: Vec<f64> = (0..n).map(|i| i as f64).collect();
        assert_eq!(ours.set_lrs(&lrs), provided.set_lrs(&lrs));
        assert_eq!(ours, provided.0);
        // Writing a key keeps its place; a new key is appended.
        let keys: Vec<_> = ours[0].keys().collect();
        assert_eq!(keys, ["lr", "betas", "x"]);
    }
}
