//! `Sequential`, PyTorch's `nn.Sequential`, with PyTorch's child names.

use tempo_tensor::{Float, Tensor};

use crate::{Module, NnError};

/// Modules applied in order (PyTorch's `nn.Sequential`).
///
/// Children added with [`Sequential::push`] are named by their position, as PyTorch
/// names them (`0`, `1`, `2`, ...: with `Linear, ReLU, Linear` the parameters are
/// `0.weight, 0.bias, 2.weight, 2.bias`); [`Sequential::push_named`] gives a custom
/// name instead (an `OrderedDict` in PyTorch).
///
/// Invariant: child names are unique, non-empty and contain no `.`.
pub struct Sequential<T: Float> {
    children: Vec<(String, Box<dyn Module<T>>)>,
}

impl<T: Float> Default for Sequential<T> {
    fn default() -> Self {
        Self {
            children: Vec::new(),
        }
    }
}

impl<T: Float> std::fmt::Debug for Sequential<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sequential")
            .field("children", &self.names().collect::<Vec<_>>())
            .finish()
    }
}

impl<T: Float> Sequential<T> {
    /// An empty sequence (the identity).
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a child named by its position. If a custom name already took that
    /// position's number, errs with [`NnError::DuplicateName`].
    pub fn push(&mut self, module: impl Module<T> + 'static) -> Result<&mut Self, NnError> {
        let name = self.children.len().to_string();
        self.push_named(&name, module)
    }

    /// Appends a child with a custom name; errs on a repeated, empty or dotted name.
    pub fn push_named(
        &mut self,
        name: &str,
        module: impl Module<T> + 'static,
    ) -> Result<&mut Self, NnError> {
        if name.is_empty() || name.contains('.') {
            return Err(NnError::InvalidName {
                name: name.to_string(),
            });
        }
        if self.children.iter().any(|(n, _)| n == name) {
            return Err(NnError::DuplicateName {
                name: name.to_string(),
            });
        }
        self.children.push((name.to_string(), Box::new(module)));
        Ok(self)
    }

    /// Builder form of [`Sequential::push`].
    pub fn with(mut self, module: impl Module<T> + 'static) -> Result<Self, NnError> {
        self.push(module)?;
        Ok(self)
    }

    /// Builder form of [`Sequential::push_named`].
    pub fn with_named(
        mut self,
        name: &str,
        module: impl Module<T> + 'static,
    ) -> Result<Self, NnError> {
        self.push_named(name, module)?;
        Ok(self)
    }

    /// The children's names in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.children.iter().map(|(n, _)| n.as_str())
    }

    /// The child called `name`.
    pub fn get(&self, name: &str) -> Option<&dyn Module<T>> {
        self.children
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, m)| m.as_ref())
    }

    /// The number of children.
    pub fn len(&self) -> usize {
        self.children.len()
    }

    /// Whether there are no children.
    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }
}

impl<T: Float> Module<T> for Sequential<T> {
    fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>, NnError> {
        let mut h = x.clone();
        for (_, m) in &self.children {
            h = m.forward(&h)?;
        }
        Ok(h)
    }

    fn collect_parameters(&self, prefix: &str, out: &mut Vec<(String, Tensor<T>)>) {
        for (name, m) in &self.children {
            m.collect_parameters(&format!("{prefix}{name}."), out);
        }
    }
}
