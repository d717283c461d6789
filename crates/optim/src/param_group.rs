//! Param groups: parameters plus a PyTorch-style dict of hyperparameters.

use tempo_param_groups::{Dict, OptimizerParamGroups, ParamGroupError, Value};
use tempo_tensor::{Float, Tensor};

use crate::hyper::Hyperparameters;
use crate::{OptimError, Param};

/// A param group as given to a constructor or to `add_param_group`: the parameters and
/// the hyperparameters that override the optimizer's defaults for them (PyTorch's
/// `{"params": [...], "lr": 0.01}`).
///
/// `P` is the parameters' storage: tempo's [`Tensor`] by default, or any [`Param`].
#[derive(Debug, Clone)]
pub struct ParamGroup<T: Float, P: Param<T> = Tensor<T>> {
    /// The parameters, in order.
    pub params: Vec<P>,
    /// Per-group overrides, by PyTorch's names, in the user's order. Keys the optimizer
    /// does not know are kept and saved, as in PyTorch.
    pub options: Dict,
    element: std::marker::PhantomData<fn() -> T>,
}

impl<T: Float, P: Param<T>> ParamGroup<T, P> {
    /// A group with no overrides.
    pub fn new(params: Vec<P>) -> Self {
        Self {
            params,
            options: Dict::new(),
            element: std::marker::PhantomData,
        }
    }

    /// Adds an override (builder style).
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.options.insert(key, value);
        self
    }
}

/// The groups of an optimizer. Invariant: no parameter appears twice, across or within
/// groups; `options[i]` never holds `"params"`.
/// `flat` and `group_of` are `params` flattened (state-dict id order) and each id's group.
#[derive(Debug, Clone)]
pub(crate) struct Groups<T: Float, P: Param<T>> {
    pub(crate) params: Vec<Vec<P>>,
    pub(crate) options: Vec<Dict>,
    pub(crate) flat: Vec<P>,
    pub(crate) group_of: Vec<usize>,
    element: std::marker::PhantomData<fn() -> T>,
}

impl<T: Float, P: Param<T>> Groups<T, P> {
    pub(crate) fn build(
        groups: Vec<ParamGroup<T, P>>,
        defaults: &Dict,
    ) -> Result<Self, OptimError> {
        if groups.iter().all(|g| g.params.is_empty()) && groups.len() <= 1 {
            return Err(OptimError::EmptyParameters);
        }
        let mut out = Self {
            params: Vec::new(),
            options: Vec::new(),
            flat: Vec::new(),
            group_of: Vec::new(),
            element: std::marker::PhantomData,
        };
        for g in groups {
            out.add(g, defaults)?;
        }
        Ok(out)
    }

    /// PyTorch's `add_param_group`: the user's keys in the user's order, then the
    /// remaining defaults in defaults order; refuses a parameter that is already in a group.
    pub(crate) fn add(
        &mut self,
        group: ParamGroup<T, P>,
        defaults: &Dict,
    ) -> Result<(), OptimError> {
        let new_index = self.params.len();
        for (i, p) in group.params.iter().enumerate() {
            if let Some(j) = group.params[..i].iter().position(|q| q.same(p)) {
                return Err(OptimError::DuplicateParam {
                    group: new_index,
                    first: j,
                    second: i,
                });
            }
            if let Some(other) = self
                .params
                .iter()
                .position(|ps| ps.iter().any(|q| q.same(p)))
            {
                return Err(OptimError::ParamInTwoGroups {
                    group: new_index,
                    other,
                });
            }
        }
        let mut options = Dict::new();
        for (k, v) in group.options.iter() {
            if k != "params" {
                options.insert(k, v.clone());
            }
        }
        for (k, v) in defaults.iter() {
            options.setdefault(k, v.clone());
        }
        self.flat.extend(group.params.iter().cloned());
        self.group_of
            .extend(std::iter::repeat_n(new_index, group.params.len()));
        self.params.push(group.params);
        self.options.push(options);
        Ok(())
    }

    /// A constructor's groups: validates `config`, writes a spec's kwargs (`overrides`)
    /// over its defaults, and fills each group from them. Returns the groups and the
    /// defaults of groups added later.
    pub(crate) fn configured<C: Hyperparameters>(
        groups: Vec<ParamGroup<T, P>>,
        config: &C,
        overrides: Option<&Dict>,
    ) -> Result<(Self, Dict), OptimError> {
        config.validate()?;
        let mut defaults = config.defaults();
        for (k, v) in overrides.iter().flat_map(|o| o.iter()) {
            if let Some(d) = defaults.get(k) {
                if let Some(v) = like_default(d, v) {
                    defaults.insert(k, v);
                }
            }
        }
        Ok((Self::build(groups, &defaults)?, defaults))
    }

    /// PyTorch's `load_state_dict` of the group dicts: each saved group's keys but
    /// `params`, then the `defaults` it lacks, then `fix` (PyTorch's `__setstate__`).
    pub(crate) fn load_options(
        &mut self,
        saved: &[Dict],
        defaults: &Dict,
        fix: impl Fn(&mut Dict),
    ) {
        self.options = saved
            .iter()
            .map(|saved| {
                let mut d = Dict::new();
                for (k, v) in saved.iter().filter(|(k, _)| *k != "params") {
                    d.insert(k, v.clone());
                }
                for (k, v) in defaults.iter() {
                    d.setdefault(k, v.clone());
                }
                fix(&mut d);
                d
            })
            .collect();
    }

    pub(crate) fn zero_grad(&self) {
        for p in &self.flat {
            p.zero_grad();
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.params.len()
    }

    /// All parameters in state-dict id order.
    pub(crate) fn flat(&self) -> impl Iterator<Item = &P> {
        self.flat.iter()
    }

    pub(crate) fn num_params(&self) -> usize {
        self.flat.len()
    }

    /// The `param_groups` of a state dict: every key but `params`, then `params` last.
    pub(crate) fn state_dict_groups(&self) -> Vec<Dict> {
        let mut next = 0i64;
        self.options
            .iter()
            .zip(&self.params)
            .map(|(o, ps)| {
                let mut d = o.clone();
                let ids = (next..next + ps.len() as i64).map(Value::Int).collect();
                next += ps.len() as i64;
                d.insert("params", Value::List(ids));
                d
            })
            .collect()
    }

    /// Checks a loaded state dict's groups against ours (PyTorch's two checks) and
    /// returns, for every saved id, the flat index of the parameter it maps to.
    pub(crate) fn map_saved_ids(&self, saved: &[Dict]) -> Result<Vec<(i64, usize)>, OptimError> {
        if saved.len() != self.len() {
            return Err(OptimError::GroupCountMismatch {
                expected: self.len(),
                got: saved.len(),
            });
        }
        let mut map = Vec::with_capacity(self.num_params());
        let mut flat = 0usize;
        for (gi, (d, ps)) in saved.iter().zip(&self.params).enumerate() {
            let ids = d
                .get("params")
                .and_then(Value::as_slice)
                .ok_or(OptimError::MissingParamIds { group: gi })?;
            if ids.len() != ps.len() {
                return Err(OptimError::GroupSizeMismatch {
                    group: gi,
                    expected: ps.len(),
                    got: ids.len(),
                });
            }
            for id in ids {
                let id = id
                    .as_i64()
                    .ok_or(OptimError::MissingParamIds { group: gi })?;
                match map.iter_mut().find(|(i, _)| *i == id) {
                    // PyTorch's dict(zip(...)): a repeated id maps to its last position.
                    Some(slot) => slot.1 = flat,
                    None => map.push((id, flat)),
                }
                flat += 1;
            }
        }
        Ok(map)
    }
}

/// The group dicts are the param groups a scheduler reads and writes, in place: a step
/// reads them again (`GroupReader`), so a value written here is checked when it is
/// used. `params` is never among their keys (so never lent), and inserting it is refused.
impl<T: Float, P: Param<T>> OptimizerParamGroups for Groups<T, P> {
    fn num_groups(&self) -> usize {
        self.options.len()
    }

    fn get(&self, group: usize, key: &str) -> Option<&Value> {
        self.options.get(group)?.get(key)
    }

    fn get_mut(&mut self, group: usize, key: &str) -> Option<&mut Value> {
        self.options.get_mut(group)?.get_mut(key)
    }

    fn insert(&mut self, group: usize, key: &str, value: Value) -> Result<(), ParamGroupError> {
        let groups = self.options.len();
        let dict = self
            .options
            .get_mut(group)
            .ok_or(ParamGroupError::NoSuchGroup { group, groups })?;
        if key == "params" {
            return Err(ParamGroupError::UnknownKey {
                group,
                key: key.into(),
            });
        }
        dict.insert(key, value);
        Ok(())
    }
}

/// A kwargs override as the defaults dict stores it, or `None` to keep the default:
/// the default's kind of sequence is kept (PyTorch's constructors store `betas`, `eps`
/// and `ns_coefficients` as the tuples they were given, and a spec's JSON list stands
/// for that tuple, whose item `"None"`, from a TOML file, is Python's `None`), and
/// `None` for an int PyTorch resolves in the constructor (LBFGS's `max_eval`) keeps
/// the resolved value.
fn like_default(default: &Value, v: &Value) -> Option<Value> {
    match (default, v) {
        (Value::Tuple(_), Value::List(items)) => Some(Value::Tuple(
            items
                .iter()
                .map(|x| match x {
                    Value::Str(s) if s == "None" => Value::None,
                    x => x.clone(),
                })
                .collect(),
        )),
        (Value::Int(_), Value::None) => None,
        _ => Some(v.clone()),
    }
}

/// Typed reads of one group's hyperparameters, with errors that name the group and key.
pub(crate) struct GroupReader<'a> {
    pub(crate) dict: &'a Dict,
    pub(crate) group: usize,
}

impl GroupReader<'_> {
    pub(crate) fn value(&self, key: &str) -> Result<&Value, OptimError> {
        self.dict
            .get(key)
            .ok_or_else(|| OptimError::MissingHyperparameter {
                group: self.group,
                key: key.into(),
            })
    }

    pub(crate) fn wrong(&self, key: &str, expected: &'static str, v: &Value) -> OptimError {
        OptimError::WrongHyperparameterType {
            group: self.group,
            key: key.into(),
            expected,
            found: v.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::ArrayD;

    fn t(n: usize) -> Tensor<f64> {
        Tensor::parameter(ArrayD::zeros(vec![n]))
    }

    #[test]
    fn merge_order_is_user_keys_then_defaults() {
        let defaults: Dict = [("lr", Value::Float(0.1)), ("momentum", Value::Int(0))]
            .into_iter()
            .collect();
        let g = Groups::build(
            vec![ParamGroup::new(vec![t(1)])
                .with("momentum", 0.9)
                .with("extra", 1i64)],
            &defaults,
        )
        .unwrap();
        let keys: Vec<_> = g.options[0].keys().collect();
        assert_eq!(keys, ["momentum", "extra", "lr"]);
        let sd = g.state_dict_groups();
        assert_eq!(sd[0].keys().last(), Some("params"));
    }

    #[test]
    fn a_param_in_two_groups_is_refused() {
        let a = t(2);
        let d = Dict::new();
        let r = Groups::build(
            vec![
                ParamGroup::new(vec![a.clone()]),
                ParamGroup::new(vec![t(1), a]),
            ],
            &d,
        );
        assert!(matches!(
            r,
            Err(OptimError::ParamInTwoGroups { group: 1, other: 0 })
        ));
        let b = t(1);
        let r = Groups::build(vec![ParamGroup::new(vec![b.clone(), b])], &d);
        assert!(matches!(
            r,
            Err(OptimError::DuplicateParam {
                group: 0,
                first: 0,
                second: 1
            })
        ));
        assert!(matches!(
            Groups::<f64, Tensor<f64>>::build(vec![], &d),
            Err(OptimError::EmptyParameters)
        ));
    }

    fn groups() -> Groups<f64, Tensor<f64>> {
        let defaults: Dict = [("lr", Value::Float(0.1))].into_iter().collect();
        let betas = Value::Tuple(vec![0.9.into(), 0.999.into()]);
        let build = vec![
            ParamGroup::new(vec![t(1)]).with("betas", betas),
            ParamGroup::new(vec![t(1)]).with("momentum", 0i64),
        ];
        Groups::build(build, &defaults).unwrap()
    }

    #[test]
    fn params_is_not_a_hyperparameter() {
        let mut g = groups();
        // `params` is neither read nor written, after the group's own check.
        assert_eq!(
            g.get_f64(0, "params"),
            Err(ParamGroupError::MissingKey {
                group: 0,
                key: "params".into()
            })
        );
        for write in [
            g.set_f64(1, "params", 0.5),
            g.set(0, "params", Value::List(vec![])),
        ] {
            assert!(
                matches!(&write, Err(ParamGroupError::UnknownKey { key, .. }) if key == "params"),
                "{write:?}"
            );
        }
        assert_eq!(
            g.set_f64(2, "params", 0.5),
            Err(ParamGroupError::NoSuchGroup {
                group: 2,
                groups: 2
            })
        );
        assert_eq!(g.options[0].get("params"), None);
        // The state dict's `params` are the ids.
        let sd = g.state_dict_groups();
        assert_eq!(sd[1].get("params"), Some(&Value::List(vec![Value::Int(1)])));
    }

    #[test]
    fn scheduler_writes_land_in_the_group_dicts_in_place() {
        let mut g = groups();
        g.set_momentum(0, 0.8).unwrap();
        g.set_momentum(1, 0.7).unwrap();
        g.set_lrs(&[0.5, 0.25]).unwrap();
        g.set_initial_lr(0, 0.5).unwrap();
        assert_eq!(
            g.options[0].get("betas"),
            Some(&Value::Tuple(vec![0.8.into(), 0.999.into()]))
        );
        assert_eq!(g.options[1].get("momentum"), Some(&Value::Float(0.7)));
        assert_eq!(g.options[1].get("lr"), Some(&Value::Float(0.25)));
        // Writing a key keeps its place; a new key is appended.
        let keys: Vec<_> = g.options[0].keys().collect();
        assert_eq!(keys, ["betas", "lr", "initial_lr"]);
    }
}
