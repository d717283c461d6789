//! Param groups: parameters plus a PyTorch-style dict of hyperparameters.

use tempo_param_groups::{Dict, MomentumKey, OptimizerParamGroups, ParamGroupError, Value};
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

    // The group dicts are param groups by themselves (`impl OptimizerParamGroups for
    // [Dict]` in tempo-param-groups); these add only the rule that `params` is not a
    // hyperparameter (never in `options`, and never written).

    pub(crate) fn get(&self, group: usize, key: &str) -> Option<Value> {
        OptimizerParamGroups::get(self.options.as_slice(), group, key)
    }

    /// Refuses `params` (`UnknownKey`) once the group is known to exist.
    fn writable(&self, group: usize, key: &str) -> Result<(), ParamGroupError> {
        self.options.as_slice().check_group(group)?;
        if key == "params" {
            return Err(ParamGroupError::UnknownKey {
                group,
                key: key.into(),
            });
        }
        Ok(())
    }

    pub(crate) fn set(
        &mut self,
        group: usize,
        key: &str,
        value: Value,
    ) -> Result<(), ParamGroupError> {
        self.writable(group, key)?;
        self.options.as_mut_slice().set(group, key, value)
    }

    pub(crate) fn get_f64(&self, group: usize, key: &str) -> Result<f64, ParamGroupError> {
        self.options.as_slice().get_f64(group, key)
    }

    pub(crate) fn set_f64(
        &mut self,
        group: usize,
        key: &str,
        value: f64,
    ) -> Result<(), ParamGroupError> {
        self.writable(group, key)?;
        self.options.as_mut_slice().set_f64(group, key, value)
    }

    pub(crate) fn lrs_into(&self, out: &mut Vec<f64>) -> Result<(), ParamGroupError> {
        self.options.as_slice().lrs_into(out)
    }

    pub(crate) fn set_lrs(&mut self, lrs: &[f64]) -> Result<(), ParamGroupError> {
        self.options.as_mut_slice().set_lrs(lrs)
    }

    pub(crate) fn momentum_key(&self, group: usize) -> Result<MomentumKey, ParamGroupError> {
        self.options.as_slice().momentum_key(group)
    }

    pub(crate) fn momentum(&self, group: usize) -> Result<f64, ParamGroupError> {
        self.options.as_slice().momentum(group)
    }

    pub(crate) fn set_momentum(
        &mut self,
        group: usize,
        momentum: f64,
    ) -> Result<(), ParamGroupError> {
        self.options.as_mut_slice().set_momentum(group, momentum)
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

    /// The groups seen through the trait's provided methods only.
    struct Provided(Groups<f64, Tensor<f64>>);

    impl tempo_param_groups::OptimizerParamGroups for Provided {
        fn num_groups(&self) -> usize {
            self.0.len()
        }
        fn get(&self, group: usize, key: &str) -> Option<Value> {
            self.0.get(group, key)
        }
        fn set(&mut self, group: usize, key: &str, value: Value) -> Result<(), ParamGroupError> {
            self.0.set(group, key, value)
        }
    }

    #[test]
    fn momentum_accessors_match_the_provided_methods() {
        use tempo_param_groups::OptimizerParamGroups;
        let pair = |a: Value, b: Value| vec![a, b];
        let cases: Vec<(&str, Value)> = vec![
            ("betas", Value::Tuple(pair(0.9.into(), 0.999.into()))),
            ("betas", Value::List(pair(Value::Int(1), 0.5.into()))),
            ("betas", Value::Tuple(vec![0.9.into()])),
            (
                "betas",
                Value::Tuple(vec![0.9.into(), 0.9.into(), 0.9.into()]),
            ),
            ("betas", Value::Str("high".into())),
            ("betas", Value::Tuple(pair("a".into(), 0.5.into()))),
            ("momentum", Value::Float(0.9)),
            ("momentum", Value::Int(0)),
            ("momentum", Value::None),
            ("dampening", Value::Float(0.0)),
        ];
        let build = || {
            let groups = cases
                .iter()
                .map(|(k, v)| {
                    ParamGroup::new(vec![t(1)])
                        .with(k, v.clone())
                        .with("lr", 0.1)
                })
                .collect();
            Groups::build(groups, &Dict::new()).unwrap()
        };
        let mut ours = build();
        let mut provided = Provided(build());
        for group in 0..=cases.len() {
            assert_eq!(ours.momentum_key(group), provided.momentum_key(group));
            let (a, b) = (ours.momentum(group), provided.momentum(group));
            assert_eq!(a.is_ok(), b.is_ok(), "group {group}");
            match (a, b) {
                (Ok(a), Ok(b)) => assert!((a - b).abs() < 1e-15, "group {group}"),
                (a, b) => assert_eq!(a, b, "group {group}"),
            }
            assert_eq!(
                ours.set_momentum(group, 0.8),
                provided.set_momentum(group, 0.8),
                "group {group}"
            );
            assert_eq!(
                ours.options.get(group),
                provided.0.options.get(group),
                "group {group}"
            );
        }
        // Writing a key keeps its place; a new key is appended.
        ours.set(0, "lr", Value::Float(0.5)).unwrap();
        ours.set(0, "initial_lr", Value::Float(0.5)).unwrap();
        let keys: Vec<_> = ours.options[0].keys().collect();
        assert_eq!(keys, ["betas", "lr", "initial_lr"]);
    }

    #[test]
    fn number_accessors_match_the_provided_methods() {
        use tempo_param_groups::OptimizerParamGroups;
        let build = || {
            let groups = vec![
                ParamGroup::new(vec![t(1)])
                    .with("lr", 0.1)
                    .with("momentum", 0i64),
                ParamGroup::new(vec![t(1)])
                    .with("lr", Value::Str("fast".into()))
                    .with("initial_lr", Value::None),
                ParamGroup::new(vec![t(1)]).with("initial_lr", 0.5),
            ];
            Groups::build(groups, &Dict::new()).unwrap()
        };
        let mut ours = build();
        let mut provided = Provided(build());
        let keys = ["lr", "momentum", "initial_lr", "params", "missing"];
        for group in 0..4 {
            for key in keys {
                assert_eq!(
                    ours.get_f64(group, key),
                    provided.get_f64(group, key),
                    "group {group} key {key}"
                );
            }
            assert_eq!(
                ours.get_f64(group, "initial_lr").ok(),
                provided.initial_lr(group),
                "group {group}"
            );
            let (mut a, mut b) = (vec![9.0], vec![9.0]);
            assert_eq!(ours.lrs_into(&mut a), provided.lrs_into(&mut b));
            assert_eq!(a, b);
            let lrs = [0.5, 0.25, 0.125, 1.0][..group].to_vec();
            assert_eq!(ours.set_lrs(&lrs), provided.set_lrs(&lrs), "{lrs:?}");
            assert_eq!(ours.options, provided.0.options, "{lrs:?}");
            for (i, key) in keys.into_iter().enumerate() {
                let v = 0.25 * i as f64;
                assert_eq!(
                    ours.set_f64(group, key, v),
                    provided.set_f64(group, key, v),
                    "group {group} key {key}"
                );
                assert_eq!(
                    ours.options.get(group),
                    provided.0.options.get(group),
                    "group {group} key {key}"
                );
            }
        }
    }
}
