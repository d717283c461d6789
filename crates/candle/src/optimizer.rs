//! [`CandleOptimizer`]: any tempo optimizer over a candle model's named variables.

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use serde_json::Value as Json;
use tempo_optim::{build_optimizer, Optimizer, OptimizerSpec, OptimizerStateDict, ParamGroup};
use tempo_param_groups::{OptimizerParamGroups, ParamGroupError, Value};

use crate::param::{CandleFloat, CandleParam, StorageMode};
use crate::vars::group_specs;
use crate::{CandleError, GroupRule, NamedVars};

/// A tempo optimizer (any of the twelve, by PyTorch's name and arguments) over named
/// candle variables, with param groups by name.
///
/// `T` is the variables' dtype (`f32`, the default, or `f64`). State-dict ids are the
/// parameters' positions, group by group, as PyTorch numbers them.
///
/// * [`CandleOptimizer::step`] takes the `GradStore` of `loss.backward()`; parameters
///   the store has no gradient for are skipped (PyTorch's `grad is None`).
/// * `impl candle_nn::Optimizer`: `backward_step(&loss)` and
///   `set_learning_rate` work as in a candle training loop.
/// * `impl OptimizerParamGroups`: every tempo scheduler drives it.
pub struct CandleOptimizer<T: CandleFloat = f32> {
    inner: Box<dyn Optimizer<T, CandleParam>>,
    /// In state-dict id order.
    params: Vec<CandleParam>,
}

impl<T: CandleFloat> std::fmt::Debug for CandleOptimizer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CandleOptimizer")
            .field("name", &self.inner.name())
            .field("params", &self.params)
            .finish()
    }
}

impl<T: CandleFloat> CandleOptimizer<T> {
    /// The optimizer `spec` describes (PyTorch's class name and keyword arguments) over
    /// `vars`, grouped by `rules` (no rules: one group; else the spec's own `groups`
    /// must be absent).
    pub fn new(
        spec: &OptimizerSpec,
        vars: &NamedVars,
        rules: &[GroupRule],
    ) -> Result<Self, CandleError> {
        Self::with_mode(spec, vars, rules, StorageMode::Auto)
    }

    /// As [`CandleOptimizer::new`], stepping the storage as `mode` says.
    pub fn with_mode(
        spec: &OptimizerSpec,
        vars: &NamedVars,
        rules: &[GroupRule],
        mode: StorageMode,
    ) -> Result<Self, CandleError> {
        let mut spec = spec.clone();
        if !rules.is_empty() {
            if spec.groups.is_some() {
                return Err(CandleError::Optim(tempo_optim::OptimError::InvalidSpec {
                    message: "give param groups either as name rules or in the spec, not both"
                        .into(),
                }));
            }
            spec.groups = Some(group_specs(vars, rules)?);
        }
        let all: Vec<CandleParam> = handles(vars, mode);
        let inner = build_optimizer::<T, CandleParam>(&spec, &all)?;
        let params = inner.params();
        Ok(Self { inner, params })
    }

    /// The optimizer of a Python call, as tempo's CLI takes it:
    /// `"AdamW(lr=1e-3, weight_decay=0.01)"`.
    pub fn from_call(
        call: &str,
        vars: &NamedVars,
        rules: &[GroupRule],
    ) -> Result<Self, CandleError> {
        let parsed = tempo_sched::parse_scheduler_call(call)?;
        let spec = OptimizerSpec {
            kind: parsed.r#type,
            kwargs: parsed.kwargs,
            groups: None,
        };
        Self::new(&spec, vars, rules)
    }

    /// An optimizer built from a config struct: `make` gets the groups the rules
    /// choose and builds it (`|g| AdamW::with_groups(g, AdamWConfig { .. })`).
    pub fn from_groups<O, F>(
        vars: &NamedVars,
        rules: &[GroupRule],
        mode: StorageMode,
        make: F,
    ) -> Result<Self, CandleError>
    where
        O: Optimizer<T, CandleParam> + 'static,
        F: FnOnce(Vec<ParamGroup<T, CandleParam>>) -> Result<O, tempo_optim::OptimError>,
    {
        let all = handles(vars, mode);
        let groups = if rules.is_empty() {
            vec![ParamGroup::new(all)]
        } else {
            group_specs(vars, rules)?
                .into_iter()
                .map(|g| {
                    let ids = match g.params {
                        tempo_optim::ParamSelection::Indices(ix) => ix,
                        tempo_optim::ParamSelection::All => (0..all.len()).collect(),
                    };
                    let mut group = ParamGroup::new(ids.iter().map(|&i| all[i].clone()).collect());
                    for (k, v) in &g.options {
                        group = group.with(k, json_value(v));
                    }
                    group
                })
                .collect()
        };
        let inner: Box<dyn Optimizer<T, CandleParam>> = Box::new(make(groups)?);
        let params = inner.params();
        Ok(Self { inner, params })
    }

    /// One step with the gradients of `grads` (from `loss.backward()`). Returns whether
    /// any parameter had a gradient. All or nothing: a refused step (a gradient of the
    /// wrong shape or dtype, ...) changes no parameter and no state.
    pub fn step(&mut self, grads: &GradStore) -> Result<bool, CandleError> {
        for p in &self.params {
            p.set_grad(grads.get(p.var().as_tensor()).cloned());
        }
        let r = self.inner.step();
        for p in &self.params {
            p.set_grad(None);
        }
        Ok(r?)
    }

    /// PyTorch's `step(closure)` (LBFGS needs it): `closure` recomputes the loss and
    /// returns it with its gradients.
    pub fn step_with_closure(
        &mut self,
        closure: &mut dyn FnMut() -> Result<(Tensor, GradStore), CandleError>,
    ) -> Result<Option<f64>, CandleError> {
        let params = self.params.clone();
        let mut failure: Option<CandleError> = None;
        let r = self.inner.step_with_closure(&mut || {
            let (loss, grads) = closure().map_err(|e| {
                let msg = e.to_string();
                failure = Some(e);
                tempo_optim::OptimError::InvalidSpec { message: msg }
            })?;
            for p in &params {
                p.set_grad(grads.get(p.var().as_tensor()).cloned());
            }
            loss_value(&loss).map_err(|e| tempo_optim::OptimError::InvalidSpec {
                message: e.to_string(),
            })
        });
        for p in &self.params {
            p.set_grad(None);
        }
        match (r, failure) {
            (_, Some(e)) => Err(e),
            (r, None) => Ok(r?),
        }
    }

    /// The parameters in state-dict id order (their names and variables).
    pub fn params(&self) -> &[CandleParam] {
        &self.params
    }

    /// The underlying tempo optimizer.
    pub fn inner(&self) -> &dyn Optimizer<T, CandleParam> {
        &*self.inner
    }

    /// The underlying tempo optimizer, mutably.
    pub fn inner_mut(&mut self) -> &mut dyn Optimizer<T, CandleParam> {
        &mut *self.inner
    }

    /// PyTorch's `state_dict()`.
    pub fn state_dict(&self) -> OptimizerStateDict {
        self.inner.state_dict()
    }

    /// PyTorch's `load_state_dict`; checks everything before changing anything.
    pub fn load_state_dict(&mut self, sd: &OptimizerStateDict) -> Result<(), CandleError> {
        Ok(self.inner.load_state_dict(sd)?)
    }
}

fn handles(vars: &NamedVars, mode: StorageMode) -> Vec<CandleParam> {
    vars.iter()
        .map(|(n, v)| CandleParam::new(n, v.clone(), mode))
        .collect()
}

/// A JSON value as a group-dict value (what the spec builder does).
fn json_value(v: &Json) -> Value {
    match v {
        Json::Null => Value::None,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::Str(s.clone()),
        Json::Array(a) => Value::List(a.iter().map(json_value).collect()),
        Json::Object(_) => Value::Str(v.to_string()),
    }
}

/// A scalar loss tensor's value.
fn loss_value(loss: &Tensor) -> candle_core::Result<f64> {
    loss.to_dtype(candle_core::DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()?
        .first()
        .copied()
        .ok_or_else(|| candle_core::Error::Msg("the loss is empty".into()))
}

/// The tempo optimizer's groups, lent in place (it reads them at its step).
impl<T: CandleFloat> OptimizerParamGroups for CandleOptimizer<T> {
    fn num_groups(&self) -> usize {
        self.inner.num_groups()
    }
    fn get(&self, group: usize, key: &str) -> Option<&Value> {
        self.inner.get(group, key)
    }
    fn get_mut(&mut self, group: usize, key: &str) -> Option<&mut Value> {
        self.inner.get_mut(group, key)
    }
    fn insert(&mut self, group: usize, key: &str, value: Value) -> Result<(), ParamGroupError> {
        self.inner.insert(group, key, value)
    }
}

/// candle's optimizer trait: `backward_step(&loss)` and `set_learning_rate` work as
/// in any candle training loop. `new` takes the variables unnamed (named `"0"`, `"1"`,
/// ... in the given order) and a spec (`OptimizerSpec::from_json(..)`);
/// `learning_rate` is the first group's `lr`, `set_learning_rate` sets every group's.
impl<T: CandleFloat> candle_nn::Optimizer for CandleOptimizer<T> {
    type Config = OptimizerSpec;

    fn new(vars: Vec<Var>, config: OptimizerSpec) -> candle_core::Result<Self> {
        let mut named = NamedVars::new();
        for (i, v) in vars.into_iter().enumerate() {
            named.push(&i.to_string(), v)?;
        }
        Ok(CandleOptimizer::new(&config, &named, &[])?)
    }

    fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        CandleOptimizer::step(self, grads)?;
        Ok(())
    }

    fn learning_rate(&self) -> f64 {
        self.inner.get_f64(0, "lr").unwrap_or(f64::NAN)
    }

    fn set_learning_rate(&mut self, lr: f64) {
        for g in 0..self.inner.num_groups() {
            // Every group has an `lr`; a write cannot fail.
            let _ = self.inner.set_f64(g, "lr", lr);
        }
    }
}
