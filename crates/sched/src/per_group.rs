use serde::{Deserialize, Serialize};

use crate::SchedError;

/// A hyperparameter given once for every param group or once per group, as PyTorch
/// accepts `base_lr=0.1` or `base_lr=[0.1, 0.01]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PerGroup<T> {
    /// One value, used for every group.
    All(T),
    /// One value per group, in group order.
    Each(Vec<T>),
}

impl<T: Clone> PerGroup<T> {
    /// The value of each of `groups` groups; `Err(GroupCountMismatch)` naming `arg` when a
    /// list has the wrong length.
    pub fn resolve(&self, arg: &str, groups: usize) -> Result<Vec<T>, SchedError> {
        match self {
            PerGroup::All(v) => Ok(vec![v.clone(); groups]),
            PerGroup::Each(vs) if vs.len() == groups => Ok(vs.clone()),
            PerGroup::Each(vs) => Err(SchedError::GroupCountMismatch {
                arg: arg.to_string(),
                expected: groups,
                got: vs.len(),
            }),
        }
    }
}

impl From<f64> for PerGroup<f64> {
    fn from(v: f64) -> Self {
        PerGroup::All(v)
    }
}

impl From<Vec<f64>> for PerGroup<f64> {
    fn from(v: Vec<f64>) -> Self {
        PerGroup::Each(v)
    }
}
