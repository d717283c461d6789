//! `PerGroup`: a hyperparameter given once for all groups or once per group.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_value_is_broadcast_and_a_list_must_fit() {
        assert_eq!(PerGroup::All(0.5).resolve("x", 3), Ok(vec![0.5; 3]));
        assert_eq!(
            PerGroup::Each(vec![1.0, 2.0]).resolve("x", 2),
            Ok(vec![1.0, 2.0])
        );
        assert_eq!(
            PerGroup::Each(vec![1.0]).resolve("max_lr", 2),
            Err(SchedError::GroupCountMismatch {
                arg: "max_lr".into(),
                expected: 2,
                got: 1
            })
        );
        let parsed: PerGroup<f64> = serde_json::from_str("[0.1, 0.2]").expect("a list");
        assert_eq!(parsed, PerGroup::Each(vec![0.1, 0.2]));
        let parsed: PerGroup<f64> = serde_json::from_str("3").expect("an int is a number");
        assert_eq!(parsed, PerGroup::All(3.0));
    }
}
