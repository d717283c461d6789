//! The `Module` trait: a forward function and named parameters in PyTorch's order.

use tempo_tensor::{no_grad, Float, Tensor};

use crate::{NnError, StateDict};

/// A layer or a model: a forward function over tensors and a list of named parameters.
///
/// Parameter order and names follow PyTorch: a module's own parameters first (in
/// registration order), then each child's with the prefix `child_name.`. tempo's
/// modules have no buffers, so the state dict holds exactly the parameters.
pub trait Module<T: Float>: Send + Sync {
    /// Applies the module.
    fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>, NnError>;

    /// Appends this module's parameters to `out`, each named `prefix` + its dotted path.
    /// This is the one method a module with parameters implements.
    fn collect_parameters(&self, prefix: &str, out: &mut Vec<(String, Tensor<T>)>);

    /// The parameters with PyTorch-style dotted names (`fc1.weight`, `fc1.bias`, ...).
    fn named_parameters(&self) -> Vec<(String, Tensor<T>)> {
        let mut out = Vec::new();
        self.collect_parameters("", &mut out);
        out
    }

    /// The parameters in a stable order (PyTorch's `model.parameters()`): handles that
    /// share values and gradients with the module.
    fn parameters(&self) -> Vec<Tensor<T>> {
        self.named_parameters()
            .into_iter()
            .map(|(_, t)| t)
            .collect()
    }

    /// A copy of every parameter's value, by name, in parameter order.
    fn state_dict(&self) -> StateDict<T> {
        let mut sd = StateDict::new();
        for (k, t) in self.named_parameters() {
            // Names are unique for tempo's modules; for a custom module that repeats a
            // name, the later value wins in the first position, as in a Python dict.
            sd.set(k, t.to_array());
        }
        sd
    }

    /// Overwrites every parameter's value from `state`, strictly (PyTorch's default):
    /// errs on a missing or unexpected key ([`NnError::KeyMismatch`]) or a wrong shape
    /// ([`NnError::ShapeMismatch`], naming the key and both shapes). Everything is
    /// checked before anything changes, so on error the module is untouched.
    fn load_state_dict(&self, state: &StateDict<T>) -> Result<(), NnError> {
        let params = self.named_parameters();
        let missing: Vec<String> = params
            .iter()
            .filter(|(k, _)| state.get(k).is_none())
            .map(|(k, _)| k.clone())
            .collect();
        let unexpected: Vec<String> = state
            .keys()
            .filter(|k| !params.iter().any(|(p, _)| p == k))
            .map(str::to_string)
            .collect();
        if !missing.is_empty() || !unexpected.is_empty() {
            return Err(NnError::KeyMismatch {
                missing,
                unexpected,
            });
        }
        let mut updates = Vec::with_capacity(params.len());
        for (k, t) in &params {
            let Some(v) = state.get(k) else {
                return Err(NnError::KeyMismatch {
                    missing: vec![k.clone()],
                    unexpected: vec![],
                });
            };
            let expected = t.shape();
            if v.shape() != expected.as_slice() {
                return Err(NnError::ShapeMismatch {
                    key: k.clone(),
                    expected,
                    found: v.shape().to_vec(),
                });
            }
            updates.push((t, v));
        }
        no_grad(|| {
            for (t, v) in updates {
                t.data_mut().assign(v);
            }
        });
        Ok(())
    }

    /// Drops every parameter's gradient (`model.zero_grad()`, `set_to_none=True`).
    fn zero_grad(&self) {
        for p in self.parameters() {
            p.zero_grad();
        }
    }
}
