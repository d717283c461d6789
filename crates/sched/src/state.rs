//! Reading and writing PyTorch-shaped scheduler state dicts.

use tempo_param_groups::{Dict, Value};

use crate::SchedError;

/// Reads a state dict key by key, remembering which keys were used so that
/// [`finish`](StateReader::finish) can refuse keys of another scheduler kind.
pub(crate) struct StateReader<'a> {
    dict: &'a Dict,
    scheduler: &'static str,
    used: Vec<String>,
}

impl<'a> StateReader<'a> {
    pub(crate) fn new(dict: &'a Dict, scheduler: &'static str) -> Self {
        StateReader {
            dict,
            scheduler,
            used: Vec::new(),
        }
    }

    fn wrong(&self, key: &str, expected: &'static str, found: &Value) -> SchedError {
        SchedError::StateWrongType {
            scheduler: self.scheduler,
            key: key.to_string(),
            expected,
            found: found.to_string(),
        }
    }

    pub(crate) fn optional(&mut self, key: &str) -> Option<&'a Value> {
        let v = self.dict.get(key)?;
        self.used.push(key.to_string());
        Some(v)
    }

    pub(crate) fn value(&mut self, key: &str) -> Result<&'a Value, SchedError> {
        self.optional(key)
            .ok_or_else(|| SchedError::StateMissingKey {
                scheduler: self.scheduler,
                key: key.to_string(),
            })
    }

    pub(crate) fn int(&mut self, key: &str) -> Result<i64, SchedError> {
        let v = self.value(key)?;
        v.as_i64().ok_or_else(|| self.wrong(key, "an int", v))
    }

    pub(crate) fn float(&mut self, key: &str) -> Result<f64, SchedError> {
        let v = self.value(key)?;
        v.as_f64().ok_or_else(|| self.wrong(key, "a number", v))
    }

    pub(crate) fn boolean(&mut self, key: &str) -> Result<bool, SchedError> {
        let v = self.value(key)?;
        v.as_bool().ok_or_else(|| self.wrong(key, "a bool", v))
    }

    pub(crate) fn string(&mut self, key: &str) -> Result<&'a str, SchedError> {
        let v = self.value(key)?;
        v.as_str().ok_or_else(|| self.wrong(key, "a string", v))
    }

    /// A string that must be one of `choices`.
    pub(crate) fn choice(
        &mut self,
        key: &str,
        choices: &'static [&'static str],
        expected: &'static str,
    ) -> Result<&'a str, SchedError> {
        let v = self.value(key)?;
        match v.as_str() {
            Some(s) if choices.contains(&s) => Ok(s),
            _ => Err(self.wrong(key, expected, v)),
        }
    }

    pub(crate) fn list(&mut self, key: &str) -> Result<&'a [Value], SchedError> {
        let v = self.value(key)?;
        v.as_slice().ok_or_else(|| self.wrong(key, "a list", v))
    }

    /// A list of numbers with one entry per group.
    pub(crate) fn floats(&mut self, key: &str, groups: usize) -> Result<Vec<f64>, SchedError> {
        let v = self.value(key)?;
        let items = v
            .as_slice()
            .ok_or_else(|| self.wrong(key, "a list of numbers", v))?;
        if items.len() != groups {
            return Err(SchedError::GroupCountMismatch {
                arg: key.to_string(),
                expected: groups,
                got: items.len(),
            });
        }
        items
            .iter()
            .map(|x| {
                x.as_f64()
                    .ok_or_else(|| self.wrong(key, "a list of numbers", v))
            })
            .collect()
    }

    /// Refuses every key that was not read.
    pub(crate) fn finish(self) -> Result<(), SchedError> {
        match self.dict.keys().find(|k| !self.used.iter().any(|u| u == k)) {
            Some(k) => Err(SchedError::StateUnexpectedKey {
                scheduler: self.scheduler,
                key: k.to_string(),
            }),
            None => Ok(()),
        }
    }
}

pub(crate) fn float_list(values: &[f64]) -> Value {
    Value::float_list(values.iter().copied())
}
