//! A module's `StateDict`: parameters by dotted name, in the module's order.

use ndarray::ArrayD;
use tempo_tensor::{Float, TensorData};

use crate::NnError;

/// A module's parameters by dotted name (`fc1.weight`), in the module's parameter order:
/// PyTorch's `state_dict()` `OrderedDict` for modules without buffers.
///
/// Invariant: keys are unique.
#[derive(Debug, Clone, PartialEq)]
pub struct StateDict<T: Float> {
    entries: Vec<(String, ArrayD<T>)>,
}

impl<T: Float> Default for StateDict<T> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

impl<T: Float> StateDict<T> {
    /// An empty state dict.
    pub fn new() -> Self {
        Self::default()
    }

    /// A state dict from ordered entries; errs on a repeated key.
    pub fn from_entries(entries: Vec<(String, ArrayD<T>)>) -> Result<Self, NnError> {
        let mut sd = Self::new();
        for (k, v) in entries {
            sd.insert(k, v)?;
        }
        Ok(sd)
    }

    /// Appends an entry; errs if the key is already present.
    pub fn insert(&mut self, key: impl Into<String>, value: ArrayD<T>) -> Result<(), NnError> {
        let key = key.into();
        if self.get(&key).is_some() {
            return Err(NnError::DuplicateName { name: key });
        }
        self.entries.push((key, value));
        Ok(())
    }

    /// Stores `value` under `key`: replaces the value in place if the key exists
    /// (keeping its position, like a Python dict), appends it otherwise.
    pub fn set(&mut self, key: impl Into<String>, value: ArrayD<T>) {
        let key = key.into();
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => self.entries.push((key, value)),
        }
    }

    /// The value stored under `key`.
    pub fn get(&self, key: &str) -> Option<&ArrayD<T>> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The keys in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_str())
    }

    /// The entries in order.
    pub fn entries(&self) -> &[(String, ArrayD<T>)] {
        &self.entries
    }

    /// The entries, by value.
    pub fn into_entries(self) -> Vec<(String, ArrayD<T>)> {
        self.entries
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries as dtype-tagged arrays (what checkpoints store).
    pub fn to_tensor_data(&self) -> Vec<(String, TensorData)> {
        self.entries
            .iter()
            .map(|(k, v)| (k.clone(), TensorData::from_array(v.clone())))
            .collect()
    }

    /// A state dict from dtype-tagged arrays; errs on another dtype or a repeated key.
    pub fn from_tensor_data(entries: Vec<(String, TensorData)>) -> Result<Self, NnError> {
        let mut sd = Self::new();
        for (k, v) in entries {
            sd.insert(k, v.into_array()?)?;
        }
        Ok(sd)
    }
}
