//! Named parameters in a user-chosen order, and param groups chosen by name.

use candle_core::Var;
use candle_nn::VarMap;
use serde_json::{Map, Value as Json};
use tempo_optim::{GroupSpec, ParamSelection};

use crate::CandleError;

/// A model's parameters by name, in the order the optimizer numbers them.
///
/// The order is the user's: a `VarMap` is a hash map, and its order changes from run to
/// run. List the names as PyTorch's `model.parameters()` yields them for the same module
/// tree (modules in registration order, each `Linear` as `weight` then `bias`), and the
/// state-dict ids agree with PyTorch's, so optimizer state moves between the two.
#[derive(Clone, Default)]
pub struct NamedVars {
    entries: Vec<(String, Var)>,
}

impl std::fmt::Debug for NamedVars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|(n, v)| (n, v.dims())))
            .finish()
    }
}

impl NamedVars {
    /// No parameters yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every variable of `varmap`, in the order of `names` (the paths a `VarBuilder`
    /// gave them: `"fc1.weight"`). A name the map does not hold, a name listed twice,
    /// or a variable of the map that `names` leaves out is an `Err` naming it; use
    /// [`NamedVars::select`] to train a subset.
    pub fn from_varmap(varmap: &VarMap, names: &[&str]) -> Result<Self, CandleError> {
        let out = Self::select(varmap, names)?;
        let map = varmap.data().lock().unwrap_or_else(|e| e.into_inner());
        let mut missing: Vec<&String> = map
            .keys()
            .filter(|k| !names.contains(&k.as_str()))
            .collect();
        missing.sort();
        if let Some(name) = missing.first() {
            return Err(CandleError::Unlisted {
                name: name.to_string(),
            });
        }
        Ok(out)
    }

    /// The variables of `varmap` named in `names`, in that order (the others are not
    /// trained).
    pub fn select(varmap: &VarMap, names: &[&str]) -> Result<Self, CandleError> {
        let map = varmap.data().lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Self::new();
        for name in names {
            let var = map.get(*name).ok_or_else(|| {
                let mut known: Vec<&str> = map.keys().map(String::as_str).collect();
                known.sort_unstable();
                CandleError::UnknownName {
                    name: name.to_string(),
                    known: known.join(", "),
                }
            })?;
            out.push(name, var.clone())?;
        }
        Ok(out)
    }

    /// Appends `var` under `name`; a name already present is an `Err`.
    pub fn push(&mut self, name: &str, var: Var) -> Result<(), CandleError> {
        if let Some(first) = self.entries.iter().position(|(n, _)| n == name) {
            return Err(CandleError::DuplicateName {
                name: name.into(),
                first,
                second: self.entries.len(),
            });
        }
        self.entries.push((name.into(), var));
        Ok(())
    }

    /// Appends `var` under `name` (builder style).
    pub fn with(mut self, name: &str, var: Var) -> Result<Self, CandleError> {
        self.push(name, var)?;
        Ok(self)
    }

    /// The names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(n, _)| n.as_str())
    }

    /// The variables, in order.
    pub fn vars(&self) -> impl Iterator<Item = &Var> {
        self.entries.iter().map(|(_, v)| v)
    }

    /// The (name, variable) pairs, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Var)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v))
    }

    /// How many parameters.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The variable named `name`.
    pub fn get(&self, name: &str) -> Option<&Var> {
        self.entries.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

type Predicate = Box<dyn Fn(&str) -> bool + Send + Sync>;

enum Selector {
    Patterns(Vec<String>),
    Predicate(Predicate),
    Rest,
}

/// One param group chosen by name: which parameters (name patterns, a predicate, or
/// the rest) and the hyperparameters that override the optimizer's for it, by
/// PyTorch's names.
///
/// A pattern is a parameter name in which `*` stands for any run of characters:
/// `"*.bias"`, `"embed.*"`, `"fc1.weight"`. Rules are matched against every parameter;
/// a rule that matches nothing, or a parameter that two rules match, is an `Err`
/// naming them ([`CandleError::MatchesNothing`], [`CandleError::MatchedTwice`]).
///
/// ```
/// use tempo_candle::GroupRule;
/// let rules = [
///     GroupRule::rest(),                                      // weights: the defaults
///     GroupRule::patterns(["*.bias", "norm*"]).with("weight_decay", 0.0),
/// ];
/// # let _ = rules;
/// ```
pub struct GroupRule {
    selector: Selector,
    options: Map<String, Json>,
}

impl std::fmt::Debug for GroupRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupRule")
            .field("selector", &self.describe())
            .field("options", &self.options)
            .finish()
    }
}

impl GroupRule {
    /// The parameters whose names match any of `patterns`.
    pub fn patterns<S: Into<String>>(patterns: impl IntoIterator<Item = S>) -> Self {
        Self {
            selector: Selector::Patterns(patterns.into_iter().map(Into::into).collect()),
            options: Map::new(),
        }
    }

    /// The parameters whose names satisfy `f`.
    pub fn predicate(f: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        Self {
            selector: Selector::Predicate(Box::new(f)),
            options: Map::new(),
        }
    }

    /// Every parameter no other rule matches (at most one such rule).
    pub fn rest() -> Self {
        Self {
            selector: Selector::Rest,
            options: Map::new(),
        }
    }

    /// Overrides a hyperparameter for this group (builder style), by PyTorch's name.
    pub fn with(mut self, key: &str, value: impl Into<Json>) -> Self {
        self.options.insert(key.into(), value.into());
        self
    }

    fn describe(&self) -> String {
        match &self.selector {
            Selector::Patterns(p) => p.join(" | "),
            Selector::Predicate(_) => "<predicate>".into(),
            Selector::Rest => "<rest>".into(),
        }
    }

    fn matches(&self, name: &str) -> bool {
        match &self.selector {
            Selector::Patterns(ps) => ps.iter().any(|p| glob(p, name)),
            Selector::Predicate(f) => f(name),
            Selector::Rest => false,
        }
    }
}

/// Whether `name` matches `pattern`, where `*` matches any run of characters.
fn glob(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    if !name.ends_with(last) {
        return false;
    }
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// The groups of an optimizer spec, by index into `vars`, from `rules`.
pub(crate) fn group_specs(
    vars: &NamedVars,
    rules: &[GroupRule],
) -> Result<Vec<GroupSpec>, CandleError> {
    let mut owner: Vec<Option<usize>> = vec![None; vars.len()];
    for (gi, rule) in rules.iter().enumerate() {
        let mut any = false;
        for (i, name) in vars.names().enumerate() {
            if rule.matches(name) {
                any = true;
                if let Some(first) = owner[i] {
                    return Err(CandleError::MatchedTwice {
                        name: name.into(),
                        first,
                        second: gi,
                    });
                }
                owner[i] = Some(gi);
            }
        }
        if !any && !matches!(rule.selector, Selector::Rest) {
            return Err(CandleError::MatchesNothing {
                group: gi,
                pattern: rule.describe(),
            });
        }
    }
    let rests: Vec<usize> = rules
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r.selector, Selector::Rest))
        .map(|(i, _)| i)
        .collect();
    if let [_, second, ..] = rests[..] {
        return Err(CandleError::MatchedTwice {
            name: "<rest>".into(),
            first: rests[0],
            second,
        });
    }
    for (i, name) in vars.names().enumerate() {
        if owner[i].is_none() {
            match rests.first() {
                Some(&r) => owner[i] = Some(r),
                None => return Err(CandleError::Unassigned { name: name.into() }),
            }
        }
    }
    if let Some(&r) = rests.first() {
        if !owner.contains(&Some(r)) {
            return Err(CandleError::MatchesNothing {
                group: r,
                pattern: "<rest>".into(),
            });
        }
    }
    Ok(rules
        .iter()
        .enumerate()
        .map(|(gi, rule)| GroupSpec {
            params: ParamSelection::Indices(
                (0..vars.len()).filter(|&i| owner[i] == Some(gi)).collect(),
            ),
            options: rule.options.clone(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("*.bias", "fc1.bias"));
        assert!(!glob("*.bias", "fc1.weight"));
        assert!(glob("embed.*", "embed.weight"));
        assert!(glob("fc1.weight", "fc1.weight"));
        assert!(!glob("fc1.weight", "fc1.weight2"));
        assert!(glob("*norm*", "layer.norm.weight"));
        assert!(glob("a*b*c", "abc"));
        assert!(!glob("a*b*c", "acb"));
        assert!(!glob("ab*ba", "aba"));
        assert!(glob("*", "anything"));
    }
}
